"""The rules of docs/contract.md §6 on validation alone: every row of tests/videos_rules.py,
and what each accepted shape becomes in ``VideoParams``."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from kling_gateway.api.requests import describe_validation_error
from kling_gateway.domain.params import AssetReference, ImageReference, Shot, VideoReference
from kling_gateway.domain.videos import validate
from kling_gateway.protocol.errors import BadRequest
from kling_gateway.protocol.requests import VideoRequestBody
from tests.videos_rules import ACCEPTED, IMG, REFUSED, VID, shots, strip_none


def _message(body: dict[str, Any]) -> str | None:
    try:
        validate(msgspec.convert(strip_none(body), VideoRequestBody))
    except BadRequest as exc:
        return exc.message
    except msgspec.ValidationError as exc:
        return describe_validation_error(exc)
    return None


@pytest.mark.parametrize(("rule", "body"), ACCEPTED, ids=[r for r, _ in ACCEPTED])
def test_accepted(rule: str, body: dict[str, Any]) -> None:
    assert _message(body) is None


@pytest.mark.parametrize(("rule", "body", "field"), REFUSED, ids=[r for r, _, _ in REFUSED])
def test_refused_naming_the_field(rule: str, body: dict[str, Any], field: str) -> None:
    message = _message(body)
    assert message is not None, f"{rule}: accepted {body}"
    assert re.search(rf"`{re.escape(field)}[`\[]", message), message


def check(body: dict[str, Any]) -> Any:
    return validate(msgspec.convert(body, VideoRequestBody))


def test_turbo_audio_is_always_on() -> None:
    params = check({"action": "text2video", "model": "kling-v3-turbo", "prompt": "x"})
    assert params.generate_audio is True


def test_omni_references_reach_the_params() -> None:
    params = check(
        {
            "action": "text2video",
            "model": "kling-o1",
            "prompt": "<<<image_1>>> in the style of <<<video_1>>>",
            "image_list": [{"image_url": IMG, "type": "first_frame"}, {"image_url": IMG}],
            "video_list": [
                {"video_url": VID, "refer_type": "feature", "keep_original_sound": "yes"}
            ],
            "element_list": [{"element_id": "el-1"}],
        }
    )
    assert params.image_list == (
        ImageReference(url=IMG, type="first_frame"),
        ImageReference(url=IMG, type=None),
    )
    assert params.video_list == (
        VideoReference(url=VID, refer_type="feature", keep_original_sound=True),
    )
    assert params.element_list == (AssetReference(id="el-1"),)
    assert params.omni


def test_video_reference_defaults() -> None:
    params = check(
        {
            "action": "text2video",
            "model": "kling-o1",
            "prompt": "x",
            "video_list": [{"video_url": VID}],
        }
    )
    assert params.video_list == (
        VideoReference(url=VID, refer_type="base", keep_original_sound=False),
    )


def test_storyboard_reaches_the_params() -> None:
    params = check(
        {
            "action": "text2video",
            "model": "kling-v3",
            "multi_shot": True,
            "shot_type": "customize",
            "duration": 6,
            "multi_prompt": shots(1, 2, 3),
        }
    )
    assert (params.multi_shot, params.shot_type, params.prompt) == (True, "customize", "")
    assert params.multi_prompt == (
        Shot(index=1, prompt="shot 1", duration=1),
        Shot(index=2, prompt="shot 2", duration=2),
        Shot(index=3, prompt="shot 3", duration=3),
    )


def test_voices_reach_the_params() -> None:
    body = {
        "action": "text2video",
        "model": "kling-v2-6",
        "mode": "pro",
        "generate_audio": True,
        "prompt": "<<<voice_1>>> says hi",
        "voice_list": [{"voice_id": "v-1"}],
    }
    assert check(body).voice_list == (AssetReference(id="v-1"),)


def test_old_params_without_the_new_fields_still_decode() -> None:
    params = check({"action": "text2video", "prompt": "x"})
    raw = msgspec.json.decode(msgspec.json.encode(params))
    for name in (
        "image_list",
        "video_list",
        "multi_shot",
        "shot_type",
        "multi_prompt",
        "element_list",
        "voice_list",
    ):
        del raw[name]
    assert msgspec.convert(raw, type(params)) == params


def test_the_idempotency_hash_of_a_section_2_request_is_unchanged() -> None:
    from kling_gateway.domain.params import hash_input

    params = check({"action": "text2video", "prompt": "x"})
    before = msgspec.json.decode(msgspec.json.encode(params))
    for name in (
        "image_list",
        "video_list",
        "multi_shot",
        "shot_type",
        "multi_prompt",
        "element_list",
        "voice_list",
        "video_account",
    ):
        del before[name]
    assert hash_input(params) == msgspec.json.encode(before)
    # An extend pinned to the account that made its video hashes as it did before the pin.
    extend = check({"action": "extend", "video_id": "v", "prompt": "x"})
    pinned = msgspec.structs.replace(extend, video_account="b")
    assert hash_input(pinned) == hash_input(extend)
    assert b"video_account" not in hash_input(pinned)
    omni = check(
        {
            "action": "text2video",
            "model": "kling-o1",
            "prompt": "x",
            "image_list": [{"image_url": IMG}],
        }
    )
    assert b"image_list" in hash_input(omni)
