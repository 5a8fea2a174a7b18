"""`kling-gateway assets add`: register a user's upstream element or voice id (docs/contract.md
§6), one made outside the gateway (users make their own with POST /kling/elements and
/kling/voices, §6.1). The printed gateway id is what that user sends in `element_list` /
`voice_list`, and nobody else can use it."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import TYPE_CHECKING

from kling_gateway.domain.ids import ASSET_KINDS
from kling_gateway.runtime.settings import add_settings_arguments, load_settings

if TYPE_CHECKING:
    from kling_gateway.storage.base import Store


def add_assets_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    assets = commands.add_parser("assets", help="register users' element and voice ids")
    actions = assets.add_subparsers(dest="assets_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="register an upstream id; prints the gateway id alone")
    add.add_argument("--user", required=True, help="user name (created when new)")
    add.add_argument("--kind", required=True, choices=ASSET_KINDS)
    add.add_argument("--upstream-id", required=True, help="the Kling element_id or voice_id")
    add.set_defaults(handler=_assets_add)
    add_settings_arguments(add, ("store",))


def _assets_add(args: argparse.Namespace) -> int:
    from kling_gateway.runtime.serve import with_store

    upstream = args.upstream_id.strip()
    if not upstream:
        raise SystemExit("kling-gateway: --upstream-id must not be blank")

    async def run(store: Store) -> str:
        now = time.time()
        user_id, _ = await store.ensure_account(args.user, now)
        return await store.add_asset(user_id=user_id, kind=args.kind, upstream_id=upstream, now=now)

    print(asyncio.run(with_store(load_settings(args), run)))
    return 0
