# ruff: noqa: F811 - the imported fixtures are parameters by name
"""The §6 shapes (docs/contract.md §6) through KlingProvider against the fake upstream: each
goes to its upstream endpoint with the fields the official API takes (the fake validates them
and refuses unknown ones), and is checked on the endpoint it was created on."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from kling_gateway.domain.params import AssetReference
from kling_gateway.domain.videos import params_of
from kling_gateway.fake_upstream import FakeUpstream
from kling_gateway.fake_upstream.general import ELEMENTS, VOICES
from kling_gateway.providers.kling.mapping import build_create
from kling_gateway.providers.kling.provider import KlingProvider
from tests.providers.kling.test_against_fake import (  # noqa: F401 - fixtures, used by name
    fake_app,
    finish,
    make_task,
    provider,
    store,
    stored_body,
    submit,
)

IMG, IMG2, VID = "https://img.example/a.png", "https://img.example/b.png", "https://v.example/a.mp4"


def with_assets(task: Any) -> Any:
    """The task as the API stores it: element and voice ids resolved to upstream ids."""
    params = task.params
    assert params is not None, "the request must validate"
    task.params = msgspec.structs.replace(
        params,
        element_list=tuple(
            AssetReference(id=e.id, upstream_id=f"up-{e.id}") for e in params.element_list
        ),
        voice_list=tuple(
            AssetReference(id=v.id, upstream_id=f"up-{v.id}") for v in params.voice_list
        ),
    )
    return task


async def run(provider: KlingProvider, fake: FakeUpstream, **request: Any) -> dict[str, Any]:
    task = with_assets(make_task(**request))
    # upstream ids exist on the account that made them: made there (long ago) for this test
    for resource, refs in ((ELEMENTS, task.params.element_list), (VOICES, task.params.voice_list)):
        for ref in refs:
            fake.general.seed(fake.config.access_key, resource, ref.upstream_id)
    await submit(provider, task)
    body = stored_body(fake, task.job_id or "")
    body["__kind"] = fake.state.tasks[task.job_id or ""].kind
    status = await finish(provider, task)  # found again on its own endpoint
    assert status.video is not None, status
    assert task.provider_data["kind"] == body["__kind"]
    return body


async def test_o1_with_image_references_goes_to_omni_video(
    provider: KlingProvider, fake: FakeUpstream
) -> None:
    body = await run(
        provider,
        fake,
        action="image2video",
        model="kling-o1",
        prompt="<<<image_1>>> walks by",
        start_image_url=IMG,
        image_list=[{"image_url": IMG2}],
        element_list=[{"element_id": "el_1"}],
        aspect_ratio="9:16",
    )
    assert body["__kind"] == "omni-video"
    assert body["model_name"] == "kling-video-o1"
    # the client's images first: <<<image_1>>> names the same image upstream
    assert body["image_list"] == [
        {"image_url": IMG2},
        {"image_url": IMG, "type": "first_frame"},
    ]
    assert body["element_list"] == [{"element_id": "up-el_1"}]
    assert (body["duration"], body["aspect_ratio"]) == ("5", "9:16")
    assert "sound" not in body


async def test_v3_omni_video_reference_and_storyboard(
    provider: KlingProvider, fake: FakeUpstream
) -> None:
    body = await run(
        provider,
        fake,
        action="text2video",
        model="kling-v3-omni",
        prompt="in the style of <<<video_1>>>",
        duration=6,
        video_list=[{"video_url": VID, "refer_type": "feature", "keep_original_sound": "yes"}],
        multi_shot=True,
        shot_type="customize",
        multi_prompt=[
            {"index": 1, "prompt": "a", "duration": 2},
            {"index": 2, "prompt": "b", "duration": 4},
        ],
    )
    assert body["__kind"] == "omni-video"
    assert body["model_name"] == "kling-v3-omni"
    assert body["video_list"] == [
        {"video_url": VID, "refer_type": "feature", "keep_original_sound": "yes"}
    ]
    assert body["multi_prompt"] == [
        {"index": 1, "prompt": "a", "duration": "2"},
        {"index": 2, "prompt": "b", "duration": "4"},
    ]
    assert (body["multi_shot"], body["shot_type"], body["duration"]) == (True, "customize", "6")


async def test_v3_storyboard_and_elements_stay_on_text2video(
    provider: KlingProvider, fake: FakeUpstream
) -> None:
    body = await run(
        provider,
        fake,
        action="text2video",
        model="kling-v3",
        prompt="a day in three shots",
        duration=9,
        multi_shot=True,
        shot_type="intelligence",
        element_list=[{"element_id": "el_1"}, {"element_id": "el_2"}],
        generate_audio=True,
    )
    assert body["__kind"] == "text2video"
    assert (body["multi_shot"], body["shot_type"]) == (True, "intelligence")
    assert "multi_prompt" not in body
    assert body["element_list"] == [{"element_id": "up-el_1"}, {"element_id": "up-el_2"}]
    assert body["sound"] == "on"


async def test_voices_ride_on_image2video(provider: KlingProvider, fake: FakeUpstream) -> None:
    body = await run(
        provider,
        fake,
        action="image2video",
        model="kling-v2-6",
        mode="pro",
        generate_audio=True,
        prompt="<<<voice_1>>> says hello",
        start_image_url=IMG,
        voice_list=[{"voice_id": "vo_1"}],
    )
    assert body["__kind"] == "image2video"
    assert body["voice_list"] == [{"voice_id": "up-vo_1"}]
    assert (body["sound"], body["image"]) == ("on", IMG)


@pytest.mark.parametrize(("action", "mode"), [("text2video", "std"), ("image2video", "pro")])
async def test_turbo_always_sends_sound_on(
    provider: KlingProvider, fake: FakeUpstream, action: str, mode: str
) -> None:
    request: dict[str, Any] = {"action": action, "model": "kling-v3-turbo", "prompt": "p"}
    if action == "image2video":
        request["start_image_url"] = IMG
    body = await run(provider, fake, **request, mode=mode, duration=4)
    assert body["__kind"] == action
    assert (body["model_name"], body["sound"], body["mode"]) == ("kling-v3-turbo", "on", mode)


def test_unresolved_element_ids_are_never_sent() -> None:
    task = make_task(
        action="text2video", model="kling-v3", prompt="p", element_list=[{"element_id": "el_1"}]
    )
    with pytest.raises(Exception, match="never resolved"):
        build_create(params_of(task), task_id=task.id)


async def test_the_fake_refuses_what_the_official_api_does(
    provider: KlingProvider, fake: FakeUpstream
) -> None:
    from kling_gateway.domain.outcomes import ProviderError

    # A storyboard whose shots do not sum to the duration (our validation never sends one;
    # the fake refuses it as the official API does).
    task = make_task(action="text2video", model="kling-o1", prompt="p")
    _, body = build_create(params_of(task), task_id=task.id)
    bad = {**body, "multi_shot": True, "shot_type": "customize",
           "multi_prompt": [{"index": 1, "prompt": "a", "duration": "3"}]}  # fmt: skip
    with pytest.raises(ProviderError) as info:
        await provider.client.create("omni-video", bad)
    assert info.value.code == "invalid_request"
    two_first = {**body, "image_list": [{"image_url": IMG, "type": "first_frame"}] * 2}
    with pytest.raises(ProviderError):
        await provider.client.create("omni-video", two_first)
    with pytest.raises(ProviderError):
        await provider.client.create("omni-video", {**body, "model_name": "kling-v3"})
