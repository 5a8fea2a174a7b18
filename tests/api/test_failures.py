"""Failures keep their meaning on the wire: a full disk is 507 `storage_full`, an unreachable
store 503 with Retry-After, 1,000-deep JSON a 400 — each in the error shape, no traceback."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from kling_gateway.storage.sqlite import SQLiteStore
from tests.api.test_tasks import assert_error
from tests.harness import AppHarness

DEEP = b"[" * 1000 + b"]" * 1000
PROMPT = {"action": "text2video", "prompt": "a mug", "async": True}


async def fill_up(store: SQLiteStore) -> None:
    """A real SQLITE_FULL: the database may not grow past the pages it has now."""

    def cap() -> None:
        assert store._writer_tx is not None
        conn = store._writer_tx.conn
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")

    await asyncio.get_running_loop().run_in_executor(store._writer, cap)


async def test_a_full_database_is_507_storage_full(
    gateway: AppHarness, caplog: pytest.LogCaptureFixture
) -> None:
    assert isinstance(gateway.store, SQLiteStore)
    await fill_up(gateway.store)
    # Within the unknown fields' budget (16 KB), so it is all stored and cannot fit.
    big = {**PROMPT, "prompt": "x" * 2500, "padding": "y" * 15_000}
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            response = await gateway.videos(big)
            body = assert_error(response, 507, "storage_full")
            assert "full" in body["error"]["message"]
    assert "Traceback" not in caplog.text
    assert all("\n" not in r.getMessage() and not r.exc_info for r in caplog.records)


async def test_an_unreachable_store_is_503_with_retry_after(
    gateway: AppHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refused(*_: Any) -> bytes:
        raise ConnectionRefusedError("connection refused")

    monkeypatch.setattr(gateway.store, "get_task_record", refused)
    response = await gateway.tasks({"id": "x"})
    assert_error(response, 503, "service_unavailable")
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize("where", ["tasks", "videos"])
@pytest.mark.parametrize(
    "body",
    [
        DEEP,
        b'{"action":"retrieve","id":"x","extra":' + DEEP + b"}",
        b'{"action":"text2video","prompt":"a","extra":' + DEEP + b"}",
    ],
)
async def test_deeply_nested_json_is_a_400(gateway: AppHarness, where: str, body: bytes) -> None:
    response = await getattr(gateway, where)(None, content=body)
    assert_error(response, 400, "bad_request")
