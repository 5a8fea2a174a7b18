"""`kling-gateway tokens create --admin` in-process against a real SQLite database: the token
is granted the admin API, and `tokens list` shows it."""

from __future__ import annotations

from pathlib import Path

import pytest

from kling_gateway.cli import main


def run(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> tuple[int, str]:
    code = main([*args, "--data-dir", str(data)])
    return code, capsys.readouterr().out


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("KLING_GATEWAY_DATABASE_URL", raising=False)
    return tmp_path / "data"


def test_admin_token_lists_the_admin_api(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    code, out = run(capsys, data, "tokens", "create", "--user", "ops", "--admin")
    assert code == 0 and out.strip().startswith("kg-")
    assert run(capsys, data, "tokens", "create", "--user", "alice")[0] == 0
    code, out = run(capsys, data, "tokens", "list")
    lines = {line.split()[1]: line for line in out.splitlines()[1:]}
    assert "kling.admin,kling.tasks,kling.videos" in lines["ops"]
    assert "kling.admin" not in lines["alice"]


def test_apis_may_name_the_admin_api(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    code, _ = run(capsys, data, "tokens", "create", "--user", "ops", "--apis", "kling.admin")
    assert code == 0
    assert run(capsys, data, "tokens", "create", "--user", "x", "--apis", "kling.nope")[0] == 2
