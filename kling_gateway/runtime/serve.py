"""Running the gateway: the store's lifecycle, first-start bootstrap, uvicorn, the worker."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TypeVar

import uvicorn

from kling_gateway.api.app import GatewayApp, Service, create_app
from kling_gateway.api.context import AppContext, SigningSecrets
from kling_gateway.infra.notify import TaskEvents
from kling_gateway.runtime.objects import build_video_files, check_video_storage
from kling_gateway.runtime.settings import Settings, env_name, load_settings
from kling_gateway.runtime.startup import StartupError, startup_errors, where
from kling_gateway.storage import PoolLimits, Store, open_store
from kling_gateway.storage.lock import DataDirBusy, DataDirLock
from kling_gateway.storage.tokens import DEFAULT_USER, issue_token
from kling_gateway.storage.upstream_keys import Sealer

log = logging.getLogger("kling_gateway")
T = TypeVar("T")


def store_for(settings: Settings, *, api: bool = True) -> Store:
    """The store the settings name (not yet opened), its PostgreSQL pool sized (for a process
    running the API when ``api``, else the worker alone) and bounded."""
    limits = PoolLimits(
        max_size=settings.postgres_pool_size_for(api=api),
        command_timeout=settings.postgres_command_timeout,
        acquire_timeout=settings.postgres_acquire_timeout,
    )
    return open_store(settings.resolved_database_url, limits)


async def open_migrated(settings: Settings, *, api: bool = True) -> tuple[Store, list[str]]:
    """The store, open and migrated, with the migrations applied; a failure to get there is a
    ``StartupError`` naming the flag to fix. ``api``: see ``store_for``."""
    with startup_errors(settings):
        store = store_for(settings, api=api)
        try:
            await store.open()
            applied = await store.migrate()
        except BaseException:
            await store.close()
            raise
    return store, applied


async def with_store(settings: Settings, fn: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store (migrating it), run ``fn``, close it."""
    store, _ = await open_migrated(settings)
    try:
        return await fn(store)
    finally:
        await store.close()


async def migrate(settings: Settings) -> list[str]:
    store, applied = await open_migrated(settings)
    await store.close()
    return applied


def ensure_data_dir(settings: Settings) -> None:
    """The data directory exists and is a writable directory (videos go there)."""
    path = settings.data_dir
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"--data-dir: cannot create {path!r}: {exc.strerror or exc}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise StartupError(f"--data-dir: {path!r} is not writable")


async def check_redis(settings: Settings) -> None:
    """With --redis-required, a Redis that does not answer stops the start."""
    if not (settings.redis_url and settings.redis_required):
        return
    from kling_gateway.infra.redis import ping

    problem = await ping(settings.redis_url, timeout=max(1.0, settings.redis_timeout))
    if problem is not None:
        raise StartupError(
            f"--redis-url: cannot reach Redis at {where(settings.redis_url)}: {problem} "
            "(or leave --redis-required off to start without it)"
        )


async def bootstrap(settings: Settings, store: Store) -> str | None:
    """On a store with no token at all, create the default user's token and say how to use it."""
    if not settings.bootstrap_token or await store.count_credentials() > 0:
        return None
    issued = await issue_token(store, DEFAULT_USER, default_credits=settings.default_credits_value)
    url = settings.resolved_public_url
    print(
        f"\nCreated user '{DEFAULT_USER}' with an API token (shown only this once):\n\n"
        f"  {issued.token}\n\nTry it:\n\n"
        f"curl -X POST '{url}/kling/tasks' \\\n"
        "-H 'accept: application/json' \\\n"
        f"-H 'authorization: Bearer {issued.token}' \\\n"
        "-H 'content-type: application/json' \\\n"
        "-d '{\n"
        '  "id": "20068983-0cc9-4c6a-aeb6-9c6a3c668be0",\n'
        '  "action": "retrieve"\n'
        "}'\n",
        flush=True,
    )
    return issued.token


def build_events(settings: Settings) -> TaskEvents:
    if settings.redis_url:
        from kling_gateway.infra.redis import RedisTaskEvents

        return RedisTaskEvents(settings.redis_url, timeout=settings.redis_timeout)
    from kling_gateway.infra.notify import LocalTaskEvents

    return LocalTaskEvents()


def build_app(settings: Settings) -> GatewayApp:
    """The app as `serve` runs it: store by URL, the worker inside unless --no-worker."""
    from kling_gateway.infra.ratelimit import RateLimiter

    store = store_for(settings)
    limiter: RateLimiter | None = None
    if settings.redis_url and settings.rate_limit_per_minute:
        from kling_gateway.infra.redis import RedisRateLimiter

        limiter = RedisRateLimiter(
            settings.redis_url, settings.rate_limit_per_minute, timeout=settings.redis_timeout
        )
    services: list[Service] = [_answer_waiters_at_exit_signals]
    if settings.worker:
        services.append(_worker_service(settings))
    return create_app(
        settings,
        store,
        events=build_events(settings),
        limiter=limiter,
        services=services,
        files=build_video_files(settings),
        sealer=lambda: _server_sealer(settings),
        signing_secrets=_signing_secrets(store),
    )


def _signing_secrets(store: Store) -> SigningSecrets:
    """What `callbacks secret` does, for the admin API."""

    async def find(user_name: str, rotate: bool, grace_seconds: float) -> tuple[str, int] | None:
        from kling_gateway.callbacks import admin
        from kling_gateway.callbacks.secrets import secret_store_for

        try:
            found = await admin.user_secrets(
                secret_store_for(store), user_name, rotate=rotate, grace_seconds=grace_seconds
            )
        except admin.UnknownUser:
            return None
        return found.current, len(found.previous)

    return find


def _server_sealer(settings: Settings) -> Sealer:
    from kling_gateway.runtime.worker import server_sealer

    return server_sealer(settings)


async def _answer_waiters_at_exit_signals(ctx: AppContext) -> Callable[[], Awaitable[None]]:
    from kling_gateway.runtime.signals import chain_exit_signals

    return chain_exit_signals(ctx.waiters.close)


def _worker_service(
    settings: Settings,
) -> Callable[[AppContext], Awaitable[Callable[[], Awaitable[None]]]]:
    async def start(ctx: AppContext) -> Callable[[], Awaitable[None]]:
        from kling_gateway.runtime.worker import start_worker

        return await start_worker(settings, ctx.store, ctx.events, ctx.files)

    return start


def app_from_environment() -> GatewayApp:
    """uvicorn factory for `serve --processes N`: each process reads the same environment."""
    settings = load_settings()
    _configure_protocol(settings)
    return build_app(settings)


def _configure_protocol(settings: Settings) -> None:
    from kling_gateway.runtime.http_protocol import configure

    configure(settings.header_timeout, settings.body_timeout, settings.max_connections)


def serve(settings: Settings) -> int:
    ensure_data_dir(settings)
    lock = _lock_data_dir(settings)
    try:
        return _serve(settings)
    finally:
        if lock is not None:
            lock.release()


def _lock_data_dir(settings: Settings) -> DataDirLock | None:
    """One API process per SQLite data directory (see storage/lock.py for who takes it)."""
    if settings.uses_postgres:
        return None
    try:
        return DataDirLock(settings.data_dir).acquire()
    except DataDirBusy as exc:
        raise StartupError(f"--data-dir: {exc}") from exc


def _serve(settings: Settings) -> int:
    from kling_gateway.runtime.http_protocol import GuardedHttpToolsProtocol

    asyncio.run(_prepare(settings))
    _configure_protocol(settings)
    common = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": False,
        "loop": "uvloop",
        # httptools with deadlines for headers and bodies and a connection bound
        "http": GuardedHttpToolsProtocol,
        "timeout_keep_alive": settings.keep_alive_timeout,
        "timeout_graceful_shutdown": 30,
    }
    if settings.processes > 1:
        _warn_without_redis(settings)
        _export(settings)
        uvicorn.run(
            "kling_gateway.runtime.serve:app_from_environment",
            factory=True,
            workers=settings.processes,
            **common,  # type: ignore[arg-type]
        )
        return 0
    uvicorn.run(build_app(settings), **common)  # type: ignore[arg-type]
    return 0


async def _prepare(settings: Settings) -> None:
    ensure_data_dir(settings)
    await check_redis(settings)
    await check_video_storage(build_video_files(settings))
    await with_store(settings, lambda store: bootstrap(settings, store))


def _warn_without_redis(settings: Settings) -> None:
    if settings.redis_url:
        return
    log.warning(
        "%d API processes without redis_url: each keeps its own rate limit (%d x the limit in "
        "all), and a waiting request learns of changes made in another process only when it "
        "re-reads the store",
        settings.processes,
        settings.processes,
    )


def _export(settings: Settings) -> None:
    """Pass the resolved settings to the API processes through their environment."""
    import dataclasses

    for f in dataclasses.fields(settings):
        os.environ[env_name(f.name)] = str(getattr(settings, f.name))


def run_worker(settings: Settings) -> int:
    """`kling-gateway worker`: the worker alone, until SIGINT or SIGTERM."""
    asyncio.run(_run_worker(settings))
    return 0


async def _run_worker(settings: Settings) -> None:
    from kling_gateway.runtime.worker import start_worker

    ensure_data_dir(settings)
    await check_redis(settings)
    files = build_video_files(settings)
    await check_video_storage(files)
    store, _ = await open_migrated(settings, api=False)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(store.close)
        events = build_events(settings)
        await events.start()
        stack.push_async_callback(events.aclose)
        stack.push_async_callback(await start_worker(settings, store, events, files))
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, done.set)
        await done.wait()
        log.info("stopping the worker: no new claims, finishing or releasing tasks in hand")
