"""Ids a create may only name if they are the caller's (docs/contract.md §6): elements, voices
and the video an extend continues. A foreign or unknown id is a 400 at create, before any quota
is charged, and a foreign id reads exactly like an unknown one."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.api.test_videos_validation import assert_error
from tests.harness import AppHarness, insert_finished, make_task

V3 = {"action": "text2video", "model": "kling-v3", "prompt": "a mug", "async": True}
V26 = {
    "action": "text2video",
    "model": "kling-v2-6",
    "mode": "pro",
    "generate_audio": True,
    "prompt": "a mug",
    "async": True,
}


async def _asset(gateway: AppHarness, user: str, kind: str) -> str:
    return await gateway.store.add_asset(
        user_id=gateway.user_ids[user], kind=kind, upstream_id=f"{user}-{kind}", now=time.time()
    )


def _body(kind: str, asset_id: str) -> dict[str, Any]:
    if kind == "element":
        return {**V3, "element_list": [{"element_id": asset_id}]}
    return {**V26, "voice_list": [{"voice_id": asset_id}]}


async def _count(gateway: AppHarness, user: str = "alice") -> int:
    listed = (await gateway.tasks({"action": "retrieve_batch"}, user=user)).json()
    count: int = listed["count"]
    return count


@pytest.mark.parametrize("kind", ["element", "voice"])
async def test_own_asset_is_accepted_with_its_upstream_id(gateway: AppHarness, kind: str) -> None:
    asset = await _asset(gateway, "alice", kind)
    response = await gateway.videos(_body(kind, asset))
    assert response.status_code == 200, response.text
    stored = await gateway.store.load_task(response.json()["task_id"])
    assert stored is not None and stored.task.params is not None
    refs = stored.task.params.element_list or stored.task.params.voice_list
    assert [(r.id, r.upstream_id) for r in refs] == [(asset, f"alice-{kind}")]


@pytest.mark.parametrize("kind", ["element", "voice"])
async def test_foreign_and_unknown_assets_are_the_same_400(gateway: AppHarness, kind: str) -> None:
    await gateway.add_user("bob")
    foreign = await _asset(gateway, "bob", kind)
    key = f"{kind}_list[0].{kind}_id"
    messages = []
    for asset in (foreign, "el_" + "0" * 32):
        response = await gateway.videos(_body(kind, asset))
        messages.append(assert_error(response, 400, "bad_request", key).replace(asset, "ID"))
    assert messages[0] == messages[1]
    assert await _count(gateway) == 0


async def test_an_asset_of_the_other_kind_is_refused(gateway: AppHarness) -> None:
    voice = await _asset(gateway, "alice", "voice")
    response = await gateway.videos(_body("element", voice))
    assert_error(response, 400, "bad_request", "element_list[0].element_id")


async def test_a_refused_asset_holds_no_credits(gateway: AppHarness) -> None:
    await gateway.add_user("bob")
    foreign = await _asset(gateway, "bob", "element")
    await gateway.store.grant_credits("alice", 5, time.time())  # one 5 s std task
    refused = await gateway.videos(_body("element", foreign))
    assert_error(refused, 400, "bad_request", "element_list[0].element_id")
    # the credits are still there: the next valid create takes it, the one after is refused
    assert (await gateway.videos(V3)).status_code == 200
    assert (await gateway.videos(V3)).status_code == 403


async def test_extend_of_an_own_finished_video(gateway: AppHarness) -> None:
    await insert_finished(gateway.store, make_task(gateway.user_ids["alice"]), video_id="v-own")
    response = await gateway.videos({"action": "extend", "video_id": "v-own", "async": True})
    assert response.status_code == 200, response.text


async def test_extend_of_a_foreign_or_unknown_video_is_the_same_400(gateway: AppHarness) -> None:
    await gateway.add_user("bob")
    await insert_finished(gateway.store, make_task(gateway.user_ids["bob"]), video_id="v-bob")
    await gateway.store.grant_credits("alice", 5, time.time())  # one 5 s std task
    messages = []
    for video_id in ("v-bob", "v-nobody"):
        response = await gateway.videos({"action": "extend", "video_id": video_id, "async": True})
        message = assert_error(response, 400, "bad_request", "video_id")
        messages.append(message.replace(video_id, "ID"))
    assert messages[0] == messages[1]
    assert await _count(gateway) == 0
    assert (await gateway.videos(V3)).status_code == 200  # nothing was held


async def test_extend_of_an_unfinished_video_task_is_refused(gateway: AppHarness) -> None:
    # a task that has not succeeded has no video_id to continue
    task = make_task(gateway.user_ids["alice"])
    await gateway.store.insert_task(
        task, next_check_at=task.created_at, deadline_at=task.created_at + 60
    )
    response = await gateway.videos({"action": "extend", "video_id": task.id, "async": True})
    assert_error(response, 400, "bad_request", "video_id")
