"""Flag values that begin with a dash (kling_gateway/cli/argv.py): a server key is url-safe
base64, and one in 64 begins with ``-``, which argparse alone took for a flag."""

from __future__ import annotations

import argparse
import base64
import os
from pathlib import Path

import pytest

from kling_gateway.cli import build_parser, main
from kling_gateway.cli.argv import join_dash_values
from kling_gateway.storage.crypto import parse_key


def dash_key() -> str:
    """A valid server key whose text begins with ``-`` (the first 6 bits: 62)."""
    key = base64.urlsafe_b64encode(b"\xf8" + os.urandom(31)).decode()
    assert key.startswith("-")
    parse_key(key)  # a key the gateway accepts
    return key


@pytest.mark.usefixtures("embedded_env")
def test_a_key_that_begins_with_a_dash_is_the_flags_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--data-dir", str(tmp_path / "data")]
    assert main(["tokens", "create", "--user", "alice", *common]) == 0
    key = dash_key()
    assert main(["callbacks", "secret", "--user", "alice", "--secret-key", key, *common]) == 0
    assert "whsec_" in capsys.readouterr().out
    # And the same key opens what it sealed (a wrong one would exit 2 naming the flag).
    assert main(["callbacks", "secret", "--user", "alice", "--secret-key", key, *common]) == 0


def test_only_a_value_taking_flag_is_joined_and_never_to_a_flag() -> None:
    parser = build_parser()
    argv = ["serve", "--secret-key", "-k", "--no-worker", "--port", "--help"]
    assert join_dash_values(parser, argv) == [
        "serve", "--secret-key=-k", "--no-worker", "--port", "--help",
    ]  # fmt: skip
    # After `--` the words are left as they are.
    assert join_dash_values(parser, ["serve", "--", "--secret-key", "-k"]) == [
        "serve", "--", "--secret-key", "-k",
    ]  # fmt: skip


def test_a_negative_number_reaches_the_settings_check(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["serve", "--port", "-5", "--data-dir", str(tmp_path / "data")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--port" in err and "expected one argument" not in err


def test_the_parser_alone_still_refuses_such_a_word() -> None:
    # What the joining is for: argparse by itself reads the key as a flag.
    with pytest.raises(SystemExit):
        argparse.ArgumentParser.parse_args(build_parser(), ["serve", "--secret-key", "-k"])
