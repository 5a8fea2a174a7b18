"""Running the gateway: the store's lifecycle, first-start bootstrap, uvicorn, the worker."""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import TypeVar

import uvicorn

from kling_gateway.api.app import GatewayApp, Service, create_app
from kling_gateway.api.context import AppContext, SigningSecrets
from kling_gateway.api.observe import Probe
from kling_gateway.infra.notify import TaskEvents
from kling_gateway.runtime.assets import build_assets
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


def build_events(settings: Settings, *, task_changes: bool = True) -> TaskEvents:
    """``task_changes``: whether this process serves waiters of tasks (API processes do; a
    stand-alone worker needs only the wake-ups)."""
    if settings.redis_url:
        from kling_gateway.infra.redis import RedisTaskEvents

        return RedisTaskEvents(
            settings.redis_url, task_changes=task_changes, timeout=settings.redis_timeout
        )
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
    assets, start_assets = build_assets(settings, store)
    if start_assets is not None:
        services.append(start_assets)
    if settings.worker:
        services.append(_worker_service(settings))
    sealer = _loaded_sealer(settings)
    return create_app(
        settings,
        store,
        events=build_events(settings),
        limiter=limiter,
        services=services,
        files=build_video_files(settings),
        probes=readiness_probes(settings),
        assets=assets,
        sealer=sealer,
        signing_secrets=None if sealer is None else _signing_secrets(store, sealer),
    )


def readiness_probes(settings: Settings) -> tuple[Probe, ...]:
    """What /readyz checks beside the store and the object storage: Redis when configured
    (a gateway that runs degraded without it is still not ready in the way it was set up)."""
    if not settings.redis_url:
        return ()
    from kling_gateway.infra.redis import ping

    url, timeout = settings.redis_url, max(1.0, settings.redis_timeout)
    return (Probe("redis", lambda: ping(url, timeout=timeout)),)


def _signing_secrets(store: Store, sealer: Sealer) -> SigningSecrets:
    """What `callbacks secret` does, for the admin API (secrets sealed under the server key)."""

    async def find(user_name: str, rotate: bool, grace_seconds: float) -> tuple[str, int] | None:
        from kling_gateway.callbacks import admin
        from kling_gateway.callbacks.secrets import secret_store_for

        try:
            found = await admin.user_secrets(
                secret_store_for(store, sealer),
                user_name,
                rotate=rotate,
                grace_seconds=grace_seconds,
            )
        except admin.UnknownUser:
            return None
        return found.current, len(found.previous)

    return find


def _loaded_sealer(settings: Settings) -> Sealer | None:
    """The server key's box, read once for the app's lifetime. `serve` has already refused to
    start on a bad key (``prepare_secrets``); for any other composition a key that can't be
    loaded leaves the endpoints that seal with it answering 503, and says why here once."""
    from kling_gateway.runtime.worker import server_sealer

    try:
        return server_sealer(settings)
    except StartupError as exc:
        log.warning("no server key, so the admin API cannot seal secrets: %s", exc)
        return None


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
    from kling_gateway.runtime.log_format import configure_logging

    configure_logging(settings.log_level, settings.log_format)  # a new process: no handler yet
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
        # uvicorn's records go to the root logger in --log-format (runtime/log_format.py);
        # the access log is the app's (--access-log): it knows the trace id and the user.
        "log_config": None,
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
        with multiprocess_metrics():
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
    await with_store(settings, lambda store: _first_steps(settings, store))


async def _first_steps(settings: Settings, store: Store) -> None:
    from kling_gateway.runtime.worker import prepare_secrets

    await prepare_secrets(settings, store)
    await bootstrap(settings, store)


def _warn_without_public_url(settings: Settings) -> None:
    """Records link videos by a stable path that the API resolves, but the callbacks this
    worker delivers are resolved here: without a public URL they name this worker's host."""
    if settings.public_url or settings.files_public_url:
        return
    log.warning(
        "worker without --public-url or --files-public-url: the video links in the callbacks "
        "it delivers start with %s; give it the API's public URL",
        settings.resolved_files_url,
    )


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


@contextmanager
def multiprocess_metrics() -> Iterator[None]:
    """Metrics summed over the API processes: each writes its values into one directory
    (``PROMETHEUS_MULTIPROC_DIR``, read by the processes when they start), made empty here
    and removed at the end; one the operator set is used, emptied of earlier runs' files."""
    from kling_gateway.infra.metrics import MULTIPROC_ENV

    given = os.environ.get(MULTIPROC_ENV)
    directory = given or tempfile.mkdtemp(prefix="kling-gateway-metrics-")
    os.makedirs(directory, exist_ok=True)
    for stale in glob.glob(os.path.join(directory, "*.db")):
        os.unlink(stale)
    os.environ[MULTIPROC_ENV] = directory
    try:
        yield
    finally:
        if given is None:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(directory, ignore_errors=True)


def _serve_worker_metrics(settings: Settings) -> Callable[[], None]:
    from kling_gateway.infra.metrics import serve_metrics

    try:
        return serve_metrics(settings.host, settings.metrics_port)
    except OSError as exc:
        where_ = f"{settings.host}:{settings.metrics_port}"
        raise StartupError(f"--metrics-port: cannot listen on {where_}: {exc.strerror}") from exc


def run_worker(settings: Settings) -> int:
    """`kling-gateway worker`: the worker alone, until SIGINT or SIGTERM."""
    asyncio.run(_run_worker(settings))
    return 0


async def _run_worker(settings: Settings) -> None:
    from kling_gateway.runtime.worker import prepare_secrets, start_worker

    ensure_data_dir(settings)
    await check_redis(settings)
    files = build_video_files(settings)
    await check_video_storage(files)
    _warn_without_public_url(settings)
    store, _ = await open_migrated(settings, api=False)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(store.close)
        await prepare_secrets(settings, store)
        if settings.metrics_port:
            stack.callback(_serve_worker_metrics(settings))
        events = build_events(settings, task_changes=False)
        await events.start()
        stack.push_async_callback(events.aclose)
        stack.push_async_callback(await start_worker(settings, store, events, files))
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, done.set)
        await done.wait()
        log.info("stopping the worker: no new claims, finishing or releasing tasks in hand")
