"""Signing secrets on memory://: put, rotate with a grace period, reseal."""

from __future__ import annotations

from kling_gateway.storage.memory_rows import (
    MemoryBase,
    SecretRow,
)


class MemorySecrets(MemoryBase):
    """The signing-secret flows of ``MemoryStore``."""

    def _current_secret(self, user_id: str) -> SecretRow | None:
        return next(
            (s for s in self._s.secrets if s.user_id == user_id and s.retired_at is None), None
        )

    async def put_first_secret(self, user_id: str, secret: str, now: float) -> str:
        current = self._current_secret(user_id)
        if current is None:
            current = SecretRow(secret, user_id, now)
            self._s.secrets.append(current)
        return current.secret

    async def replace_secret(
        self, user_id: str, secret: str, grace_seconds: float, now: float
    ) -> None:
        self._s.secrets = [
            s
            for s in self._s.secrets
            if not (s.user_id == user_id and s.expires_at is not None and s.expires_at <= now)
        ]
        current = self._current_secret(user_id)
        if current is not None:
            current.retired_at, current.expires_at = now, now + grace_seconds
        self._s.secrets.append(SecretRow(secret, user_id, now))

    async def signing_secrets(self, user_id: str, now: float) -> list[str]:
        mine = [
            s
            for s in self._s.secrets
            if s.user_id == user_id
            and (s.retired_at is None or (s.expires_at is not None and s.expires_at > now))
        ]
        mine.sort(key=lambda s: (s.retired_at is not None, -s.created_at))
        return [s.secret for s in mine]

    async def stored_secrets(self) -> list[tuple[str, str, str]]:
        return [(s.id, s.user_id, s.secret) for s in self._s.secrets]

    async def scrub_secrets(self) -> None:
        return None

    async def reseal_secret(self, secret_id: str, old: str, new: str) -> bool:
        for s in self._s.secrets:
            if s.id == secret_id and s.secret == old:
                s.secret = new
                return True
        return False
