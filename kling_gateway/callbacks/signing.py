"""Callback signatures as the Standard Webhooks specification defines them.

A secret is ``whsec_`` followed by the base64 of random bytes; the HMAC key is those bytes.
The signature of a message is ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``; during a
secret rotation one is sent per valid secret, separated by spaces, and a receiver accepts the
message when any of them matches.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
SIGNATURE_VERSION = "v1"


class InvalidSecret(ValueError):
    """A signing secret that is not ``whsec_`` plus base64."""


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of ``secret``: the base64-decoded part after ``whsec_``."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSecret("a signing secret must be whsec_ followed by base64") from exc
    if not key:
        raise InvalidSecret("a signing secret may not be empty")
    return key


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of the message under ``secret``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def sign(secrets_: str | Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: one signature per secret, space-separated."""
    keys = [secrets_] if isinstance(secrets_, str) else list(secrets_)
    if not keys:
        raise InvalidSecret("at least one signing secret is needed")
    return " ".join(signature(secret, msg_id, timestamp, body) for secret in keys)


def webhook_headers(
    secrets_: str | Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers of one delivery attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secrets_, msg_id, timestamp, body),
    }


def verify(
    secrets_: str | Sequence[str], msg_id: str, timestamp: int, body: bytes, header: str
) -> bool:
    """Whether any ``v1`` signature in ``header`` matches one of ``secrets_``."""
    keys = [secrets_] if isinstance(secrets_, str) else list(secrets_)
    expected = [signature(secret, msg_id, timestamp, body) for secret in keys]
    return any(
        hmac.compare_digest(given, wanted) for given in header.split() for wanted in expected
    )
