"""Pure translations of the §7 kinds (docs/contract.md §7) into upstream calls (upstream spec
"More endpoints"): motion-control, identify-face, tts, advanced-lip-sync, and the image2video
of a talking photo."""

from __future__ import annotations

from typing import Any, Final

from kling_gateway.domain.outcomes import ProviderError
from kling_gateway.domain.params import LipSyncParams, MotionParams, TalkingPhotoParams

KIND_MOTION: Final = "motion-control"
KIND_LIP_SYNC: Final = "advanced-lip-sync"
# A talking photo's first job, its silent animation, is found again by this external id (the
# final lip-sync job carries the task id itself, as every other kind's job does).
ANIMATION_SUFFIX: Final = "-animation"


def motion_body(params: MotionParams, task_id: str, callback_url: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "image_url": params.image_url,
        "video_url": params.video_url,
        "character_orientation": params.character_orientation,
        "mode": params.mode,
        "model_name": params.model,
        "keep_original_sound": "yes" if params.keep_original_sound else "no",
        "external_task_id": task_id,
    }
    if params.prompt:
        body["prompt"] = params.prompt
    if params.watermark:
        body["watermark_info"] = {"enabled": True}
    if callback_url is not None:
        body["callback_url"] = callback_url
    return body


def animation_body(params: TalkingPhotoParams, task_id: str) -> dict[str, Any]:
    """The image2video create of a talking photo's animation (no callback: its job is not the
    task's own, the worker polls it)."""
    body: dict[str, Any] = {
        "model_name": params.model,
        "image": params.image_url,
        "mode": params.mode,
        "duration": str(params.duration),
        "external_task_id": animation_id(task_id),
    }
    if params.prompt:
        body["prompt"] = params.prompt
    return body


def animation_id(task_id: str) -> str:
    return task_id + ANIMATION_SUFFIX


def identify_target(params: LipSyncParams) -> dict[str, Any]:
    """The identify-face body of a lip-sync: its video id (our ``video_id`` of a Kling task is
    the upstream video id) or its URL."""
    if params.video_id is not None:
        return {"video_id": params.video_id}
    return {"video_url": params.video_url}


def tts_body(params: LipSyncParams) -> dict[str, Any]:
    return {
        "text": params.text,
        "voice_id": params.voice_id,
        "voice_language": params.voice_language,
        "voice_speed": params.voice_speed,
    }


def lip_sync_sound(params: LipSyncParams, audio_id: str | None) -> dict[str, Any]:
    """The sound of a lip-sync's face: the synthesised speech, the audio URL or the file."""
    if audio_id is not None:
        return {"audio_id": audio_id}
    if params.audio_url is not None:
        return {"sound_file": params.audio_url}
    if params.audio_file is not None:
        return {"sound_file": params.audio_file}
    raise ProviderError("the lip-sync has no audio", code="invalid_request")


def lip_sync_body(
    session_id: str,
    face_id: str,
    sound: dict[str, Any],
    task_id: str,
    callback_url: str | None,
) -> dict[str, Any]:
    """The advanced-lip-sync create: the whole sound inserted at the start, volumes as they
    are (no start/end times: the upstream takes the clip as it is)."""
    face = {"face_id": face_id, **sound, "sound_insert_time": 0}
    body: dict[str, Any] = {
        "session_id": session_id,
        "face_choose": [face],
        "external_task_id": task_id,
    }
    if callback_url is not None:
        body["callback_url"] = callback_url
    return body


def chosen_face(data: Any) -> tuple[str, str]:
    """``(session_id, face_id)`` of an identify-face answer: its first face (the one the
    video shows first). No face: the task fails."""
    session = data.get("session_id") if isinstance(data, dict) else None
    faces = data.get("face_data") if isinstance(data, dict) else None
    if not isinstance(session, str) or not session or not isinstance(faces, list):
        raise ProviderError(
            "identify-face answered without a session", code="upstream_protocol_error",
            retryable=True,
        )  # fmt: skip
    given = [f.get("face_id") for f in faces if isinstance(f, dict)]
    ids = [str(i) for i in given if isinstance(i, str | int) and i != ""]
    if not ids:
        raise ProviderError("no face was found in the video", code="no_face_found")
    return session, ids[0]


def audio_id_of(data: Any) -> str:
    value = data.get("audio_id") if isinstance(data, dict) else None
    if not isinstance(value, str | int) or value == "":
        raise ProviderError(
            "tts answered without an audio_id", code="upstream_protocol_error", retryable=True
        )
    return str(value)
