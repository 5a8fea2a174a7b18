"""The classification of driver errors into the typed failures of ``storage.base``.

The API answers ``StoreUnavailable`` with 503 and ``Retry-After`` and ``StorageFull`` with 507
``storage_full`` (docs/contract.md §8); the worker treats both as "try again later". Everything
else a backend raises stays what it is: a bug, not an outage.
"""

from __future__ import annotations

import errno
import sqlite3

from kling_gateway.storage.base import StorageFull, StoreError, StoreUnavailable


def classify(exc: BaseException) -> StoreError | None:
    """The typed error ``exc`` means, or None when it is not an outage or a full disk."""
    if isinstance(exc, StoreUnavailable | StorageFull):
        return exc
    if isinstance(exc, sqlite3.Error):
        return _classify_sqlite(exc)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(f"no space left for the database: {exc}")
    if isinstance(exc, OSError | TimeoutError):
        # TimeoutError: a PostgreSQL command or pool acquire that ran out of time.
        return StoreUnavailable(f"the database did not answer in time: {exc or 'timeout'}")
    return _classify_asyncpg(exc)


# SQLite result codes (the primary code is the low byte of the extended one).
_SQLITE_UNAVAILABLE = {
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_PROTOCOL,
}


def _classify_sqlite(exc: sqlite3.Error) -> StoreError | None:
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    text = str(exc)
    if primary == sqlite3.SQLITE_FULL:
        return StorageFull(f"the SQLite database cannot grow: {text}")
    if primary in _SQLITE_UNAVAILABLE or "locked" in text or "busy" in text:
        return StoreUnavailable(f"the SQLite database cannot be used right now: {text}")
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in text:
        return StoreUnavailable(f"the SQLite store is closed: {text}")
    return None


def _classify_asyncpg(exc: BaseException) -> StoreError | None:
    import asyncpg

    if isinstance(exc, asyncpg.exceptions.DiskFullError):
        return StorageFull(f"PostgreSQL is out of disk space: {exc}")
    unavailable = (
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,  # includes "pool is closing", "connection is closed"
        asyncpg.exceptions.InternalClientError,  # e.g. a pool torn down under a call
        asyncpg.exceptions.CannotConnectNowError,
        asyncpg.exceptions.TooManyConnectionsError,
        asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash shutdown
        asyncpg.exceptions.QueryCanceledError,  # a server-side statement_timeout
        asyncpg.exceptions.InsufficientResourcesError,  # out of memory, too many connections
    )
    if isinstance(exc, unavailable):
        return StoreUnavailable(f"PostgreSQL cannot be used right now: {exc}")
    return None
