"""Typed settings. Every option has a CLI flag and a ``KLING_GATEWAY_*`` environment twin.

Precedence: a flag given on the command line, then the environment, then the default. Settings
are read once (``load_settings``) and passed in; nothing reads the environment elsewhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kling_gateway.domain.pricing import DEFAULT_TABLE, PriceError, PriceTable, parse_table

ENV_PREFIX = "KLING_GATEWAY_"
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# PostgreSQL connections an API process needs beside its worker's (requests hold one only
# for the length of a statement or a short transaction) ...
API_POOL_CONNECTIONS = 10
# ... and a worker's fewest: its claim loop and its callback deliverer.
WORKER_POOL_MIN = 2
# The callback secret is a URL path segment and the only guard of that route.
_CALLBACK_SECRET = re.compile(r"[A-Za-z0-9_-]{16,}")


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


def _opt(default: Any, help: str, group: str) -> Any:
    return field(default=default, metadata={"help": help, "group": group})


@dataclass(frozen=True, slots=True)
class Settings:
    # -- where it runs
    host: str = _opt("127.0.0.1", "address to listen on", "server")
    port: int = _opt(8000, "port to listen on", "server")
    public_url: str = _opt(
        "", "absolute base URL clients reach (default http://HOST:PORT)", "server"
    )
    processes: int = _opt(1, "number of API processes (needs PostgreSQL when > 1)", "server")
    log_level: str = _opt("info", "log level: debug, info, warning, error", "server")
    log_format: str = _opt(
        "text", "log lines as text or json (one JSON object a line, uvicorn's too)", "server"
    )
    access_log: bool = _opt(
        False, "log one line per request (route, status, duration, trace id, user)", "server"
    )
    cors_origins: str = _opt(
        "", "origins browsers may call the API from, comma-separated, * for any (empty: none)",
        "server",
    )  # fmt: skip
    # -- storage
    data_dir: str = _opt("./data", "directory for the SQLite database and video files", "store")
    database_url: str = _opt(
        "", "sqlite:///PATH or postgresql://... (default: SQLite in DATA_DIR)", "store"
    )
    redis_url: str = _opt("", "redis://... for shared rate limits and notifications", "store")
    redis_required: bool = _opt(
        False, "refuse to start while Redis is unreachable (off: start degraded)", "store"
    )
    redis_timeout: float = _opt(
        0.25, "deadline of one Redis call, in seconds (then degraded for a while)", "store"
    )
    postgres_pool_size: int = _opt(
        0,
        "PostgreSQL connections per process (0: worker concurrency / 4, + 10 with the API)",
        "store",
    )
    postgres_command_timeout: float = _opt(
        10.0, "seconds one PostgreSQL statement may run before the call fails (503)", "store"
    )
    postgres_acquire_timeout: float = _opt(
        5.0, "seconds a call waits for a PostgreSQL connection before it fails (503)", "store"
    )
    storage_url: str = _opt(
        "",
        "where videos are stored: file://DIR or s3://BUCKET/PREFIX (default DATA_DIR/videos)",
        "store",
    )
    s3_endpoint_url: str = _opt(
        "",
        "S3-compatible endpoint for s3:// storage (empty: AWS; credentials from AWS_*)",
        "store",
    )
    storage_presign: bool = _opt(
        False, "serve /files/ by redirecting to a presigned URL (s3:// storage)", "store"
    )
    files_public_url: str = _opt(
        "", "base URL of video links in records, e.g. a CDN (default: PUBLIC_URL)", "store"
    )
    retention_days: float = _opt(
        0.0,
        "remove finished tasks, their videos and callbacks after this many days (0: never)",
        "store",
    )
    retention_sweep_seconds: float = _opt(
        3600.0, "how often a worker sweeps for expired tasks (with retention_days)", "store"
    )
    # -- the API
    max_body_bytes: int = _opt(1_048_576, "largest request body accepted, in bytes", "server")
    header_timeout: float = _opt(10.0, "seconds a client has to send a request's headers", "server")
    body_timeout: float = _opt(30.0, "seconds a client has to send a request's body", "server")
    keep_alive_timeout: float = _opt(
        5.0, "seconds an idle keep-alive connection stays open", "server"
    )
    max_connections: int = _opt(
        1000, "concurrent connections per API process (503 beyond them)", "server"
    )
    rate_limit_per_minute: int = _opt(600, "requests per minute per token (0: no limit)", "server")
    auth_cache_seconds: float = _opt(5.0, "how long a verified token is cached", "server")
    batch_max_ids: int = _opt(1000, "most ids in one retrieve_batch", "server")
    blocking_wait_seconds: float = _opt(
        600.0,
        "how long a blocking /kling/videos call waits before 504 (and the longest MCP wait)",
        "server",
    )
    bootstrap_token: bool = _opt(
        True, "create a default user and token when the store is empty", "server"
    )
    # -- credits (docs/billing.md)
    prices: str = _opt(
        "",
        "price table file, TOML or JSON (default: the built-in table of docs/billing.md)",
        "billing",
    )
    default_credits: str = _opt(
        "unmetered",
        "credits a new application starts with ('unmetered': never refused for credits)",
        "billing",
    )
    # -- the worker
    worker: bool = _opt(
        True, "run the worker inside `serve` (--no-worker to leave it out)", "worker"
    )
    provider: str = _opt("local", "video provider: local or kling", "worker")
    local_delay: float = _opt(5.0, "local provider: seconds of simulated processing", "worker")
    local_render: bool = _opt(
        True, "local provider: render real MP4s (off: no file, for benches)", "worker"
    )
    local_max_side: int = _opt(
        0, "local provider: cap on the longer frame side (0: true size)", "worker"
    )
    local_render_threads: int = _opt(
        0, "local provider: renders run at once, in a pool of their own (0: CPU count)", "worker"
    )
    worker_concurrency: int = _opt(64, "tasks driven at once by one worker", "worker")
    lease_seconds: float = _opt(120.0, "how long a claimed task stays with its worker", "worker")
    metrics_port: int = _opt(
        0, "`kling-gateway worker` alone: serve its /metrics on this port of HOST (0: none)",
        "worker",
    )  # fmt: skip
    idle_poll_seconds: float = _opt(
        1.0, "longest sleep of an idle worker between looks for work", "worker"
    )
    check_interval: float = _opt(5.0, "first wait between checks of a task in progress", "worker")
    check_max_interval: float = _opt(60.0, "longest wait between checks (backoff cap)", "worker")
    provider_timeout: float = _opt(30.0, "deadline of one provider call, in seconds", "worker")
    task_deadline_seconds: float = _opt(3600.0, "a task not finished by then fails", "worker")
    image_max_bytes: int = _opt(20_000_000, "largest start/end image fetched", "worker")
    # -- the official Kling API
    kling_base_url: str = _opt(
        "https://api-singapore.klingai.com", "official Kling API base URL", "kling"
    )
    kling_access_key: str = _opt("", "Kling access key", "kling")
    kling_secret_key: str = _opt("", "Kling secret key", "kling")
    kling_max_concurrency: int = _opt(
        1000,
        "slots of the account of kling_access_key, stored once as the account 'default' "
        "(then changed with the accounts command)",
        "kling",
    )
    kling_callback_secret: str = _opt(
        "", "secret in the URL Kling calls back (empty: no callbacks)", "kling"
    )
    kling_download_results: bool = _opt(
        True, "copy finished videos into the gateway's file store", "kling"
    )
    kling_download_timeout: float = _opt(
        300.0, "deadline of copying one finished video, in seconds", "kling"
    )
    # -- callbacks to clients
    callback_timeout: float = _opt(
        10.0, "deadline of one callback attempt, in seconds", "callbacks"
    )
    callback_allow_private: bool = _opt(
        False,
        "allow callback, image and result-download URLs on loopback/private networks",
        "callbacks",
    )
    callback_retry_schedule: str = _opt(
        "5,30,120,600,1800,3600,7200,14400,28800,43200",
        "seconds between callback attempts, comma-separated",
        "callbacks",
    )

    # -- the server key (its own group: `accounts add` has a --secret-key of its own)
    secret_key: str = _opt(
        "",
        "server key sealing stored secrets, 32 bytes in URL-safe base64; the same for every "
        "process (empty: DATA_DIR/secret.key, made on first start)",
        "keys",
    )

    # -- derived values
    @property
    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{Path(self.data_dir) / 'kling-gateway.db'}"

    @property
    def uses_postgres(self) -> bool:
        return self.resolved_database_url.startswith(_POSTGRES_SCHEMES)

    def postgres_pool_size_for(self, *, api: bool) -> int:
        """Connections for a process that runs the API (``api``) and/or the worker. A task in
        flight holds a connection only for its store calls (a claim, a save: milliseconds of
        its seconds in flight), so a quarter of the worker's concurrency keeps its saves from
        queueing; several processes share PostgreSQL's max_connections (100 by default)."""
        if self.postgres_pool_size:
            return self.postgres_pool_size
        worker = max(WORKER_POOL_MIN, -(-self.worker_concurrency // 4)) if self.worker else 0
        return worker + (API_POOL_CONNECTIONS if api else 0)

    @property
    def resolved_files_url(self) -> str:
        return (self.files_public_url or self.resolved_public_url).rstrip("/")

    @property
    def videos_dir(self) -> Path:
        return Path(self.data_dir) / "videos"

    @property
    def retry_schedule(self) -> tuple[float, ...]:
        return _parse_schedule(self.callback_retry_schedule)

    @property
    def price_table(self) -> PriceTable:
        return load_price_table(self.prices)

    @property
    def default_credits_value(self) -> int | None:
        """``default_credits`` as a number of credits; None: unmetered."""
        return _parse_credits(self.default_credits)

    def validate(self) -> Settings:
        _check_bounds(self)
        _check_storage(self)
        if self.check_max_interval < self.check_interval:
            raise SettingsError(
                f"{flag_of('check_max_interval')} must be at least {flag_of('check_interval')}"
            )
        if self.lease_seconds <= self.provider_timeout:
            raise SettingsError("lease_seconds must be longer than provider_timeout")
        if self.log_format not in ("text", "json"):
            flag = flag_of("log_format")
            raise SettingsError(f"{flag} must be text or json, not {self.log_format!r}")
        if self.provider not in ("local", "kling"):
            raise SettingsError(f"provider must be 'local' or 'kling', not {self.provider!r}")
        if self.provider == "kling" and not (self.kling_access_key and self.kling_secret_key):
            raise SettingsError("provider 'kling' needs kling_access_key and kling_secret_key")
        if self.kling_callback_secret and not _CALLBACK_SECRET.fullmatch(
            self.kling_callback_secret
        ):
            raise SettingsError(
                "kling_callback_secret must be at least 16 characters of A-Z, a-z, 0-9, _ and -"
            )
        if self.secret_key:
            _check_secret_key(self.secret_key)
        if not self.resolved_database_url.startswith(("sqlite:///", *_POSTGRES_SCHEMES)):
            raise SettingsError("database_url must start with sqlite:/// or postgresql://")
        if self.processes > 1 and not self.uses_postgres:
            # SQLite is the one-process setup; several API processes (each possibly with a
            # worker) belong on the shared store.
            raise SettingsError(
                "processes > 1 needs PostgreSQL: set database_url to postgresql://... "
                "(with SQLite, run one process)"
            )
        self.retry_schedule  # noqa: B018 - parses, raising SettingsError when malformed
        self.price_table  # noqa: B018 - reads the file once, raising SettingsError
        self.default_credits_value  # noqa: B018
        return self


def flag_of(name: str) -> str:
    """How an error names a setting: its field name and its flag (``x_y (--x-y)``)."""
    return f"{name} (--{name.replace('_', '-')})"


_DAY = 86_400.0
# (smallest, largest) of every numeric setting. Intervals have a floor well above 0: an
# interval of 0 (or 1e-9) is a hot loop against the store or the upstream.
BOUNDS: dict[str, tuple[float, float]] = {
    "port": (1, 65_535),
    "processes": (1, 256),
    "max_body_bytes": (1_024, 1 << 30),
    "rate_limit_per_minute": (0, 10_000_000),
    "auth_cache_seconds": (0, 3_600),
    "batch_max_ids": (1, 100_000),
    "blocking_wait_seconds": (0.1, _DAY),
    "local_delay": (0, _DAY),
    "local_max_side": (0, 8_192),
    "local_render_threads": (0, 1_024),
    "worker_concurrency": (1, 10_000),
    "postgres_pool_size": (0, 10_000),  # 0: sized from the worker concurrency
    "postgres_command_timeout": (0.1, _DAY),
    "postgres_acquire_timeout": (0.1, 3_600),
    "lease_seconds": (1, _DAY),
    "idle_poll_seconds": (0.01, 3_600),
    "check_interval": (0.01, _DAY),
    "check_max_interval": (0.01, 7 * _DAY),
    "provider_timeout": (0.1, _DAY),
    "task_deadline_seconds": (1, 30 * _DAY),
    "image_max_bytes": (1, 1 << 30),
    "kling_download_timeout": (0.1, _DAY),
    "kling_max_concurrency": (1, 100_000),
    "callback_timeout": (0.1, 3_600),
    "header_timeout": (0.1, 3_600),
    "body_timeout": (0.1, 3_600),
    "keep_alive_timeout": (0.1, 3_600),
    "max_connections": (1, 1_000_000),
    "metrics_port": (0, 65_535),
    "redis_timeout": (0.01, 60),
    "retention_days": (0, 36_500),
    "retention_sweep_seconds": (1, _DAY),
}


def _check_storage(settings: Settings) -> None:
    """The storage URL's form (reaching the store is checked at start: runtime/objects.py)."""
    from kling_gateway.infra.objects import StorageConfigError, open_object_store

    try:
        open_object_store(
            settings.storage_url,
            default_dir=settings.videos_dir,
            s3_endpoint_url=settings.s3_endpoint_url,
            environ={},
        )
    except StorageConfigError as exc:
        raise SettingsError(str(exc)) from exc
    if settings.storage_presign and not settings.storage_url.startswith("s3://"):
        raise SettingsError("--storage-presign needs --storage-url s3://BUCKET/PREFIX")


def _check_secret_key(text: str) -> None:
    from kling_gateway.storage.crypto import SecretKeyError, parse_key

    try:
        parse_key(text)
    except SecretKeyError as exc:
        raise SettingsError(f"{flag_of('secret_key')}: {exc}") from exc


def _check_bounds(settings: Settings) -> None:
    for name, (low, high) in BOUNDS.items():
        value = getattr(settings, name)
        # `not low <= value` also refuses NaN, which every comparison answers False.
        if not low <= value <= high:
            raise SettingsError(f"{flag_of(name)} must be from {low:g} to {high:g}, not {value!r}")


def _parse_schedule(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise SettingsError(f"callback_retry_schedule is not a list of numbers: {text!r}") from exc
    if not values or any(v < 0 for v in values):
        raise SettingsError("callback_retry_schedule needs at least one non-negative number")
    return values


def _parse_credits(text: str) -> int | None:
    if text.strip().lower() == "unmetered":
        return None
    try:
        value = int(text)
    except ValueError as exc:
        raise SettingsError(
            f"{flag_of('default_credits')} must be a whole number of credits or 'unmetered', "
            f"not {text!r}"
        ) from exc
    if value < 0:
        raise SettingsError(f"{flag_of('default_credits')} must be >= 0, not {value}")
    return value


@functools.cache
def load_price_table(path: str) -> PriceTable:
    """The table of ``--prices`` (read once per process; empty: the built-in default)."""
    if not path:
        return DEFAULT_TABLE
    try:
        raw = Path(path).read_bytes()
        data = json.loads(raw) if path.endswith(".json") else tomllib.loads(raw.decode())
        if not isinstance(data, dict):
            raise PriceError("the file must hold a table (a JSON object)")
        return parse_table(data)
    except OSError as exc:
        raise SettingsError(f"{flag_of('prices')}: cannot read {path}: {exc.strerror}") from exc
    except (ValueError, tomllib.TOMLDecodeError) as exc:  # PriceError and JSON errors too
        raise SettingsError(f"{flag_of('prices')}: {path}: {exc}") from exc


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _fields(groups: Iterable[str] | None) -> list[dataclasses.Field[Any]]:
    wanted = set(groups) if groups is not None else None
    return [
        f for f in dataclasses.fields(Settings) if wanted is None or f.metadata["group"] in wanted
    ]


def add_settings_arguments(
    parser: argparse.ArgumentParser, groups: Iterable[str] | None = None
) -> None:
    """Add a flag per setting; the help names the environment twin and the default."""
    for f in _fields(groups):
        flag = "--" + f.name.replace("_", "-")
        text = f"{f.metadata['help']} [env {env_name(f.name)}; default {f.default!r}]"
        if f.type in ("bool", bool):
            parser.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text
            )
        else:
            parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=text)


def _convert(name: str, kind: str, raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from exc
    if kind == "bool":
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise SettingsError(f"{name} must be true or false, not {raw!r}")
    return raw


def load_settings(
    args: argparse.Namespace | Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build validated settings from flags, then the environment, then the defaults."""
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        raw = overrides.get(f.name, given.get(f.name))
        if raw is None:
            raw = env.get(env_name(f.name))
        if raw is not None:
            values[f.name] = _convert(f.name, str(f.type), raw)
    return Settings(**values).validate()


def settings_table() -> list[tuple[str, str, str, str]]:
    """(flag, environment variable, default, help) for every setting: the README's table."""
    return [
        ("--" + f.name.replace("_", "-"), env_name(f.name), repr(f.default), f.metadata["help"])
        for f in dataclasses.fields(Settings)
    ]
