"""The §7 endpoints in the SDK (docs/contract.md §7): ``client.motion``, ``client.lip_sync``
and ``client.talking_photo``, written once for both clients like ``Videos``. Each creates a
task reported by ``client.tasks`` (record ``type`` ``motion``, ``lip-sync``,
``talking-photo``); blocking unless ``callback_url`` is given or ``async_`` is true."""

from __future__ import annotations

from typing import Any, Generic

from kling_gateway.client._base import Core, It_co, R_co, Runner
from kling_gateway.protocol.enums import (
    AudioType,
    CharacterOrientation,
    LipSyncMode,
    MotionMode,
    MotionModel,
    TalkingPhotoModel,
    VoiceLanguage,
    YesNo,
)

MOTION_PATH = "/kling/motion"
LIP_SYNC_PATH = "/kling/lip-sync"
TALKING_PHOTO_PATH = "/kling/talking-photo"


class _Resource(Generic[R_co, It_co]):
    path = ""

    def __init__(self, core: Core, runner: Runner[R_co, It_co]) -> None:
        self._core = core
        self._runner = runner

    def _create(
        self, fields: dict[str, Any], extra: dict[str, Any], idempotency_key: str | None
    ) -> R_co:
        return self._runner._run(self._core.create(self.path, fields, extra, idempotency_key))


class Motion(_Resource[R_co, It_co]):
    path = MOTION_PATH

    def create(
        self,
        *,
        image_url: str,
        video_url: str,
        character_orientation: CharacterOrientation,
        mode: MotionMode,
        model_name: MotionModel | None = None,
        keep_original_sound: YesNo | None = None,
        watermark: bool | None = None,
        prompt: str | None = None,
        callback_url: str | None = None,
        async_: bool | None = None,
        idempotency_key: str | None = None,
        **extra: Any,
    ) -> R_co:
        """``POST /kling/motion``: the character of ``image_url`` performs the motion of
        ``video_url`` (at most 10 s with orientation ``image``, 30 s with ``video``)."""
        fields = {
            "image_url": image_url,
            "video_url": video_url,
            "character_orientation": character_orientation,
            "mode": mode,
            "model_name": model_name,
            "keep_original_sound": keep_original_sound,
            "watermark_info": None if watermark is None else {"enabled": watermark},
            "prompt": prompt,
            "callback_url": callback_url,
            "async": async_,
        }
        return self._create(fields, extra, idempotency_key)


class LipSync(_Resource[R_co, It_co]):
    path = LIP_SYNC_PATH

    def create(
        self,
        *,
        mode: LipSyncMode,
        video_id: str | None = None,
        video_url: str | None = None,
        audio_url: str | None = None,
        audio_type: AudioType | None = None,
        audio_file: str | None = None,
        text: str | None = None,
        voice_id: str | None = None,
        voice_language: VoiceLanguage | None = None,
        voice_speed: float | None = None,
        callback_url: str | None = None,
        async_: bool | None = None,
        idempotency_key: str | None = None,
        **extra: Any,
    ) -> R_co:
        """``POST /kling/lip-sync``: one of ``video_id`` (your finished video) or ``video_url``
        speaks ``audio_url`` / base64 ``audio_file`` (``audio2video``) or ``text`` in
        ``voice_id`` (``text2video``)."""
        fields = {
            "mode": mode,
            "video_id": video_id,
            "video_url": video_url,
            "audio_url": audio_url,
            "audio_type": audio_type,
            "audio_file": audio_file,
            "text": text,
            "voice_id": voice_id,
            "voice_language": voice_language,
            "voice_speed": voice_speed,
            "callback_url": callback_url,
            "async": async_,
        }
        return self._create(fields, extra, idempotency_key)


class TalkingPhoto(_Resource[R_co, It_co]):
    path = TALKING_PHOTO_PATH

    def create(
        self,
        *,
        image_url: str,
        audio_url: str,
        prompt: str | None = None,
        model: TalkingPhotoModel | None = None,
        duration: int | None = None,
        mode: MotionMode | None = None,
        callback_url: str | None = None,
        async_: bool | None = None,
        idempotency_key: str | None = None,
        **extra: Any,
    ) -> R_co:
        """``POST /kling/talking-photo``: ``image_url`` animated, then lip-synced to
        ``audio_url``; a success adds ``source_video_url`` (the silent animation)."""
        fields = {
            "image_url": image_url,
            "audio_url": audio_url,
            "prompt": prompt,
            "model": model,
            "duration": duration,
            "mode": mode,
            "callback_url": callback_url,
            "async": async_,
        }
        return self._create(fields, extra, idempotency_key)
