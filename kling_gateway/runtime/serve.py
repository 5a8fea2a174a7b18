"""Running the gateway: the store's lifecycle, first-start bootstrap, uvicorn, the worker."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

import uvicorn

from kling_gateway.api.app import GatewayApp, create_app
from kling_gateway.api.context import AppContext
from kling_gateway.infra.notify import TaskEvents
from kling_gateway.runtime.settings import Settings, env_name, load_settings
from kling_gateway.storage import Store, open_store
from kling_gateway.storage.tokens import DEFAULT_USER, issue_token

log = logging.getLogger("kling_gateway")
T = TypeVar("T")


async def with_store(settings: Settings, fn: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store (migrating it), run ``fn``, close it."""
    store = open_store(settings.resolved_database_url)
    await store.open()
    try:
        await store.migrate()
        return await fn(store)
    finally:
        await store.close()


async def migrate(settings: Settings) -> list[str]:
    store = open_store(settings.resolved_database_url)
    await store.open()
    try:
        return await store.migrate()
    finally:
        await store.close()


async def bootstrap(settings: Settings, store: Store) -> str | None:
    """On a store with no token at all, create the default user's token and say how to use it."""
    if not settings.bootstrap_token or await store.count_credentials() > 0:
        return None
    issued = await issue_token(store, DEFAULT_USER)
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

        return RedisTaskEvents(settings.redis_url)
    from kling_gateway.infra.notify import LocalTaskEvents

    return LocalTaskEvents()


def build_app(settings: Settings) -> GatewayApp:
    """The app as `serve` runs it: store by URL, the worker inside unless --no-worker."""
    from kling_gateway.infra.ratelimit import RateLimiter

    store = open_store(settings.resolved_database_url)
    limiter: RateLimiter | None = None
    if settings.redis_url and settings.rate_limit_per_minute:
        from kling_gateway.infra.redis import RedisRateLimiter

        limiter = RedisRateLimiter(settings.redis_url, settings.rate_limit_per_minute)
    services = [_worker_service(settings)] if settings.worker else []
    return create_app(
        settings, store, events=build_events(settings), limiter=limiter, services=services
    )


def _worker_service(
    settings: Settings,
) -> Callable[[AppContext], Awaitable[Callable[[], Awaitable[None]]]]:
    async def start(ctx: AppContext) -> Callable[[], Awaitable[None]]:
        from kling_gateway.runtime.worker import start_worker

        return await start_worker(settings, ctx.store, ctx.events)

    return start


def app_from_environment() -> GatewayApp:
    """uvicorn factory for `serve --processes N`: each process reads the same environment."""
    return build_app(load_settings())


def serve(settings: Settings) -> int:
    asyncio.run(_prepare(settings))
    common = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": False,
        "loop": "uvloop",
        "http": "httptools",
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
    os.makedirs(settings.data_dir, exist_ok=True)
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

    store = open_store(settings.resolved_database_url)
    await store.open()
    await store.migrate()
    events = build_events(settings)
    await events.start()
    stop = await start_worker(settings, store, events)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    log.info("stopping the worker: no new claims, finishing or releasing tasks in hand")
    await stop()
    await events.aclose()
    await store.close()
