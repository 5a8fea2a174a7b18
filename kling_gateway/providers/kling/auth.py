"""The official Kling API's authentication: an HS256 JWT per RFC 7519, built with the stdlib.

The token carries ``iss`` (the access key), ``exp`` (now + 1800 s) and ``nbf`` (now - 5 s) and is
signed with the secret key. ``KlingTokenSource`` reuses one token until shortly before it
expires; ``verify_jwt`` is the other side of the exchange (used by the fake upstream).
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


class JwtError(Exception):
    """A token failed verification; ``code`` is the upstream's 1000-series error code."""

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


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


def _decode_segment(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64url_decode(segment))
    except (ValueError, UnicodeDecodeError) as exc:
        raise JwtError(f"malformed token {what}", code=1002) from exc
    if not isinstance(value, dict):
        raise JwtError(f"malformed token {what}", code=1002)
    return value


def _split(token: str) -> tuple[str, str, str]:
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtError("malformed token: expected three segments", code=1002)
    return parts[0], parts[1], parts[2]


def _check_times(claims: dict[str, Any], now: float) -> None:
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise JwtError("token has no numeric exp claim", code=1002)
    if nbf is not None and (not isinstance(nbf, int | float) or isinstance(nbf, bool)):
        raise JwtError("token nbf claim is not numeric", code=1002)
    if now >= exp:
        raise JwtError("token has expired", code=1004)
    if nbf is not None and now < nbf:
        raise JwtError("token is not yet valid", code=1003)


def verify_jwt(token: str, secret_key: str, now: float) -> dict[str, Any]:
    """Check an HS256 token's header, signature, ``exp`` and ``nbf``; return its claims.

    Raises ``JwtError`` with code 1001 (empty), 1002 (invalid), 1003 (not yet valid) or
    1004 (expired).
    """
    if not token:
        raise JwtError("empty token", code=1001)
    header_seg, claims_seg, signature_seg = _split(token)
    header = _decode_segment(header_seg, "header")
    if header.get("alg") != "HS256":
        raise JwtError("unsupported token algorithm", code=1002)
    try:
        signature = _b64url_decode(signature_seg)
    except ValueError as exc:
        raise JwtError("malformed token signature", code=1002) from exc
    expected = _sign(f"{header_seg}.{claims_seg}", secret_key)
    if not hmac.compare_digest(signature, expected):
        raise JwtError("token signature does not match", code=1002)
    claims = _decode_segment(claims_seg, "claims")
    _check_times(claims, now)
    return claims


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
