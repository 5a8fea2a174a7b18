"""`kling-gateway status`: the queue, in-flight tasks per worker and per upstream account, the
oldest waiting task and the callbacks still to deliver, read from the store
(``Store.stats``, the numbers /metrics reports)."""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import msgspec

from kling_gateway.cli.tables import format_table
from kling_gateway.runtime.settings import add_settings_arguments, load_settings
from kling_gateway.storage.stats import StoreStats


def add_status_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = commands.add_parser(
        "status", help="queue depth, in-flight tasks per worker and account, oldest waiting task"
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_settings_arguments(status, ("store",))
    status.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    from kling_gateway.runtime.serve import with_store

    now = time.time()
    stats = asyncio.run(with_store(load_settings(args), lambda store: store.stats(now)))
    print(format_json(stats, now) if args.json else format_status(stats, now))
    return 0


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_status(stats: StoreStats, now: float) -> str:
    from kling_gateway.infra.metrics_store import account_state

    unfinished = sum(stats.tasks.values())
    lines = [f"tasks unfinished: {unfinished}"]
    lines += [f"  {kind} {state}: {n}" for (kind, state), n in sorted(stats.tasks.items())]
    lines.append(f"queue depth: {stats.queue_depth} waiting to be submitted")
    oldest = stats.oldest_waiting
    if oldest is not None:
        age = max(0.0, now - oldest.created_at)
        created = _when(oldest.created_at)
        lines.append(f"oldest waiting: {oldest.task_id}, created {created} ({age:.0f} s ago)")
    lines.append(f"callbacks: {stats.callbacks_pending} to deliver, "
                 f"{stats.callbacks_retrying} of them retrying")  # fmt: skip
    lines += ["", "in flight per worker (live leases):"]
    workers = sorted(stats.in_flight_by_worker.items())
    lines.append(format_table(("WORKER", "TASKS"), [(w, str(n)) for w, n in workers]) if workers
                 else "  none")  # fmt: skip
    lines += ["", "in flight per upstream account:"]
    accounts = [
        (a.name, f"{a.in_flight}/{a.max_concurrency}", account_state(a, now), a.last_error or "-")
        for a in stats.accounts
    ]
    lines.append(format_table(("ACCOUNT", "IN FLIGHT", "STATE", "LAST ERROR"), accounts)
                 if accounts else "  none")  # fmt: skip
    return "\n".join(lines)


def format_json(stats: StoreStats, now: float) -> str:
    from kling_gateway.infra.metrics_store import account_state

    oldest = stats.oldest_waiting
    doc: dict[str, Any] = {
        "tasks": [
            {"kind": kind, "state": state, "count": n}
            for (kind, state), n in sorted(stats.tasks.items())
        ],
        "queue_depth": stats.queue_depth,
        "oldest_waiting": None
        if oldest is None
        else {"task_id": oldest.task_id, "created_at": oldest.created_at},
        "in_flight_by_worker": stats.in_flight_by_worker,
        "accounts": [
            {
                "name": a.name,
                "in_flight": a.in_flight,
                "max_concurrency": a.max_concurrency,
                "state": account_state(a, now),
                "last_error": a.last_error,
            }
            for a in stats.accounts
        ],
        "callbacks_pending": stats.callbacks_pending,
        "callbacks_retrying": stats.callbacks_retrying,
    }
    return msgspec.json.format(msgspec.json.encode(doc)).decode()
