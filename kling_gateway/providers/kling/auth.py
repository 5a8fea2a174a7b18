"""The official Kling API's authentication: an HS256 JWT per RFC 7519, built with the stdlib.

The token carries ``iss`` (the access key), ``exp`` (now + 1800 s) and ``nbf`` (now - 5 s) and is
signed with the secret key. ``KlingTokenSource`` reuses one token until shortly before it
expires. The other side of the exchange is the fake upstream's own
(``fake_upstream.tokens``): a bug here must not pass because the same code checks it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

TOKEN_LIFETIME = 1800
NOT_BEFORE_SKEW = 5
REFRESH_MARGIN = 60.0
_HEADER = {"alg": "HS256", "typ": "JWT"}


def _b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _json_segment(value: dict[str, Any]) -> str:
    return _b64url_encode(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def _sign(signing_input: str, secret_key: str) -> bytes:
    return hmac.new(
        secret_key.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256
    ).digest()


def encode_jwt(claims: dict[str, Any], secret_key: str) -> str:
    """Sign ``claims`` as a compact HS256 JWT."""
    signing_input = f"{_json_segment(_HEADER)}.{_json_segment(claims)}"
    return f"{signing_input}.{_b64url_encode(_sign(signing_input, secret_key))}"


def make_kling_jwt(access_key: str, secret_key: str, now: float) -> str:
    """The token the official API expects, issued at ``now`` (epoch seconds)."""
    issued = int(now)
    claims = {"iss": access_key, "exp": issued + TOKEN_LIFETIME, "nbf": issued - NOT_BEFORE_SKEW}
    return encode_jwt(claims, secret_key)


class KlingTokenSource:
    """Hands out one token per ``lifetime``, renewing it ``refresh_margin`` seconds early."""

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        *,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = REFRESH_MARGIN,
    ) -> None:
        self._access_key = access_key
        self._secret_key = secret_key
        self._clock = clock
        self._refresh_margin = refresh_margin
        self._token: str | None = None
        self._expires_at = 0.0

    def token(self) -> str:
        """The current token, minted anew when none exists or it is about to expire."""
        now = self._clock()
        if self._token is None or now >= self._expires_at - self._refresh_margin:
            self._token = make_kling_jwt(self._access_key, self._secret_key, now)
            self._expires_at = int(now) + TOKEN_LIFETIME
        return self._token

    def invalidate(self) -> None:
        """Forget the current token (after the upstream rejected it)."""
        self._token = None
        self._expires_at = 0.0

    def authorization(self) -> str:
        return f"Bearer {self.token()}"
