"""Whether a store can take writes right now: what readiness (/readyz) reports.

For SQLite the question that matters is whether the database file the store has open is still
the file at its path: a deleted (or replaced) data directory leaves the process writing into
an unlinked inode whose contents vanish at the next restart. ``FileIdentity`` notices with one
``stat`` (a microsecond, so it is checked before every write).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """``ok``, or not with the reason (one line, safe to show an operator)."""

    ok: bool
    reason: str = ""


HEALTHY = StoreHealth(True)


class FileIdentity:
    """The (device, inode) of a file when the store opened it, to compare with the path's."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._identity: tuple[int, int] | None = None

    def capture(self) -> None:
        st = os.stat(self.path)
        self._identity = (st.st_dev, st.st_ino)

    def problem(self) -> str | None:
        """Why the opened file is no longer the one at the path, or None while it is."""
        if self._identity is None:
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return f"the database file {self.path} was deleted while the store had it open"
        except OSError as exc:
            return f"the database file {self.path} cannot be checked: {exc.strerror}"
        if (st.st_dev, st.st_ino) != self._identity:
            return f"the database file {self.path} was replaced while the store had it open"
        return None
