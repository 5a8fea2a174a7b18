"""A storage setting that cannot work stops `serve` and `worker` at start: one line naming
--storage-url on stderr, exit status 2 (against a real SeaweedFS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kling_gateway.cli import main
from tests.seaweed import SeaweedS3, require_seaweed

BUCKET = "kg-startup"


@pytest.fixture
def seaweed(monkeypatch: pytest.MonkeyPatch) -> SeaweedS3:
    server = require_seaweed()
    server.create_bucket(BUCKET)
    for name, value in server.environ.items():
        monkeypatch.setenv(name, value)
    return server


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_missing_bucket_stops_the_process(
    command: str, seaweed: SeaweedS3, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [command, "--data-dir", str(tmp_path), "--storage-url", "s3://no-such-bucket/v"]
    code, lines = run([*argv, "--s3-endpoint-url", seaweed.endpoint], capsys)
    assert code == 2
    errors = [line for line in lines if line.startswith("kling-gateway:")]
    assert len(errors) == 1
    assert "--storage-url s3://no-such-bucket/v" in errors[0]
    assert "NoSuchBucket" in errors[0]


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_wrong_credentials_stop_the_process(
    command: str,
    seaweed: SeaweedS3,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    argv = [command, "--data-dir", str(tmp_path), "--storage-url", f"s3://{BUCKET}/v"]
    code, lines = run([*argv, "--s3-endpoint-url", seaweed.endpoint], capsys)
    assert code == 2
    errors = [line for line in lines if line.startswith("kling-gateway:")]
    assert len(errors) == 1 and "--storage-url" in errors[0]
    assert "SignatureDoesNotMatch" in errors[0]
    assert "wrong-secret" not in errors[0]


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--storage-url", "ftp://x"], "--storage-url"),
        (["--storage-presign"], "--storage-presign"),
        (["--storage-url", "s3://b/p", "--s3-endpoint-url", "nohttp"], "--s3-endpoint-url"),
    ],
)
def test_a_malformed_storage_setting_is_one_line(
    flags: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = run(["serve", "--data-dir", str(tmp_path), *flags], capsys)
    assert code == 2
    assert len(lines) == 1 and named in lines[0]
