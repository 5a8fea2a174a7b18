"""Where the record lives on PostgreSQL: PostgreSQL's own CPU for a 100-id retrieve_batch.

``python -m bench.pg_records [--size N] [--queries M]`` builds, side by side in one run, the
same N finished tasks (bench/dataset.py's generator) in three throwaway databases:

- ``before``: the layout of migrations 0001-0005, the record in ``tasks`` beside
  request/response (rows of ~2.5 KB: PostgreSQL compresses the largest column);
- ``external``: the same, with ``record`` SET STORAGE EXTERNAL (no compression, but rows over
  ~2 KB move the record out of line into the TOAST table);
- ``after``: every migration (0006: the record alone in ``task_records``, EXTERNAL, inline).

Then it runs the store's batch query of each layout for the same M random 100-id lists,
alternating layouts round by round, and reads the CPU of the one PostgreSQL backend serving
each connection from /proc (other clients of the server do not count). Prints a table and
writes it to bench/pg_records_results.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench.dataset import _rows
from kling_gateway.storage.migrations import migration_scripts
from kling_gateway.storage.postgres import PostgresStore, numbered
from kling_gateway.storage.rows import TASK_COLUMNS
from kling_gateway.storage.tokens import issue_token

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS = Path(__file__).resolve().parent / "pg_records_results.md"
BATCH = 100
LAYOUTS = ("before", "external", "after")
RECORDS_MIGRATION = "0006_task_records.sql"  # "before" is every migration older than this
OLD_COLUMNS = [c.strip() for c in TASK_COLUMNS.split(",")] + ["idempotency_key", "request_hash"]
# Columns added after the "before" layout's migrations (0007 accounts, 0011 billing): its rows
# are the same tasks without them.
LATER_COLUMNS = frozenset({"upstream_account", "usage"})
BEFORE_KEEP = [i for i, c in enumerate(OLD_COLUMNS) if c not in LATER_COLUMNS]
# The query of each layout, verbatim from the store of its time.
OLD_QUERY = "SELECT id, record FROM tasks WHERE id = ANY($1::text[]) AND user_id = $2"
NEW_QUERY = numbered(
    "SELECT id, record FROM task_records WHERE id = ANY(?::text[]) AND user_id = ?"
)


@dataclass
class Layout:
    name: str
    url: str
    query: str
    cpu_s: float = 0.0
    kernel_s: float = 0.0  # of cpu_s: the backend's system time (sending the rows, mostly)
    wall_s: float = 0.0
    queries: int = 0
    row_bytes: float = 0.0


def with_db(url: str, name: str) -> str:
    return f"{url.rpartition('/')[0]}/{name}"


def backend_cpu(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of one backend."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


async def build(admin: str, layout: str, size: int) -> tuple[str, str, list[str]]:
    """A database of ``size`` tasks in ``layout``: its URL, the tasks' user id and their ids."""
    name = f"kg_bench_records_{layout}_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = with_db(admin, name)
    if layout == "after":
        store = PostgresStore(url)
        await store.open()
        await store.migrate()
        issued = await issue_token(store, "bench")
        await store.close()
    conn = await asyncpg.connect(url)
    try:
        if layout != "after":
            for name, sql in migration_scripts("postgres"):
                if name < RECORDS_MIGRATION:
                    await conn.execute(sql)
            if layout == "external":
                await conn.execute("ALTER TABLE tasks ALTER COLUMN record SET STORAGE EXTERNAL")
        user_id = issued.user_id if layout == "after" else str(uuid.uuid4())
        ids: list[str] = []
        for chunk, records in _rows(size, user_id, "app", "cred", ids):
            if layout == "after":
                await conn.copy_records_to_table("tasks", records=chunk, columns=OLD_COLUMNS)
                await conn.copy_records_to_table("task_records", records=records)
            else:
                rows = [
                    (*(t[i] for i in BEFORE_KEEP), r[2])
                    for t, r in zip(chunk, records, strict=True)
                ]
                columns = [OLD_COLUMNS[i] for i in BEFORE_KEEP]
                await conn.copy_records_to_table(
                    "tasks", records=rows, columns=[*columns, "record"]
                )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return url, user_id, ids


async def row_bytes(conn: Any, layout: Layout) -> float:
    table = "task_records" if layout.name == "after" else "tasks"
    value = await conn.fetchval(f"SELECT avg(pg_column_size(t.*)) FROM {table} t")
    return float(value)


async def main_async(admin: str, size: int, queries: int, names: list[str]) -> list[Layout]:
    layouts: list[Layout] = []
    users: dict[str, str] = {}
    urls: list[str] = []
    ids_by_layout: dict[str, list[str]] = {}
    try:
        for name in names:
            url, user, ids = await build(admin, name, size)
            urls.append(url)
            users[name], ids_by_layout[name] = user, ids
            query = NEW_QUERY if name == "after" else OLD_QUERY
            layouts.append(Layout(name, url, query))
        # The same positions in each database (the generator is seeded: the same tasks; the
        # ids differ per build, so each layout gets its own ids at those positions).
        rng = random.Random(7)
        picks = [rng.sample(range(size), BATCH) for _ in range(queries)]
        batches = {n: [[ids[i] for i in p] for p in picks] for n, ids in ids_by_layout.items()}
        await measure_each(layouts, users, batches)
    finally:
        conn = await asyncpg.connect(admin)
        for url in urls:
            await conn.execute(f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)')
        await conn.close()
    return layouts


async def measure_each(
    layouts: list[Layout], users: dict[str, str], batches: dict[str, list[list[str]]]
) -> None:
    conns = {lay.name: await asyncpg.connect(lay.url) for lay in layouts}
    try:
        for lay in layouts:
            lay.row_bytes = await row_bytes(conns[lay.name], lay)
            for batch in batches[lay.name][:50]:  # warm the cache and the prepared statement
                await conns[lay.name].fetch(lay.query, batch, users[lay.name])
        pids = {n: await c.fetchval("SELECT pg_backend_pid()") for n, c in conns.items()}
        rounds = 10
        per_round = len(batches[layouts[0].name]) // rounds
        for r in range(rounds):
            for lay in layouts if r % 2 == 0 else list(reversed(layouts)):
                part = batches[lay.name][r * per_round : (r + 1) * per_round]
                conn, user = conns[lay.name], users[lay.name]
                (user0, sys0), wall0 = backend_cpu(pids[lay.name]), time.perf_counter()
                for batch in part:
                    rows = await conn.fetch(lay.query, batch, user)
                    assert len(rows) == BATCH
                lay.wall_s += time.perf_counter() - wall0
                user1, sys1 = backend_cpu(pids[lay.name])
                lay.cpu_s += user1 - user0 + sys1 - sys0
                lay.kernel_s += sys1 - sys0
                lay.queries += len(part)
    finally:
        for conn in conns.values():
            await conn.close()


def markdown(layouts: list[Layout], size: int, queries: int) -> str:
    lines = [
        "# pg_records: PostgreSQL's CPU for a 100-id retrieve_batch, by record layout",
        "",
        f"`python -m bench.pg_records --size {size} --queries {queries} --layouts "
        f"{','.join(lay.name for lay in layouts)}`: {size:,} finished "
        f"tasks per layout, {queries:,} batches of {BATCH} random ids each, layouts measured "
        "in alternating rounds in one run; CPU of the serving backend from /proc.",
        "",
        "| layout | row bytes | PostgreSQL CPU ms/batch | of which kernel ms | µs/row "
        "| wall ms/batch |",
        "|---|---|---|---|---|---|",
    ]
    for lay in layouts:
        cpu_ms = lay.cpu_s * 1e3 / lay.queries
        lines.append(
            f"| {lay.name} | {lay.row_bytes:,.0f} | {cpu_ms:.2f} "
            f"| {lay.kernel_s * 1e3 / lay.queries:.2f} | {cpu_ms * 1e3 / BATCH:.1f} "
            f"| {lay.wall_s * 1e3 / lay.queries:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES, help="administrative URL")
    parser.add_argument("--size", type=int, default=100_000, help="tasks per database")
    parser.add_argument("--queries", type=int, default=3000, help="100-id batches per layout")
    parser.add_argument(
        "--layouts",
        default=",".join(LAYOUTS),
        help="comma-separated, of " + ", ".join(LAYOUTS) + " (fewer share the buffers less)",
    )
    args = parser.parse_args(argv)
    if not set(args.layouts.split(",")) <= set(LAYOUTS):
        parser.error(f"--layouts: choose among {', '.join(LAYOUTS)}")
    names = args.layouts.split(",")
    layouts = asyncio.run(main_async(args.postgres_url, args.size, args.queries, names))
    text = markdown(layouts, args.size, args.queries)
    print(text)
    RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
