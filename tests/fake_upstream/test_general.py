"""The fake upstream's custom elements and voices: creation tasks, lookups by
external_task_id, the reference's rules, and ids that belong to one account."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from kling_gateway.fake_upstream import FakeUpstreamConfig, create_fake_upstream
from kling_gateway.fake_upstream.accounts import FakeAccount
from tests.fake_upstream.test_accounts import auth

A = FakeAccount("acct-a", "ak-a", "sk-a-0123456789")
B = FakeAccount("acct-b", "ak-b", "sk-b-0123456789")
ELEMENT = {
    "element_name": "Tabby",
    "element_description": "a tabby cat",
    "reference_type": "image_refer",
    "element_image_list": {
        "frontal_image": "https://cdn.example/f.png",
        "refer_images": [{"image_url": "https://cdn.example/s.png"}],
    },
    "tag_list": [{"tag_id": "o_103"}],
}
ELEMENTS = "/v1/general/advanced-custom-elements"
VOICES = "/v1/general/custom-voices"


@pytest.fixture
def fake_app() -> Starlette:
    accounts = [FakeAccount(a.name, a.access_key, a.secret_key) for a in (A, B)]
    config = FakeUpstreamConfig(
        accounts=accounts, processing_after=0.02, finish_after=(0.1, 0.1), seed=1
    )
    return create_fake_upstream(config)


async def post(admin: httpx.AsyncClient, path: str, body: Any, who: FakeAccount = A) -> Any:
    return (await admin.post(path, json=body, headers=auth(who))).json()


async def finished(admin: httpx.AsyncClient, path: str, ident: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            doc = (await admin.get(f"{path}/{ident}", headers=auth(A))).json()
            if doc["data"]["task_status"] in ("succeed", "failed"):
                data: dict[str, Any] = doc["data"]
                return data
            await asyncio.sleep(0.02)


async def made_element(admin: httpx.AsyncClient, ext: str = "e1") -> str:
    created = await post(admin, ELEMENTS, {**ELEMENT, "external_task_id": ext})
    assert created["code"] == 0, created
    assert created["data"]["task_status"] == "submitted"
    data = await finished(admin, ELEMENTS, ext)  # by external_task_id
    assert data["task_id"] == created["data"]["task_id"]
    (element,) = data["task_result"]["elements"]
    assert element["element_name"] == "Tabby" and element["status"] == "succeed"
    element_id: str = element["element_id"]
    return element_id


def v3(element_id: str) -> dict[str, Any]:
    return {
        "model_name": "kling-v3",
        "prompt": "a cat",
        "element_list": [{"element_id": element_id}],
    }


async def test_an_element_is_made_and_usable_on_its_account_only(admin: httpx.AsyncClient) -> None:
    element_id = await made_element(admin)
    assert (await post(admin, "/v1/videos/text2video", v3(element_id)))["code"] == 0
    other = await post(admin, "/v1/videos/text2video", v3(element_id), who=B)
    assert other["code"] == 1201 and element_id in other["message"]
    assert (await post(admin, "/v1/videos/text2video", v3("nope")))["code"] == 1201
    listed = (await admin.get(ELEMENTS, headers=auth(A))).json()["data"]
    assert [t["task_info"]["external_task_id"] for t in listed] == ["e1"]
    assert (await admin.get(ELEMENTS, headers=auth(B))).json()["data"] == []
    missing = await admin.get(f"{ELEMENTS}/e1", headers=auth(B))
    assert missing.status_code == 404 and missing.json()["code"] == 1203


async def test_delete_makes_the_element_unusable(admin: httpx.AsyncClient) -> None:
    element_id = await made_element(admin)
    deleted = await post(admin, "/v1/general/delete-elements", {"element_id": element_id})
    assert deleted["code"] == 0
    again = await admin.post(
        "/v1/general/delete-elements", json={"element_id": element_id}, headers=auth(A)
    )
    assert again.status_code == 404 and again.json()["code"] == 1203
    assert (await post(admin, "/v1/videos/text2video", v3(element_id)))["code"] == 1201


@pytest.mark.parametrize(
    "change",
    [
        {"element_name": "x" * 21},
        {"element_description": None},
        {"reference_type": "sketch"},
        {"element_image_list": {"frontal_image": "https://cdn.example/f.png", "refer_images": []}},
        {"tag_list": [{"tag_id": "o_1"}]},
        {"element_voice_id": "not-a-voice"},
        {"surprise": 1},
    ],
)
async def test_the_references_rules_are_1201(
    admin: httpx.AsyncClient, change: dict[str, Any]
) -> None:
    body = {k: v for k, v in {**ELEMENT, **change}.items() if v is not None}
    answer = await admin.post(ELEMENTS, json=body, headers=auth(A))
    assert answer.status_code == 400 and answer.json()["code"] == 1201


async def test_an_external_task_id_is_unique_per_account(admin: httpx.AsyncClient) -> None:
    body = {**ELEMENT, "external_task_id": "same"}
    assert (await post(admin, ELEMENTS, body))["code"] == 0
    assert (await post(admin, ELEMENTS, body))["code"] == 1201
    assert (await post(admin, ELEMENTS, body, who=B))["code"] == 0


async def test_a_voice_from_a_url_with_its_trial(admin: httpx.AsyncClient) -> None:
    body = {"voice_name": "Narrator", "voice_url": "https://cdn.example/v.mp3"}
    created = await post(admin, VOICES, body)
    data = await finished(admin, VOICES, created["data"]["task_id"])
    (voice,) = data["task_result"]["voices"]
    assert voice["voice_name"] == "Narrator" and voice["trial_url"].endswith(".mp3")
    element = await post(admin, ELEMENTS, {**ELEMENT, "element_voice_id": voice["voice_id"]})
    assert element["code"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"voice_name": "n", "voice_url": "https://cdn.example/v.mp3", "video_id": "1"},
        {"voice_name": "n"},
        {"voice_name": "n", "video_id": "no-such-video"},
        {"voice_name": "n" * 21, "voice_url": "https://cdn.example/v.mp3"},
    ],
)
async def test_voice_rules_are_1201(admin: httpx.AsyncClient, body: dict[str, Any]) -> None:
    assert (await post(admin, VOICES, body))["code"] == 1201


async def test_a_failing_name_fails_the_task(admin: httpx.AsyncClient) -> None:
    created = await post(admin, ELEMENTS, {**ELEMENT, "element_name": "[fake:fail] x"})
    data = await finished(admin, ELEMENTS, created["data"]["task_id"])
    assert data["task_status"] == "failed" and data["task_status_msg"]
    assert "task_result" not in data
