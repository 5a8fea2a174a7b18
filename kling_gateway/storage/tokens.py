"""Bearer tokens: made here, shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from kling_gateway.protocol.task import API_ADMIN, API_TASKS, API_VIDEOS
from kling_gateway.storage.base import Store

TOKEN_PREFIX = "kg-"
ALL_APIS: tuple[str, ...] = (API_TASKS, API_VIDEOS)
# What a token may be granted: the client APIs, and the admin API (`tokens create --admin`).
KNOWN_APIS: tuple[str, ...] = (*ALL_APIS, API_ADMIN)
DEFAULT_USER = "default"


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast unsalted hash is enough to make a stolen
    # database useless for authentication (no password-style stretching is needed).
    return hashlib.sha256(token.encode()).hexdigest()


def token_prefix(token: str) -> str:
    """The part of a token safe to show in listings (it names the token, cannot use it)."""
    return token[:10]


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    credential_id: str
    user_id: str
    application_id: str


def parse_apis(text: str) -> tuple[str, ...]:
    apis = tuple(sorted({part.strip() for part in text.split(",") if part.strip()}))
    unknown = [api for api in apis if api not in KNOWN_APIS]
    if unknown or not apis:
        raise ValueError(
            f"unknown API {', '.join(unknown) or '(none)'}; known: {', '.join(KNOWN_APIS)}"
        )
    return apis


def with_admin(apis: tuple[str, ...], admin: bool) -> tuple[str, ...]:
    """``apis``, plus the admin API when ``admin``: an operator's token."""
    return tuple(sorted({*apis, API_ADMIN})) if admin else apis


async def issue_token(
    store: Store,
    user_name: str,
    *,
    apis: tuple[str, ...] = ALL_APIS,
    expires_in_days: float | None = None,
    default_credits: int | None = None,
) -> IssuedToken:
    """Create ``user_name`` (and its application, metered with ``default_credits`` unless
    None) when new, and a token for it."""
    now = time.time()
    user_id, application_id = await store.ensure_account(
        user_name, now, default_credits=default_credits
    )
    token = generate_token()
    credential_id = await store.add_credential(
        user_id=user_id,
        application_id=application_id,
        token_hash=hash_token(token),
        token_prefix=token_prefix(token),
        apis=apis,
        expires_at=None if expires_in_days is None else now + expires_in_days * 86400,
        now=now,
    )
    return IssuedToken(token, credential_id, user_id, application_id)
