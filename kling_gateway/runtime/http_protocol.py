"""uvicorn's httptools protocol with the limits it lacks, and its errors in the API's shape.

uvicorn times out only idle keep-alive connections *between* requests: a connection that never
sends a request, or sends half of one, is held forever (1,100 such connections exhausted the
file descriptors). This protocol adds, per connection:

- a header deadline (``--header-timeout``) from the connection (or the request's first byte)
  to the end of its headers;
- a body deadline (``--body-timeout``) from the end of the headers to the end of the body;
- a bound on open connections per process (``--max-connections``): one over it is answered
  503 at once and closed, before it can hold a descriptor.

A connection past a deadline is closed (one sweep per event loop checks them, so within two
seconds of the deadline). uvicorn's own 400 (a request httptools cannot parse:
bad chunking, bad header bytes) becomes the error shape of docs/contract.md §4 with a trace id.

The limits are class attributes set by ``configure`` (``serve`` calls it, and so does each API
process of ``--processes N`` when it builds its app from the environment).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass
from typing import Any

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


HEADERS, BODY = "headers", "body"


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits = Limits()
    closed_by_timeout = 0  # connections closed at a deadline, in this process
    refused = 0  # connections answered 503 for being over the bound

    # What the sweep last saw: the phase and the request (its scope) it belonged to, and when.
    # The phase is read off uvicorn's own state at each sweep, so nothing at all is done per
    # request: arming and cancelling a timer per phase cost ~8 % of a retrieve's instructions,
    # and even overriding the parser callbacks to note the phase cost ~3 % (both measured with
    # bench/instructions.py).
    _seen: tuple[str | None, object] = (None, None)
    _seen_at = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            type(self).refused += 1
            self._answer_and_close(
                ServiceUnavailable("too many connections to this server; retry shortly")
            )
            return
        _Sweep.ensure(self.loop, self.connections, self.limits)

    def send_400_response(self, msg: str) -> None:
        self._answer_and_close(BadRequest(f"invalid HTTP request: {msg.rstrip('.')}"))

    def phase(self) -> str | None:
        """HEADERS from the connection or a request's first byte until its headers are in
        (uvicorn makes a request's cycle when they are), BODY until the body is in, else None
        (a request being answered, or a kept-alive connection between requests, which
        uvicorn's keep-alive timeout covers)."""
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:
            return HEADERS
        if cycle.more_body and not cycle.response_complete:
            return BODY
        return None

    def sweep(self, now: float) -> None:
        """Close the connection when its current phase has outlasted its limit."""
        phase, scope = self.phase(), self.scope
        if phase is None or self.transport.is_closing():
            self._seen = (None, None)
            return
        if phase != self._seen[0] or scope is not self._seen[1]:  # by identity: a new request
            self._seen, self._seen_at = (phase, scope), now
            return
        limit = self.limits.header_timeout if phase == HEADERS else self.limits.body_timeout
        if now - self._seen_at >= limit:
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


class _Sweep:
    """The deadline check of one event loop's connections, run while any are open.

    A phase is first seen up to one period after it began and closed at the first sweep past
    its limit from then: so a deadline holds to within two periods (a quarter of the shorter
    limit each, at most a second).
    """

    _running: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sweep] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(
        self, loop: asyncio.AbstractEventLoop, connections: set[Any], period: float
    ) -> None:
        self.loop, self.connections, self.period = loop, connections, period

    @classmethod
    def ensure(cls, loop: asyncio.AbstractEventLoop, connections: set[Any], limits: Limits) -> None:
        if loop in cls._running:
            return
        period = min(1.0, limits.header_timeout / 4, limits.body_timeout / 4)
        sweep = cls._running[loop] = cls(loop, connections, period)
        loop.call_later(period, sweep.run)

    def run(self) -> None:
        if not self.connections or self.loop.is_closed():
            del self._running[self.loop]  # the next connection starts a new sweep
            return
        now = self.loop.time()
        try:
            for protocol in list(self.connections):
                if isinstance(protocol, GuardedHttpToolsProtocol):
                    protocol.sweep(now)
        except Exception:  # the deadlines of every other connection must go on
            log.exception("the connection deadline sweep failed; it runs again shortly")
        finally:
            self.loop.call_later(self.period, self.run)


def configure(header_timeout: float, body_timeout: float, max_connections: int) -> None:
    GuardedHttpToolsProtocol.limits = Limits(header_timeout, body_timeout, max_connections)
