"""A gateway whose Redis is down starts degraded (logged once), serves, and goes back to
Redis when it answers — a real `kling-gateway serve` and a redis-server of the test's own."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.e2e.private_redis import private_redis
from tests.e2e.proc import clean_env, cli, free_port, running


def test_serve_starts_degraded_without_redis_and_reconnects(tmp_path: Path) -> None:
    data, log, port = tmp_path / "data", tmp_path / "serve.log", free_port()
    token = cli("tokens", "create", "--user", "alice", "--data-dir", str(data)).strip()
    with private_redis(started=False) as redis:
        args = ["--data-dir", str(data), "--redis-url", redis.url, "--local-delay", "0"]
        args += ["--local-max-side", "64", "--no-bootstrap-token", "--rate-limit-per-minute", "5"]
        with running(*args, port=port, env=clean_env(), log=log):
            url = f"http://127.0.0.1:{port}"
            headers = {"authorization": f"Bearer {token}"}
            body = {"action": "text2video", "prompt": "a mug"}
            with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
                created = http.post("/kling/videos", json=body)
                assert created.status_code == 200 and created.json()["state"] == "succeed"
                # Rate limits still hold, counted in this process: 5 per minute.
                statuses = [
                    http.post("/kling/tasks", json={"id": "x"}).status_code for _ in range(6)
                ]
                assert statuses.count(429) >= 1
                redis.start()
                deadline = time.monotonic() + 60
                while "answers again" not in log.read_text():
                    assert time.monotonic() < deadline, log.read_text()
                    http.post("/kling/tasks", json={"id": "x"})
                    time.sleep(0.2)
    text = log.read_text()
    assert text.count("task events: Redis unavailable") == 1, text
    assert text.count("rate limiter: Redis unavailable") == 1, text
    assert "Traceback" not in text
