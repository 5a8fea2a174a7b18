"""bench/RESULTS.md: the figures of one `make bench`, the machine, and every target's verdict."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from bench.common import machine
from bench.machinery import CONCURRENCY, TASKS, MachineryRun
from bench.tasks_api import TasksApiResult

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write(
    command: str,
    elapsed: float,
    tasks_api: TasksApiResult | None,
    machinery: list[MachineryRun] | None,
    notes: str = "",
) -> Path:
    info = machine()
    lines = [
        "# Bench results",
        "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']} RAM, "
        f"Linux {info['kernel']}, Python {info['python']}",
        f"- command: `{command}` ({elapsed / 60:.1f} min for this run)",
        "",
    ]
    if tasks_api is not None:
        lines += _tasks_api(tasks_api)
    if machinery is not None:
        lines += _machinery(machinery)
    if notes:
        lines += ["## Notes", "", notes.strip(), ""]
    RESULTS.write_text("\n".join(lines))
    return RESULTS


def _tasks_api(r: TasksApiResult) -> list[str]:
    o = r.options
    small, large = r.datasets["a"], r.datasets["c"]
    out = [
        "## tasks_api: POST /kling/tasks against a raw ASGI reference",
        "",
        f"One server process pinned to CPU 0 (`taskset -c 0`); wrk 4.1 pinned to CPU 1, "
        f"1 thread, {o.connections} connections, {o.warmup:g} s warm-up then {o.duration:g} s "
        f"measured, random ids from the stored set, POST with bearer token and JSON body "
        f"(`bench/post_ids.lua`). The gateway runs as `kling-gateway serve` (uvicorn, uvloop, "
        f"httptools, access log off, worker inside and idle, rate limit off); (R) is "
        f"`bench/reference_app.py` under the same uvicorn flags, on the same database file, "
        f"with no auth. Gateway and (R) run side by side on CPU 0 and are measured in "
        f"{o.rounds} alternating rounds; the best round of each is shown and compared.",
        "",
        f"Data: {small.size:,} and {large.size:,} finished tasks of one user, records rendered "
        f"by `Task.record_json()` (mean {small.mean_record_bytes:,.0f} B), bulk-inserted into "
        f"the migrated schema (built once in {small.seconds_to_build:.0f} s and "
        f"{large.seconds_to_build:.0f} s, reused from `bench/work/`"
        + (", built during this run" if any(r.built.values()) else "")
        + ").",
        "",
        "| | what | req/s | p50 ms | p99 ms | all rounds, req/s | CPU us/req | others on CPU 0 |",
        "|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for m in r.measurements.values():
        b = m.best
        rounds = ", ".join(f"{x.requests_per_s:,.0f}" for x in m.runs)
        out.append(
            f"| {m.label} | {m.what} | {b.requests_per_s:,.0f} | {b.p50_ms:.2f} | "
            f"{b.p99_ms:.2f} | {rounds} | {m.cpu_us:.0f} | {b.others_on_server_cpu:.0%} |"
        )
    out += [
        "",
        "Targets. `req/s` compares the best rounds' throughput; `CPU` compares server CPU "
        "time per request (user + system of the server process over the measured run, least "
        "of the rounds), which is what throughput on an otherwise idle core would be. When "
        "other work shares CPU 0 (last column above), trust the CPU ratio.",
        "",
        "| target | needed | ratio, req/s | verdict | ratio, CPU | verdict |",
        "|---|---:|---:|---|---:|---|",
    ]
    names = {"a": "(a) / (R)", "b": "(b) / (R-b)", "c": "(c) / (a)"}
    for key, (ratio, target, ok) in r.ratios.items():
        cpu_ratio, _, cpu_ok = r.cpu_ratios[key]
        out.append(
            f"| {names[key]} | >= {target:.0%} | {ratio:.0%} | {'PASS' if ok else 'MISS'} | "
            f"{cpu_ratio:.0%} | {'PASS' if cpu_ok else 'MISS'} |"
        )
    out += [
        "",
        "Peak server memory (VmHWM of the server process at the end of its runs):",
        "",
        *(f"- {name}: {mb:,.0f} MB" for name, mb in r.peak_rss_mb.items()),
        "",
        f"Load average (other work on the machine): {'; '.join(r.loadavg)}.",
        "",
        "Each database file is read once before its runs so that the OS caches it; share of "
        "the file in the OS page cache (fincore): "
        + ("; ".join(r.residency) or "not known (no fincore)")
        + ".",
        "",
        "<details><summary>A stored record</summary>",
        "",
        "```json",
        r.record_sample,
        "```",
        "</details>",
        "",
    ]
    return out


def _machinery(runs: list[MachineryRun]) -> list[str]:
    out = [
        "## machinery: create to succeed through the worker",
        "",
        f"Local provider with zero delay and no rendering (`--local-delay 0 "
        f"--no-local-render`), rate limit off, SQLite. {TASKS:,} asynchronous POST "
        f"/kling/videos over {CONCURRENCY} connections (a bare asyncio HTTP/1.1 client, see "
        "the notes), then the records read back with "
        "retrieve_batch. Create-to-succeed is each record's `finished_at - created_at` (the "
        "server's clock); tasks/s is tasks / (last finished_at - first created_at), so it "
        "includes the time the API takes to accept them. CPU is utime + stime from "
        "/proc/PID/stat, per task, over the whole run (creates, worker, and the few "
        "retrieve_batch polls).",
        "",
        "- `embedded`: `kling-gateway serve` with the worker inside, pinned to CPU 0; the "
        "client on CPU 1. Its CPU figure is the API's and the worker's together.",
        "- `split`: `serve --no-worker` on CPU 0 and `kling-gateway worker` on CPU 1 (same "
        "--data-dir), the client unpinned. No Redis, so the worker learns of new tasks by "
        "polling (`--idle-poll-seconds`, 1 s).",
        "",
        "| layout | tasks/s | create->succeed p50 ms | p99 ms | max ms | create call p50 ms "
        "| p99 ms | creating took s | CPU per task | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in runs:
        cpu = "; ".join(f"{k}: {v:.2f} ms" for k, v in r.cpu_ms_per_task.items())
        rss = "; ".join(f"{k}: {v:,.0f} MB" for k, v in r.peak_rss_mb.items())
        out.append(
            f"| {r.layout} | {r.tasks_per_s:,.0f} | {r.c2s_p50_ms:.0f} | {r.c2s_p99_ms:.0f} | "
            f"{r.c2s_max_ms:.0f} | {r.create_p50_ms:.0f} | {r.create_p99_ms:.0f} | "
            f"{r.create_seconds:.1f} | {cpu} | {rss} |"
        )
    failed = [r for r in runs if r.succeeded != r.tasks]
    out.append("")
    if failed:
        out.append(
            "Not every task succeeded: "
            + ", ".join(f"{r.layout}: {r.succeeded}/{r.tasks}" for r in failed)
        )
    else:
        out.append(f"All {TASKS:,} tasks succeeded in every layout.")
    out.append("")
    return out
