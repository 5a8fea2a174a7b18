"""PostgreSQL faults end in StoreUnavailable, never in a hang or a bare driver error (defect
#15, issue 18 items 7 and 8): a blackholed connection (a loopback TCP proxy that accepts and
then stops forwarding), a pool closed under a call, a store used after close."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from kling_gateway.runtime.serve import store_for
from kling_gateway.runtime.settings import SettingsError, load_settings
from kling_gateway.storage import PoolLimits, StoreUnavailable, is_unavailable
from kling_gateway.storage.postgres import PostgresStore
from tests.services import fresh_postgres_database
from tests.storage.helpers import insert, owner

# Only a guard so that a regression fails instead of hanging the suite: a call that is
# bounded by the store's own deadlines (below a second here) ends long before it.
HANG_GUARD = 60.0
FAST = PoolLimits(max_size=2, min_size=1, command_timeout=0.5, acquire_timeout=0.5)


class BlackholeProxy:
    """Forwards loopback TCP to ``target`` until ``blackhole()``; from then on it still holds
    (and accepts) connections but moves no byte either way, like a dropped network route."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._forwarding = asyncio.Event()
        self._forwarding.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def blackhole(self) -> None:
        self._forwarding.clear()

    def restore(self) -> None:
        self._forwarding.set()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        await self._forwarding.wait()  # a connection made during the blackout just hangs
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers.append(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await source.read(65536):
                await self._forwarding.wait()  # bytes read in a blackout are never delivered
                sink.write(data)
                await sink.drain()


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with fresh_postgres_database("kg_faults") as url:
        yield url


@pytest.fixture
async def proxy(pg_url: str) -> AsyncIterator[BlackholeProxy]:
    parts = urlsplit(pg_url)
    blackhole = BlackholeProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await blackhole.start()
    yield blackhole
    await blackhole.close()


def through(url: str, proxy: BlackholeProxy) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
    return urlunsplit(parts._replace(netloc=f"{netloc}:{proxy.port}"))


async def _expect_unavailable(call: asyncio.Future[object] | object) -> StoreUnavailable:
    with pytest.raises(StoreUnavailable) as caught:
        await asyncio.wait_for(call, HANG_GUARD)  # type: ignore[arg-type]
    return caught.value


async def test_a_blackholed_connection_fails_calls_fast_then_recovers(
    pg_url: str, proxy: BlackholeProxy
) -> None:
    store = PostgresStore(through(pg_url, proxy), FAST)
    await store.open()
    try:
        await store.migrate()
        who = await owner(store)
        task = await insert(store, who)
        assert (await store.health()).ok
        proxy.blackhole()
        health = await asyncio.wait_for(store.health(), HANG_GUARD)
        assert not health.ok and health.reason
        # More calls than connections: some time out in their statement, the rest waiting for
        # a connection or opening a new one through the dead route.
        calls = [store.get_task_record(who.user_id, task.id) for _ in range(6)]
        calls.append(insert(store, who))
        for call in calls:
            error = await _expect_unavailable(call)
            assert error.retry_after > 0
        proxy.restore()
        # Connections whose statement hung were dropped: the pool opens fresh ones.
        assert await asyncio.wait_for(store.get_task_record(who.user_id, task.id), HANG_GUARD)
    finally:
        proxy.blackhole()  # closing must not wait on the dead route either
        await asyncio.wait_for(store.close(), HANG_GUARD)


async def test_a_pool_closed_under_a_call_and_a_closed_store_are_unavailable(
    pg_url: str,
) -> None:
    store = PostgresStore(pg_url, PoolLimits(max_size=2, min_size=1, acquire_timeout=0.5))
    await store.open()
    await store.migrate()
    who = await owner(store)
    task = await insert(store, who)
    # A statement still running when the process shuts its store down.
    running = asyncio.create_task(store.pool.fetchval("SELECT pg_sleep(30)"))
    await asyncio.sleep(0.2)
    await asyncio.wait_for(store.close(), HANG_GUARD)
    await _expect_unavailable(running)
    await _expect_unavailable(store.get_task_record(who.user_id, task.id))
    await _expect_unavailable(insert(store, who))


def test_driver_errors_of_an_outage_are_unavailable() -> None:
    import asyncpg

    # What asyncpg raises when a pool is torn down under a call during a fast shutdown.
    assert is_unavailable(asyncpg.exceptions.InternalClientError("pool is closed"))
    assert is_unavailable(StoreUnavailable("gone"))
    assert not is_unavailable(ValueError("a bug"))


def test_pool_size_follows_worker_concurrency_unless_set() -> None:
    def size(given: dict[str, str], env: dict[str, str] | None = None, api: bool = True) -> int:
        return load_settings(given, env or {}).postgres_pool_size_for(api=api)

    assert size({}) == 64 // 4 + 10
    assert size({}, api=False) == 64 // 4  # `kling-gateway worker`
    assert size({"worker_concurrency": "200"}) == 50 + 10
    assert size({"worker_concurrency": "1"}, api=False) == 2
    assert size({"worker": "false"}) == 10  # `serve --no-worker`
    assert size({}, {"KLING_GATEWAY_POSTGRES_POOL_SIZE": "7"}) == 7


def test_serve_opens_postgres_with_the_settings_pool(pg_url: str) -> None:
    settings = load_settings(
        {"database_url": pg_url, "postgres_command_timeout": "3", "postgres_acquire_timeout": "2"},
        {},
    )
    store = store_for(settings)
    assert isinstance(store, PostgresStore)
    assert store.limits == PoolLimits(max_size=26, command_timeout=3.0, acquire_timeout=2.0)
    worker_only = store_for(settings, api=False)
    assert isinstance(worker_only, PostgresStore) and worker_only.limits.max_size == 16


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("postgres_pool_size", "-1"),
        ("postgres_command_timeout", "0"),
        ("postgres_acquire_timeout", "-2"),
    ],
)
def test_bad_pool_settings_are_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value}, {})
