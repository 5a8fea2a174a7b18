"""`kling-gateway fairness set|list`: each user's share of the upstream slots in the fair
queue (domain/fair_queue.py). While several users have tasks waiting, a user of weight 2 gets
twice the slots of a user of weight 1; weights live in the store, so every worker uses them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import TYPE_CHECKING

from kling_gateway.cli.tables import format_table
from kling_gateway.runtime.settings import SettingsError, add_settings_arguments, load_settings

if TYPE_CHECKING:
    from kling_gateway.storage.base import Store


def add_fairness_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fairness = commands.add_parser("fairness", help="users' weights in the fair queue of slots")
    actions = fairness.add_subparsers(dest="fairness_command", required=True, metavar="ACTION")
    set_ = actions.add_parser("set", help="set a user's weight (1, the default, resets it)")
    set_.add_argument("--user", required=True, help="user name")
    set_.add_argument("--weight", type=float, required=True, help="share of slots (0 < W <= 1000)")
    set_.set_defaults(handler=_set)
    listing = actions.add_parser("list", help="the users whose weight is not 1")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_list)
    for sub in (set_, listing):
        add_settings_arguments(sub, ("store",))


def _set(args: argparse.Namespace) -> int:
    from kling_gateway.domain.fair_queue import WeightError, check_weight
    from kling_gateway.runtime.serve import with_store

    try:
        weight = check_weight(args.weight)
    except WeightError as exc:
        raise SettingsError(f"--weight: {exc}") from exc

    async def run(store: Store) -> bool:
        user_id = await store.find_user_id(args.user)
        if user_id is None:
            return False
        await store.set_fairness_weight(user_id, weight, time.time())
        return True

    if not asyncio.run(with_store(load_settings(args), run)):
        print(f"kling-gateway: no user named {args.user!r}", file=sys.stderr)
        return 1
    print(f"user {args.user}: weight {weight:g}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from kling_gateway.runtime.serve import with_store

    async def run(store: Store) -> list[dict[str, object]]:
        weights = await store.fairness_weights()
        names: dict[str, str] = {}
        for name in {c.user_name for c in await store.list_credentials()}:
            user_id = await store.find_user_id(name)
            if user_id is not None:
                names[user_id] = name
        return [
            {"user": names.get(user_id, ""), "user_id": user_id, "weight": weight}
            for user_id, weight in sorted(weights.items(), key=lambda item: -item[1])
        ]

    docs = asyncio.run(with_store(load_settings(args), run))
    if args.json:
        print(json.dumps(docs, indent=2))
        return 0
    rows = [(str(d["user"]), str(d["user_id"]), f"{d['weight']:g}") for d in docs]
    print(format_table(("USER", "USER ID", "WEIGHT"), rows))
    return 0
