"""The small ASGI layer of the hot paths: read a capped body, send stored bytes.

The two API endpoints are served here directly rather than through Starlette's request and
response objects: measured on this request shape, that overhead was a third of the budget.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from kling_gateway.infra.metrics import STORAGE_ERRORS
from kling_gateway.infra.objects import ObjectStoreFull
from kling_gateway.protocol.errors import (
    ApiError,
    BadRequest,
    InternalError,
    ServiceUnavailable,
    StorageFull,
)
from kling_gateway.storage import base as storage_base
from kling_gateway.storage import is_unavailable
from kling_gateway.storage.base import StorageFull as StoreFull

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
    # When set, the body is ``body`` followed by these chunks, sent as they come (chunked
    # transfer encoding): an answer too large to build in memory.
    stream: AsyncIterator[bytes] | None = None


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
    """What a failure that is not an ``ApiError`` tells the client, logged either way (one
    line for the known kinds; the log filter folds repeats): 507 when the storage is full,
    503 when the store is out of reach (worth a retry, with Retry-After), 400 for a body
    nested too deeply to decode, else 500."""
    if is_storage_full(exc):
        STORAGE_ERRORS.labels("api", "full").inc()
        log.error("storage full, path=%s: %s", path, _one_line(exc))
        return StorageFull()
    if is_unavailable(exc) or _is_unavailable_typed(exc):
        STORAGE_ERRORS.labels("api", "unavailable").inc()
        log.error("store unavailable, path=%s: %s", path, _one_line(exc))
        return ServiceUnavailable("the task store is unavailable; retry shortly")
    if isinstance(exc, RecursionError):
        return BadRequest("request body is nested too deeply")
    log.error("unexpected error, trace_id=%s path=%s", trace_id, path, exc_info=exc)
    return InternalError()


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def is_storage_full(exc: BaseException) -> bool:
    """The disk (or the database) is full: the typed error raised where the driver or the OS
    said so (SQLite's SQLITE_FULL, PostgreSQL's 53100, ENOSPC: ``storage.errors.classify``;
    a full object store: ``ObjectStoreFull``), anywhere in the chain of causes."""
    return any(isinstance(error, StoreFull | ObjectStoreFull) for error in _chain(exc))


def _is_unavailable_typed(exc: BaseException) -> bool:
    """The store's typed unavailability, and asyncpg's client errors of a closing pool."""
    typed = getattr(storage_base, "StoreUnavailable", None)
    if typed is not None and isinstance(exc, typed):
        return True
    return type(exc).__name__ == "InternalClientError"


async def send_reply(send: Send, reply: Reply, trace_id: str) -> None:
    if reply.stream is not None:
        await _send_stream(send, reply, trace_id)
        return
    headers = [
        _CONTENT_TYPE,
        (b"content-length", b"%d" % len(reply.body)),
        (b"x-trace-id", trace_id.encode()),
        *reply.headers,
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


async def _send_stream(send: Send, reply: Reply, trace_id: str) -> None:
    assert reply.stream is not None
    headers = [_CONTENT_TYPE, (b"x-trace-id", trace_id.encode()), *reply.headers]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body, "more_body": True})
    try:
        async for chunk in reply.stream:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except Exception as exc:  # noqa: BLE001 - too late for an error answer: cut the body short
        # The client sees a chunked body without its end, so it cannot take it for whole.
        log.error("streamed answer cut short, trace_id=%s: %s", trace_id, _one_line(exc))
        return
    await send({"type": "http.response.body", "body": b""})
