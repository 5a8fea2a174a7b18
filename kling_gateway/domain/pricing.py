"""The price table and the one price function (docs/billing.md).

A table says what a task costs in credits: per output second by model x mode (plus a rate for
audio) for the video kinds, or per call by kind (lip-sync and the like). ``price`` computes a
request's price from its kind and typed params at create (that much is held); ``actual_price``
the price it settles at: the output's real duration, or the upstream's own
``final_unit_deduction`` converted by the table's ``credits_per_unit``. A task never settles
above what it held: the hold is what the client was told.

Pure: the table comes in as data (``parse_table``); reading its file is the runtime's job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

# The model key of a row that applies to every model not named.
ANY_MODEL = "*"
MODES = ("std", "pro", "4k")


class PriceError(ValueError):
    """A price table that cannot be used, or a request it has no price for."""


@dataclass(frozen=True, slots=True)
class Usage:
    """What a task costs (``usage`` in the answer and the record): whole credits and the
    output seconds they are for (0 for a per-call price without a duration)."""

    credits: int
    duration: float

    def as_json(self) -> dict[str, Any]:
        return {"credits": self.credits, "duration": self.duration}

    @classmethod
    def from_json(cls, value: Any) -> Usage | None:
        if not isinstance(value, dict):
            return None
        return cls(int(value["credits"]), float(value["duration"]))


@dataclass(frozen=True, slots=True)
class PriceTable:
    # model (or ANY_MODEL) -> mode -> credits per output second
    per_second: Mapping[str, Mapping[str, Decimal]]
    # model (or ANY_MODEL) -> credits per output second more with audio
    audio_per_second: Mapping[str, Decimal] = field(default_factory=dict)
    # task kind -> credits per task (takes precedence over per_second for that kind)
    per_call: Mapping[str, Decimal] = field(default_factory=dict)
    # credits per upstream unit (``final_unit_deduction``); None: settle by duration
    credits_per_unit: Decimal | None = None


def price(table: PriceTable, kind: str, params: Any) -> Usage:
    """The price of a request of ``kind`` (the task type) with typed ``params``.

    Per call when the table prices ``kind`` so; else per output second, from the params'
    ``model``, ``mode``, ``duration`` and ``generate_audio`` (any typed params with those
    attributes: the price of a new kind slots in without a change here).
    """
    seconds = _number(getattr(params, "duration", 0) or 0)
    if kind in table.per_call:
        return Usage(_whole(table.per_call[kind]), float(seconds))
    return Usage(_whole(_rate(table, params) * seconds), float(seconds))


def actual_price(
    table: PriceTable,
    kind: str,
    params: Any,
    held: Usage,
    *,
    seconds: float | None,
    units: Any = None,
) -> Usage:
    """What a finished task settles at: by the upstream's units when the table converts
    them, else by the output's real ``seconds`` (rounded to whole seconds), else what it held;
    never more than it held."""
    billed = held.duration if seconds is None else float(_whole_seconds(seconds))
    credits = held.credits
    unit_count = _units(units)
    if table.credits_per_unit is not None and unit_count is not None:
        credits = _whole(unit_count * table.credits_per_unit)
    elif seconds is not None and kind not in table.per_call:
        credits = _whole(_rate(table, params) * _whole_seconds(seconds))
    return Usage(min(credits, held.credits), billed)


def parse_table(data: Mapping[str, Any]) -> PriceTable:
    """A table from its TOML/JSON form (docs/billing.md); PriceError names what is wrong."""
    known = {"per_second", "audio_per_second", "per_call", "credits_per_unit"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise PriceError(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    per_second = {
        str(model): _rates(f"per_second.{model}", modes)
        for model, modes in _table(data, "per_second").items()
    }
    if ANY_MODEL not in per_second or set(per_second[ANY_MODEL]) != set(MODES):
        raise PriceError(f'per_second."{ANY_MODEL}" must price every mode: {", ".join(MODES)}')
    cpu = data.get("credits_per_unit")
    return PriceTable(
        per_second=per_second,
        audio_per_second=_rates("audio_per_second", _table(data, "audio_per_second")),
        per_call=_rates("per_call", _table(data, "per_call")),
        credits_per_unit=None if cpu is None else _credit("credits_per_unit", cpu),
    )


# The table used without --prices: a starting point to edit, not Kling's price list.
DEFAULT_TABLE_DATA: dict[str, Any] = {
    "per_second": {ANY_MODEL: {"std": 1, "pro": 2, "4k": 4}},
    "audio_per_second": {ANY_MODEL: 1},
    "per_call": {"lip-sync": 5, "motion": 10},
}


def _rate(table: PriceTable, params: Any) -> Decimal:
    model, mode = str(getattr(params, "model", "")), str(getattr(params, "mode", "std"))
    rate = table.per_second.get(model, {}).get(mode)
    if rate is None:
        rate = table.per_second[ANY_MODEL].get(mode)
    if rate is None:
        raise PriceError(f"the price table has no rate for mode {mode!r}")
    if getattr(params, "generate_audio", False):
        audio = table.audio_per_second
        rate += audio.get(model, audio.get(ANY_MODEL, Decimal(0)))
    return rate


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise PriceError(f"{key} must be a table")
    return value


def _rates(where: str, values: Any) -> dict[str, Decimal]:
    if not isinstance(values, Mapping):
        raise PriceError(f"{where} must be a table")
    return {str(name): _credit(f"{where}.{name}", value) for name, value in values.items()}


def _credit(where: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PriceError(f"{where} must be a number, not {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise PriceError(f"{where} must be a number, not {value!r}") from exc
    if not number.is_finite() or number < 0:
        raise PriceError(f"{where} must be a number of credits >= 0, not {value!r}")
    return number


def _number(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return Decimal(0)
    return Decimal(str(value))


def total_units(final: Any, earlier: Any) -> Decimal | None:
    """The units of every paid upstream job of a task: its last job's ``final`` plus the
    ``earlier`` jobs' (a list, e.g. a talking photo's animation); None while ``final`` is not
    a number (nothing to settle by units)."""
    last = _units(final)
    if last is None:
        return None
    before = earlier if isinstance(earlier, list) else []
    return last + sum((u for u in map(_units, before) if u is not None), Decimal(0))


def _units(value: Any) -> Decimal | None:
    """The upstream's ``final_unit_deduction`` (a string of a number), if it is one."""
    if isinstance(value, Decimal):
        return value if value.is_finite() and value >= 0 else None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() and number >= 0 else None


def _whole(value: Decimal) -> int:
    """Whole credits, rounded up: a fraction of a credit is a credit."""
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def _whole_seconds(seconds: float) -> Decimal:
    # An output of 5.04 s is the 5-second video asked for.
    return _number(seconds).to_integral_value(rounding=ROUND_HALF_UP)


DEFAULT_TABLE = parse_table(DEFAULT_TABLE_DATA)
