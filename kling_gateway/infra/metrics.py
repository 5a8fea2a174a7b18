"""The gateway's Prometheus metrics kept in process memory (docs/operations.md, "Metrics").

What the store knows (tasks by state, the queue, account slots) is read at scrape time
(``infra.metrics_store``), never kept here. Everything here is a counter, a histogram or a
gauge of this process; under ``serve --processes N`` the runtime points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the API processes start, so each
process writes its values there and a scrape of any of them sums all (``exposition``).

Every metric has labels: their children (and so their values, which in multi-process mode are
files) are made on first use, after the runtime chose the mode, never at import. The hot
paths count in plain Python and add their counts to these metrics in batches
(``infra.request_metrics``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from kling_gateway.storage.base import StorageFull

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_NS = "kling_gateway"
# Request latencies: the hot paths answer in a millisecond or two; blocking calls wait minutes.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600)
# Queue waits and upstream calls: seconds to hours.
_WAIT = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)

# No `_created` series beside every counter and histogram: they double a scrape's size and
# say only when a process started (the process metrics of the scraper say that already).
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by route and status",
    ("route", "status"),
    namespace=_NS,
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request, by route",
    ("route",),
    namespace=_NS,
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
TASKS_CREATED = Counter(
    "tasks_created", "Tasks created (idempotent replays not counted), by kind", ("kind",),
    namespace=_NS, registry=REGISTRY,
)  # fmt: skip
TASKS_FINISHED = Counter(
    "tasks_finished", "Tasks that reached a final state, by kind and state", ("kind", "state"),
    namespace=_NS, registry=REGISTRY,
)  # fmt: skip
QUEUE_WAIT = Histogram(
    "queue_wait_seconds",
    "Time from a task's create to its first submission upstream, by kind",
    ("kind",),
    namespace=_NS,
    buckets=_WAIT,
    registry=REGISTRY,
)
WORKER_SLOTS = Gauge(
    "worker_slots",
    "Task slots of the workers in this deployment's processes: in use or total",
    ("slots",),
    namespace=_NS,
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
PROVIDER_ERRORS = Counter(
    "provider_errors",
    "Provider calls (submit, check, fetch) that answered an error, by provider and error code",
    ("provider", "code"),
    namespace=_NS,
    registry=REGISTRY,
)
UPSTREAM_CALLS = Counter(
    "upstream_calls",
    "Calls to the Kling API, by call and upstream code (0: success; transport errors by name)",
    ("call", "code"),
    namespace=_NS,
    registry=REGISTRY,
)
UPSTREAM_DURATION = Histogram(
    "upstream_call_duration_seconds",
    "Time of one call to the Kling API, by call",
    ("call",),
    namespace=_NS,
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
ACCOUNT_SIGNALS = Counter(
    "upstream_account_signals",
    "Upstream answers that made an account full (1302/1303) or disabled it (1100-1103, 401)",
    ("account", "signal"),
    namespace=_NS,
    registry=REGISTRY,
)
CALLBACK_ATTEMPTS = Counter(
    "callback_attempts",
    "Callback delivery attempts, by outcome: delivered, retrying (failed, tried again later) "
    "or failed (gave up)",
    ("outcome",),
    namespace=_NS,
    registry=REGISTRY,
)
STORAGE_ERRORS = Counter(
    "storage_errors",
    "Store operations that failed, by where (api, worker, callbacks) and kind "
    "(unavailable, full, error)",
    ("where", "kind"),
    namespace=_NS,
    registry=REGISTRY,
)


_CREATED: dict[str, Counter] = {}


def count_created(kind: str) -> None:
    counter = _CREATED.get(kind)
    if counter is None:  # bound once per kind
        counter = _CREATED[kind] = TASKS_CREATED.labels(kind)
    counter.inc()


_FINISHED: dict[tuple[str, str], Counter] = {}


def count_finished(kind: str, state: str) -> None:
    counter = _FINISHED.get((kind, state))
    if counter is None:
        counter = _FINISHED[(kind, state)] = TASKS_FINISHED.labels(kind, state)
    counter.inc()


def count_provider_error(provider: str, code: str) -> None:
    PROVIDER_ERRORS.labels(provider, code).inc()


def count_upstream_call(call: str, code: str, seconds: float) -> None:
    UPSTREAM_CALLS.labels(call, code).inc()
    UPSTREAM_DURATION.labels(call).observe(seconds)


def count_storage_error(where: str, exc: BaseException) -> None:
    """A store call that failed with ``exc``, counted by what it means (storage.classify)."""
    from kling_gateway.storage.errors import classify  # storage sits beside infra

    typed = classify(exc)
    kind = "error" if typed is None else "full" if isinstance(typed, StorageFull) else "unavailable"
    STORAGE_ERRORS.labels(where, kind).inc()


def multiprocess_dir() -> str | None:
    """The directory of multi-process mode, when the runtime chose it (see the module doc)."""
    return os.environ.get(MULTIPROC_ENV) or None


def exposition() -> bytes:
    """This process's metrics, or with ``PROMETHEUS_MULTIPROC_DIR`` every process's, in the
    Prometheus text format."""
    directory = multiprocess_dir()
    if directory is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def serve_metrics(host: str, port: int) -> Callable[[], None]:
    """/metrics of this process on ``host:port`` in a thread of its own (a worker started
    alone serves no HTTP otherwise); returns what stops it."""
    server, thread = start_http_server(port, addr=host, registry=REGISTRY)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


def process_exiting() -> None:
    """Drop this process's live gauges (worker slots) from the multi-process sums."""
    if multiprocess_dir() is not None:
        mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
