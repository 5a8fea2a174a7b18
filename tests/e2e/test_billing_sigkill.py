"""Settled exactly once (issue 15): a worker SIGKILLed between the upstream's result and the
save (it is copying the finished videos, which the fake upstream makes hang) leaves the holds
in place; after a restart every task is settled once, at the upstream's own
``final_unit_deduction`` converted by the price table, and nothing stays held."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kling_gateway.fake_upstream import FakeUpstreamConfig, create_fake_upstream
from kling_gateway.fake_upstream.config import faults_from_json
from tests.e2e.proc import EXE, clean_env, cli, free_port, running, stop
from tests.e2e.test_worker_sigkill import records, wait_until
from tests.servers import serve_asgi

TASKS = 12
AK, SK = "billing-ak", "billing-sk-0123456789abcdef"
GRANT = 1000
# The fake reports final_unit_deduction "1" per task: 2 credits, below the 5 held.
PRICES = 'credits_per_unit = 2\n[per_second."*"]\nstd = 1\npro = 2\n4k = 4\n'


@pytest.fixture
def upstream() -> Iterator[tuple[str, httpx.Client]]:
    hang_downloads = faults_from_json({"hang": {"probability": 1.0, "routes": ["media"]}})
    config = FakeUpstreamConfig(
        access_key=AK, secret_key=SK, processing_after=0.2, finish_after=(0.5, 1.0), seed=5,
        faults=hang_downloads,
    )  # fmt: skip
    with serve_asgi(create_fake_upstream(config)) as url, httpx.Client(base_url=url) as admin:
        yield url, admin


def flags(data: Path, url: str, prices: Path) -> list[str]:
    return [
        "--data-dir", str(data), "--provider", "kling", "--kling-base-url", url,
        "--kling-access-key", AK, "--kling-secret-key", SK, "--prices", str(prices),
        "--callback-allow-private",
    ]  # fmt: skip


def worker(data: Path, url: str, prices: Path, log: Path) -> subprocess.Popen[str]:
    args = [
        EXE, "worker", *flags(data, url, prices), "--provider-timeout", "2", "--lease-seconds",
        "3", "--check-interval", "0.2", "--idle-poll-seconds", "0.2", "--kling-download-timeout",
        "4",
    ]  # fmt: skip
    return subprocess.Popen(args, stdout=log.open("a"), stderr=subprocess.STDOUT, text=True,
                            env=clean_env())  # fmt: skip


def _json(*args: str) -> dict[str, object]:
    doc: dict[str, object] = json.loads(cli(*args, "--json"))
    return doc


def test_a_worker_killed_before_its_save_settles_each_task_once_after_restart(
    tmp_path: Path, upstream: tuple[str, httpx.Client]
) -> None:
    url, admin = upstream
    data, log, prices = tmp_path / "data", tmp_path / "worker.log", tmp_path / "prices.toml"
    prices.write_text(PRICES)
    store = ["--data-dir", str(data)]
    token = cli("tokens", "create", "--user", "alice", "--default-credits", str(GRANT), *store)
    headers = {"authorization": f"Bearer {token.strip()}"}
    port = free_port()
    api = running(*flags(data, url, prices), "--no-worker", port=port)
    with api, httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
        body = {"action": "text2video", "prompt": "a mug", "async": True}
        answers = [client.post("/kling/videos", json=body).json() for _ in range(TASKS)]
        assert {a["usage"]["credits"] for a in answers} == {5}
        ids = [a["task_id"] for a in answers]
        first = worker(data, url, prices, log)

        def hung() -> int:
            counters = admin.get("/fake-admin/counters").json()
            return int(counters["faults_injected"].get("hang", 0))

        # The upstream has answered SUCCEED and the worker is copying the videos.
        wait_until(lambda: hung() >= TASKS // 2)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert not any("finished_at" in r for r in records(client, ids))
        held = _json("apps", "show", "--user", "alice", *store)
        assert (held["balance"], held["held"]) == (GRANT, 5 * TASKS)
        admin.delete("/fake-admin/faults")
        second = worker(data, url, prices, log)
        try:
            wait_until(lambda: all("finished_at" in r for r in records(client, ids)))
        finally:
            assert stop(second) == 0
        final = records(client, ids)
    assert {r["response"]["state"] for r in final} == {"succeed"}  # type: ignore[index]
    assert {json.dumps(r["usage"]) for r in final} == {'{"credits": 2, "duration": 5.0}'}
    app = _json("apps", "show", "--user", "alice", *store)
    assert (app["balance"], app["held"], app["in_flight"]) == (GRANT - 2 * TASKS, 0, 0)
    report = _json("usage", "--user", "alice", *store)
    assert report["total"] == {"tasks": TASKS, "credits": 2 * TASKS, "failed": 0, "refunded": 0}
