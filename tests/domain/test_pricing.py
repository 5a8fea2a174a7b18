"""The price table and the one price function (docs/billing.md)."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from kling_gateway.domain.pricing import (
    DEFAULT_TABLE,
    PriceError,
    Usage,
    actual_price,
    parse_table,
    price,
)

TABLE = parse_table(
    {
        "per_second": {"*": {"std": 1, "pro": 2, "4k": 4}, "kling-v2-master": {"pro": "3.5"}},
        "audio_per_second": {"*": 1, "kling-v3": "0.5"},
        "per_call": {"lip-sync": 7},
        "credits_per_unit": 3,
    }
)


def params(**kw: Any) -> Any:
    base = {"model": "kling-v1", "mode": "std", "duration": 5, "generate_audio": False}
    return SimpleNamespace(**{**base, **kw})


@pytest.mark.parametrize(
    ("kw", "credits"),
    [
        ({}, 5),
        ({"mode": "pro", "duration": 10}, 20),
        ({"model": "kling-v2-master", "mode": "pro"}, 18),  # 17.5 rounded up
        ({"model": "kling-v2-master", "mode": "std"}, 5),  # the row names pro only
        ({"model": "kling-v3", "mode": "4k", "generate_audio": True}, 23),  # 4.5 x 5 = 22.5
        ({"model": "kling-v2-6", "mode": "pro", "generate_audio": True}, 15),
    ],
)
def test_price_per_second_by_model_mode_and_audio(kw: dict[str, Any], credits: int) -> None:
    assert price(TABLE, "videos", params(**kw)) == Usage(credits, float(kw.get("duration", 5)))


def test_a_kind_priced_per_call_ignores_seconds() -> None:
    assert price(TABLE, "lip-sync", SimpleNamespace(mode="audio2video")) == Usage(7, 0.0)
    assert price(TABLE, "lip-sync", params(duration=10)) == Usage(7, 10.0)
    assert price(DEFAULT_TABLE, "motion", SimpleNamespace()) == Usage(10, 0.0)


def test_a_mode_the_table_does_not_know_is_refused() -> None:
    with pytest.raises(PriceError, match="8k"):
        price(TABLE, "videos", params(mode="8k"))


def test_actual_price_by_units_duration_or_the_hold() -> None:
    held = Usage(10, 10.0)
    p = params(duration=10)
    assert actual_price(TABLE, "videos", p, held, seconds=10.04, units="2") == Usage(6, 10.0)
    no_units = parse_table({"per_second": {"*": {"std": 1, "pro": 2, "4k": 4}}})
    assert actual_price(no_units, "videos", p, held, seconds=5.04, units="2") == Usage(5, 5.0)
    assert actual_price(no_units, "videos", p, held, seconds=None) == held
    # Never more than was held, whatever the upstream says.
    assert actual_price(TABLE, "videos", p, held, seconds=10.0, units="99") == held
    assert actual_price(no_units, "videos", p, held, seconds=30.0) == Usage(10, 30.0)
    # A unit count that is not a number falls back to the duration.
    assert actual_price(TABLE, "videos", p, held, seconds=4.6, units="n/a").credits == 5
    assert actual_price(TABLE, "lip-sync", p, Usage(7, 0.0), seconds=3.0) == Usage(7, 3.0)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({}, "must price every mode"),
        ({"per_second": {"*": {"std": 1, "pro": 2}}}, "must price every mode"),
        ({"per_second": {"*": {"std": 1, "pro": 2, "4k": True}}}, "must be a number"),
        ({"per_second": {"*": {"std": -1, "pro": 2, "4k": 3}}}, ">= 0"),
        ({"per_second": {"*": {"std": "nan", "pro": 2, "4k": 3}}}, ">= 0"),
        ({"per_second": {"*": 3}}, "must be a table"),
        ({"per_second": {"*": {"std": 1, "pro": 2, "4k": 3}}, "per_call": []}, "must be a table"),
        ({"prices": {}}, "unknown key 'prices'"),
    ],
)
def test_a_bad_table_names_the_problem(data: dict[str, Any], why: str) -> None:
    with pytest.raises(PriceError, match=why):
        parse_table(data)


def test_the_default_table() -> None:
    assert DEFAULT_TABLE.per_second["*"] == {"std": 1, "pro": 2, "4k": 4}
    assert DEFAULT_TABLE.credits_per_unit is None
    assert DEFAULT_TABLE.per_call["lip-sync"] == Decimal(5)
