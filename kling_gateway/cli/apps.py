"""``kling-gateway apps list|show|grant|set|disable|enable|refund`` and ``kling-gateway usage``:
applications' credits and limits, and who used what (docs/billing.md).

A user's application is the one ``tokens create --user U`` made. Every command takes
``--json`` for scripts (the shapes of ``Application.as_json`` and ``UsageReport.as_json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from kling_gateway.cli.tables import format_table
from kling_gateway.runtime.settings import SettingsError, add_settings_arguments, load_settings

if TYPE_CHECKING:
    from kling_gateway.domain.billing import Application, UsageReport
    from kling_gateway.storage.base import Store

T = TypeVar("T")
_SINCE = re.compile(r"(?P<n>\d+(?:\.\d+)?)(?P<unit>[smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def add_apps_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    apps = commands.add_parser("apps", help="applications: credits, holds and limits")
    actions = apps.add_subparsers(dest="apps_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every application with its balance")
    listing.set_defaults(handler=_list)
    show = _user_action(actions, "show", "one user's application: balance, holds, limits")
    show.set_defaults(handler=_show)
    grant = _user_action(actions, "grant", "add credits (negative: take away); meters it")
    grant.add_argument("credits", type=int, metavar="CREDITS")
    grant.add_argument("--note", help="why, kept in the ledger")
    grant.set_defaults(handler=_grant)
    limits = _user_action(actions, "set", "change limits")
    limits.add_argument("--max-in-flight", type=int, required=True, metavar="N", help="0: no limit")
    limits.set_defaults(handler=_set)
    disable = _user_action(actions, "disable", "refuse the application's tokens")
    disable.set_defaults(handler=_disabled, disabled=True)
    enable = _user_action(actions, "enable", "accept them again")
    enable.set_defaults(handler=_disabled, disabled=False)
    refund = actions.add_parser("refund", help="give back what a succeeded task was charged")
    refund.add_argument("--task", required=True, help="the task id")
    refund.add_argument("--note", help="why, kept in the ledger")
    refund.set_defaults(handler=_refund)
    subs = [listing, show, grant, limits, disable, enable, refund]
    usage = commands.add_parser("usage", help="credits used per user, by day or model")
    usage.add_argument("--user", help="only this user")
    usage.add_argument("--since", default="30d", help="e.g. 7d, 24h, 90m (default 30d)")
    usage.add_argument("--by", choices=("day", "model"), help="one row per day or model")
    usage.set_defaults(handler=_usage)
    for sub in (*subs, usage):
        sub.add_argument("--json", action="store_true", help="print JSON instead of text")
        add_settings_arguments(sub, ("store",))


def _user_action(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], name: str, helptext: str
) -> argparse.ArgumentParser:
    sub = actions.add_parser(name, help=helptext)
    sub.add_argument("--user", required=True, help="user name")
    return sub


def parse_since(text: str, now: float) -> float:
    """``7d``, ``24h``, ``90m``, ``30s``, ``2w`` before ``now``; one line naming --since else."""
    match = _SINCE.fullmatch(text.strip())
    if match is None:
        raise SettingsError(f"--since must be like 7d, 24h or 90m, not {text!r}")
    return now - float(match["n"]) * _UNIT_SECONDS[match["unit"]]


def _run(args: argparse.Namespace, flow: Callable[[Store], Awaitable[T]]) -> T:
    from kling_gateway.runtime.serve import with_store

    return asyncio.run(with_store(load_settings(args), flow))


def _list(args: argparse.Namespace) -> int:
    apps = _run(args, lambda s: s.list_applications())
    if args.json:
        print(json.dumps([app.as_json() for app in apps], indent=2))
        return 0
    print(format_table(_HEADER, [_row(app) for app in apps]))
    return 0


_HEADER = ("USER", "METERED", "BALANCE", "HELD", "AVAILABLE", "IN FLIGHT", "MAX", "STATUS")


def _row(app: Application) -> tuple[str, ...]:
    available = "-" if app.available is None else str(app.available)
    limit = "-" if app.max_in_flight is None else str(app.max_in_flight)
    status = "disabled" if app.disabled else "enabled"
    metered = "yes" if app.metered else "no"
    cells = (app.balance, app.held, available, app.in_flight, limit)
    return (app.user_name, metered, *(str(c) for c in cells), status)


def _show(args: argparse.Namespace) -> int:
    return _print_app(args, _run(args, lambda s: s.find_application(args.user)))


def _print_app(args: argparse.Namespace, app: Application | None) -> int:
    if app is None:
        print(f"kling-gateway: no user named {args.user!r}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(app.as_json(), indent=2))
        return 0
    print(format_table(("FIELD", "VALUE"), _fields(app.as_json())))
    return 0


def _fields(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(key, "-" if value is None else str(value)) for key, value in doc.items()]


def _grant(args: argparse.Namespace) -> int:
    from kling_gateway.storage.base import UnknownApplication

    async def flow(store: Store) -> Application | None:
        try:
            return await store.grant_credits(args.user, args.credits, time.time(), note=args.note)
        except UnknownApplication:
            return None

    return _print_app(args, _run(args, flow))


def _set(args: argparse.Namespace) -> int:
    if args.max_in_flight < 0:
        raise SettingsError("--max-in-flight must be 0 (no limit) or more")
    return _change(args, max_in_flight=args.max_in_flight)


def _disabled(args: argparse.Namespace) -> int:
    return _change(args, disabled=args.disabled)


def _change(args: argparse.Namespace, **changes: Any) -> int:
    async def flow(store: Store) -> Application | None:
        if not await store.set_application(args.user, **changes):
            return None
        return await store.find_application(args.user)

    return _print_app(args, _run(args, flow))


def _refund(args: argparse.Namespace) -> int:
    credits = _run(args, lambda s: s.refund_task(args.task, time.time(), note=args.note))
    if args.json:
        print(json.dumps({"task_id": args.task, "refunded": credits}))
    else:
        print(f"refunded {credits} credits" if credits else "nothing to refund")
    # Once per task: a second refund, a failed task or an unknown id refund nothing.
    return 0 if credits else 1


def _usage(args: argparse.Namespace) -> int:
    from kling_gateway.domain.billing import usage_report

    since = parse_since(args.since, time.time())

    async def flow(store: Store) -> UsageReport:
        entries = await store.ledger_entries(user_name=args.user, since=since)
        return usage_report(entries, by=args.by, since=since)

    report = _run(args, flow)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
        return 0
    print(format_usage(report))
    return 0


def format_usage(report: UsageReport) -> str:
    """A row per user (and day or model), then the totals."""
    counts = ("tasks", "credits", "failed", "refunded")
    grouped = report.by is not None
    header = ["USER", *([str(report.by).upper()] if grouped else []), *(c.upper() for c in counts)]
    doc = report.as_json()
    rows = [
        [row["user"], *([row["key"]] if grouped else []), *(str(row[c]) for c in counts)]
        for row in doc["rows"]
    ]
    rows.append(["total", *([""] if grouped else []), *(str(doc["total"][c]) for c in counts)])
    return format_table(header, rows)
