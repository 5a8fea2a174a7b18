"""``SecretStore`` over the SQLite store's database (its writer thread and reader pool)."""

from __future__ import annotations

import sqlite3
import time

from kling_gateway.callbacks.signing import new_secret
from kling_gateway.storage.sqlite import SQLiteStore


class SQLiteSecretStore:
    """Signing secrets in the ``webhook_secrets`` table of ``store``'s file."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def find_user_id(self, user_name: str) -> str | None:
        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT id FROM users WHERE name = ?", (user_name,)).fetchone()
            return None if row is None else str(row[0])

        return await self._store.run_read(run)

    async def get_or_create_secret(self, user_id: str, *, now: float | None = None) -> str:
        at = time.time() if now is None else now
        return await self._store.run_write(lambda conn: _get_or_create(conn, user_id, at))

    async def rotate_secret(
        self, user_id: str, grace_seconds: float, *, now: float | None = None
    ) -> str:
        at = time.time() if now is None else now
        return await self._store.run_write(lambda conn: _rotate(conn, user_id, grace_seconds, at))

    async def active_secrets(self, user_id: str, *, now: float | None = None) -> list[str]:
        at = time.time() if now is None else now
        return await self._store.run_read(lambda conn: _active(conn, user_id, at))


def _current(conn: sqlite3.Connection, user_id: str) -> str | None:
    # webhook_secrets_current unique index.
    row = conn.execute(
        "SELECT secret FROM webhook_secrets WHERE user_id = ? AND retired_at IS NULL", (user_id,)
    ).fetchone()
    return None if row is None else str(row[0])


def _insert(conn: sqlite3.Connection, user_id: str, now: float) -> str:
    secret = new_secret()
    conn.execute(
        "INSERT INTO webhook_secrets (secret, user_id, created_at) VALUES (?, ?, ?)",
        (secret, user_id, now),
    )
    return secret


def _get_or_create(conn: sqlite3.Connection, user_id: str, now: float) -> str:
    return _current(conn, user_id) or _insert(conn, user_id, now)


def _rotate(conn: sqlite3.Connection, user_id: str, grace_seconds: float, now: float) -> str:
    conn.execute(
        "DELETE FROM webhook_secrets WHERE user_id = ? AND expires_at <= ?", (user_id, now)
    )
    conn.execute(
        "UPDATE webhook_secrets SET retired_at = ?, expires_at = ? "
        "WHERE user_id = ? AND retired_at IS NULL",
        (now, now + grace_seconds, user_id),
    )
    return _insert(conn, user_id, now)


def _active(conn: sqlite3.Connection, user_id: str, now: float) -> list[str]:
    # webhook_secrets_user index; the current secret (retired_at NULL) sorts first.
    rows = conn.execute(
        "SELECT secret FROM webhook_secrets WHERE user_id = ? "
        "AND (retired_at IS NULL OR expires_at > ?) "
        "ORDER BY retired_at IS NOT NULL, created_at DESC",
        (user_id, now),
    ).fetchall()
    return [str(row[0]) for row in rows]
