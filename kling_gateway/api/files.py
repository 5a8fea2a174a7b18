"""GET /files/videos/<video_id>.mp4: the rendered or downloaded videos, from the object store.

Streamed in bounded chunks with single-range support (video players seek: 206 with
``Content-Range``, 416 for a range past the end), or, with ``--storage-presign``, a redirect to
a presigned URL of the bucket. A missing video is 404 ``not_found`` in the error shape (a
deleted task's video is removed with it, so its URL is refused as missing); a store that
cannot be reached is 503. Files are served with ``X-Content-Type-Options: nosniff``: they are
user-influenced bytes, and a browser must not guess them into HTML.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from kling_gateway.infra.files import VideoFiles
from kling_gateway.infra.objects import (
    InvalidRange,
    ObjectNotFound,
    ObjectStoreError,
    ObjectStream,
)
from kling_gateway.protocol.errors import ApiError, NotFound, ServiceUnavailable

NOSNIFF = {"x-content-type-options": "nosniff"}
PRESIGN_SECONDS = 3600
_NAME = re.compile(r"^([A-Za-z0-9_-]{1,128})\.mp4$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(ApiError):
    status, code = 416, "range_not_satisfiable"
    default_message = "the requested range is outside the file"

    def __init__(self, size: int) -> None:
        super().__init__(headers={"content-range": f"bytes */{size}"})


def parse_range(header: str | None) -> tuple[int | None, int | None] | None:
    """``(start, end)`` of a single ``bytes=`` range; None for no range or one we do not
    honour (several ranges, other units: the whole file is the allowed answer, RFC 9110
    section 14.2)."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":
        return None, int(last)  # bytes=-N: the last N bytes
    start = int(first)
    end = int(last) if last else None
    if end is not None and end < start:
        return None
    return start, end


class VideoFilesRoute:
    """The endpoint; ``presign`` turns on redirects to the bucket."""

    def __init__(self, files: VideoFiles, *, presign: bool) -> None:
        self.files = files
        self.presign = presign

    async def handle(self, request: Request) -> Response:
        match = _NAME.match(request.path_params["name"])
        if match is None:
            raise NotFound(f"no file at {request.url.path}")
        video_id = match.group(1)
        try:
            if self.presign:
                return await self._redirect(video_id, request)
            wanted = parse_range(request.headers.get("range"))
            start, end = wanted if wanted is not None else (None, None)
            stream = await self.files.open(video_id, start, end)
        except ObjectNotFound as exc:
            raise NotFound(f"no file at {request.url.path}") from exc
        except InvalidRange as exc:
            raise RangeNotSatisfiable(exc.size) from exc
        except ObjectStoreError as exc:
            raise ServiceUnavailable("the video store is unavailable; retry later") from exc
        return _stream_response(stream, ranged=wanted is not None, head=request.method == "HEAD")

    async def _redirect(self, video_id: str, request: Request) -> Response:
        if await self.files.stat(video_id) is None:
            raise NotFound(f"no file at {request.url.path}")
        url = await self.files.objects.presign(
            self.files.key_for(video_id), timedelta(seconds=PRESIGN_SECONDS)
        )
        if url is None:  # a backend without presigned URLs: settings refuse this pairing
            raise NotFound(f"no file at {request.url.path}")
        return RedirectResponse(url, status_code=307, headers=NOSNIFF)


def _stream_response(stream: ObjectStream, *, ranged: bool, head: bool) -> Response:
    span = stream.range
    headers = {
        **NOSNIFF,
        "accept-ranges": "bytes",
        "content-length": str(max(span.length, 0)),
    }
    status = 200
    if ranged:
        status = 206
        headers["content-range"] = f"bytes {span.start}-{span.end}/{span.size}"

    async def body() -> AsyncIterator[bytes]:
        try:
            if not head:
                async for chunk in stream.chunks():
                    yield chunk
        finally:
            await stream.aclose()

    return StreamingResponse(body(), status_code=status, headers=headers, media_type="video/mp4")
