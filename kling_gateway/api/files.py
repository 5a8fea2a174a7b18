"""GET /files/videos/...: the rendered or downloaded videos, as static files.

A missing file is 404 ``not_found`` in the error shape, also before the videos folder exists
(a fresh data directory has none until the first render). Files are served with
``X-Content-Type-Options: nosniff``: they are user-influenced bytes, and a browser must not
guess them into HTML.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from kling_gateway.protocol.errors import NotFound

NOSNIFF = {"x-content-type-options": "nosniff"}


class VideoFiles(StaticFiles):
    async def check_config(self) -> None:
        # The folder appears with the first video; until then every file is simply missing.
        return None

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            response = await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code in (401, 404):  # 401: a file we may not read, i.e. none
                raise NotFound(f"no file at {scope['path']}") from exc
            raise
        response.headers.update(NOSNIFF)
        return response
