"""`--processes` greater than 1 needs PostgreSQL: SQLite is the one-process setup."""

from __future__ import annotations

import pytest

from kling_gateway.runtime.settings import SettingsError, load_settings


def test_several_processes_on_sqlite_are_refused() -> None:
    with pytest.raises(SettingsError, match="processes > 1 needs PostgreSQL"):
        load_settings(environ={}, processes=2)
    with pytest.raises(SettingsError, match="processes > 1 needs PostgreSQL"):
        load_settings(environ={}, processes=2, database_url="sqlite:///tmp/x.db")


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_several_processes_on_postgresql_are_fine(scheme: str) -> None:
    settings = load_settings(environ={}, processes=4, database_url=f"{scheme}://u@db/kling")
    assert settings.processes == 4 and settings.uses_postgres


def test_one_process_on_sqlite_is_the_default() -> None:
    settings = load_settings(environ={})
    assert settings.processes == 1 and not settings.uses_postgres
