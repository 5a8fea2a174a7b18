"""The inputs of a local render that a §6 request names (docs/contract.md §6): the storyboard's
shots, and the Omni images and reference video fetched through the same SSRF-guarded,
size-capped fetcher as the frames of image2video."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kling_gateway.domain.outcomes import ProviderError
from kling_gateway.domain.params import VideoParams
from kling_gateway.infra.fetch import FetchError, fetch_bytes
from kling_gateway.providers.local.compose import split_prompt

MAX_REFERENCE_VIDEO_BYTES = 200 * 1024 * 1024  # docs/contract.md §6


def shots_of(params: VideoParams) -> tuple[tuple[str, float], ...]:
    if not params.multi_shot:
        return ()
    if params.shot_type == "intelligence":
        return tuple((p, float(s)) for p, s in split_prompt(params.prompt, params.duration))
    return tuple((s.prompt, float(s.duration)) for s in params.multi_prompt)


@dataclass
class OmniInputs:
    first: bytes | None = None
    end: bytes | None = None
    references: list[bytes] = field(default_factory=list)
    video: Path | None = None

    def cleanup(self) -> None:
        if self.video is not None:
            self.video.unlink(missing_ok=True)


async def fetch_omni(
    http: httpx.AsyncClient, params: VideoParams, *, image_max_bytes: int, timeout: float
) -> OmniInputs:
    """Every Omni image (first and end frames apart) and the reference video, fetched."""
    inputs = OmniInputs()
    for i, ref in enumerate(params.image_list):
        where = f"`image_list[{i}]`"
        data = await _fetch(http, ref.url, image_max_bytes, timeout, where, "image_fetch_failed")
        if ref.type == "first_frame":
            inputs.first = data
        elif ref.type == "end_frame":
            inputs.end = data
        else:
            inputs.references.append(data)
    for video in params.video_list:
        data = await _fetch(
            http, video.url, MAX_REFERENCE_VIDEO_BYTES, timeout, "`video_list[0]`",
            "video_fetch_failed",
        )  # fmt: skip
        with tempfile.NamedTemporaryFile(suffix=".mp4", delete=False) as out:
            out.write(data)
        inputs.video = Path(out.name)
    return inputs


async def _fetch(
    http: httpx.AsyncClient, url: str, cap: int, timeout: float, where: str, code: str
) -> bytes:
    try:
        return await fetch_bytes(http, url, max_bytes=cap, timeout=timeout)
    except FetchError as exc:
        raise ProviderError(f"could not fetch the reference {where}: {exc}", code=code) from exc
