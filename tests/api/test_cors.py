"""--cors-origins: every route answers CORS, the two hot ones and their preflights included;
without it no CORS header is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.api.test_videos import TEXT2VIDEO
from tests.harness import AppHarness, make_settings

ORIGIN = "https://app.example"


@pytest.fixture
async def cors_gateway(tmp_path: Path) -> AsyncIterator[AppHarness]:
    settings = make_settings(tmp_path, worker=False, cors_origins=f"{ORIGIN}, https://b.example")
    async with AppHarness.start(settings) as harness:
        yield harness


@pytest.mark.parametrize("path", ["/kling/tasks", "/kling/videos", "/metrics"])
async def test_preflight_is_answered_on_every_route(cors_gateway: AppHarness, path: str) -> None:
    response = await cors_gateway.client.options(
        path,
        headers={
            "origin": ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed


async def test_hot_paths_answer_with_cors_headers(cors_gateway: AppHarness) -> None:
    gateway = cors_gateway
    created = await gateway.videos({**TEXT2VIDEO, "async": True}, headers={"origin": ORIGIN})
    assert created.status_code == 200
    assert created.headers["access-control-allow-origin"] == ORIGIN
    assert "x-trace-id" in created.headers["access-control-expose-headers"]
    task_id = created.json()["task_id"]
    headers = {**gateway.headers(), "origin": ORIGIN}
    retrieved = await gateway.client.post("/kling/tasks", json={"id": task_id}, headers=headers)
    assert retrieved.json()["id"] == task_id
    assert retrieved.headers["access-control-allow-origin"] == ORIGIN
    page = await gateway.client.get("/healthz", headers={"origin": ORIGIN})
    assert page.headers["access-control-allow-origin"] == ORIGIN


async def test_an_origin_not_listed_gets_no_grant(cors_gateway: AppHarness) -> None:
    headers = {**cors_gateway.headers(), "origin": "https://evil.example"}
    response = await cors_gateway.client.post("/kling/tasks", json={"id": "x"}, headers=headers)
    assert "access-control-allow-origin" not in response.headers
    preflight = await cors_gateway.client.options(
        "/kling/tasks",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
    )
    assert preflight.status_code == 400


async def test_without_the_setting_no_cors_headers(gateway: AppHarness) -> None:
    headers = {**gateway.headers(), "origin": ORIGIN}
    response = await gateway.client.post("/kling/tasks", json={"id": "x"}, headers=headers)
    assert "access-control-allow-origin" not in response.headers
