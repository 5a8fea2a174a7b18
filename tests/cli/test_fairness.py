"""`kling-gateway fairness set|list` in-process against a real SQLite database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kling_gateway.cli import main


def run(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--data-dir", str(data)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("KLING_GATEWAY_DATABASE_URL", raising=False)
    return tmp_path / "data"


def test_set_list_and_reset(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    assert run(capsys, data, "tokens", "create", "--user", "alice")[0] == 0
    code, out, _ = run(capsys, data, "fairness", "set", "--user", "alice", "--weight", "2.5")
    assert (code, out.strip()) == (0, "user alice: weight 2.5")
    code, out, _ = run(capsys, data, "fairness", "list", "--json")
    (doc,) = json.loads(out)
    assert (code, doc["user"], doc["weight"]) == (0, "alice", 2.5)
    code, out, _ = run(capsys, data, "fairness", "list")
    assert code == 0 and "alice" in out and "2.5" in out
    assert run(capsys, data, "fairness", "set", "--user", "alice", "--weight", "1")[0] == 0
    assert json.loads(run(capsys, data, "fairness", "list", "--json")[1]) == []


def test_bad_weights_and_unknown_users(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    code, _, err = run(capsys, data, "fairness", "set", "--user", "alice", "--weight", "0")
    assert code == 2 and err.strip().startswith("kling-gateway: --weight: a weight must be")
    code, _, err = run(capsys, data, "fairness", "set", "--user", "nobody", "--weight", "2")
    assert code == 1 and "no user named 'nobody'" in err
