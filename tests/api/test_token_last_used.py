"""A token's last use is recorded off the request's path, at most once a minute per token and
process; `kling-gateway tokens list` shows it with the token's creation and expiry."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from kling_gateway.cli import main
from kling_gateway.storage.tokens import issue_token
from tests.harness import AppHarness


async def last_used(gateway: AppHarness, user: str = "alice") -> float | None:
    (info,) = [c for c in await gateway.store.list_credentials() if c.user_name == user]
    return info.last_used_at


async def written(gateway: AppHarness) -> float:
    for _ in range(100):
        at = await last_used(gateway)
        if at is not None:
            return at
        await asyncio.sleep(0.02)
    raise AssertionError("the token's last use was never written")


async def test_last_use_is_written_once_a_minute(gateway: AppHarness) -> None:
    assert await last_used(gateway) is None
    before = time.time()
    assert (await gateway.tasks({"id": "nope"})).status_code == 200
    first = await written(gateway)
    assert before <= first <= time.time()
    for _ in range(5):  # within the minute: no further write
        assert (await gateway.tasks({"id": "nope"})).status_code == 200
    await asyncio.sleep(0.2)
    assert await last_used(gateway) == first


async def test_a_refused_token_is_not_a_use(gateway: AppHarness) -> None:
    await gateway.add_user("bob", apis=("kling.videos",))
    response = await gateway.tasks({"id": "nope"}, user="bob")  # not granted kling.tasks
    assert response.json()["error"]["code"] == "token_mismatched"
    await asyncio.sleep(0.1)
    assert await last_used(gateway, "bob") is None


async def test_tokens_list_shows_created_expires_and_last_used(
    gateway: AppHarness, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    await gateway.tasks({"id": "nope"})
    await written(gateway)
    await issue_token(gateway.store, "carol", expires_in_days=-1)  # expired already
    await issue_token(gateway.store, "dave", expires_in_days=30)
    argv = ["tokens", "list", "--data-dir", gateway.settings.data_dir]
    assert await asyncio.to_thread(main, argv) == 0
    out = capsys.readouterr().out.splitlines()
    header, rows = out[0].split(), {line.split()[1]: line.split() for line in out[1:]}
    assert header == [
        "ID",
        "USER",
        "PREFIX",
        "APIS",
        "CREATED",
        "EXPIRES",
        "LAST",
        "USED",
        "STATUS",
    ]
    today = time.strftime("%Y-%m-%dT", time.gmtime())
    alice, carol, dave = rows["alice"], rows["carol"], rows["dave"]
    assert alice[4].startswith(today) and alice[5] == "never" and alice[6].startswith(today)
    assert alice[7] == "active"
    assert (carol[5], carol[6], carol[7]) == ("expired", "never", "expired")
    assert dave[5] > today and dave[7] == "active"
