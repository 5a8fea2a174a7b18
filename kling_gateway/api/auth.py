"""Bearer-token authentication, cached briefly so the hot path does no store lookup."""

from __future__ import annotations

import time

from kling_gateway.protocol.errors import Disabled, InvalidToken, TokenExpired, TokenMismatched
from kling_gateway.storage.base import Principal, Store
from kling_gateway.storage.tokens import hash_token

_CACHE_LIMIT = 10_000


class Authenticator:
    """Turns an ``authorization`` header into a ``Principal`` allowed to call ``api``."""

    def __init__(self, store: Store, cache_seconds: float) -> None:
        self._store = store
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[Principal, float]] = {}

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
        return principal

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
        raise TokenMismatched(f"this token was not granted the {api} API")


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise InvalidToken("missing authorization token")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise InvalidToken("malformed authorization header, expected 'Bearer <token>'")
    return token
