"""`kling-gateway backup PATH`: a consistent copy of the SQLite database, taken while the
gateway runs.

A plain `cp` of a live database in WAL mode copies the main file without the write-ahead log,
so every change not yet checkpointed (in a test: every task) is missing from the copy. SQLite's
online backup API (``sqlite3.Connection.backup``) copies what a reader sees at one instant,
WAL included, a bounded number of pages at a time so writers are not held up; when a writer
changes the database mid-copy the copy restarts, so the result is always one consistent state.
PostgreSQL: docs/deployment.md gives the pg_dump procedure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
from pathlib import Path

from kling_gateway.runtime.settings import SettingsError, add_settings_arguments, load_settings

PAGES_PER_STEP = 1024


def add_backup_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = commands.add_parser(
        "backup", help="copy the SQLite database consistently while the gateway runs"
    )
    backup.add_argument("path", metavar="PATH", help="where to write the copy (replaced)")
    add_settings_arguments(backup, ("store",))
    backup.set_defaults(handler=_backup)


def _backup(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    url = settings.resolved_database_url
    if not url.startswith("sqlite:///"):
        raise SettingsError(
            "backup copies SQLite databases; for PostgreSQL use pg_dump (docs/deployment.md)"
        )
    source = Path(url.removeprefix("sqlite:///"))
    if not source.is_file():
        raise SettingsError(f"database_url (--database-url): no database at {source}")
    pages = backup_sqlite(source, Path(args.path))
    print(f"backed up {source} to {args.path} ({pages} pages)")
    return 0


def backup_sqlite(source: Path, target: Path) -> int:
    """Copy ``source`` into ``target`` (atomically replaced); the number of pages copied."""
    partial = target.with_name(f".{target.name}.partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst, pages=PAGES_PER_STEP)
            # The copy is a standalone file: no WAL beside it to lose.
            dst.execute("PRAGMA journal_mode=DELETE")
            (pages,) = dst.execute("PRAGMA page_count").fetchone()
        finally:
            dst.close()
    finally:
        src.close()
    os.chmod(partial, 0o600)  # the database holds token hashes and users' prompts
    os.replace(partial, target)
    return int(pages)
