"""External services for integration tests (PostgreSQL, Redis): where they are, whether they
answer, and a throwaway PostgreSQL database per test module.

A test that needs a service calls ``require_postgres()`` / ``require_redis()``: when the
service does not answer the test is skipped with the reason, except under
``KLING_GATEWAY_TEST_REQUIRE_SERVICES=1`` (CI), where it fails, so a broken service container
cannot turn the suite green by skipping it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest

T = TypeVar("T")

REQUIRE_ENV = "KLING_GATEWAY_TEST_REQUIRE_SERVICES"
POSTGRES_URL_ENV = "KLING_GATEWAY_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL_ENV = "KLING_GATEWAY_TEST_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
PROBE_TIMEOUT = 3.0


def services_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") == "1"


def unavailable(service: str, url: str, reason: str) -> NoReturn:
    """Skip (or, when services are required, fail) the current test."""
    message = f"{service} not reachable at {url}: {reason}"
    if services_required():
        pytest.fail(f"{message} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(message)


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a private loop in a helper thread, so this works from
    sync fixtures and from inside a running event loop alike."""

    async def main() -> T:
        return await make()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


# -- PostgreSQL


def postgres_url() -> str:
    return os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL


@functools.cache
def postgres_problem(url: str) -> str | None:
    """Why PostgreSQL at ``url`` cannot be used, or None when it answers a query."""
    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(url, timeout=PROBE_TIMEOUT)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    try:
        run_sync(probe)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def require_postgres() -> str:
    """The test PostgreSQL URL, or skip/fail when the server does not answer."""
    url = postgres_url()
    problem = postgres_problem(url)
    if problem is not None:
        unavailable("PostgreSQL", url, problem)
    return url


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@contextlib.contextmanager
def fresh_postgres_database(prefix: str = "kg_test") -> Iterator[str]:
    """Create a uniquely named empty database; yield its URL; drop it afterwards."""
    import asyncpg

    admin_url = require_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_url, timeout=PROBE_TIMEOUT)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    run_sync(lambda: admin(f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(admin_url, name)
    finally:
        # FORCE: a test that failed mid-way may have left pooled connections open.
        run_sync(lambda: admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# -- Redis


def redis_url() -> str:
    return os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL


@functools.cache
def tcp_problem(host: str, port: int) -> str | None:
    """Why nothing accepts TCP connections at host:port, or None when something does."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
            return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def require_redis() -> str:
    """The test Redis URL, or skip/fail when nothing listens there."""
    url = redis_url()
    parts = urlsplit(url)
    problem = tcp_problem(parts.hostname or "127.0.0.1", parts.port or 6379)
    if problem is not None:
        unavailable("Redis", url, problem)
    return url


# Tests own this Redis database: they empty it, so it must not be one an operator uses.
TEST_REDIS_DB = 15
# The deadline of one Redis call in tests that are about sharing, not deadlines: on a loaded
# test machine a first connection can outlast the production default (0.25 s), and a tripped
# breaker turns a shared rate limit or a wake-up into this process's own.
PATIENT_REDIS_TIMEOUT = 5.0


def fresh_redis_url(db: int = TEST_REDIS_DB) -> str:
    """The test Redis server's database ``db``, emptied first; skip/fail when Redis is absent."""
    import redis.asyncio as aioredis

    url = with_database(require_redis(), str(db))

    async def flush() -> None:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=PROBE_TIMEOUT)
        try:
            await client.flushdb()
        finally:
            await client.aclose()

    run_sync(flush)
    return url


# -- Chromium (the dashboard's browser tests)

CHROMIUM_ENV = "KLING_GATEWAY_TEST_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"


def require_chromium() -> str:
    """Debian's chromium and the playwright package that drives it, or skip/fail. Playwright's
    own browser download is never used: the tests launch this executable."""
    import shutil

    path = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or DEFAULT_CHROMIUM
    if not os.access(path, os.X_OK):
        unavailable("Chromium", path, "not installed (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        unavailable("Chromium", path, f"playwright is not installed: {exc}")
    return path
