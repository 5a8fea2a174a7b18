"""The local renders of the §7 kinds (docs/contract.md §7): motion, lip-sync, talking-photo.

Each fetches its inputs (images, the reference or source video, the audio) through the same
SSRF-guarded, size-capped fetcher as image2video, then makes its MP4 in one call on the
provider's render pool: decoding the audio, synthesising speech and encoding are all CPU work.
Inputs that cannot be used (an undecodable image, audio or video) are RenderErrors, which the
provider turns into a failed task with their message as the reason.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar, cast

import httpx

from kling_gateway.domain.outcomes import ProviderError
from kling_gateway.domain.params import LipSyncParams, MotionParams, TalkingPhotoParams
from kling_gateway.infra.fetch import FetchError, fetch_bytes
from kling_gateway.providers.local.audio_in import (
    audio_from_base64,
    decode_audio,
    fetch_audio,
)
from kling_gateway.providers.local.lipsync import lip_sync_video
from kling_gateway.providers.local.motion import Orientation, motion_video
from kling_gateway.providers.local.references import MAX_REFERENCE_VIDEO_BYTES
from kling_gateway.providers.local.render import Mode, RenderedVideo, RenderError, probe_video
from kling_gateway.providers.local.speech import Language, synthesize_speech
from kling_gateway.providers.local.talking import talking_photo

_R = TypeVar("_R")
# An audio_url's cap: well above a 5 MB audio_file, since a URL may serve uncompressed WAV.
MAX_AUDIO_URL_BYTES = 20 * 1024 * 1024
KindParams = MotionParams | LipSyncParams | TalkingPhotoParams
# The first box of an MP4 or MOV file (Kling takes only those): anything else, a playlist or a
# concat script that would make FFmpeg open other files, is refused before FFmpeg sees it.
_MP4_ATOMS = frozenset({b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"})


class Runner(Protocol):
    """Runs a blocking call on the render pool."""

    def __call__(self, fn: Callable[[], _R]) -> Awaitable[_R]: ...


# (user id, video id) -> a local copy of that user's video (the provider's extend source).
SourceLoader = Callable[[str, str], Awaitable[Path]]


@dataclass(frozen=True, slots=True)
class KindRenderer:
    http: httpx.AsyncClient
    image_max_bytes: int
    timeout: float
    run: Runner
    load_source: SourceLoader
    fps: int = 24
    max_side: int | None = None

    async def render(
        self, user_id: str, params: KindParams, path: Path, silent_path: Path
    ) -> RenderedVideo:
        """Render ``params`` to ``path`` (a talking photo's silent animation to
        ``silent_path``); the measured video at ``path``."""
        if isinstance(params, MotionParams):
            return await self._motion(params, path)
        if isinstance(params, LipSyncParams):
            return await self._lip_sync(user_id, params, path)
        return await self._talking_photo(params, path, silent_path)

    async def _motion(self, params: MotionParams, path: Path) -> RenderedVideo:
        image = await self._image(params.image_url, "image_url")
        reference = await self._video(params.video_url, "video_url")
        try:
            job = functools.partial(
                motion_video, path, image, reference,
                orientation=cast(Orientation, params.character_orientation),
                mode=cast(Mode, params.mode), max_side=self.max_side,
                keep_original_sound=params.keep_original_sound,
            )  # fmt: skip
            return await self.run(job)
        finally:
            _unlink(reference)

    async def _lip_sync(self, user_id: str, params: LipSyncParams, path: Path) -> RenderedVideo:
        audio: bytes | None = None
        if params.audio_file is not None:
            audio = audio_from_base64(params.audio_file)
        elif params.audio_url is not None:
            audio = await self._audio(params.audio_url, "audio_url")
        if params.video_id is not None:
            source = await self.load_source(user_id, params.video_id)
        else:
            source = await self._video(params.video_url or "", "video_url")
        try:
            return await self.run(functools.partial(_lip_sync_job, path, source, audio, params))
        finally:
            _unlink(source)

    async def _talking_photo(
        self, params: TalkingPhotoParams, path: Path, silent_path: Path
    ) -> RenderedVideo:
        image = await self._image(params.image_url, "image_url")
        audio = await self._audio(params.audio_url, "audio_url")

        def job() -> RenderedVideo:
            samples = decode_audio(audio, max_seconds=params.duration)
            talking, _ = talking_photo(
                path, silent_path, image, samples, duration=float(params.duration),
                mode=cast(Mode, params.mode), fps=self.fps, max_side=self.max_side,
                prompt=params.prompt,
            )  # fmt: skip
            return talking

        return await self.run(job)

    async def _image(self, url: str, field: str) -> bytes:
        try:
            return await fetch_bytes(
                self.http, url, max_bytes=self.image_max_bytes, timeout=self.timeout
            )
        except FetchError as exc:
            raise ProviderError(
                f"could not fetch the image (`{field}`): {exc}", code="image_fetch_failed"
            ) from exc

    async def _audio(self, url: str, field: str) -> bytes:
        return await fetch_audio(
            self.http, url, max_bytes=MAX_AUDIO_URL_BYTES, timeout=self.timeout, field=field
        )

    async def _video(self, url: str, field: str) -> Path:
        """The video at ``url`` in a temporary file (the caller removes it)."""
        try:
            data = await fetch_bytes(
                self.http, url, max_bytes=MAX_REFERENCE_VIDEO_BYTES, timeout=self.timeout
            )
        except FetchError as exc:
            raise ProviderError(
                f"could not fetch the video (`{field}`): {exc}", code="video_fetch_failed"
            ) from exc
        if data[4:8] not in _MP4_ATOMS:
            raise RenderError(f"the video of `{field}` is not an MP4 or MOV file")
        with tempfile.NamedTemporaryFile(suffix=".mp4", delete=False) as out:
            out.write(data)
        path = Path(out.name)
        try:
            await self.run(functools.partial(probe_video, path))
        except RenderError as exc:
            _unlink(path)
            # The reason names the temporary file; the client knows it by its field.
            raise RenderError(str(exc).replace(path.name, f"the video of `{field}`")) from exc
        return path


def _lip_sync_job(
    path: Path, source: Path, audio: bytes | None, params: LipSyncParams
) -> RenderedVideo:
    if audio is not None:
        # The source caps the video's length, so audio past its end need not be decoded.
        samples = decode_audio(audio, max_seconds=probe_video(source).duration + 1.0)
    else:
        samples = synthesize_speech(
            params.text or "",
            language=cast(Language, params.voice_language),
            speed=params.voice_speed,
        )
    return lip_sync_video(path, source, samples)


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
