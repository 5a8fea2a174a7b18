"""The fake upstream's check of the Kling API's HS256 JWTs (``Authorization: Bearer ...``).

Written apart from the gateway's signer (``providers.kling.auth``) on purpose: were they to
share code, a bug in it would pass on both sides. Error codes are the upstream's 1000 series.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any, TypeGuard


class JwtError(Exception):
    """A token failed verification; ``code`` is the upstream's 1000-series error code."""

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _unpad(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (ValueError, binascii.Error) as exc:
        raise JwtError("malformed token segment", code=1002) from exc


def _object(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_unpad(segment))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise JwtError(f"malformed token {what}", code=1002) from exc
    if not isinstance(value, dict):
        raise JwtError(f"malformed token {what}", code=1002)
    return value


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_times(claims: dict[str, Any], now: float) -> None:
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not _number(exp):
        raise JwtError("token has no numeric exp claim", code=1002)
    if nbf is not None and not _number(nbf):
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
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtError("malformed token: expected three segments", code=1002)
    header_part, claims_part, signature_part = parts
    if _object(header_part, "header").get("alg") != "HS256":
        raise JwtError("unsupported token algorithm", code=1002)
    signed = f"{header_part}.{claims_part}".encode("ascii", errors="replace")
    expected = hmac.new(secret_key.encode("utf-8"), signed, hashlib.sha256).digest()
    if not hmac.compare_digest(_unpad(signature_part), expected):
        raise JwtError("token signature does not match", code=1002)
    claims = _object(claims_part, "claims")
    _check_times(claims, now)
    return claims
