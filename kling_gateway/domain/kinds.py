"""The kinds of task a create endpoint makes (docs/contract.md §2, §7): for each, its request
body type, its validator (every rule a 400 naming the field, every default applied) and the
record ``type``. The one create route (``api/routes/videos.py``) is parametrised by a
``TaskKind``; everything after validation works from the typed params."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from kling_gateway.domain import rules
from kling_gateway.domain import videos as video_rules
from kling_gateway.domain.audio_input import decode_audio_file
from kling_gateway.domain.params import (
    LipSyncParams,
    MotionParams,
    TalkingPhotoParams,
    TaskParams,
)
from kling_gateway.domain.task import is_blank
from kling_gateway.protocol.enums import (
    AUDIO_TYPES,
    CHARACTER_ORIENTATIONS,
    LIP_SYNC_MODES,
    MAX_LIP_SYNC_TEXT,
    MOTION_MODELS,
    MOTION_MODES,
    TALKING_PHOTO_DURATIONS,
    TALKING_PHOTO_MODELS,
    VOICE_LANGUAGES,
    VOICE_SPEED_RANGE,
    YES_NO,
)
from kling_gateway.protocol.errors import BadRequest
from kling_gateway.protocol.requests import (
    LipSyncRequestBody,
    MotionRequestBody,
    TalkingPhotoRequestBody,
    VideoRequestBody,
)
from kling_gateway.protocol.task import (
    TASK_TYPE_LIP_SYNC,
    TASK_TYPE_MOTION,
    TASK_TYPE_TALKING_PHOTO,
    TASK_TYPE_VIDEOS,
)

# A lip-sync body carries up to 5 MB of audio as base64 (some 6.7 MB): its endpoint accepts
# bodies up to this size even when the server's --max-body-bytes is smaller.
LIP_SYNC_MAX_BODY = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TaskKind:
    """One create endpoint's kind of task."""

    task_type: str  # the record's ``type``
    path: str  # the endpoint
    body: type[msgspec.Struct]
    validate: Callable[[Any], TaskParams]
    # The largest body its endpoint reads (0: the server's --max-body-bytes).
    max_body_bytes: int = 0


def validate_motion(body: MotionRequestBody) -> MotionParams:
    """docs/contract.md §7, POST /kling/motion."""
    image_url = rules.required_url("image_url", body.image_url)
    video_url = rules.required_url("video_url", body.video_url)
    orientation = rules.required_one_of(
        "character_orientation", body.character_orientation, CHARACTER_ORIENTATIONS
    )
    mode = rules.required_one_of("mode", body.mode, MOTION_MODES)
    rules.one_of("model_name", body.model_name, MOTION_MODELS)
    rules.one_of("keep_original_sound", body.keep_original_sound, YES_NO)
    rules.text("prompt", body.prompt)
    return MotionParams(
        image_url=image_url,
        video_url=video_url,
        character_orientation=orientation,
        mode=mode,
        model=body.model_name,
        keep_original_sound=body.keep_original_sound == "yes",
        watermark=body.watermark_info is not None and body.watermark_info.enabled,
        prompt=body.prompt,
        callback_url=rules.callback_url(body.callback_url),
        callback_events=rules.callback_events(body.callback_events),
        asynchronous=rules.asynchronous(body.callback_url, body.async_),
    )


def validate_lip_sync(body: LipSyncRequestBody) -> LipSyncParams:
    """docs/contract.md §7, POST /kling/lip-sync."""
    mode = rules.required_one_of("mode", body.mode, LIP_SYNC_MODES)
    _one_video(body)
    rules.one_of("voice_language", body.voice_language, VOICE_LANGUAGES)
    rules.number_range("voice_speed", body.voice_speed, *VOICE_SPEED_RANGE)
    audio_file, audio_format = None, None
    if mode == "audio2video":
        _no_text(body)
        audio_file, audio_format = _audio(body)
    else:
        _no_audio(body)
        rules.required_text("text", body.text, MAX_LIP_SYNC_TEXT)
        rules.required_text("voice_id", body.voice_id)
    return LipSyncParams(
        mode=mode,
        video_id=body.video_id,
        video_url=body.video_url,
        audio_url=body.audio_url if mode == "audio2video" else None,
        audio_file=audio_file,
        audio_format=audio_format,
        text=body.text,
        voice_id=body.voice_id,
        voice_language=body.voice_language,
        voice_speed=body.voice_speed,
        callback_url=rules.callback_url(body.callback_url),
        callback_events=rules.callback_events(body.callback_events),
        asynchronous=rules.asynchronous(body.callback_url, body.async_),
    )


def _one_video(body: LipSyncRequestBody) -> None:
    if body.video_id is not None and is_blank(body.video_id):
        raise BadRequest("field `video_id` must not be empty")
    if (body.video_id is None) == (body.video_url is None):
        raise BadRequest("exactly one of the fields `video_id` and `video_url` is required")
    rules.http_url("video_url", body.video_url)


def _audio(body: LipSyncRequestBody) -> tuple[str | None, str | None]:
    """audio2video: ``audio_url``, or ``audio_type: file`` with ``audio_file``; the file's
    base64 and sniffed format."""
    audio_type = body.audio_type or ("file" if body.audio_file is not None else "url")
    rules.one_of("audio_type", audio_type, AUDIO_TYPES)
    if audio_type == "url":
        if body.audio_file is not None:
            raise BadRequest("field `audio_file` needs `audio_type: file`")
        rules.required_url("audio_url", body.audio_url)
        return None, None
    if body.audio_url is not None:
        raise BadRequest("field `audio_url` cannot be combined with `audio_type: file`")
    if body.audio_file is None:
        raise BadRequest("field `audio_file` is required with `audio_type: file`")
    text, _, kind = decode_audio_file(body.audio_file)
    return text, kind


def _no_text(body: LipSyncRequestBody) -> None:
    for name in ("text", "voice_id"):
        if getattr(body, name) is not None:
            raise BadRequest(f"field `{name}` is only for mode text2video")


def _no_audio(body: LipSyncRequestBody) -> None:
    for name in ("audio_url", "audio_file", "audio_type"):
        if getattr(body, name) is not None:
            raise BadRequest(f"field `{name}` is only for mode audio2video")


def validate_talking_photo(body: TalkingPhotoRequestBody) -> TalkingPhotoParams:
    """docs/contract.md §7, POST /kling/talking-photo."""
    image_url = rules.required_url("image_url", body.image_url)
    audio_url = rules.required_url("audio_url", body.audio_url)
    rules.one_of("model", body.model, TALKING_PHOTO_MODELS)
    rules.one_of("mode", body.mode, MOTION_MODES)
    rules.text("prompt", body.prompt)
    duration = body.duration
    if duration not in TALKING_PHOTO_DURATIONS:
        raise BadRequest("field `duration` must be 5 or 10 seconds")
    return TalkingPhotoParams(
        image_url=image_url,
        audio_url=audio_url,
        prompt=body.prompt or "",
        model=body.model,
        duration=int(duration),
        mode=body.mode,
        callback_url=rules.callback_url(body.callback_url),
        callback_events=rules.callback_events(body.callback_events),
        asynchronous=rules.asynchronous(body.callback_url, body.async_),
    )


VIDEOS = TaskKind(TASK_TYPE_VIDEOS, "/kling/videos", VideoRequestBody, video_rules.validate)
MOTION = TaskKind(TASK_TYPE_MOTION, "/kling/motion", MotionRequestBody, validate_motion)
LIP_SYNC = TaskKind(
    TASK_TYPE_LIP_SYNC,
    "/kling/lip-sync",
    LipSyncRequestBody,
    validate_lip_sync,
    max_body_bytes=LIP_SYNC_MAX_BODY,
)
TALKING_PHOTO = TaskKind(
    TASK_TYPE_TALKING_PHOTO, "/kling/talking-photo", TalkingPhotoRequestBody,
    validate_talking_photo,
)  # fmt: skip
KINDS = (VIDEOS, MOTION, LIP_SYNC, TALKING_PHOTO)
