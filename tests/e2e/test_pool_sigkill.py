"""Never paid twice: a pooled worker SIGKILLed mid-run against a fake upstream with two
accounts. Its tasks stay pinned to the account that created them; the next worker looks each
up there by external_task_id before any create, so every task is created exactly once and no
account ever has more in flight than its limit."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kling_gateway.fake_upstream import FakeUpstreamConfig, create_fake_upstream
from kling_gateway.fake_upstream.accounts import FakeAccount
from tests.e2e.proc import EXE, clean_env, cli, free_port, running, stop
from tests.e2e.test_worker_sigkill import records, wait_until
from tests.servers import serve_asgi

TASKS = 24
AK, SK = "sigkill-ak-default", "sigkill-sk-default-0123456789"
LIMITS = {"default": 5, "b": 3}


@pytest.fixture
def upstream() -> Iterator[tuple[str, httpx.Client]]:
    accounts = [
        FakeAccount("default", AK, SK, max_concurrency=LIMITS["default"]),
        FakeAccount("b", "sigkill-ak-b", "sigkill-sk-b-0123456789", max_concurrency=LIMITS["b"]),
    ]
    config = FakeUpstreamConfig(
        accounts=accounts, processing_after=0.2, finish_after=(1.5, 2.5), seed=3
    )
    with serve_asgi(create_fake_upstream(config)) as url, httpx.Client(base_url=url) as admin:
        yield url, admin


def kling_flags(data: Path, url: str) -> list[str]:
    return [
        "--data-dir", str(data), "--provider", "kling", "--kling-base-url", url,
        "--kling-access-key", AK, "--kling-secret-key", SK, "--no-kling-download-results",
        "--kling-max-concurrency", str(LIMITS["default"]),
    ]  # fmt: skip


def worker(data: Path, url: str, log: Path) -> subprocess.Popen[str]:
    args = [
        EXE, "worker", *kling_flags(data, url), "--provider-timeout", "2", "--lease-seconds", "3",
        "--check-interval", "0.2", "--idle-poll-seconds", "0.2", "--worker-concurrency", "16",
    ]  # fmt: skip
    return subprocess.Popen(args, stdout=log.open("a"), stderr=subprocess.STDOUT, text=True,
                            env=clean_env())  # fmt: skip


def test_a_sigkilled_pooled_worker_pays_for_each_task_once(
    tmp_path: Path, upstream: tuple[str, httpx.Client]
) -> None:
    url, admin = upstream
    data, log = tmp_path / "data", tmp_path / "worker.log"
    token = cli("tokens", "create", "--user", "alice", "--data-dir", str(data)).strip()
    cli(
        "accounts", "add", "b", "--access-key", "sigkill-ak-b", "--secret-key",
        "sigkill-sk-b-0123456789", "--max-concurrency", str(LIMITS["b"]), "--data-dir", str(data),
    )  # fmt: skip
    port = free_port()
    with running(*kling_flags(data, url), "--no-worker", port=port):
        headers = {"authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
            body = {"action": "text2video", "prompt": "a mug", "async": True}
            ids = [client.post("/kling/videos", json=body).json()["task_id"] for _ in range(TASKS)]
            first = worker(data, url, log)
            wait_until(lambda: sum("job_id" in r for r in records(client, ids)) >= 6)
            first.send_signal(signal.SIGKILL)
            first.wait()
            assert any("finished_at" not in r for r in records(client, ids))
            second = worker(data, url, log)
            try:
                wait_until(lambda: all("finished_at" in r for r in records(client, ids)))
            finally:
                assert stop(second) == 0
            final = records(client, ids)
    assert {r["response"]["state"] for r in final} == {"succeed"}  # type: ignore[index]
    creates = admin.get("/fake-admin/counters").json()["creates_by_external_id"]
    assert sorted(creates) == sorted(ids) and set(creates.values()) == {1}
    accounts = {a["name"]: a for a in admin.get("/fake-admin/accounts").json()}
    for name, limit in LIMITS.items():
        assert accounts[name]["peak_in_flight"] <= limit
        assert accounts[name]["rejected_over_limit"] == 0
    listed = cli("accounts", "list", "--data-dir", str(data))
    assert "0/5" in listed and "0/3" in listed  # every slot came back
