"""The README says what the code does: its configuration table is the settings' own list."""

from __future__ import annotations

from pathlib import Path

from kling_gateway.runtime.settings import settings_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_configuration_table_lists_every_setting_exactly() -> None:
    rows = [line for line in README.read_text().splitlines() if line.startswith("| `--")]
    expected = [
        f"| `{flag}` | `{env}` | `{default}` | {text} |"
        for flag, env, default, text in settings_table()
    ]
    assert rows == expected


def test_readme_curl_session_is_the_seeds() -> None:
    text = README.read_text()
    assert '"id": "20068983-0cc9-4c6a-aeb6-9c6a3c668be0",\n  "action": "retrieve"' in text
    assert (
        '"ids": ["e3a575aa-a4bd-49c8-9b12-cde38d5462e0","20068983-0cc9-4c6a-aeb6-9c6a3c668be0"],'
        '\n  "action": "retrieve_batch"' in text
    )
