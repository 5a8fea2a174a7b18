"""`kling-gateway accounts ...` in-process against a real SQLite database."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import pytest

from kling_gateway.cli import main

SECRET = "acct-secret-0123456789abcdef"


def run(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--data-dir", str(data)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("KLING_GATEWAY_DATABASE_URL", raising=False)
    monkeypatch.delenv("KLING_GATEWAY_SECRET_KEY", raising=False)
    return tmp_path / "data"


def listed(capsys: pytest.CaptureFixture[str], data: Path) -> dict[str, dict[str, object]]:
    code, out, _ = run(capsys, data, "accounts", "list", "--json")
    assert code == 0
    return {doc["name"]: doc for doc in json.loads(out)}


def test_add_list_disable_enable_remove(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    code, out, _ = run(
        capsys, data, "accounts", "add", "main", "--access-key", "AKMAIN123",
        "--secret-key", SECRET, "--max-concurrency", "7", "--models", "kling-v1,kling-v3",
        "--weight", "2",
    )  # fmt: skip
    assert (code, out.strip()) == (0, "added account main (7 slots)")
    code, out, _ = run(capsys, data, "accounts", "list")
    assert code == 0 and "main" in out and "0/7" in out and "unknown" in out
    assert SECRET not in out and "AKMAIN123" not in out
    doc = listed(capsys, data)["main"]
    assert doc["models"] == ["kling-v1", "kling-v3"] and doc["weight"] == 2.0
    assert run(capsys, data, "accounts", "disable", "main", "--reason", "billing")[0] == 0
    doc = listed(capsys, data)["main"]
    assert (doc["state"], doc["last_error"]) == ("disabled", "billing")
    assert run(capsys, data, "accounts", "enable", "main")[0] == 0
    assert listed(capsys, data)["main"]["state"] == "enabled"
    assert run(capsys, data, "accounts", "remove", "main")[0] == 0
    assert listed(capsys, data) == {}
    code, _, err = run(capsys, data, "accounts", "remove", "main")
    assert code == 1 and "no account named 'main'" in err


def test_the_secret_is_sealed_and_read_from_stdin(
    capsys: pytest.CaptureFixture[str], data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET + "\n"))
    code, _, _ = run(
        capsys, data, "accounts", "add", "piped", "--access-key", "AK", "--secret-key", "-"
    )
    assert code == 0
    with sqlite3.connect(data / "kling-gateway.db") as conn:
        (stored,) = conn.execute("SELECT secret_key FROM upstream_accounts").fetchone()
    assert stored.startswith("v1:") and SECRET not in stored


def test_bad_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    for args, needle in (
        (("bad name",), "account name"),
        (("ok", "--max-concurrency", "0"), "--max-concurrency"),
        (("ok", "--weight", "0"), "--weight"),
    ):
        code, _, err = run(
            capsys, data, "accounts", "add", *args[:1], "--access-key", "AK",
            "--secret-key", SECRET, *args[1:],
        )  # fmt: skip
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert (
        run(capsys, data, "accounts", "add", "dup", "--access-key", "A", "--secret-key", "s")[0]
        == 0
    )
    code, _, err = run(
        capsys, data, "accounts", "add", "dup", "--access-key", "A", "--secret-key", "s"
    )
    assert code == 1 and "exists already" in err
