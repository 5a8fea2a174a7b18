"""/mcp keeps no session: two API processes (real `kling-gateway serve --no-worker`, each in a
data directory of its own) and a worker over PostgreSQL and Redis. An agent's MCP calls go to
either API process: it creates through A, waits through B for the worker (a third process) to
finish the task, and reads through A again, with the official MCP client.

Skipped with the reason (failing under KLING_GATEWAY_TEST_REQUIRE_SERVICES=1) when a service
is absent. No wall-clock assertions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.api.mcp.client import mcp_session, structured
from tests.e2e.proc import EXE, clean_env, free_port
from tests.e2e.test_multi_machine import api, machine_env, process, run
from tests.services import (
    PATIENT_REDIS_TIMEOUT,
    fresh_postgres_database,
    fresh_redis_url,
    redis_url,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    db = int(urlsplit(redis_url()).path.strip("/") or 15)
    with fresh_postgres_database("kg_mcp") as database_url:
        settings = {
            "database_url": database_url,
            "redis_url": fresh_redis_url(db),
            "redis_timeout": str(PATIENT_REDIS_TIMEOUT),
            "host": "127.0.0.1",
            "log_level": "warning",
            "local_delay": "0.1",
            "local_max_side": "64",
            "bootstrap_token": "false",
        }
        yield clean_env(**{f"KLING_GATEWAY_{k.upper()}": v for k, v in settings.items()})


async def test_calls_go_to_any_api_process(tmp_path: Path, env: dict[str, str]) -> None:
    run([EXE, "migrate"], machine_env(env, tmp_path / "a"))
    token = run([EXE, "tokens", "create", "--user", "alice"], machine_env(env, tmp_path / "a"))
    token = token.strip()
    env_a = machine_env(env, tmp_path / "a", free_port())
    env_b = machine_env(env, tmp_path / "b", free_port())
    with (
        api(env_a, tmp_path / "api-a.log") as url_a,
        api(env_b, tmp_path / "api-b.log") as url_b,
        process([EXE, "worker"], machine_env(env, tmp_path / "w"), tmp_path / "worker.log"),
    ):
        async with mcp_session(url_a, token) as on_a:
            made = structured(await on_a.call_tool("kling_generate_video", {"prompt": "a mug"}))
        async with mcp_session(url_b, token) as on_b:
            done = structured(
                await on_b.call_tool("kling_wait_task", {"task_id": made["task_id"], "wait": 60})
            )
        assert done["finished"] is True and done["state"] == "succeed", done
        async with mcp_session(url_a, token) as on_a:
            got = structured(await on_a.call_tool("kling_get_task", {"task_id": made["task_id"]}))
        # The same record, its file link made absolute by each process with its own public URL
        # (no --public-url here: each defaults to its own address; docs/deployment.md).
        link = f"/files/videos/{done['video_id']}.mp4"
        assert got["record"]["response"].pop("video_url") == f"{url_a}{link}"
        assert done["record"]["response"].pop("video_url") == f"{url_b}{link}"
        assert got["record"] == done["record"]
    for log in ("api-a.log", "api-b.log"):
        text = (tmp_path / log).read_text()
        assert "Traceback" not in text and "ERROR" not in text, text
