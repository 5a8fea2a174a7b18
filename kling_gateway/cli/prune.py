"""`kling-gateway prune --older-than 30d [--dry-run]`: the retention sweep on demand."""

from __future__ import annotations

import argparse
import asyncio
import re
import time

from kling_gateway.runtime.settings import SettingsError, add_settings_arguments, load_settings

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([dhms]?)$")
_UNIT_SECONDS = {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0, "": 86_400.0}


def parse_age(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``90m``, ``3600s`` (a bare number is days)."""
    match = _AGE.match(text.strip())
    if match is None:
        raise SettingsError(f"--older-than must be like 30d, 12h, 90m or 3600s, not {text!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def add_prune_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    prune = commands.add_parser(
        "prune", help="remove finished tasks, their videos and callbacks older than an age"
    )
    prune.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 30d, 12h")
    prune.add_argument("--dry-run", action="store_true", help="only say what would go")
    add_settings_arguments(prune, ("store",))
    prune.set_defaults(handler=_prune)


def _prune(args: argparse.Namespace) -> int:
    from kling_gateway.runtime.objects import build_video_files, check_video_storage
    from kling_gateway.runtime.serve import with_store
    from kling_gateway.worker.retention import MAX_BATCHES, prune

    age = parse_age(args.older_than)
    settings = load_settings(args)
    files = build_video_files(settings)
    asyncio.run(check_video_storage(files))
    before = time.time() - age
    report = asyncio.run(
        with_store(
            settings,
            # A run on demand works the whole backlog off, still in bounded batches.
            lambda store: prune(
                store, files, before, dry_run=args.dry_run, max_batches=MAX_BATCHES * 100
            ),
        )
    )
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(report.tasks)} task(s) and {len(report.videos)} video(s)")
    for task_id in report.tasks:
        print(f"task {task_id}")
    for video_id in report.videos:
        print(f"video {video_id}")
    if not report.complete:
        print("stopped early: run it again for the rest")
        return 1
    return 0
