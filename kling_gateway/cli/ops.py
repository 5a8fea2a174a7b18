"""Operator commands beside the server: callbacks (list, redeliver, secret) and fake-upstream.

Building the parser imports nothing of the server: `kling-gateway` must start in an install
without the `server` extra (the SDK alone), where these commands answer with one line naming
the extra (``server_extra_missing``) instead of an ImportError.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from kling_gateway.runtime.settings import SettingsError, add_settings_arguments, load_settings

if TYPE_CHECKING:
    from kling_gateway.storage.base import Store


# Importing any of these fails in an SDK-only install (see pyproject.toml's `server` extra).
SERVER_MODULES = frozenset(
    {"starlette", "uvicorn", "av", "numpy", "PIL", "asyncpg", "redis", "obstore"}
    | {"prometheus_client"}
)
SERVER_EXTRA = "pip install 'kling-gateway[server]'"


def server_extra_missing(exc: ModuleNotFoundError, command: str) -> str | None:
    """The one line to print when ``command`` needs the server extra; ``None`` for any
    other missing module (a real bug, left to raise)."""
    missing = (exc.name or "").partition(".")[0]
    if missing not in SERVER_MODULES:
        return None
    return f"`{command}` is a server command and needs {missing}: {SERVER_EXTRA}"


def add_ops_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_callbacks(commands)
    # The fake's options belong to the fake (`python -m kling_gateway.fake_upstream` parses the
    # same ones), and importing it imports Starlette: its own parser reads them at run time.
    # No prefix character here makes every word, `--port` too, a word for that parser.
    fake = commands.add_parser(
        "fake-upstream",
        help="run a faithful fake of the official Kling API (for trying `kling`)",
        add_help=False,
        prefix_chars="\0",
    )
    fake.add_argument("fake_argv", nargs="*", metavar="OPTIONS")
    fake.set_defaults(handler=_fake_upstream)


def _add_callbacks(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    callbacks = commands.add_parser("callbacks", help="inspect and redeliver callbacks; secrets")
    actions = callbacks.add_subparsers(dest="callbacks_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list callback deliveries, newest first")
    listing.add_argument("--task", help="only this task's deliveries")
    listing.add_argument(
        "--failed",
        action="store_true",
        help="only deliveries failing now: retrying after a failed attempt, or given up",
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_callbacks_list)
    redeliver = actions.add_parser("redeliver", help="queue a delivery again, now")
    redeliver.add_argument("delivery_id", metavar="ID")
    redeliver.set_defaults(handler=_callbacks_redeliver)
    secret = actions.add_parser("secret", help="print (or rotate) a user's signing secret")
    secret.add_argument("--user", required=True, help="user name")
    secret.add_argument("--rotate", action="store_true", help="make a new secret")
    secret.add_argument(
        "--grace",
        type=float,
        default=86400.0,
        metavar="SECONDS",
        help="how long the old secret keeps signing after --rotate",
    )
    secret.set_defaults(handler=_callbacks_secret)
    for sub in (listing, redeliver):
        add_settings_arguments(sub, ("store",))
    add_settings_arguments(secret, ("store", "keys"))


def _callbacks_list(args: argparse.Namespace) -> int:
    from kling_gateway.callbacks import admin
    from kling_gateway.cli import callbacks as printing
    from kling_gateway.runtime.serve import with_store

    rows = asyncio.run(
        with_store(load_settings(args), lambda s: admin.list_deliveries(s, args.task, args.failed))
    )
    print(printing.format_json(rows) if args.json else printing.format_table(rows))
    return 0


def _callbacks_redeliver(args: argparse.Namespace) -> int:
    from kling_gateway.callbacks import admin
    from kling_gateway.cli import callbacks as printing
    from kling_gateway.runtime.serve import with_store

    queued = asyncio.run(
        with_store(load_settings(args), lambda s: admin.redeliver(s, args.delivery_id))
    )
    print(printing.format_redeliver(args.delivery_id, queued))
    return 0 if queued else 1


def _callbacks_secret(args: argparse.Namespace) -> int:
    from kling_gateway.callbacks import admin
    from kling_gateway.callbacks.secrets import secret_store_for
    from kling_gateway.cli import callbacks as printing
    from kling_gateway.runtime.serve import with_store
    from kling_gateway.runtime.worker import server_sealer
    from kling_gateway.storage.crypto import SecretKeyError

    settings = load_settings(args)
    sealer = server_sealer(settings)

    async def run(store: Store) -> admin.UserSecrets:
        secrets = secret_store_for(store, sealer)
        return await admin.user_secrets(
            secrets, args.user, rotate=args.rotate, grace_seconds=args.grace
        )

    try:
        found = asyncio.run(with_store(settings, run))
    except admin.UnknownUser as exc:
        print(f"kling-gateway: {exc}", file=sys.stderr)
        return 1
    except SecretKeyError as exc:
        raise SettingsError(f"--secret-key: {exc}") from exc
    print(printing.format_secrets(found, args.grace))
    return 0


def _fake_upstream(args: argparse.Namespace) -> int:
    from kling_gateway.fake_upstream.__main__ import parse_args, run

    run(parse_args(args.fake_argv))
    return 0
