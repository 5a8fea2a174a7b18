"""Elements and voices with the kling provider (docs/contract.md §6.1): the real gateway
against the fake Kling upstream's custom-element and custom-voice endpoints, through HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from kling_gateway.fake_upstream import FakeUpstreamConfig, create_fake_upstream
from tests.api.test_assets import ELEMENT, VOICE, call
from tests.harness import AppHarness
from tests.providers.kling.test_gateway import AK, SK, kling_settings, set_faults, settled


@pytest.fixture
def fake_app() -> Starlette:
    config = FakeUpstreamConfig(
        access_key=AK, secret_key=SK, processing_after=0.05, finish_after=(0.3, 0.4), seed=3
    )
    return create_fake_upstream(config)


@pytest.fixture
async def gateway(tmp_path: Path, upstream: str) -> AsyncIterator[AppHarness]:
    settings = kling_settings(tmp_path, upstream, blocking_wait_seconds=10.0)
    async with AppHarness.start(settings) as harness:
        yield harness


async def general(admin: httpx.AsyncClient) -> dict[str, Any]:
    found: dict[str, Any] = (await admin.get("/fake-admin/general")).json()
    return found


async def test_a_blocking_create_waits_for_the_upstream_element(
    gateway: AppHarness, admin: httpx.AsyncClient
) -> None:
    response = await call(gateway, "element", ELEMENT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeed", body
    upstream = await general(admin)
    assert upstream["creates"] == 1
    (task,) = upstream["tasks"]
    assert task["task_info"]["external_task_id"] == body["element_id"]
    made = task["task_result"]["elements"][0]["element_id"]
    assert made not in response.text  # the upstream id is never shown
    stored = await gateway.store.get_asset(gateway.user_ids["alice"], "element", body["element_id"])
    assert stored is not None and stored.upstream_id == made and stored.account == "default"


async def test_an_async_create_finishes_on_a_later_retrieve(
    gateway: AppHarness, admin: httpx.AsyncClient
) -> None:
    response = await call(gateway, "voice", {**VOICE, "async": True})
    body = response.json()
    assert body["status"] == "processing", body
    voice_id = body["voice_id"]
    async with asyncio.timeout(10):
        while body["status"] == "processing":
            await asyncio.sleep(0.05)
            body = (
                await call(gateway, "voice", {"action": "retrieve", "voice_id": voice_id})
            ).json()
    assert body["status"] == "succeed"
    assert body["trial_url"].startswith("https://fake-kling.example/voices/")
    assert (await general(admin))["creates"] == 1


async def test_an_element_binds_the_upstream_id_of_an_own_voice(
    gateway: AppHarness, admin: httpx.AsyncClient
) -> None:
    voice = (await call(gateway, "voice", VOICE)).json()["voice_id"]
    response = await call(gateway, "element", {**ELEMENT, "element_voice_id": voice})
    # the fake refuses an element_voice_id its account did not make: the upstream id was sent
    assert response.json()["status"] == "succeed", response.text
    assert response.json()["element_voice_id"] == voice


async def test_an_upstream_failure_fails_the_asset_with_its_message(gateway: AppHarness) -> None:
    response = await call(gateway, "element", {**ELEMENT, "element_name": "[fake:fail] cat"})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "failed"
    assert body["error"] == {
        "code": "upstream_failed",
        "message": "the reference could not be recognised",
    }


async def test_an_interrupted_create_is_found_again_not_made_twice(
    gateway: AppHarness, admin: httpx.AsyncClient
) -> None:
    # the create takes effect upstream, then its answer never comes (the gateway gives up)
    await set_faults(admin, {"hang": {"count": 1, "after": True, "routes": ["general_create"]}})
    response = await call(gateway, "element", {**ELEMENT, "async": True})
    body = response.json()
    assert body["status"] == "processing", body
    stored = await gateway.store.get_asset(gateway.user_ids["alice"], "element", body["element_id"])
    assert stored is not None and stored.job_id is None
    async with asyncio.timeout(10):
        while body["status"] == "processing":
            await asyncio.sleep(0.05)
            query = {"action": "retrieve", "element_id": body["element_id"]}
            body = (await call(gateway, "element", query)).json()
    assert body["status"] == "succeed"
    assert (await general(admin))["creates"] == 1


async def test_an_unreachable_upstream_leaves_the_asset_processing(
    gateway: AppHarness, admin: httpx.AsyncClient
) -> None:
    await set_faults(admin, {"server_error": {"count": 1, "routes": ["general_create"]}})
    body = (await call(gateway, "voice", {**VOICE, "async": True})).json()
    assert body["status"] == "processing"
    query = {"action": "retrieve", "voice_id": body["voice_id"]}
    async with asyncio.timeout(10):
        while body["status"] == "processing":
            await asyncio.sleep(0.05)
            body = (await call(gateway, "voice", query)).json()
    assert body["status"] == "succeed"
    assert (await general(admin))["creates"] == 1


async def test_delete_removes_the_upstream_element(
    gateway: AppHarness, admin: httpx.AsyncClient
) -> None:
    element = (await call(gateway, "element", ELEMENT)).json()["element_id"]
    await set_faults(admin, {"server_error": {"count": 1, "routes": ["general_delete"]}})
    refused = await call(gateway, "element", {"action": "delete", "element_id": element})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "service_unavailable"
    deleted = await call(gateway, "element", {"action": "delete", "element_id": element})
    assert deleted.json() == {"element_id": element, "deleted": True}
    counters = (await admin.get("/fake-admin/counters")).json()
    assert counters["requests_by_route"]["general_delete"] == 2
    assert (await call(gateway, "element", {"action": "list"})).json()["count"] == 0


async def test_a_video_with_an_own_element_runs_upstream(gateway: AppHarness) -> None:
    element = (await call(gateway, "element", ELEMENT)).json()["element_id"]
    body = {
        "action": "text2video",
        "model": "kling-v3",
        "prompt": "a cat walks",
        "element_list": [{"element_id": element}],
        "async": True,
    }
    response = await gateway.videos(body)
    assert response.status_code == 200, response.text
    task_id = response.json()["task_id"]
    found = await settled(gateway.client, gateway.headers(), [task_id])
    # the fake fails a video naming an element its account did not make
    assert found[task_id]["response"]["state"] == "succeed", found[task_id]
