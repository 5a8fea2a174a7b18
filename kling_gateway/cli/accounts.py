"""``kling-gateway accounts add|list|disable|enable|remove``: the upstream Kling accounts.

The account's keys use ``dest`` names of their own: ``--secret-key`` here is the account's
Kling secret, not the server key setting (that one comes from KLING_GATEWAY_SECRET_KEY or
DATA_DIR/secret.key for this command). A secret key is never printed; ``-`` reads it from
stdin so it stays out of the process list.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from kling_gateway.cli.tables import format_table
from kling_gateway.runtime.settings import SettingsError, add_settings_arguments, load_settings

if TYPE_CHECKING:
    from kling_gateway.domain.accounts import Account
    from kling_gateway.storage.base import Store, UpstreamAccountRow
    from kling_gateway.storage.upstream_keys import Sealer


def add_accounts_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    accounts = commands.add_parser("accounts", help="upstream Kling accounts (keys, slots)")
    actions = accounts.add_subparsers(dest="accounts_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add an account (its secret key is sealed at rest)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--access-key", dest="account_access_key", required=True)
    add.add_argument(
        "--secret-key", dest="account_secret_key", required=True, help="'-': read from stdin"
    )
    add.add_argument("--max-concurrency", type=int, default=5, help="the account's slots")
    add.add_argument("--models", default="", help="comma-separated; default: every model")
    add.add_argument("--weight", type=float, default=1.0, help="share of work among accounts")
    add.add_argument("--base-url", dest="account_base_url", default=None)
    add.set_defaults(handler=_add)
    listing = actions.add_parser("list", help="state, in flight / max, packs, last error")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_list)
    subs = [add, listing]
    for action, helptext in (
        ("disable", "take no new work"),
        ("enable", "take work again"),
        ("remove", "forget it"),
    ):
        sub = actions.add_parser(action, help=helptext)
        sub.add_argument("name", metavar="NAME")
        if action == "disable":
            sub.add_argument("--reason", default="disabled by an operator")
        sub.set_defaults(handler=_change)
        subs.append(sub)
    for sub in subs:
        add_settings_arguments(sub, ("store",))


def account_from_args(args: argparse.Namespace) -> Account:
    from kling_gateway.domain.accounts import AccountNameError, new_account

    models = frozenset(m.strip() for m in args.models.split(",") if m.strip())
    try:
        return new_account(
            args.name,
            args.account_access_key,
            max_concurrency=args.max_concurrency,
            models=models,
            weight=args.weight,
            base_url=args.account_base_url,
        )
    except AccountNameError as exc:
        if exc.field == "name":
            raise SettingsError(str(exc)) from exc
        raise SettingsError(f"--{exc.field.replace('_', '-')} {exc.rule}") from exc


def _secret(args: argparse.Namespace) -> str:
    secret = (
        sys.stdin.readline().strip() if args.account_secret_key == "-" else args.account_secret_key
    )
    if not secret:
        raise SettingsError("--secret-key is empty")
    return str(secret)


def _run(args: argparse.Namespace, fn: Any) -> Any:
    from kling_gateway.runtime.serve import with_store
    from kling_gateway.runtime.worker import server_sealer

    settings = load_settings(args)
    sealer = server_sealer(settings)
    return asyncio.run(with_store(settings, lambda store: fn(store, sealer)))


def _add(args: argparse.Namespace) -> int:
    from kling_gateway.storage.base import AccountExists
    from kling_gateway.storage.upstream_keys import add_account

    account, secret = account_from_args(args), _secret(args)

    async def run(store: Store, sealer: Sealer) -> None:
        await add_account(store, sealer, account, secret)

    try:
        _run(args, run)
    except AccountExists as exc:
        print(f"kling-gateway: {exc}", file=sys.stderr)
        return 1
    print(f"added account {account.name} ({account.max_concurrency} slots)")
    return 0


def _list(args: argparse.Namespace) -> int:
    async def run(store: Store, _sealer: Sealer) -> list[UpstreamAccountRow]:
        return await store.list_upstream_accounts()

    from kling_gateway.domain.accounts import account_view

    rows: list[UpstreamAccountRow] = _run(args, run)
    docs = [account_view(row.account) for row in rows]
    if args.json:
        print(json.dumps(docs, indent=2))
        return 0
    columns = ("NAME", "STATE", "IN FLIGHT", "MODELS", "WEIGHT", "PACKS", "LAST ERROR")
    lines = [
        (
            d["name"],
            d["state"],
            f"{d['in_flight']}/{d['max_concurrency']}",
            ",".join(d["models"]) or "*",
            f"{d['weight']:g}",
            _packs(d),
            d["last_error"] or "",
        )
        for d in docs
    ]
    print(format_table(columns, lines))
    return 0


def _packs(doc: dict[str, Any]) -> str:
    if doc["packs_checked_at"] is None:
        return "unknown"
    if doc["packs_run_out"]:
        return "run out"
    return f"{doc['packs_remaining']:g}"


def _change(args: argparse.Namespace) -> int:
    from kling_gateway.domain.accounts import AccountState
    from kling_gateway.storage.base import AccountBusy

    action = args.accounts_command

    async def run(store: Store, _sealer: Sealer) -> bool:
        if action == "remove":
            return await store.remove_upstream_account(args.name)
        state = AccountState.ENABLED if action == "enable" else AccountState.DISABLED
        return await store.set_upstream_account_state(
            args.name, state, getattr(args, "reason", None)
        )

    try:
        changed = _run(args, run)
    except AccountBusy as exc:
        print(f"kling-gateway: {exc}; disable it and wait for them to end", file=sys.stderr)
        return 1
    if not changed:
        print(f"kling-gateway: no account named {args.name!r}", file=sys.stderr)
        return 1
    print(
        f"{action}d account {args.name}" if action != "remove" else f"removed account {args.name}"
    )
    return 0
