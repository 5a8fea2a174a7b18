"""The gauges read from the store at scrape time (``Store.stats``), in the Prometheus format.

Read by whichever process is scraped, so under ``--processes N`` they are not summed over the
processes (the store is shared: each would report the same numbers).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kling_gateway.domain.accounts import Account, AccountState
from kling_gateway.storage.stats import StoreStats

_NS = "kling_gateway_"
ACCOUNT_STATES = ("enabled", "disabled", "full", "run_out")


def account_state(account: Account, now: float) -> str:
    """One word for what an account can do now: take work, or why not."""
    if account.state is AccountState.DISABLED:
        return "disabled"
    if account.packs_run_out:
        return "run_out"
    return "full" if now < account.full_until else "enabled"


class StatsCollector(Collector):
    """``stats`` as gauges; ``stats`` None: the store did not answer (``store_up`` 0)."""

    def __init__(self, stats: StoreStats | None, now: float) -> None:
        self._stats, self._now = stats, now

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(_NS + "store_up", "Whether the store answered this scrape")
        up.add_metric([], 0 if self._stats is None else 1)
        yield up
        if self._stats is not None:
            yield from self._tasks(self._stats)
            yield from self._accounts(self._stats.accounts)

    def _tasks(self, stats: StoreStats) -> Iterator[Metric]:
        text = "Unfinished tasks in the store, by kind and state"
        tasks = GaugeMetricFamily(_NS + "tasks", text, labels=("kind", "state"))
        for (kind, state), count in sorted(stats.tasks.items()):
            tasks.add_metric([kind, state], count)
        yield tasks
        yield _gauge("queue_depth", "Tasks waiting to be submitted upstream", stats.queue_depth)
        oldest = stats.oldest_waiting
        age = 0.0 if oldest is None else max(0.0, self._now - oldest.created_at)
        yield _gauge("queue_oldest_wait_seconds", "Age of the oldest waiting task (0: none)", age)
        leases = sum(stats.in_flight_by_worker.values())
        yield _gauge("tasks_leased", "Tasks a worker holds a live lease on, in all workers", leases)
        yield _gauge(
            "callbacks_pending", "Callback deliveries still to make", stats.callbacks_pending
        )
        yield _gauge(
            "callbacks_retrying",
            "Callback deliveries still to make whose earlier attempts failed",
            stats.callbacks_retrying,
        )

    def _accounts(self, accounts: tuple[Account, ...]) -> Iterator[Metric]:
        labels = ("account",)
        slots = GaugeMetricFamily(_NS + "upstream_account_slots", "Max concurrency", labels=labels)
        used = GaugeMetricFamily(
            _NS + "upstream_account_slots_in_use", "Slots held by tasks in flight", labels=labels
        )
        state = GaugeMetricFamily(
            _NS + "upstream_account_state",
            "1 for the account's current state: enabled, disabled, full (backing off after "
            "1302/1303) or run_out (no resource packs left)",
            labels=("account", "state"),
        )
        for account in accounts:
            slots.add_metric([account.name], account.max_concurrency)
            used.add_metric([account.name], account.in_flight)
            current = account_state(account, self._now)
            for name in ACCOUNT_STATES:
                state.add_metric([account.name, name], 1 if name == current else 0)
        yield from (slots, used, state)


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(_NS + name, text)
    gauge.add_metric([], value)
    return gauge


def stats_exposition(stats: StoreStats | None, now: float) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats, now))
    return generate_latest(registry)
