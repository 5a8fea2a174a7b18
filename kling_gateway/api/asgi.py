"""The small ASGI layer of the hot paths: read a capped body, send stored bytes.

The two API endpoints are served here directly rather than through Starlette's request and
response objects: measured on this request shape, that overhead was a third of the budget.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from kling_gateway.protocol.errors import ApiError, BadRequest, InternalError, ServiceUnavailable
from kling_gateway.storage import is_unavailable

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("kling_gateway.api")

_CONTENT_TYPE = (b"content-type", b"application/json")


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    headers: Sequence[tuple[bytes, bytes]] = ()


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def headers(scope: Scope, name: bytes) -> list[str]:
    """Every value of header ``name`` (ASGI servers give names in lower case)."""
    return [value.decode("latin-1") for key, value in scope["headers"] if key == name]


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; a body over ``limit`` bytes is refused without reading on."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        raise BadRequest(f"request body is larger than {limit} bytes")
    if message["type"] == "http.disconnect" or not message.get("more_body", False):
        return body  # the usual case: the whole body in one message
    chunks, size = [body], len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"request body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def error_body(error: ApiError, trace_id: str) -> bytes:
    """The error shape of docs/contract.md §4."""
    return msgspec.json.encode(
        {
            "success": False,
            "error": {"code": error.code, "message": error.message},
            "trace_id": trace_id,
        }
    )


def error_reply(error: ApiError, trace_id: str) -> Reply:
    headers = [(k.encode(), v.encode()) for k, v in error.headers.items()]
    return Reply(error.status, error_body(error, trace_id), headers)


def unexpected_error(exc: Exception, trace_id: str, path: str) -> ApiError:
    """503 when the store is out of reach (worth a retry), else 500; logged either way."""
    if is_unavailable(exc):
        log.error("store unavailable, trace_id=%s path=%s: %r", trace_id, path, exc)
        return ServiceUnavailable("the task store is unavailable; retry shortly")
    log.error("unexpected error, trace_id=%s path=%s", trace_id, path, exc_info=exc)
    return InternalError()


async def send_reply(send: Send, reply: Reply, trace_id: str) -> None:
    headers = [
        _CONTENT_TYPE,
        (b"content-length", b"%d" % len(reply.body)),
        (b"x-trace-id", trace_id.encode()),
        *reply.headers,
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})
