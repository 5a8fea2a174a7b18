"""Bearer-token authentication, cached briefly so the hot path does no store lookup."""

from __future__ import annotations

import asyncio
import logging
import time

from kling_gateway.protocol.errors import (
    Disabled,
    Forbidden,
    InvalidToken,
    TokenExpired,
    TokenMismatched,
)
from kling_gateway.protocol.task import API_ADMIN
from kling_gateway.storage.base import Principal, Store
from kling_gateway.storage.tokens import hash_token

_CACHE_LIMIT = 10_000
# A token's last use is written at most this often per process: never a write per request.
TOUCH_SECONDS = 60.0

log = logging.getLogger("kling_gateway.api")


class Authenticator:
    """Turns an ``authorization`` header into a ``Principal`` allowed to call ``api``."""

    def __init__(
        self, store: Store, cache_seconds: float, touch_seconds: float = TOUCH_SECONDS
    ) -> None:
        self._store = store
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._touch_seconds = touch_seconds
        self._touched: dict[str, float] = {}  # credential id -> the last use written
        self._unwritten: dict[str, float] = {}
        self._writer: asyncio.Task[None] | None = None

    async def authenticate(self, authorization: list[str], api: str | None) -> Principal:
        """``authorization``: every value of the header; more than one is refused, since
        proxies and frameworks disagree on which one counts. ``api`` None checks no grant:
        the caller checks each API it serves (the MCP endpoint serves both, tool by tool)."""
        if len(authorization) > 1:
            raise InvalidToken("more than one authorization header")
        principal = await self._lookup(authorization[0] if authorization else None)
        now = time.time()
        if principal is None or principal.revoked:
            raise InvalidToken()
        if principal.expires_at is not None and principal.expires_at <= now:
            raise TokenExpired()
        if principal.application_disabled:
            raise Disabled()
        if api is not None:
            check_grant(principal, api)
        self._used(principal.credential_id, now)
        return principal

    def _used(self, credential_id: str, now: float) -> None:
        """Note a use; written in the background, once per ``touch_seconds`` per token."""
        last = self._touched.get(credential_id)
        if last is not None and now - last < self._touch_seconds:
            return
        if len(self._touched) >= _CACHE_LIMIT:
            self._touched.clear()
        self._touched[credential_id] = self._unwritten[credential_id] = now
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_uses())

    async def _write_uses(self) -> None:
        try:
            while self._unwritten:
                used, self._unwritten = self._unwritten, {}
                await self._store.touch_credentials(used)
        except Exception as exc:  # noqa: BLE001 - a lost last-use time is not worth a failure
            log.warning("recording when tokens were last used failed: %s", exc)
            self._unwritten.clear()
        finally:
            self._writer = None

    def forget(self) -> None:
        """Drop every cached principal: after an admin revokes a token or disables an
        application, this process honours it at once (others within the cache time)."""
        self._cache.clear()

    async def _lookup(self, header: str | None) -> Principal | None:
        # Cached by the header as sent: a repeat request skips parsing and hashing alike.
        now = time.monotonic()
        cached = self._cache.get(header) if header else None
        if cached is not None and cached[1] > now:
            return cached[0]
        token = _bearer_token(header)
        principal = await self._store.find_principal(hash_token(token))
        if principal is not None and header and self._cache_seconds > 0:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[header] = (principal, now + self._cache_seconds)
        return principal


def check_grant(principal: Principal, api: str) -> None:
    if api not in principal.apis:
        if api == API_ADMIN:  # a user's token on the operator's API (docs/contract.md §4)
            raise Forbidden()
        raise TokenMismatched(f"this token was not granted the {api} API")


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise InvalidToken("missing authorization token")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise InvalidToken("malformed authorization header, expected 'Bearer <token>'")
    return token
