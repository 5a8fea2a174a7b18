"""`python -m bench [--only GROUP | --only core]`: run the bench groups, write bench/RESULTS.md.

The core groups (tasks_api, machinery) are measured here; the others run their own module
(`python -m bench.<module>` runs one alone) and leave a results file, which RESULTS.md takes in
whole, so that the latest figures of every group are in one place with their commands.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import (
    callbacks_bench,
    caption_layout,
    longpoll,
    machinery,
    postgres_group,
    results,
    tasks_api,
)
from bench.common import ensure_wrk, log

BENCH_DIR = Path(__file__).resolve().parent
NOTES_FILE = BENCH_DIR / "NOTES.md"
CORE = ("tasks_api", "machinery")


def _postgres(_: argparse.Namespace) -> None:
    postgres_group.main([])


def _kling(_: argparse.Namespace) -> None:
    from bench import kling_lag

    kling_lag.main(["--write-results"])


# group: (how to run it, the results file it writes)
EXTRA: dict[str, tuple[Callable[[argparse.Namespace], object], Path]] = {
    "postgres": (_postgres, BENCH_DIR / "postgres_results.md"),
    "kling_lag": (_kling, BENCH_DIR / "kling_lag_results.md"),
    "callbacks": (lambda _: callbacks_bench.main([]), BENCH_DIR / "callbacks_results.md"),
    "longpoll": (lambda _: longpoll.main([]), BENCH_DIR / "longpoll_results.md"),
    "caption_layout": (
        lambda _: caption_layout.main([]),
        BENCH_DIR / "caption_layout_results.md",
    ),
    "pg_records": (lambda _: _module("pg_records", []), BENCH_DIR / "pg_records_results.md"),
    "objects": (lambda _: _module("objects_bench", []), BENCH_DIR / "objects_results.md"),
    "instructions": (
        lambda _: _module("instructions", ["--write-results"]),
        BENCH_DIR / "instructions_results.md",
    ),
}
# Groups whose figures were written by hand from a run of their module (the command is in
# each file): copied into RESULTS.md as they are, so a run of another group keeps them.
RECORDED: dict[str, Path] = {
    "pool": BENCH_DIR / "pool_results.md",
    "render_v3": BENCH_DIR / "render_v3_results.md",
    "batch_rss": BENCH_DIR / "batch_rss_results.md",
}


def _module(name: str, argv: list[str]) -> object:
    """Run ``bench.NAME``'s ``main`` (imported only when its group runs)."""
    import importlib

    main: Callable[..., object] = importlib.import_module(f"bench.{name}").main
    return main(argv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only",
        choices=["core", *CORE, *EXTRA],
        help="run one group (core: tasks_api and machinery, whose section they share)",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0, help="wrk warm-up seconds")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per figure")
    args = parser.parse_args(argv)
    command = _command(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    api = mach = None
    if args.only in (None, "core", "tasks_api"):
        ensure_wrk()
        opts = tasks_api.Options(args.duration, args.warmup, args.connections, args.rounds)
        api = tasks_api.run(opts)
    if args.only in (None, "core", "machinery"):
        mach = machinery.run()
    for name, (run, _) in EXTRA.items():
        if args.only in (None, name):
            log(f"running the {name} group")
            run(args)
    notes = NOTES_FILE.read_text() if NOTES_FILE.exists() else ""
    if api is not None or mach is not None:
        path = results.write(command, time.perf_counter() - started, api, mach, notes)
    else:
        path = results.RESULTS
    _append_groups(path)
    log(f"wrote {path} in {(time.perf_counter() - started) / 60:.1f} min")
    _print_verdicts(api)
    return 0


def _append_groups(path: Path) -> None:
    """Replace the other groups' sections of RESULTS.md with their latest results files."""
    text = path.read_text() if path.exists() else "# Bench results\n"
    text = text.split(_MARK, 1)[0].rstrip() + "\n\n" + _MARK + "\n"
    files = {name: results_file for name, (_, results_file) in EXTRA.items()} | RECORDED
    for name, results_file in files.items():
        if results_file.exists():
            body = results_file.read_text().strip()
            body = "\n".join(
                ("#" + line) if line.startswith("#") else line for line in body.splitlines()
            )
            text += f"\n<!-- group {name}: {results_file.name} -->\n{body}\n"
    path.write_text(text)


_MARK = "<!-- the other groups, each from its own results file -->"


def _print_verdicts(api: tasks_api.TasksApiResult | None) -> None:
    if api is None:
        return
    for key, (ratio, target, ok) in api.ratios.items():
        cpu_ratio, _, cpu_ok = api.cpu_ratios[key]
        log(
            f"  ({key}) needs {target:.0%}: req/s {ratio:.0%} {'PASS' if ok else 'MISS'}, "
            f"CPU {cpu_ratio:.0%} {'PASS' if cpu_ok else 'MISS'}"
        )


def _command(args: list[str]) -> str:
    if not args:
        return "make bench (runs .venv/bin/python -m bench)"
    return " ".join([".venv/bin/python -m bench", *args])


if __name__ == "__main__":
    raise SystemExit(main())
