"""What finishing a task does to its hold (decided beside the transition function), and usage
reports over ledger entries."""

from __future__ import annotations

import dataclasses
import random
from decimal import Decimal

import msgspec

from kling_gateway.domain.billing import (
    UNITS_SPENT,
    Entry,
    LedgerEntry,
    Release,
    Settle,
    billing_effect,
    entry_moves,
    usage_report,
)
from kling_gateway.domain.outcomes import ProviderError, Status, VideoResult
from kling_gateway.domain.pricing import DEFAULT_TABLE, Usage, total_units
from kling_gateway.domain.task import Task
from kling_gateway.domain.transitions import Deadline, Policy, Schedule, transition
from kling_gateway.domain.videos import validate
from kling_gateway.protocol.requests import VideoRequestBody
from kling_gateway.protocol.task import TaskState

POLICY = Policy(5.0, 60.0, 3600.0)
SCHEDULE = Schedule(0, 10_000.0)


HELD = Usage(10, 5.0)  # a 5-second pro video


def task(mode: str = "pro", usage: Usage | None = HELD) -> Task:
    body = {"action": "text2video", "prompt": "a cat", "mode": mode}
    params = validate(msgspec.convert(body, VideoRequestBody))
    return Task("t", "o", "u", "a", "c", "tr", body, 1.0, params=params, usage=usage)


def succeeded(seconds: str = "5.0", units: str | None = None) -> Status:
    video = VideoResult(video_id="v", video_url="http://x/v.mp4", duration=seconds)
    data = None if units is None else {"final_unit_deduction": units}
    return Status(TaskState.SUCCEED, video=video, provider_data=data)


def test_a_success_settles_at_the_actual_price_and_sets_the_usage() -> None:
    change = transition(task(), succeeded("4.0"), SCHEDULE, 2.0, POLICY)
    assert change.billing == Settle(Usage(8, 4.0))
    assert change.task.usage == Usage(8, 4.0)
    assert change.task.record()["usage"] == {"credits": 8, "duration": 4.0}


def test_units_settle_when_the_table_converts_them() -> None:
    prices = dataclasses.replace(DEFAULT_TABLE, credits_per_unit=Decimal(5))
    policy = dataclasses.replace(POLICY, prices=prices)
    change = transition(task(), succeeded(units="1"), SCHEDULE, 2.0, policy)
    assert change.billing == Settle(Usage(5, 5.0))


def test_every_failure_releases() -> None:
    failures = [
        Status(TaskState.FAILED, error_code="x", error_message="y"),
        ProviderError("refused", code="content_policy"),
        Deadline(),
    ]
    for outcome in failures:
        change = transition(task(), outcome, SCHEDULE, 2.0, POLICY, random.Random(1))
        assert change.billing == Release() and change.task.usage == Usage(0, 0.0)


def test_nothing_moves_while_running_or_without_a_price() -> None:
    running = Status(TaskState.PROCESSING)
    assert transition(task(), running, SCHEDULE, 2.0, POLICY).billing is None
    retry = ProviderError("busy", retryable=True)
    assert transition(task(), retry, SCHEDULE, 2.0, POLICY, random.Random(1)).billing is None
    assert transition(task(usage=None), succeeded(), SCHEDULE, 2.0, POLICY).billing is None
    done = task()
    done.state = TaskState.SUCCEED
    assert billing_effect(done, task(), DEFAULT_TABLE) is None


def test_entry_moves() -> None:
    assert entry_moves(Settle(Usage(3, 5.0)), 10) == (Entry.SETTLE, -3, -10)
    assert entry_moves(Release(), 10) == (Entry.RELEASE, 0, -10)


def _entry(user: str, entry: Entry, credits: int, at: float, model: str = "m") -> LedgerEntry:
    return LedgerEntry("id", "app", user, entry, credits, 0, at, "t", model)


def test_usage_report_groups_and_totals() -> None:
    day = 86_400.0
    entries = [
        _entry("a", Entry.GRANT, 100, 0.0),
        _entry("a", Entry.HOLD, 0, 1.0),
        _entry("a", Entry.SETTLE, -5, 2.0, "kling-v1"),
        _entry("a", Entry.SETTLE, -10, day + 2, "kling-v3"),
        _entry("a", Entry.REFUND, 10, day + 3, "kling-v3"),
        _entry("b", Entry.RELEASE, 0, 5.0, "kling-v1"),
    ]
    by_model = usage_report(entries, by="model")
    rows = [(r.user, r.key, r.tasks, r.credits, r.failed, r.refunded) for r in by_model.rows]
    assert rows == [
        ("a", "kling-v1", 1, 5, 0, 0),
        ("a", "kling-v3", 1, 0, 0, 10),
        ("b", "kling-v1", 0, 0, 1, 0),
    ]
    by_day = usage_report(entries, by="day")
    assert [r.key for r in by_day.rows] == ["1970-01-01", "1970-01-02", "1970-01-01"]
    total = usage_report(entries).as_json()["total"]
    assert total == {"tasks": 2, "credits": 5, "failed": 1, "refunded": 10}


def test_units_of_earlier_paid_jobs_settle_too() -> None:
    # A talking photo: its animation reported 3 units, its lip-sync job 1.
    prices = dataclasses.replace(DEFAULT_TABLE, credits_per_unit=Decimal(2))
    policy = dataclasses.replace(POLICY, prices=prices)
    before = task()
    before.provider_data[UNITS_SPENT] = ["3"]
    change = transition(before, succeeded(units="1"), SCHEDULE, 2.0, policy)
    assert change.billing == Settle(Usage(8, 5.0))


def test_total_units_needs_the_last_jobs_and_skips_unreadable_earlier_ones() -> None:
    assert total_units("1", ["3", None, "x"]) == Decimal(4)
    assert total_units(None, ["3"]) is None
    assert total_units("2.5", "not a list") == Decimal("2.5")
