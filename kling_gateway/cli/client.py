"""Client commands against a running gateway: `tasks get|batch|list|wait`, `videos create`, and
the §7 kinds' `motion|lip-sync|talking-photo create` (``client_kinds.py``).

They talk HTTP through the SDK (``kling_gateway.client.Client``), so they work against any
server the SDK does (this gateway, or the hosted service). Results go to stdout: JSON when
stdout is not a terminal (for scripts and pipes), a readable table when it is. Progress while
waiting goes to stderr: one line rewritten in place on a terminal, plain lines otherwise.

Exit codes: 0 done; 1 an API or transport error (``kling-gateway: <code>: <message>`` on
stderr), or an unknown task; 2 a usage error; 3 the task finished as failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, TextIO, TypeAlias

import httpx

from kling_gateway.cli.tables import format_table
from kling_gateway.client import Client, KlingError, Record, task_outcome, task_state
from kling_gateway.protocol.enums import (
    ACTIONS,
    ASPECT_RATIOS,
    IMAGE_REF_TYPES,
    MODELS,
    MODES,
    VIDEO_REFER_TYPES,
)

DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_TASK_FAILED = 0, 1, 2, 3
# A string: argparse's class is generic only to type checkers.
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Handler = Callable[[Client, argparse.Namespace], int]


class UsageError(Exception):
    """A command line that cannot be run (reported like argparse does, exit 2)."""


def add_client_commands(commands: SubParsers) -> None:
    from kling_gateway.cli.client_kinds import add_kind_commands

    common = _connection_options()
    _add_tasks(commands, common)
    _add_videos(commands, common)
    add_kind_commands(commands, common)


def _connection_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection")
    group.add_argument(
        "--base-url",
        default=os.environ.get("KLING_GATEWAY_URL") or DEFAULT_URL,
        help=f"gateway URL (env KLING_GATEWAY_URL, default {DEFAULT_URL})",
    )
    group.add_argument(
        "--token",
        default=os.environ.get("KLING_GATEWAY_TOKEN"),
        help="API token (env KLING_GATEWAY_TOKEN)",
    )
    group.add_argument(
        "--json", action="store_true", help="print JSON even when stdout is a terminal"
    )
    return common


def _add_tasks(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    tasks = commands.add_parser("tasks", help="look up and wait for tasks on a running gateway")
    actions = tasks.add_subparsers(dest="tasks_command", required=True, metavar="ACTION")
    get = actions.add_parser("get", parents=[common], help="one task's record")
    get.add_argument("id", metavar="ID")
    set_handler(get, _tasks_get)
    batch = actions.add_parser("batch", parents=[common], help="several tasks, in the order given")
    batch.add_argument("ids", nargs="+", metavar="ID")
    set_handler(batch, _tasks_batch)
    listing = actions.add_parser("list", parents=[common], help="your tasks, newest first")
    listing.add_argument(
        "--type", help="only tasks of this type (videos, motion, lip-sync, talking-photo)"
    )
    listing.add_argument("--since", type=float, metavar="EPOCH", help="created at or after")
    listing.add_argument("--until", type=float, metavar="EPOCH", help="created at or before")
    listing.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    set_handler(listing, _tasks_list)
    wait = actions.add_parser("wait", parents=[common], help="wait until a task is finished")
    wait.add_argument("id", metavar="ID")
    wait.add_argument("--timeout", type=float, default=600.0, help="seconds (default 600)")
    set_handler(wait, _tasks_wait)


def _add_videos(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    videos = commands.add_parser("videos", help="create videos on a running gateway")
    actions = videos.add_subparsers(dest="videos_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", parents=[common], help="create a video task")
    create.add_argument("prompt", metavar="PROMPT", nargs="?", help="not needed with --shot")
    create.add_argument("--action", choices=ACTIONS, default="text2video")
    # Choices from protocol/ (docs/contract.md §2), the server's own lists. The model stays
    # free text: the hosted service, which the SDK also speaks to, may know newer ones.
    create.add_argument(
        "--model", help=f"the server's default otherwise; this gateway has {', '.join(MODELS)}"
    )
    create.add_argument("--mode", choices=MODES)
    create.add_argument("--duration", type=float, help="seconds")
    create.add_argument("--aspect-ratio", choices=ASPECT_RATIOS)
    create.add_argument("--start-image-url", help="image2video: the first frame")
    create.add_argument("--video-id", help="extend: the video to extend")
    # docs/contract.md §6
    create.add_argument(
        "--image-ref", action="append", default=[], metavar="URL[:first_frame|:end_frame]",
        help="an Omni image reference (repeat for more)",
    )  # fmt: skip
    create.add_argument(
        "--video-ref", metavar="URL[:base|:feature]", help="an Omni video reference"
    )
    create.add_argument(
        "--shot", action="append", default=[], metavar="SECONDS:PROMPT",
        help="a storyboard shot, in order (repeat for each)",
    )  # fmt: skip
    create.add_argument("--element", action="append", default=[], metavar="ID")
    create.add_argument("--voice", action="append", default=[], metavar="ID")
    create.add_argument("--audio", action="store_true", help="generate an audio track")
    add_wait_options(create)
    set_handler(create, _videos_create)


def add_wait_options(create: argparse.ArgumentParser) -> None:
    """``--wait``, ``--output``, ``--timeout`` of every create command."""
    create.add_argument("--wait", action="store_true", help="wait until the video is ready")
    create.add_argument(
        "--output", type=Path, metavar="FILE.mp4", help="save the video here (implies --wait)"
    )
    create.add_argument("--timeout", type=float, default=600.0, help="seconds to wait")


def set_handler(parser: argparse.ArgumentParser, handler: Handler) -> None:
    def run(args: argparse.Namespace) -> int:
        return _run(handler, args)

    parser.set_defaults(handler=run)


def _run(handler: Handler, args: argparse.Namespace) -> int:
    # The SDK's HTTP library logs every request at INFO: noise between progress lines.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        if not args.token:
            raise UsageError("a token is required: --token or KLING_GATEWAY_TOKEN")
        with Client(args.base_url, token=args.token) as client:
            return handler(client, args)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except KlingError as exc:
        return _fail(f"{exc.code}: {exc.message}", EXIT_ERROR)


def _fail(message: str, code: int) -> int:
    print(f"kling-gateway: {message}", file=sys.stderr)
    return code


# -- the commands ------------------------------------------------------------------------------


def _tasks_get(client: Client, args: argparse.Namespace) -> int:
    record = client.tasks.retrieve(args.id)
    if not record:
        return _fail(f"not_found: no task {args.id}", EXIT_ERROR)
    _print_record(record, args)
    return EXIT_OK


def _tasks_batch(client: Client, args: argparse.Namespace) -> int:
    batch = client.tasks.retrieve_batch(args.ids)
    _print_records(batch.get("items") or [], args)
    return EXIT_OK


def _tasks_list(client: Client, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    found = client.tasks.list(
        type=args.type,
        created_at_min=args.since,
        created_at_max=args.until,
        page_size=min(args.limit, 100),
    )
    _print_records(list(islice(found, args.limit)), args)
    return EXIT_OK


def _tasks_wait(client: Client, args: argparse.Namespace) -> int:
    return _finish(_wait(client, args.id, args.timeout), args)


def _videos_create(client: Client, args: argparse.Namespace) -> int:
    extra = section_6_fields(args)
    created = client.videos.create(
        args.prompt,
        action=args.action,
        model=args.model,
        mode=args.mode,
        duration=extra.pop("duration", args.duration),
        aspect_ratio=args.aspect_ratio,
        start_image_url=args.start_image_url,
        video_id=args.video_id,
        async_=True,
        **extra,
    )
    return after_create(client, created, args)


def after_create(client: Client, created: Record, args: argparse.Namespace) -> int:
    """The answer of an asynchronous create: printed, or waited for (and the video saved
    with ``--output``)."""
    if not (args.wait or args.output):
        _print_record(created, args)
        return EXIT_OK
    record = _wait(client, str(created["task_id"]), args.timeout)
    if args.output is not None and task_outcome(record) == "succeeded":
        _download(_video_url(record), args.output)
    return _finish(record, args)


def _suffixed(value: str, suffixes: tuple[str, ...]) -> tuple[str, str | None]:
    """``URL:suffix`` split when the suffix is one of ``suffixes`` (a URL has colons too)."""
    head, _, tail = value.rpartition(":")
    return (head, tail) if head and tail in suffixes else (value, None)


def _shot(index: int, value: str) -> dict[str, Any]:
    seconds, sep, prompt = value.partition(":")
    if not sep or not seconds.strip().isdigit() or not prompt.strip():
        raise KlingError(f"--shot {value!r}: expected SECONDS:PROMPT", code="bad_argument")
    return {"index": index, "prompt": prompt.strip(), "duration": int(seconds)}


def section_6_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The §6 fields of ``videos create``'s flags (docs/contract.md §6); only those given."""
    fields: dict[str, Any] = {}
    images = []
    for value in args.image_ref:
        url, kind = _suffixed(value, IMAGE_REF_TYPES)
        images.append({"image_url": url, **({"type": kind} if kind else {})})
    if images:
        fields["image_list"] = images
    if args.video_ref:
        url, refer = _suffixed(args.video_ref, VIDEO_REFER_TYPES)
        fields["video_list"] = [{"video_url": url, **({"refer_type": refer} if refer else {})}]
    if args.shot:
        shots = [_shot(i, value) for i, value in enumerate(args.shot, start=1)]
        fields.update(multi_shot=True, shot_type="customize", multi_prompt=shots)
        if args.duration is None:
            fields["duration"] = sum(s["duration"] for s in shots)
    if args.element:
        fields["element_list"] = [{"element_id": e} for e in args.element]
    if args.voice:
        fields["voice_list"] = [{"voice_id": v} for v in args.voice]
    if args.audio:
        fields["generate_audio"] = True
    return fields


def _wait(client: Client, task_id: str, timeout: float) -> Record:
    with Progress(sys.stderr, task_id) as progress:
        return client.tasks.wait(task_id, timeout=timeout, on_update=progress.update)


def _finish(record: Record, args: argparse.Namespace) -> int:
    _print_record(record, args)
    return EXIT_OK if task_outcome(record) == "succeeded" else EXIT_TASK_FAILED


def _video_url(record: Record) -> str:
    url = (record.get("response") or {}).get("video_url")
    if not isinstance(url, str) or not url:
        raise KlingError("the finished task has no video_url", code="no_video_url")
    return url


def _download(url: str, target: Path) -> None:
    """Stream the video to ``target`` through a temporary name, so a failed download leaves
    no partial file behind."""
    partial = target.with_name(target.name + ".part")
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=60.0) as response:
            response.raise_for_status()
            with partial.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        partial.replace(target)
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise KlingError(f"downloading {url} failed: {exc}", code="download_failed") from exc
    print(f"saved {target}", file=sys.stderr)


# -- output ------------------------------------------------------------------------------------


class Progress:
    """The state of the task being waited for, on ``stream`` (stderr).

    On a terminal the line is redrawn every ``TICK`` seconds: a long poll answers only when
    the task finishes, so without the ticking clock the display would look frozen.
    """

    TICK = 1.0

    def __init__(self, stream: TextIO, task_id: str) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._task_id = task_id
        self._state = "waiting"
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> Progress:
        self._show()
        if self._tty:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopped.set()
        if self._ticker is not None:
            self._ticker.join()
            self._write("\n")

    def update(self, record: Record) -> None:
        self._state = task_state(record) or "unknown"
        self._show()

    def _tick(self) -> None:
        while not self._stopped.wait(self.TICK):
            self._show()

    def _show(self) -> None:
        elapsed = time.monotonic() - self._started
        line = f"task {self._task_id}: {self._state} ({elapsed:.0f} s)"
        # On a terminal: carriage return and clear-to-end redraw the one line in place.
        self._write("\r\x1b[K" + line if self._tty else line + "\n")

    def _write(self, text: str) -> None:
        with self._lock:
            self._stream.write(text)
            self._stream.flush()


def _as_json(args: argparse.Namespace) -> bool:
    return bool(args.json) or not sys.stdout.isatty()


def _print_record(record: Mapping[str, Any], args: argparse.Namespace) -> None:
    if _as_json(args):
        print(json.dumps(record, ensure_ascii=False))
        return
    rows = [(name, _text(value)) for name, value in record_summary(record).items()]
    width = max((len(name) for name, _ in rows), default=0)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))


def _print_records(records: Sequence[Record], args: argparse.Namespace) -> None:
    if _as_json(args):
        print(json.dumps({"items": list(records), "count": len(records)}, ensure_ascii=False))
        return
    columns = ("id", "state", "created", "model", "result")
    rows = [[_text(record_summary(r).get(c)) for c in columns] for r in records]
    print(format_table([c.upper() for c in columns], rows))
    print(f"{len(records)} task(s)")


def record_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """What a person wants to see of a record (or of a create answer): the rest is in JSON."""
    if "id" not in record:
        return dict(record)  # a create answer: task_id and trace_id
    request = record.get("request") or {}
    response = record.get("response") or {}
    summary = {
        "id": record.get("id"),
        "state": task_state(record) or "pending",
        "created": _when(record.get("created_at")),
        "finished": _when(record.get("finished_at")),
        "model": request.get("model"),
        "prompt": request.get("prompt"),
        "result": _result(response),
    }
    return {key: value for key, value in summary.items() if value not in (None, "")}


def _result(response: Mapping[str, Any]) -> str | None:
    """The video URL of a success, the error of a failure."""
    error = response.get("error")
    if isinstance(error, Mapping):
        return f"{error.get('code')}: {error.get('message')}"
    url = response.get("video_url")
    return url if isinstance(url, str) else None


def _when(epoch: Any) -> str | None:
    if not isinstance(epoch, (int, float)):
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _text(value: Any) -> str:
    return "" if value is None else str(value)
