"""The web dashboard at /ui/ (docs/admin.md): static HTML, CSS and ES modules committed as
source, served from the package. No CDN and no build step; the pages call the public API and,
with an admin token, /admin/v1/, with the token the browser tab keeps in sessionStorage."""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from kling_gateway.protocol.errors import NoApi

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The pages run only their own files; videos and images may come from wherever a task's
# result or its request points (the CDN of an upstream, the gateway's /files/).
HEADERS = {
    "cache-control": "no-cache",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src * data: blob:; media-src * blob:; frame-ancestors 'none'"
    ),
}


def _static_files() -> dict[str, bytes]:
    folder = resources.files("kling_gateway.api.ui").joinpath("static")
    return {
        item.name: item.read_bytes()
        for item in folder.iterdir()
        if item.is_file() and any(item.name.endswith(ext) for ext in TYPES)
    }


def ui_routes() -> list[BaseRoute]:
    files = _static_files()  # read once: a handful of small files

    def serve(name: str) -> Response:
        content = files.get(name)
        if content is None:
            raise NoApi(f"no API at GET /ui/{name}")
        kind = next(t for ext, t in TYPES.items() if name.endswith(ext))
        return Response(content, media_type=kind, headers=HEADERS)

    async def index(_: Request) -> Response:
        return serve("index.html")

    async def asset(request: Request) -> Response:
        return serve(str(request.path_params["name"]))

    async def to_index(_: Request) -> Response:
        return RedirectResponse("/ui/", status_code=308)

    return [
        Route("/ui", to_index, methods=["GET", "HEAD"]),
        Route("/ui/", index, methods=["GET", "HEAD"]),
        Route("/ui/{name}", asset, methods=["GET", "HEAD"]),
    ]
