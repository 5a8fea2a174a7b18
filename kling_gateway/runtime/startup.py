"""Startup failures as one line naming the flag to fix (the CLI exits 2), not a traceback.

What can stop a start: the database (``--database-url``; unreachable, missing, refusing us),
the data directory (``--data-dir``; not creatable, not writable, not a directory) and, when
``--redis-required`` is on, Redis (``--redis-url``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from kling_gateway.runtime.settings import Settings, SettingsError
from kling_gateway.storage.base import StoreError


class StartupError(SettingsError):
    """The gateway cannot start with these settings; the message names the flag."""


def where(url: str) -> str:
    """``host:port/db`` of a database or Redis URL, without its credentials."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path}"


def _reason(exc: BaseException) -> str:
    """The innermost cause, in words (``[Errno 111] Connect call failed`` and the like)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def explain(exc: BaseException, settings: Settings) -> StartupError | None:
    """The one-line error for a failure to open the store, or None when it is not one."""
    if isinstance(exc, StartupError):
        return exc
    if settings.uses_postgres and isinstance(exc, StoreError | OSError | TimeoutError):
        return _postgres_error(exc, settings.resolved_database_url)
    if isinstance(exc, OSError | sqlite3.Error | StoreError):
        return StartupError(
            f"--data-dir: cannot use {settings.data_dir!r} for the SQLite database and "
            f"videos: {_reason(exc)}"
        )
    return None


def _postgres_error(exc: BaseException, url: str) -> StartupError:
    reason = _reason(exc)
    if "does not exist" in reason and "database" in reason:
        database = urlsplit(url).path.strip("/")
        return StartupError(
            f"--database-url: database {database!r} does not exist on {where(url)} "
            f"(create it with: createdb {database})"
        )
    return StartupError(f"--database-url: cannot use PostgreSQL at {where(url)}: {reason}")


@contextmanager
def startup_errors(settings: Settings) -> Iterator[None]:
    """Turn a failure to open the store (or the data directory) into a ``StartupError``."""
    try:
        yield
    except Exception as exc:
        error = explain(exc, settings)
        if error is None or error is exc:
            raise
        raise error from exc
