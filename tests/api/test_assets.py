"""POST /kling/elements and POST /kling/voices through HTTP, with the local provider, on both
stores (docs/contract.md §6.1): the four actions, every bad input a 400 naming the field, and
another user's id answering exactly as a missing one."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.test_videos_validation import assert_error
from tests.harness import AppHarness, insert_finished, make_task

IMAGES = {
    "frontal_image": "https://cdn.example/cat-front.png",
    "refer_images": [{"image_url": "https://cdn.example/cat-side.png"}],
}
ELEMENT = {
    "action": "create",
    "element_name": "Tabby",
    "element_description": "a tabby cat with a red collar",
    "element_image_list": IMAGES,
    "tag_list": [{"tag_id": "o_103"}],
}
VOICE = {"action": "create", "voice_name": "Narrator", "voice_url": "https://cdn.example/v.mp3"}
KINDS = {"element": ("/kling/elements", ELEMENT), "voice": ("/kling/voices", VOICE)}


async def call(gateway: AppHarness, kind: str, body: Any, user: str = "alice") -> httpx.Response:
    path = KINDS[kind][0]
    return await gateway.client.post(path, json=body, headers=gateway.headers(user))


async def created(gateway: AppHarness, kind: str, user: str = "alice", **extra: Any) -> str:
    response = await call(gateway, kind, {**KINDS[kind][1], **extra}, user)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeed", body
    asset_id: str = body[f"{kind}_id"]
    return asset_id


@pytest.mark.parametrize("kind", ["element", "voice"])
async def test_create_answers_the_ready_asset_with_a_gateway_id(
    gateway: AppHarness, kind: str
) -> None:
    response = await call(gateway, kind, KINDS[kind][1])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body[f"{kind}_id"].startswith("el_" if kind == "element" else "vo_")
    assert body["status"] == "succeed" and body["trace_id"] == response.headers["x-trace-id"]
    sent = {k: v for k, v in KINDS[kind][1].items() if k != "action"}
    assert {k: body[k] for k in sent} == sent
    assert "upstream_id" not in response.text and "local-" not in response.text
    retrieved = await call(gateway, kind, {"action": "retrieve", f"{kind}_id": body[f"{kind}_id"]})
    assert retrieved.status_code == 200
    assert retrieved.json() == {k: v for k, v in body.items() if k != "trace_id"}


async def test_an_element_defaults_to_image_refer(gateway: AppHarness) -> None:
    element_id = await created(gateway, "element")
    body = (await call(gateway, "element", {"action": "retrieve", "element_id": element_id})).json()
    assert body["reference_type"] == "image_refer"


async def test_a_video_element_and_one_bound_to_an_own_voice(gateway: AppHarness) -> None:
    voice = await created(gateway, "voice")
    video = {"refer_videos": [{"video_url": "https://cdn.example/clip.mp4"}]}
    response = await call(
        gateway,
        "element",
        {
            **{k: v for k, v in ELEMENT.items() if k != "element_image_list"},
            "reference_type": "video_refer",
            "element_video_list": video,
            "element_voice_id": voice,
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["element_voice_id"] == voice
    assert response.json()["element_video_list"] == video


@pytest.mark.parametrize("kind", ["element", "voice"])
async def test_list_is_the_callers_own_newest_first(gateway: AppHarness, kind: str) -> None:
    await gateway.add_user("bob")
    first, second = await created(gateway, kind), await created(gateway, kind)
    await created(gateway, kind, user="bob")
    listed = (await call(gateway, kind, {"action": "list"})).json()
    assert listed["count"] == 2
    assert [item[f"{kind}_id"] for item in listed["items"]] == [second, first]
    page = (await call(gateway, kind, {"action": "list", "limit": 1, "offset": 1})).json()
    assert [item[f"{kind}_id"] for item in page["items"]] == [first] and page["count"] == 2


@pytest.mark.parametrize("kind", ["element", "voice"])
async def test_a_foreign_id_answers_exactly_as_a_missing_one(
    gateway: AppHarness, kind: str
) -> None:
    await gateway.add_user("bob")
    foreign = await created(gateway, kind, user="bob")
    missing = ("el_" if kind == "element" else "vo_") + "0" * 32
    for action in ("retrieve", "delete"):
        answers = []
        for asset_id in (foreign, missing):
            response = await call(gateway, kind, {"action": action, f"{kind}_id": asset_id})
            assert response.status_code == 200
            answers.append(response.content.replace(asset_id.encode(), b"ID"))
        assert answers[0] == answers[1]
    assert (await call(gateway, kind, {"action": "list"}, user="bob")).json()["count"] == 1


@pytest.mark.parametrize("kind", ["element", "voice"])
async def test_delete_removes_the_own_asset_once(gateway: AppHarness, kind: str) -> None:
    asset_id = await created(gateway, kind)
    body = {"action": "delete", f"{kind}_id": asset_id}
    assert (await call(gateway, kind, body)).json() == {f"{kind}_id": asset_id, "deleted": True}
    assert (await call(gateway, kind, body)).json() == {f"{kind}_id": asset_id, "deleted": False}
    retrieved = await call(gateway, kind, {"action": "retrieve", f"{kind}_id": asset_id})
    assert retrieved.json() == {}


async def test_other_kinds_id_is_not_found(gateway: AppHarness) -> None:
    voice = await created(gateway, "voice")
    assert (
        await call(gateway, "element", {"action": "retrieve", "element_id": voice})
    ).json() == {}


async def test_a_voice_from_an_own_finished_video(gateway: AppHarness) -> None:
    await gateway.add_user("bob")
    await insert_finished(gateway.store, make_task(gateway.user_ids["alice"]), video_id="v-own")
    await insert_finished(gateway.store, make_task(gateway.user_ids["bob"]), video_id="v-bob")
    body = {"action": "create", "voice_name": "Mine", "video_id": "v-own"}
    assert (await call(gateway, "voice", body)).json()["video_id"] == "v-own"
    messages = []
    for video_id in ("v-bob", "v-nobody"):
        response = await call(gateway, "voice", {**body, "video_id": video_id})
        messages.append(
            assert_error(response, 400, "bad_request", "video_id").replace(video_id, "X")
        )
    assert messages[0] == messages[1]


async def test_an_element_may_bind_only_an_own_ready_voice(gateway: AppHarness) -> None:
    await gateway.add_user("bob")
    foreign = await created(gateway, "voice", user="bob")
    messages = []
    for voice in (foreign, "vo_" + "1" * 32):
        response = await call(gateway, "element", {**ELEMENT, "element_voice_id": voice})
        message = assert_error(response, 400, "bad_request", "element_voice_id")
        messages.append(message.replace(voice, "X"))
    assert messages[0] == messages[1]
    assert (await call(gateway, "element", {"action": "list"})).json()["count"] == 0


BAD_ELEMENTS: list[tuple[dict[str, Any], str]] = [
    ({"element_name": None}, "element_name"),
    ({"element_name": ""}, "element_name"),
    ({"element_name": "x" * 21}, "element_name"),
    ({"element_name": 5}, "element_name"),
    ({"element_description": None}, "element_description"),
    ({"element_description": "d" * 101}, "element_description"),
    ({"reference_type": "sketch"}, "reference_type"),
    ({"element_image_list": None}, "element_image_list"),
    (
        {"element_image_list": {"refer_images": IMAGES["refer_images"]}},
        "element_image_list.frontal_image",
    ),
    (
        {"element_image_list": {**IMAGES, "frontal_image": "ftp://x/a.png"}},
        "element_image_list.frontal_image",
    ),
    ({"element_image_list": {**IMAGES, "refer_images": []}}, "element_image_list.refer_images"),
    (
        {"element_image_list": {**IMAGES, "refer_images": IMAGES["refer_images"] * 4}},
        "element_image_list.refer_images",
    ),
    (
        {"element_image_list": {**IMAGES, "refer_images": [{"image_url": "file:///etc/passwd"}]}},
        "element_image_list.refer_images",
    ),
    ({"element_image_list": {**IMAGES, "refer_images": [{}]}}, "element_image_list.refer_images"),
    ({"element_video_list": {"refer_videos": []}}, "element_video_list"),
    (
        {"reference_type": "video_refer", "element_image_list": None},
        "element_video_list",
    ),
    ({"tag_list": [{"tag_id": "o_999"}]}, "tag_list"),
    ({"tag_list": [{"tag_id": "o_101"}, {"tag_id": "o_101"}]}, "tag_list"),
    ({"tag_list": "o_101"}, "tag_list"),
    ({"element_voice_id": ""}, "element_voice_id"),
    ({"async": "yes"}, "async"),
]


@pytest.mark.parametrize(("change", "field"), BAD_ELEMENTS)
async def test_bad_element_inputs_are_400_naming_the_field(
    gateway: AppHarness, change: dict[str, Any], field: str
) -> None:
    body = {k: v for k, v in {**ELEMENT, **change}.items() if v is not None}
    assert_error(await call(gateway, "element", body), 400, "bad_request", field)
    assert (await call(gateway, "element", {"action": "list"})).json()["count"] == 0


BAD_VOICES: list[tuple[dict[str, Any], str]] = [
    ({"voice_name": None}, "voice_name"),
    ({"voice_name": " "}, "voice_name"),
    ({"voice_name": "n" * 21}, "voice_name"),
    ({"voice_url": None}, "voice_url"),
    ({"video_id": "v1"}, "voice_url"),
    ({"voice_url": "not a url"}, "voice_url"),
    ({"voice_url": None, "video_id": ""}, "video_id"),
]


@pytest.mark.parametrize(("change", "field"), BAD_VOICES)
async def test_bad_voice_inputs_are_400_naming_the_field(
    gateway: AppHarness, change: dict[str, Any], field: str
) -> None:
    body = {k: v for k, v in {**VOICE, **change}.items() if v is not None}
    assert_error(await call(gateway, "voice", body), 400, "bad_request", field)


@pytest.mark.parametrize("kind", ["element", "voice"])
async def test_bad_actions_ids_and_pages(gateway: AppHarness, kind: str) -> None:
    key = f"{kind}_id"
    assert_error(await call(gateway, kind, {}), 400, "bad_request", "action")
    assert_error(await call(gateway, kind, {"action": "rename"}), 400, "api_not_implemented", None)
    for action in ("retrieve", "delete"):
        assert_error(await call(gateway, kind, {"action": action}), 400, "bad_request", key)
        bad = {"action": action, key: "x\x00y"}
        assert_error(await call(gateway, kind, bad), 400, "bad_request", key)
    for name, value in (("limit", 0), ("limit", 101), ("limit", 1.5), ("offset", -1)):
        body = {"action": "list", name: value}
        assert_error(await call(gateway, kind, body), 400, "bad_request", name)
    path = KINDS[kind][0]
    raw = await gateway.client.post(path, content=b"{nope", headers=gateway.headers())
    assert_error(raw, 400, "bad_request", None)


@pytest.mark.parametrize("kind", ["element", "voice"])
async def test_tokens_and_grants_are_checked(gateway: AppHarness, kind: str) -> None:
    path, body = KINDS[kind]
    response = await gateway.client.post(path, json=body)
    assert_error(response, 401, "invalid_token", None)
    await gateway.add_user("tasks-only", apis=("kling.tasks",))
    assert_error(await call(gateway, kind, body, user="tasks-only"), 400, "token_mismatched", None)


@pytest.mark.parametrize("kind", ["element", "voice"])
async def test_unknown_fields_are_ignored(gateway: AppHarness, kind: str) -> None:
    response = await call(gateway, kind, {**KINDS[kind][1], "timeout": 30, "extra": {"a": 1}})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("kind", ["element", "voice"])
async def test_an_idempotency_key_makes_one_asset(gateway: AppHarness, kind: str) -> None:
    path, body = KINDS[kind]
    headers = {**gateway.headers(), "idempotency-key": "make-it-once"}
    first = await gateway.client.post(path, json=body, headers=headers)
    again = await gateway.client.post(path, json=body, headers=headers)
    assert first.status_code == again.status_code == 200, again.text
    assert again.json()[f"{kind}_id"] == first.json()[f"{kind}_id"]
    assert (await call(gateway, kind, {"action": "list"})).json()["count"] == 1
    other = {**body, f"{kind}_name": "Another"}
    refused = await gateway.client.post(path, json=other, headers=headers)
    assert_error(refused, 400, "bad_request", None)
    assert "Idempotency-Key" in refused.json()["error"]["message"]
    # another user's same key is theirs alone
    await gateway.add_user("bob")
    bobs = {**gateway.headers("bob"), "idempotency-key": "make-it-once"}
    theirs = await gateway.client.post(path, json=body, headers=bobs)
    assert theirs.json()[f"{kind}_id"] != first.json()[f"{kind}_id"]
    blank = {**gateway.headers(), "idempotency-key": " "}
    assert_error(
        await gateway.client.post(path, json=body, headers=blank), 400, "bad_request", None
    )
