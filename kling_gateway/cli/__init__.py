"""The `kling-gateway` command: serve | worker | migrate | tokens | apps | usage | accounts |
fairness | tasks | videos | callbacks | status."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from kling_gateway import __version__
from kling_gateway.cli.argv import join_dash_values
from kling_gateway.cli.tables import format_table
from kling_gateway.runtime.settings import (
    Settings,
    SettingsError,
    add_settings_arguments,
    load_settings,
)
from kling_gateway.storage.base import CredentialInfo

STORE_GROUPS = ("store",)
Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kling-gateway",
        description="Self-hostable, wire-compatible gateway for Kling video generation.",
    )
    parser.add_argument("--version", action="version", version=f"kling-gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(commands)
    _add_worker(commands)
    _add_migrate(commands)
    _add_tokens(commands)
    from kling_gateway.cli import ops

    ops.add_ops_commands(commands)
    from kling_gateway.cli import accounts

    accounts.add_accounts_commands(commands)
    from kling_gateway.cli import apps

    apps.add_apps_commands(commands)
    from kling_gateway.cli.fairness import add_fairness_commands

    add_fairness_commands(commands)
    from kling_gateway.cli import assets

    assets.add_assets_command(commands)
    from kling_gateway.cli.backup import add_backup_command

    add_backup_command(commands)
    from kling_gateway.cli.prune import add_prune_command

    add_prune_command(commands)
    from kling_gateway.cli.status import add_status_command

    add_status_command(commands)
    from kling_gateway.cli import client

    client.add_client_commands(commands)
    return parser


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="run the API (and, by default, the worker)")
    add_settings_arguments(serve)
    serve.set_defaults(handler=_serve)


def _add_worker(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = commands.add_parser("worker", help="run only the worker")
    add_settings_arguments(
        worker, ("store", "worker", "kling", "callbacks", "server", "billing", "keys")
    )
    worker.set_defaults(handler=_worker)


def _add_migrate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    migrate = commands.add_parser("migrate", help="create or upgrade the database schema")
    add_settings_arguments(migrate, STORE_GROUPS)
    migrate.set_defaults(handler=_migrate)


def _add_tokens(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tokens = commands.add_parser("tokens", help="create, list and revoke API tokens")
    actions = tokens.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a token (printed once, alone, on stdout)")
    create.add_argument("--user", required=True, help="user name (created when new)")
    create.add_argument("--apis", default="kling.tasks,kling.videos", help="APIs it may call")
    create.add_argument("--expires-in", type=float, metavar="DAYS", help="lifetime in days")
    create.add_argument(
        "--admin", action="store_true", help="also grant the admin API (/admin/v1/, the dashboard)"
    )
    create.set_defaults(handler=_tokens_create)
    listing = actions.add_parser("list", help="list tokens (never the tokens themselves)")
    listing.set_defaults(handler=_tokens_list)
    revoke = actions.add_parser("revoke", help="revoke a token by its id or its prefix")
    revoke.add_argument("token", metavar="ID_OR_PREFIX")
    revoke.set_defaults(handler=_tokens_revoke)
    add_settings_arguments(create, ("store", "billing"))
    for sub in (listing, revoke):
        add_settings_arguments(sub, STORE_GROUPS)


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args)


def _serve(args: argparse.Namespace) -> int:
    from kling_gateway.runtime.serve import serve

    return serve(_settings(args))


def _worker(args: argparse.Namespace) -> int:
    from kling_gateway.runtime.serve import run_worker

    return run_worker(_settings(args))


def _migrate(args: argparse.Namespace) -> int:
    from kling_gateway.runtime.serve import migrate

    applied = asyncio.run(migrate(_settings(args)))
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


def _tokens_create(args: argparse.Namespace) -> int:
    from kling_gateway.runtime.serve import with_store
    from kling_gateway.storage.tokens import issue_token, parse_apis, with_admin

    try:
        apis = with_admin(parse_apis(args.apis), args.admin)
    except ValueError as exc:
        raise SettingsError(f"--apis: {exc}") from exc
    settings = _settings(args)
    issued = asyncio.run(
        with_store(
            settings,
            lambda s: issue_token(
                s,
                args.user,
                apis=apis,
                expires_in_days=args.expires_in,
                default_credits=settings.default_credits_value,
            ),
        )
    )
    print(issued.token)
    return 0


def _tokens_list(args: argparse.Namespace) -> int:
    from kling_gateway.runtime.serve import with_store

    rows = asyncio.run(with_store(_settings(args), lambda s: s.list_credentials()))
    now = time.time()
    lines = [
        (
            row.id,
            row.user_name,
            row.token_prefix,
            ",".join(row.apis),
            _when(row.created_at),
            _expires(row, now),
            _when(row.last_used_at) if row.last_used_at else "never",
            _token_status(row, now),
        )
        for row in rows
    ]
    header = ("ID", "USER", "PREFIX", "APIS", "CREATED", "EXPIRES", "LAST USED", "STATUS")
    print(format_table(header, lines))
    return 0


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _expires(row: CredentialInfo, now: float) -> str:
    if row.expires_at is None:
        return "never"
    return "expired" if row.expires_at <= now else _when(row.expires_at)


def _token_status(row: CredentialInfo, now: float) -> str:
    if row.revoked_at:
        return "revoked"
    return "expired" if row.expires_at is not None and row.expires_at <= now else "active"


def _tokens_revoke(args: argparse.Namespace) -> int:
    from kling_gateway.runtime.serve import with_store

    count = asyncio.run(
        with_store(_settings(args), lambda s: s.revoke_credential(args.token, time.time()))
    )
    print(f"revoked {count} token(s)")
    return 0 if count else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_dash_values(parser, sys.argv[1:] if argv is None else argv))
    # Before the settings are read (their errors are logged too): the flag, else its twin.
    level = getattr(args, "log_level", None) or os.environ.get("KLING_GATEWAY_LOG_LEVEL")
    fmt = getattr(args, "log_format", None) or os.environ.get("KLING_GATEWAY_LOG_FORMAT")
    from kling_gateway.runtime.log_format import configure_logging

    configure_logging(level or "info", fmt or "text")
    handler: Command = args.handler
    try:
        return handler(args)
    except SettingsError as exc:
        print(f"kling-gateway: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        from kling_gateway.cli.ops import server_extra_missing

        message = server_extra_missing(exc, args.command)
        if message is None:
            raise
        print(f"kling-gateway: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
