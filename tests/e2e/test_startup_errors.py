"""A start that cannot succeed says why in one line naming the flag to fix, and exits 2
(no traceback), through the real command."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.private_redis import free_port
from tests.e2e.proc import EXE, clean_env
from tests.services import require_postgres, with_database


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=60, env=clean_env())


def assert_one_line(done: subprocess.CompletedProcess[str], flag: str) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"kling-gateway: {flag}"), lines[0]
    return lines[0]


def test_migrate_against_an_unreachable_database() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    line = assert_one_line(run("migrate", "--database-url", url), "--database-url")
    assert "cannot use PostgreSQL at 127.0.0.1" in line


def test_migrate_against_a_missing_postgres_database() -> None:
    url = with_database(require_postgres(), "kg_no_such_database")
    line = assert_one_line(run("migrate", "--database-url", url), "--database-url")
    assert "'kg_no_such_database' does not exist" in line and "createdb" in line


def test_the_password_of_the_database_url_is_never_printed() -> None:
    url = f"postgresql://postgres:sekrit-pw@127.0.0.1:{free_port()}/test"
    line = assert_one_line(run("migrate", "--database-url", url), "--database-url")
    assert "sekrit-pw" not in line


@pytest.mark.parametrize("command", ["migrate", "serve", "worker"])
def test_a_data_dir_under_a_file(tmp_path: Path, command: str) -> None:
    afile = tmp_path / "a-file"
    afile.write_text("x")
    args = [command, "--data-dir", str(afile / "data")]
    if command == "serve":
        args += ["--port", str(free_port())]
    assert_one_line(run(*args), "--data-dir")


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_an_unreachable_redis_when_redis_is_required(tmp_path: Path, command: str) -> None:
    redis = f"redis://127.0.0.1:{free_port()}/0"
    args = [command, "--data-dir", str(tmp_path / "d"), "--redis-url", redis, "--redis-required"]
    if command == "serve":
        args += ["--port", str(free_port())]
    line = assert_one_line(run(*args), "--redis-url")
    assert "cannot reach Redis at 127.0.0.1" in line
