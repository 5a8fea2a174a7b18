"""Settings: a flag and a KLING_GATEWAY_* twin per field, precedence, parsing and validation."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from kling_gateway.runtime.settings import (
    Settings,
    SettingsError,
    add_settings_arguments,
    env_name,
    load_settings,
    settings_table,
)

FIELDS = [f for f in dataclasses.fields(Settings)]
BOOL_FIELDS = [f.name for f in FIELDS if f.type in ("bool", bool)]
INT_FIELDS = [f.name for f in FIELDS if f.type in ("int", int)]
FLOAT_FIELDS = [f.name for f in FIELDS if f.type in ("float", float)]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kling-gateway")
    add_settings_arguments(p)
    return p


def load(argv: list[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    return load_settings(parser().parse_args(argv or []), environ=env or {})


# -- a flag and an environment twin per field ----------------------------------------------------


def test_the_table_lists_every_field_with_its_flag_and_env_twin() -> None:
    table = settings_table()
    assert len(table) == len(FIELDS)
    for (flag, env, default, help_text), f in zip(table, FIELDS, strict=True):
        assert flag == "--" + f.name.replace("_", "-")
        assert env == "KLING_GATEWAY_" + f.name.upper() == env_name(f.name)
        assert default == repr(f.default)
        assert help_text


def test_every_field_has_a_flag_in_argparse() -> None:
    p = parser()
    dests = {action.dest: action for action in p._actions}
    for f in FIELDS:
        action = dests[f.name]
        assert "--" + f.name.replace("_", "-") in action.option_strings
        assert action.default is None  # so that an absent flag falls through to the env
        assert env_name(f.name) in (action.help or "")


def test_bool_fields_have_negative_flags() -> None:
    assert {"worker", "bootstrap_token", "local_render", "callback_allow_private"} <= set(
        BOOL_FIELDS
    )
    for name in BOOL_FIELDS:
        flag = name.replace("_", "-")
        assert getattr(parser().parse_args([f"--{flag}"]), name) is True
        assert getattr(parser().parse_args([f"--no-{flag}"]), name) is False


def test_groups_select_which_flags_are_added() -> None:
    p = argparse.ArgumentParser()
    add_settings_arguments(p, groups=["worker"])
    dests = {a.dest for a in p._actions} - {"help"}
    assert dests == {f.name for f in FIELDS if f.metadata["group"] == "worker"}
    assert "provider" in dests
    assert "port" not in dests


@pytest.mark.parametrize("name", [f.name for f in FIELDS])
def test_every_field_is_read_from_its_env_twin(name: str, tmp_path: Path) -> None:
    value, expected = _sample(name, tmp_path)
    settings = load_settings(environ={env_name(name): value, **_valid_env(name)})
    assert getattr(settings, name) == expected


@pytest.mark.parametrize("name", [f.name for f in FIELDS])
def test_every_field_is_read_from_its_flag(name: str, tmp_path: Path) -> None:
    value, expected = _sample(name, tmp_path)
    flag = "--" + name.replace("_", "-")
    if name in BOOL_FIELDS:
        argv = [flag if expected else "--no-" + name.replace("_", "-")]
    else:
        argv = [flag, value]
    settings = load_settings(parser().parse_args(argv), environ=_valid_env(name))
    assert getattr(settings, name) == expected


def _sample(name: str, tmp_path: Path) -> tuple[str, Any]:
    """A value different from the default, as text and as the typed result."""
    special: dict[str, tuple[str, Any]] = {
        "provider": ("kling", "kling"),
        "database_url": ("postgresql://db/kg", "postgresql://db/kg"),
        "public_url": ("https://kg.example", "https://kg.example"),
        "data_dir": (str(tmp_path), str(tmp_path)),
        "log_level": ("debug", "debug"),
        "callback_retry_schedule": ("1,2", "1,2"),
        "lease_seconds": ("300", 300.0),
        "provider_timeout": ("20", 20.0),
        "storage_url": ("s3://bucket/videos", "s3://bucket/videos"),
        "s3_endpoint_url": ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        "files_public_url": ("https://cdn.example", "https://cdn.example"),
        "default_credits": ("40", "40"),
    }
    if name == "prices":
        path = tmp_path / "prices.toml"
        path.write_text('[per_second."*"]\nstd = 1\npro = 2\n4k = 3\n')
        return (str(path), str(path))
    if name in special:
        return special[name]
    default: Any = getattr(Settings(), name)
    if name in BOOL_FIELDS:
        return ("false", False) if default else ("true", True)
    if name in INT_FIELDS:
        return (str(default + 7), default + 7)
    if name in FLOAT_FIELDS:
        return (str(default + 1.5), default + 1.5)
    return ("changed-" + name, "changed-" + name)


def _valid_env(name: str) -> dict[str, str]:
    # provider=kling needs keys; several processes need PostgreSQL; the rest is valid as is.
    if name == "provider":
        return {"KLING_GATEWAY_KLING_ACCESS_KEY": "ak", "KLING_GATEWAY_KLING_SECRET_KEY": "sk"}
    if name == "processes":
        return {"KLING_GATEWAY_DATABASE_URL": "postgresql://db/kg"}
    if name == "storage_presign":  # presigned URLs are the bucket's
        return {"KLING_GATEWAY_STORAGE_URL": "s3://bucket/videos"}
    return {}


# -- precedence -----------------------------------------------------------------------------------


def test_flag_beats_env_beats_default() -> None:
    assert load().port == 8000
    assert load(env={"KLING_GATEWAY_PORT": "9001"}).port == 9001
    assert load(["--port", "9002"], env={"KLING_GATEWAY_PORT": "9001"}).port == 9002


def test_a_false_flag_beats_a_true_env() -> None:
    settings = load(["--no-worker"], env={"KLING_GATEWAY_WORKER": "true"})
    assert settings.worker is False
    assert load(env={"KLING_GATEWAY_WORKER": "false"}).worker is False
    assert load([], env={}).worker is True


def test_overrides_beat_flags_and_env() -> None:
    args = parser().parse_args(["--port", "9002"])
    settings = load_settings(args, environ={"KLING_GATEWAY_PORT": "9001"}, port=9003)
    assert settings.port == 9003


def test_a_mapping_of_arguments_works_like_a_namespace() -> None:
    settings = load_settings({"port": "7000", "host": None}, environ={"KLING_GATEWAY_HOST": "::"})
    assert settings.port == 7000
    assert settings.host == "::"


def test_unrelated_environment_variables_are_ignored() -> None:
    assert load(env={"PORT": "1", "KLING_PORT": "2", "kling_gateway_port": "3"}).port == 8000


# -- parsing --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "yes", "on", " On "])
def test_true_words(text: str) -> None:
    assert load(env={"KLING_GATEWAY_CALLBACK_ALLOW_PRIVATE": text}).callback_allow_private is True


@pytest.mark.parametrize("text", ["0", "false", "False", "no", "off", ""])
def test_false_words(text: str) -> None:
    assert load(env={"KLING_GATEWAY_WORKER": text}).worker is False


def test_a_bad_bool_names_the_field() -> None:
    with pytest.raises(SettingsError, match="local_render") as info:
        load(env={"KLING_GATEWAY_LOCAL_RENDER": "maybe"})
    assert "maybe" in str(info.value)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("port", "eighty"),
        ("port", "80.5"),
        ("worker_concurrency", ""),
        ("lease_seconds", "two minutes"),
        ("provider_timeout", "30s"),
        ("rate_limit_per_minute", "1e3x"),
    ],
)
def test_a_bad_number_names_the_field(name: str, text: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load(env={env_name(name): text})
    with pytest.raises(SettingsError, match=name):
        load(["--" + name.replace("_", "-"), text])


def test_numbers_are_typed() -> None:
    settings = load(env={"KLING_GATEWAY_PORT": "8080", "KLING_GATEWAY_LOCAL_DELAY": "0.25"})
    assert settings.port == 8080
    assert type(settings.port) is int
    assert settings.local_delay == 0.25
    assert type(settings.local_delay) is float


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


# -- validate() -----------------------------------------------------------------------------------


def test_defaults_are_valid() -> None:
    settings = Settings().validate()
    assert settings.provider == "local"


def test_unknown_provider_is_refused() -> None:
    with pytest.raises(SettingsError, match="provider"):
        Settings(provider="runway").validate()


@pytest.mark.parametrize(("access", "secret"), [("", ""), ("ak", ""), ("", "sk")])
def test_kling_provider_needs_both_keys(access: str, secret: str) -> None:
    with pytest.raises(SettingsError, match="kling_access_key and kling_secret_key"):
        Settings(provider="kling", kling_access_key=access, kling_secret_key=secret).validate()


def test_kling_provider_with_keys_is_valid() -> None:
    settings = Settings(provider="kling", kling_access_key="ak", kling_secret_key="sk")
    assert settings.validate() is settings


@pytest.mark.parametrize(("lease", "timeout"), [(30.0, 30.0), (10.0, 30.0)])
def test_lease_must_outlast_a_provider_call(lease: float, timeout: float) -> None:
    with pytest.raises(SettingsError, match="lease_seconds"):
        Settings(lease_seconds=lease, provider_timeout=timeout).validate()


def test_lease_just_longer_than_the_provider_timeout_is_valid() -> None:
    Settings(lease_seconds=30.5, provider_timeout=30.0).validate()


@pytest.mark.parametrize(
    "url", ["sqlite:///tmp/x.db", "sqlite:////abs/x.db", "postgresql://u@h/db", "postgres://h/db"]
)
def test_database_url_schemes_accepted(url: str) -> None:
    assert Settings(database_url=url).validate().resolved_database_url == url


@pytest.mark.parametrize(
    "url", ["mysql://h/db", "sqlite://relative.db", "/var/db.sqlite", "http://h/db"]
)
def test_database_url_schemes_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="database_url"):
        Settings(database_url=url).validate()


@pytest.mark.parametrize(
    "name",
    [
        "port",
        "max_body_bytes",
        "batch_max_ids",
        "worker_concurrency",
        "lease_seconds",
        "provider_timeout",
        "callback_timeout",
        "processes",
        "kling_download_timeout",
    ],
)
def test_positive_fields(name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        overrides: dict[str, Any] = {name: 0}
        Settings(**overrides).validate()


@pytest.mark.parametrize(
    "secret",
    ["short-secret-15", "has a space 1234567", "slash/in/it-1234567", "ünïcode-secret-16"],
)
def test_a_weak_or_unsafe_kling_callback_secret_is_refused(secret: str) -> None:
    with pytest.raises(SettingsError, match="kling_callback_secret"):
        Settings(kling_callback_secret=secret).validate()


@pytest.mark.parametrize("secret", ["", "cb-secret-4f1d9a", "A_b-" * 8])
def test_kling_callback_secret_may_be_empty_or_16_url_safe_characters(secret: str) -> None:
    assert Settings(kling_callback_secret=secret).validate().kling_callback_secret == secret


def test_rate_limit_may_be_zero_but_not_negative() -> None:
    assert Settings(rate_limit_per_minute=0).validate().rate_limit_per_minute == 0
    with pytest.raises(SettingsError, match="rate_limit_per_minute"):
        Settings(rate_limit_per_minute=-1).validate()


def test_load_settings_validates() -> None:
    with pytest.raises(SettingsError, match="provider"):
        load(env={"KLING_GATEWAY_PROVIDER": "other"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5,30,120", (5.0, 30.0, 120.0)),
        (" 5 , 30 ,120 ", (5.0, 30.0, 120.0)),
        ("1.5", (1.5,)),
        ("0,10,", (0.0, 10.0)),
    ],
)
def test_retry_schedule_parsing(text: str, expected: tuple[float, ...]) -> None:
    assert Settings(callback_retry_schedule=text).validate().retry_schedule == expected


def test_default_retry_schedule() -> None:
    assert Settings().retry_schedule[:3] == (5.0, 30.0, 120.0)
    assert len(Settings().retry_schedule) == 10


@pytest.mark.parametrize("text", ["", " , ", "5,soon", "5,-1", "ten"])
def test_bad_retry_schedules_are_refused(text: str) -> None:
    with pytest.raises(SettingsError, match="callback_retry_schedule"):
        Settings(callback_retry_schedule=text).validate()


# -- derived values -------------------------------------------------------------------------------


def test_public_url_defaults_to_host_and_port() -> None:
    assert Settings().resolved_public_url == "http://127.0.0.1:8000"
    assert Settings(host="0.0.0.0", port=9000).resolved_public_url == "http://0.0.0.0:9000"


def test_public_url_given_loses_its_trailing_slash() -> None:
    assert Settings(public_url="https://kg.example/base/").resolved_public_url == (
        "https://kg.example/base"
    )


def test_database_url_defaults_to_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path))
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'kling-gateway.db'}"
    assert settings.videos_dir == tmp_path / "videos"
    given = Settings(data_dir=str(tmp_path), database_url="postgresql://h/db")
    assert given.resolved_database_url == "postgresql://h/db"


# -- every numeric setting has bounds (a 0 interval is a hot loop against the upstream) ---------

HOT_LOOP_FIELDS = [
    "check_interval",
    "check_max_interval",
    "idle_poll_seconds",
    "blocking_wait_seconds",
]


@pytest.mark.parametrize("name", HOT_LOOP_FIELDS)
@pytest.mark.parametrize("value", ["0", "-1", "nan", "1e-9"])
def test_intervals_must_be_positive_and_not_tiny(name: str, value: str) -> None:
    flag = "--" + name.replace("_", "-")
    with pytest.raises(SettingsError, match=f"{name} \\({flag}\\)") as caught:
        load([flag, value])
    assert "\n" not in str(caught.value)


def test_every_numeric_setting_has_bounds() -> None:
    from kling_gateway.runtime.settings import BOUNDS

    assert set(BOUNDS) == set(INT_FIELDS) | set(FLOAT_FIELDS)
    for name, (low, high) in BOUNDS.items():
        default = getattr(Settings(), name)
        assert low <= default <= high, name
        with pytest.raises(SettingsError, match=name):
            Settings(**{name: high * 2 + 1}).validate()


def test_check_max_interval_may_not_be_below_check_interval() -> None:
    with pytest.raises(SettingsError, match="check_max_interval"):
        Settings(check_interval=10.0, check_max_interval=5.0).validate()


@pytest.mark.parametrize("name", HOT_LOOP_FIELDS)
def test_the_command_refuses_a_zero_interval_in_one_line_with_exit_2(name: str) -> None:
    import subprocess

    from tests.e2e.proc import EXE, clean_env

    flag = "--" + name.replace("_", "-")
    done = subprocess.run(
        [EXE, "serve", flag, "0"], capture_output=True, text=True, timeout=60, env=clean_env()
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and flag in done.stderr, done.stderr


def test_default_credits_is_unmetered_or_a_whole_number() -> None:
    assert load_settings(environ={}).default_credits_value is None
    assert load_settings(environ={}, default_credits="25").default_credits_value == 25
    for bad in ("lots", "-1", "2.5"):
        with pytest.raises(SettingsError, match=r"default_credits \(--default-credits\)"):
            load_settings(environ={}, default_credits=bad)


def test_prices_reads_a_toml_or_json_table(tmp_path: Path) -> None:
    from kling_gateway.domain.pricing import DEFAULT_TABLE

    assert load_settings(environ={}).price_table is DEFAULT_TABLE
    toml = tmp_path / "p.toml"
    toml.write_text('credits_per_unit = 10\n[per_second."*"]\nstd = 1\npro = 3\n4k = 6\n')
    table = load_settings(environ={}, prices=str(toml)).price_table
    assert table.credits_per_unit == 10 and table.per_second["*"]["pro"] == 3
    as_json = tmp_path / "p.json"
    as_json.write_text('{"per_second": {"*": {"std": 2, "pro": 2, "4k": 2}}, "per_call": {"x": 1}}')
    assert load_settings(environ={}, prices=str(as_json)).price_table.per_call["x"] == 1


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('[per_second."*"]\nstd = 1\n', "must price every mode"),
        ('[per_second."*"]\nstd = 1\npro = 2\n4k = -3\n', ">= 0"),
        ("per_second = [", ""),
        ('colour = "red"\n', "unknown key 'colour'"),
    ],
)
def test_a_bad_price_table_names_the_flag_and_the_problem(
    tmp_path: Path, text: str, why: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=r"prices \(--prices\)") as caught:
        load_settings(environ={}, prices=str(path))
    assert why in str(caught.value)
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(environ={}, prices=str(tmp_path / "missing.toml"))
