"""Multi-step Kling tasks (docs/contract.md §7) survive SIGKILLs of the worker between their
steps: a talking photo (image2video, identify-face, advanced-lip-sync) and a text lip-sync
(identify-face, tts, advanced-lip-sync) resume at the step they reached, and every upstream
job is created exactly once (looked up by its external_task_id before any create)."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kling_gateway.fake_upstream import FakeUpstreamConfig, create_fake_upstream
from kling_gateway.fake_upstream.media import make_wav
from tests.e2e.proc import EXE, clean_env, cli, free_port, running, stop
from tests.e2e.test_worker_sigkill import records, wait_until
from tests.servers import serve_asgi

AK, SK = "kinds-ak", "kinds-sk-0123456789abcdef"
PHOTOS = 5
SPEECHES = 5


@pytest.fixture
def upstream() -> Iterator[tuple[str, httpx.Client]]:
    config = FakeUpstreamConfig(
        access_key=AK, secret_key=SK, processing_after=0.2, finish_after=(1.2, 1.8), seed=9
    )
    with serve_asgi(create_fake_upstream(config)) as url, httpx.Client(base_url=url) as admin:
        yield url, admin


@pytest.fixture
def audio_url() -> Iterator[str]:
    clip = make_wav(3.0)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": clip})

    with serve_asgi(app) as url:
        yield f"{url}/speech.wav"


def flags(data: Path, url: str) -> list[str]:
    return [
        "--data-dir", str(data), "--provider", "kling", "--kling-base-url", url,
        "--kling-access-key", AK, "--kling-secret-key", SK, "--callback-allow-private",
    ]  # fmt: skip


def worker(data: Path, url: str, log: Path) -> subprocess.Popen[str]:
    args = [
        EXE, "worker", *flags(data, url), "--provider-timeout", "2", "--lease-seconds", "3",
        "--check-interval", "0.2", "--idle-poll-seconds", "0.2", "--worker-concurrency", "16",
    ]  # fmt: skip
    return subprocess.Popen(args, stdout=log.open("a"), stderr=subprocess.STDOUT, text=True,
                            env=clean_env())  # fmt: skip


def upstream_jobs(admin: httpx.Client) -> dict[str, dict[str, Any]]:
    tasks = admin.get("/fake-admin/tasks").json()
    return {t["task_info"]["external_task_id"]: t for t in tasks}


def kill_when(proc: subprocess.Popen[str], condition: Callable[[], bool]) -> None:
    wait_until(condition, timeout=60.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_sigkills_between_steps_create_each_upstream_job_once(
    tmp_path: Path, upstream: tuple[str, httpx.Client], audio_url: str
) -> None:
    url, admin = upstream
    data, log = tmp_path / "data", tmp_path / "worker.log"
    token = cli("tokens", "create", "--user", "alice", "--data-dir", str(data)).strip()
    port = free_port()
    with running(*flags(data, url), "--no-worker", port=port):
        headers = {"authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
            photo = {"image_url": "https://cdn.example/face.png", "audio_url": audio_url,
                     "async": True}  # fmt: skip
            speech = {"mode": "text2video", "video_url": "https://cdn.example/talk.mp4",
                      "text": "Good morning, this is a test of speech", "voice_id": "v1",
                      "async": True}  # fmt: skip
            photos = [client.post("/kling/talking-photo", json=photo).json()["task_id"]
                      for _ in range(PHOTOS)]  # fmt: skip
            speeches = [client.post("/kling/lip-sync", json=speech).json()["task_id"]
                        for _ in range(SPEECHES)]  # fmt: skip
            ids = photos + speeches

            def animated_not_synced() -> bool:
                jobs = upstream_jobs(admin)
                done = [i for i in photos if jobs.get(f"{i}-animation", {}).get("task_status")
                        == "succeed"]  # fmt: skip
                return bool(done) and any(i not in jobs for i in photos)

            def spoken_not_synced() -> bool:
                routes = admin.get("/fake-admin/counters").json()["requests_by_route"]
                jobs = upstream_jobs(admin)
                return routes.get("tts", 0) >= 1 and any(i not in jobs for i in ids)

            # Killed once after some animations finished (before their lip-syncs exist), and
            # once more after speech was made (before every lip-sync job exists).
            kill_when(worker(data, url, log), animated_not_synced)
            kill_when(worker(data, url, log), spoken_not_synced)
            assert any("finished_at" not in r for r in records(client, ids))
            last = worker(data, url, log)
            try:
                wait_until(lambda: all("finished_at" in r for r in records(client, ids)))
            finally:
                assert stop(last) == 0
            final = {r["id"]: r for r in records(client, ids)}
    states = {i: r["response"]["state"] for i, r in final.items()}  # type: ignore[index]
    assert set(states.values()) == {"succeed"}, (states, log.read_text()[-3000:])
    counters = admin.get("/fake-admin/counters").json()
    expected = sorted([*ids, *(f"{i}-animation" for i in photos)])
    assert sorted(counters["creates_by_external_id"]) == expected
    assert set(counters["creates_by_external_id"].values()) == {1}
    for task_id in photos:
        response = final[task_id]["response"]
        assert response["source_video_url"] != response["video_url"]  # type: ignore[index]
    # The synchronous calls create no job; one is repeated only when a kill fell between its
    # answer and its save (at most once per kill and task in flight).
    routes = counters["requests_by_route"]
    assert len(ids) <= routes["identify"] <= len(ids) * 2
    assert SPEECHES <= routes["tts"] <= SPEECHES * 2
