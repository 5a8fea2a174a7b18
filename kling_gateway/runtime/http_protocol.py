"""uvicorn's httptools protocol with the limits it lacks, and its errors in the API's shape.

uvicorn times out only idle keep-alive connections *between* requests: a connection that never
sends a request, or sends half of one, is held forever (1,100 such connections exhausted the
file descriptors). This protocol adds, per connection:

- a header deadline (``--header-timeout``) from the connection (or the request's first byte)
  to the end of its headers;
- a body deadline (``--body-timeout``) from the end of the headers to the end of the body;
- a bound on open connections per process (``--max-connections``): one over it is answered
  503 at once and closed, before it can hold a descriptor.

A connection past a deadline is closed. uvicorn's own 400 (a request httptools cannot parse:
bad chunking, bad header bytes) becomes the error shape of docs/contract.md §4 with a trace id.

The limits are class attributes set by ``configure`` (``serve`` calls it, and so does each API
process of ``--processes N`` when it builds its app from the environment).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kling_gateway.api.asgi import error_body
from kling_gateway.domain.ids import new_trace_id
from kling_gateway.protocol.errors import ApiError, BadRequest, ServiceUnavailable

log = logging.getLogger("kling_gateway.http")


@dataclass(frozen=True, slots=True)
class Limits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits = Limits()
    closed_by_timeout = 0  # connections closed at a deadline, in this process
    refused = 0  # connections answered 503 for being over the bound

    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            type(self).refused += 1
            self._answer_and_close(
                ServiceUnavailable("too many connections to this server; retry shortly")
            )
            return
        self._arm(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a new request on a kept-alive connection
            self._arm(self.limits.header_timeout)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        self._arm(self.limits.body_timeout)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        self._disarm()
        self._answer_and_close(BadRequest(f"invalid HTTP request: {msg.rstrip('.')}"))

    # -- deadlines

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        type(self).closed_by_timeout += 1
        self.transport.close()

    def _answer_and_close(self, error: ApiError) -> None:
        """A whole response written straight to the socket (no app, no request needed)."""
        trace_id = new_trace_id()
        body = error_body(error, trace_id)
        head = [f"HTTP/1.1 {error.status} {_REASONS.get(error.status, '')}".encode()]
        head += [b"content-type: application/json", b"content-length: %d" % len(body)]
        head += [b"x-trace-id: " + trace_id.encode(), b"connection: close"]
        head += [f"{k}: {v}".encode() for k, v in error.headers.items()]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()


_REASONS = {400: "Bad Request", 503: "Service Unavailable"}


def configure(header_timeout: float, body_timeout: float, max_connections: int) -> None:
    GuardedHttpToolsProtocol.limits = Limits(header_timeout, body_timeout, max_connections)
