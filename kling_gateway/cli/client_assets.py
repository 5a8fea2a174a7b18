"""Client commands for a user's elements and voices (docs/contract.md §6.1):
`elements create|list|get|delete` and `voices create|list|get|delete`, through the SDK.

Output and exit codes as the other client commands (``cli/client.py``): JSON when stdout is not
a terminal, a readable summary when it is; an id that is not yours is exit 1 (``not_found``);
an asset that ended ``failed`` is exit 3.
"""

from __future__ import annotations

import argparse
from typing import Any

from kling_gateway.cli import client as common_cli
from kling_gateway.cli.tables import format_table
from kling_gateway.client import Client, Record
from kling_gateway.protocol.assets import ELEMENT_TAGS

EXIT_OK, EXIT_ERROR, EXIT_FAILED = common_cli.EXIT_OK, common_cli.EXIT_ERROR, 3


def add_asset_commands(commands: common_cli.SubParsers, common: argparse.ArgumentParser) -> None:
    _add_kind(commands, common, "elements", "element")
    _add_kind(commands, common, "voices", "voice")


def _add_kind(
    commands: common_cli.SubParsers, common: argparse.ArgumentParser, name: str, kind: str
) -> None:
    group = commands.add_parser(name, help=f"your {name} on a running gateway (§6.1)")
    actions = group.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", parents=[common], help=f"create a {kind}")
    create.add_argument("name", metavar="NAME", help="at most 20 characters")
    if kind == "element":
        create.add_argument("description", metavar="DESCRIPTION", help="at most 100 characters")
        create.add_argument("--front", metavar="URL", help="the frontal image")
        create.add_argument(
            "--image", action="append", default=[], metavar="URL",
            help="another view (1 to 3, repeat)",
        )  # fmt: skip
        create.add_argument("--video", metavar="URL", help="make it from a video instead")
        create.add_argument("--voice", metavar="VOICE_ID", help="bind one of your voices")
        create.add_argument("--tag", action="append", default=[], choices=ELEMENT_TAGS)
    else:
        source = create.add_mutually_exclusive_group(required=True)
        source.add_argument("--url", metavar="URL", help="a clean 5 to 30 s recording")
        source.add_argument("--video-id", metavar="ID", help="one of your videos with sound")
    create.add_argument("--async", dest="async_", action="store_true", help="do not wait")
    common_cli.set_handler(create, lambda c, a: _create(c, a, kind))
    listing = actions.add_parser("list", parents=[common], help=f"your {name}, newest first")
    listing.add_argument("--limit", type=int, default=20, help="1 to 100")
    listing.add_argument("--offset", type=int, default=0)
    common_cli.set_handler(listing, lambda c, a: _list(c, a, kind))
    for action, text in (("get", f"one {kind}"), ("delete", f"delete a {kind}")):
        parser = actions.add_parser(action, parents=[common], help=text)
        parser.add_argument("id", metavar="ID")
        common_cli.set_handler(parser, _one_handler(kind, action))


def _one_handler(kind: str, action: str) -> common_cli.Handler:
    def handler(client: Client, args: argparse.Namespace) -> int:
        return _one(client, args, kind, action)

    return handler


def _resource(client: Client, kind: str) -> Any:
    return client.elements if kind == "element" else client.voices


def _create(client: Client, args: argparse.Namespace, kind: str) -> int:
    if kind == "element":
        made = client.elements.create(
            args.name,
            args.description,
            frontal_image=args.front,
            refer_images=args.image or None,
            video_url=args.video,
            element_voice_id=args.voice,
            tag_ids=args.tag or None,
            async_=args.async_ or None,
        )
    else:
        made = client.voices.create(
            args.name, voice_url=args.url, video_id=args.video_id, async_=args.async_ or None
        )
    _print(made, args)
    return EXIT_FAILED if made.get("status") == "failed" else EXIT_OK


def _list(client: Client, args: argparse.Namespace, kind: str) -> int:
    page: Record = _resource(client, kind).list(limit=args.limit, offset=args.offset)
    if common_cli.as_json(args):
        common_cli.print_json(page)
        return EXIT_OK
    key = f"{kind}_id"
    rows = [
        [str(item.get(c, "")) for c in (key, f"{kind}_name", "status")] for item in page["items"]
    ]
    print(format_table([key.upper(), "NAME", "STATUS"], rows))
    print(f"{len(rows)} of {page['count']} {kind}(s)")
    return EXIT_OK


def _one(client: Client, args: argparse.Namespace, kind: str, action: str) -> int:
    resource = _resource(client, kind)
    found: Record = resource.retrieve(args.id) if action == "get" else resource.delete(args.id)
    if not found or found.get("deleted") is False:
        return common_cli.fail(f"not_found: no {kind} {args.id}", EXIT_ERROR)
    _print(found, args)
    return EXIT_OK


def _print(record: Record, args: argparse.Namespace) -> None:
    if common_cli.as_json(args):
        common_cli.print_json(record)
        return
    width = max((len(name) for name in record), default=0)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in record.items()))
