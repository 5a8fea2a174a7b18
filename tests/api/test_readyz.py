"""/readyz asks the store, the object storage and Redis, naming the part that fails; /healthz
(liveness) stays 200 meanwhile. PostgreSQL is stopped for real: a private cluster of the
test's own (tests/private_postgres.py), never the shared one."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.harness import AppHarness, make_settings
from tests.private_postgres import private_postgres
from tests.seaweed import free_port


async def ready(gateway: AppHarness) -> tuple[int, dict[str, Any]]:
    response = await gateway.client.get("/readyz")
    return response.status_code, response.json()


async def until_ready(gateway: AppHarness, status: int, attempts: int = 100) -> dict[str, Any]:
    for _ in range(attempts):
        code, body = await ready(gateway)
        if code == status:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz never answered {status}: {body}")


async def test_ready_names_what_it_checked(gateway: AppHarness) -> None:
    assert await ready(gateway) == (200, {"ok": True, "checked": ["store", "storage"]})
    assert (await gateway.client.get("/healthz")).status_code == 200


async def test_readyz_turns_503_when_postgresql_stops_and_back_when_it_returns(
    tmp_path: Path,
) -> None:
    with private_postgres() as postgres:
        settings = make_settings(
            tmp_path, database_url=postgres.url, worker=False, postgres_acquire_timeout=1.0
        )
        async with AppHarness.start(settings) as gateway:
            assert (await ready(gateway))[0] == 200
            postgres.stop()
            body = await until_ready(gateway, 503)
            assert body == {"ok": False, "failing": ["store"]}  # no host or port in it
            # Liveness: the process itself is fine, restarting it would not help.
            assert (await gateway.client.get("/healthz")).status_code == 200
            postgres.start()
            assert (await until_ready(gateway, 200))["ok"] is True


async def test_readyz_names_the_object_storage_when_it_cannot_write(gateway: AppHarness) -> None:
    videos = gateway.settings.videos_dir
    shutil.rmtree(videos, ignore_errors=True)
    videos.parent.mkdir(parents=True, exist_ok=True)
    videos.write_text("not a directory")  # root may write anywhere: a file in its place
    code, body = await ready(gateway)
    assert code == 503 and body["failing"] == ["storage"]
    videos.unlink()
    assert (await ready(gateway))[0] == 200


async def test_readyz_names_redis_when_configured_and_down(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with AppHarness.start(settings) as gateway:
        code, body = await ready(gateway)
        assert code == 503 and body == {"ok": False, "failing": ["redis"]}


async def test_readyz_turns_503_when_the_sqlite_database_is_deleted(
    gateway: AppHarness, caplog: pytest.LogCaptureFixture
) -> None:
    database = gateway.settings.resolved_database_url.removeprefix("sqlite:///")
    assert (await ready(gateway))[0] == 200
    os.unlink(database)
    with caplog.at_level(logging.WARNING, logger="kling_gateway.api"):
        code, body = await ready(gateway)
    assert code == 503 and body == {"ok": False, "failing": ["store"]}
    assert database not in str(body)  # the anonymous answer names the part, not the file
    assert any("store is failing" in r.getMessage() and "deleted" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert (await gateway.client.get("/healthz")).status_code == 200
