"""`kling-gateway apps ...` and `kling-gateway usage` in-process against a real SQLite
database; usage totals match the ledger."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from kling_gateway.cli import main
from kling_gateway.cli.apps import parse_since
from kling_gateway.domain.billing import Entry
from kling_gateway.runtime.settings import SettingsError
from kling_gateway.storage.sqlite import SQLiteStore
from tests.storage.billing_helpers import (
    create,
    fail_outcome,
    finish_task,
    priced_task,
    succeed_outcome,
)
from tests.storage.helpers import Owner


def run(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--data-dir", str(data)])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> Any:
    code, out, err = run(capsys, data, *args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    monkeypatch.delenv("KLING_GATEWAY_DATABASE_URL", raising=False)
    monkeypatch.delenv("KLING_GATEWAY_DEFAULT_CREDITS", raising=False)
    data = tmp_path / "data"
    assert main(["tokens", "create", "--user", "alice", "--data-dir", str(data)]) == 0
    capsys.readouterr()
    return data


def _in_store(data: Path, flow: Any) -> Any:
    async def go() -> Any:
        store = SQLiteStore(f"sqlite:///{data / 'kling-gateway.db'}")
        await store.open()
        try:
            return await flow(store)
        finally:
            await store.close()

    return asyncio.run(go())


def test_show_grant_set_disable_enable(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    shown = run_json(capsys, data, "apps", "show", "--user", "alice")
    assert (shown["metered"], shown["balance"], shown["available"]) == (False, 0, None)
    granted = run_json(capsys, data, "apps", "grant", "--user", "alice", "40", "--note", "trial")
    assert (granted["metered"], granted["balance"], granted["available"]) == (True, 40, 40)
    limited = run_json(capsys, data, "apps", "set", "--user", "alice", "--max-in-flight", "2")
    assert limited["max_in_flight"] == 2
    assert run_json(capsys, data, "apps", "disable", "--user", "alice")["disabled"] is True
    assert run_json(capsys, data, "apps", "enable", "--user", "alice")["disabled"] is False
    code, out, _ = run(capsys, data, "apps", "list")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["USER", "METERED", "BALANCE"]
    assert out.splitlines()[1].split()[:3] == ["alice", "yes", "40"]
    [listed] = run_json(capsys, data, "apps", "list")
    assert listed == run_json(capsys, data, "apps", "show", "--user", "alice")
    code, _, err = run(capsys, data, "apps", "grant", "--user", "nobody", "5")
    assert code == 1 and "no user named 'nobody'" in err
    code, _, err = run(capsys, data, "apps", "set", "--user", "alice", "--max-in-flight", "-1")
    assert code == 2 and "--max-in-flight" in err


def test_default_credits_meter_new_users(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    args = ["tokens", "create", "--user", "bob", "--default-credits", "25"]
    assert run(capsys, data, *args)[0] == 0
    bob = run_json(capsys, data, "apps", "show", "--user", "bob")
    assert (bob["metered"], bob["balance"]) == (True, 25)


def test_usage_totals_match_the_ledger(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    run_json(capsys, data, "apps", "grant", "--user", "alice", "100")

    async def work(store: SQLiteStore) -> int:
        user_id, app_id = await store.ensure_account("alice", time.time())
        who = Owner(user_id, app_id, "cred")
        for mode, outcome in (("std", succeed_outcome()), ("pro", succeed_outcome())):
            task = await create(store, priced_task(who, mode=mode))
            assert await finish_task(store, task.id, outcome)
        failed = await create(store, priced_task(who))
        assert await finish_task(store, failed.id, fail_outcome())
        entries = await store.ledger_entries(user_name="alice")
        return -sum(e.credits for e in entries if e.entry is Entry.SETTLE)

    settled = _in_store(data, work)
    report = run_json(capsys, data, "usage", "--user", "alice", "--since", "1d", "--by", "model")
    assert report["total"] == {"tasks": 2, "credits": settled, "failed": 1, "refunded": 0}
    assert settled == 15  # 5 s std at 1 + 5 s pro at 2
    by_day = run_json(capsys, data, "usage", "--by", "day")
    assert [row["key"] for row in by_day["rows"]] == [time.strftime("%Y-%m-%d", time.gmtime())]
    code, out, _ = run(capsys, data, "usage")
    assert code == 0 and out.splitlines()[-1].split() == ["total", "2", "15", "1", "0"]
    assert run_json(capsys, data, "apps", "show", "--user", "alice")["balance"] == 100 - 15
    settled_ids = _in_store(data, _settled_ids)
    refunded = run_json(capsys, data, "apps", "refund", "--task", settled_ids[0], "--note", "x")
    assert refunded["refunded"] in (5, 10)
    code, out, _ = run(capsys, data, "apps", "refund", "--task", settled_ids[0])
    assert (code, out.strip()) == (1, "nothing to refund")
    report = run_json(capsys, data, "usage")
    assert report["total"]["refunded"] == refunded["refunded"]
    assert report["total"]["credits"] == 15 - refunded["refunded"]


async def _settled_ids(store: SQLiteStore) -> list[str]:
    entries = await store.ledger_entries(user_name="alice")
    return [e.task_id or "" for e in entries if e.entry is Entry.SETTLE]


def test_since_takes_a_number_and_a_unit() -> None:
    assert parse_since("7d", 1_000_000.0) == 1_000_000.0 - 7 * 86400
    assert parse_since("90m", 10_000.0) == 10_000.0 - 5400
    for bad in ("7", "d", "-1d", "1y"):
        with pytest.raises(SettingsError, match="--since"):
            parse_since(bad, 0.0)
