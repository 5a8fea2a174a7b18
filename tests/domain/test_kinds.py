"""The validators of the §7 kinds (domain/kinds.py, docs/contract.md §7): every rule is a 400
naming its field, every default applied."""

from __future__ import annotations

import base64
from typing import Any

import msgspec
import pytest

from kling_gateway.domain.audio_input import sniff_audio
from kling_gateway.domain.kinds import (
    LIP_SYNC,
    MOTION,
    TALKING_PHOTO,
    TaskKind,
    validate_lip_sync,
    validate_motion,
    validate_talking_photo,
)
from kling_gateway.domain.params import LipSyncParams, MotionParams, TalkingPhotoParams, hash_input
from kling_gateway.fake_upstream.media import make_wav
from kling_gateway.protocol.errors import BadRequest
from kling_gateway.protocol.requests import (
    LipSyncRequestBody,
    MotionRequestBody,
    TalkingPhotoRequestBody,
)

IMG, VID, AUD = "https://x.example/a.png", "https://x.example/v.mp4", "https://x.example/a.mp3"
MOTION_OK = {"image_url": IMG, "video_url": VID, "character_orientation": "image", "mode": "std"}
LIP_OK = {"mode": "audio2video", "video_url": VID, "audio_url": AUD}
TEXT_OK = {"mode": "text2video", "video_id": "vid-1", "text": "hello there", "voice_id": "v1"}
PHOTO_OK = {"image_url": IMG, "audio_url": AUD}
WAV64 = base64.b64encode(make_wav(2.0)).decode()
GIF64 = base64.b64encode(b"GIF89a...").decode()
HUGE64 = base64.b64encode(b"RIFF" + b"\0" * 5 * 1024 * 1024).decode()


def run(kind: TaskKind, body: dict[str, Any]) -> Any:
    return kind.validate(msgspec.convert(body, kind.body))


def refused(kind: TaskKind, body: dict[str, Any]) -> str:
    with pytest.raises(BadRequest) as caught:
        run(kind, body)
    return caught.value.message


def test_motion_defaults() -> None:
    params = validate_motion(MotionRequestBody(**MOTION_OK))
    assert params == MotionParams(
        image_url=IMG, video_url=VID, character_orientation="image", mode="std",
        model="kling-v2-6", keep_original_sound=True, watermark=False, prompt=None,
        callback_url=None, callback_events=(), asynchronous=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"image_url": None}, "image_url"),
        ({"video_url": "ftp://x/v.mp4"}, "video_url"),
        ({"character_orientation": None}, "character_orientation"),
        ({"character_orientation": "side"}, "character_orientation"),
        ({"mode": None}, "mode"),
        ({"mode": "4k"}, "mode"),
        ({"model_name": "kling-v1"}, "model_name"),
        ({"keep_original_sound": "maybe"}, "keep_original_sound"),
        ({"prompt": "x" * 2501}, "prompt"),
        ({"callback_url": "not a url"}, "callback_url"),
        ({"callback_events": ["done"]}, "callback_events"),
    ],
)
def test_motion_rules(change: dict[str, Any], field: str) -> None:
    body = {k: v for k, v in {**MOTION_OK, **change}.items() if v is not None}
    assert f"`{field}`" in refused(MOTION, body)


def test_lip_sync_defaults_and_modes() -> None:
    params = validate_lip_sync(LipSyncRequestBody(**LIP_OK, async_=True))
    assert isinstance(params, LipSyncParams)
    assert (params.audio_url, params.audio_file, params.voice_language) == (AUD, None, "zh")
    assert params.asynchronous is True
    text = validate_lip_sync(LipSyncRequestBody(**TEXT_OK, voice_speed=2.0))
    assert (text.text, text.voice_id, text.audio_url, text.voice_speed) == (
        "hello there", "v1", None, 2.0,
    )  # fmt: skip


def test_lip_sync_file_is_decoded_and_sniffed() -> None:
    body = {"mode": "audio2video", "video_url": VID, "audio_type": "file",
            "audio_file": "data:audio/wav;base64," + WAV64}  # fmt: skip
    params = run(LIP_SYNC, body)
    assert params.audio_file == WAV64 and params.audio_format == "wav"
    # audio_type defaults to file when only a file is sent
    assert run(LIP_SYNC, {**body, "audio_type": None}).audio_format == "wav"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**LIP_OK, "mode": None}, "mode"),
        ({**LIP_OK, "mode": "video2video"}, "mode"),
        ({**LIP_OK, "video_id": "v"}, "video_id"),  # both: exactly one
        ({"mode": "audio2video", "audio_url": AUD}, "video_id"),  # neither
        ({**LIP_OK, "video_url": None, "video_id": " "}, "video_id"),
        ({**LIP_OK, "video_url": "file:///etc/passwd"}, "video_url"),
        ({**LIP_OK, "audio_url": None}, "audio_url"),
        ({**LIP_OK, "audio_type": "stream"}, "audio_type"),
        ({**LIP_OK, "audio_type": "file"}, "audio_url"),
        ({**LIP_OK, "audio_url": None, "audio_type": "file"}, "audio_file"),
        ({**LIP_OK, "audio_url": None, "audio_file": "!!!"}, "audio_file"),
        ({**LIP_OK, "audio_url": None, "audio_file": GIF64}, "audio_file"),
        ({**LIP_OK, "audio_url": None, "audio_file": HUGE64}, "audio_file"),
        ({**LIP_OK, "text": "hi"}, "text"),
        ({**TEXT_OK, "text": None}, "text"),
        ({**TEXT_OK, "text": "x" * 121}, "text"),
        ({**TEXT_OK, "voice_id": None}, "voice_id"),
        ({**TEXT_OK, "voice_language": "fr"}, "voice_language"),
        ({**TEXT_OK, "voice_speed": 0.5}, "voice_speed"),
        ({**TEXT_OK, "voice_speed": 2.5}, "voice_speed"),
        ({**TEXT_OK, "audio_url": AUD}, "audio_url"),
    ],
)
def test_lip_sync_rules(body: dict[str, Any], field: str) -> None:
    body = {k: v for k, v in body.items() if v is not None}
    assert f"`{field}`" in refused(LIP_SYNC, body)


def test_talking_photo_defaults() -> None:
    params = validate_talking_photo(TalkingPhotoRequestBody(**PHOTO_OK, duration=10.0))
    assert params == TalkingPhotoParams(
        image_url=IMG, audio_url=AUD, prompt="", model="kling-v2-1-master", duration=10,
        mode="pro", callback_url=None, callback_events=(), asynchronous=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"image_url": None}, "image_url"),
        ({"audio_url": None}, "audio_url"),
        ({"audio_url": "nope"}, "audio_url"),
        ({"model": "kling-v3"}, "model"),
        ({"duration": 7}, "duration"),
        ({"duration": 5.5}, "duration"),
        ({"mode": "4k"}, "mode"),
        ({"prompt": "y" * 2501}, "prompt"),
    ],
)
def test_talking_photo_rules(change: dict[str, Any], field: str) -> None:
    body = {k: v for k, v in {**PHOTO_OK, **change}.items() if v is not None}
    assert f"`{field}`" in refused(TALKING_PHOTO, body)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"RIFF\0\0\0\0WAVEfmt ", "wav"),
        (b"\0\0\0\x20ftypM4A ", "m4a"),
        (b"ID3\x04\0\0", "mp3"),
        (b"\xff\xfb\x90\x64", "mp3"),
        (b"\xff\xf1\x50\x80", "aac"),
        (b"OggS\0\x02", None),
        (b"", None),
    ],
)
def test_audio_formats_are_recognised_by_their_bytes(head: bytes, kind: str | None) -> None:
    assert sniff_audio(head) == kind


def test_the_account_a_lip_sync_is_pinned_to_is_not_part_of_its_idempotency_hash() -> None:
    params = validate_lip_sync(LipSyncRequestBody(**LIP_OK))
    pinned = msgspec.structs.replace(params, video_account="b")
    assert hash_input(pinned) == hash_input(params)
    assert b"video_account" not in hash_input(pinned)
