"""One API process per SQLite data directory, held with an advisory lock on a file in it.

Who takes it: every process that runs the API on SQLite (`serve`, with or without its worker)
takes ``DATA_DIR/serve.lock`` exclusively for its lifetime, whatever its port: the API keeps
per-process state (notifications that wake long-polls and blocking creates, rate limits) that
a second API process on the same database would not share, which is also why SQLite refuses
``--processes`` above 1. A `worker` process takes no lock: the split `serve --no-worker` +
`worker` layout on one directory stays allowed, and so do several workers (every task write is
a compare-and-set). PostgreSQL setups take no lock at all (they are meant to be shared).

The lock is ``flock``: the kernel drops it when the process dies, however it dies, so a stale
lock file never blocks a restart. The file holds the owner's pid, for the error message only.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from kling_gateway.storage.base import StoreError

LOCK_NAME = "serve.lock"


class DataDirBusy(StoreError):
    """Another process already runs the API on this data directory."""


class DataDirLock:
    """The exclusive lock of ``data_dir`` (created 0700 when missing); ``release`` frees it."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirBusy(
                f"another `kling-gateway serve` (pid {owner}) is using the data directory "
                f"{self.path.parent}: stop it, or give this one another directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock
