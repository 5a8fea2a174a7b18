"""The inputs of the §7 tools' tests (docs/contract.md §7): a photo, a short video and speech,
served from loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.providers.local.media import (
    encode_audio,
    png,
    silence_then_tone,
    still_video,
    textured,
)
from tests.servers import serve_asgi


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("inputs")
    bodies = {
        "photo.png": png(textured(96, 54)),
        "dance.mp4": still_video(folder / "dance.mp4", seconds=2.0, fps=8).read_bytes(),
        "speech.mp3": encode_audio(silence_then_tone(2.5), "mp3"),
    }

    async def serve(request: Request) -> Response:
        return Response(bodies[request.path_params["name"]])

    with serve_asgi(Starlette(routes=[Route("/{name}", serve)])) as url:
        yield url
