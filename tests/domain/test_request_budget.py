"""Unknown fields of a stored request: kept as sent within their budget, the rest dropped and
said so (docs/contract.md §1)."""

from __future__ import annotations

import msgspec

from kling_gateway.domain.request_budget import (
    DROPPED_KEY,
    MAX_NAME_CHARS,
    MAX_NAMES,
    UNKNOWN_FIELDS_BUDGET,
)
from kling_gateway.domain.videos import stored_request

TEXT = {"action": "text2video", "prompt": "a cat", "duration": 5}


def test_small_unknown_fields_are_kept_as_sent() -> None:
    raw = {**TEXT, "timeout": 3, "sdk": {"name": "x", "version": [1, 2]}}
    assert stored_request(raw) == raw


def test_unknown_fields_beyond_the_budget_are_dropped_and_said_so() -> None:
    big = "x" * UNKNOWN_FIELDS_BUDGET
    raw = {**TEXT, "first": "kept", "huge": big, "later": {"small": True}, "also": [big, big]}
    stored = stored_request(raw)
    assert {k: stored[k] for k in (*TEXT, "first", "later")} == {
        **TEXT,
        "first": "kept",
        "later": {"small": True},
    }
    assert "huge" not in stored and "also" not in stored
    report = stored[DROPPED_KEY]
    assert report["count"] == 2 and report["fields"] == ["huge", "also"]
    assert report["bytes"] > 3 * UNKNOWN_FIELDS_BUDGET
    unknown = {k: v for k, v in stored.items() if k not in TEXT and k != DROPPED_KEY}
    assert len(msgspec.json.encode(unknown)) <= UNKNOWN_FIELDS_BUDGET


def test_known_fields_never_count_against_the_budget() -> None:
    long_prompt = "a" * 2_000
    raw = {**TEXT, "prompt": long_prompt, "negative_prompt": "b" * 2_000}
    assert stored_request(raw) == raw


def test_the_report_itself_is_bounded_and_cannot_be_forged() -> None:
    many = {f"{'k' * 200}{i}": "v" * 2_000 for i in range(200)}
    raw = {**TEXT, DROPPED_KEY: {"count": 0}, **many}
    report = stored_request(raw)[DROPPED_KEY]
    assert report["count"] > 150 and len(report["fields"]) == MAX_NAMES
    assert all(len(name) == MAX_NAME_CHARS for name in report["fields"])
    assert len(msgspec.json.encode(stored_request(raw))) < 2 * UNKNOWN_FIELDS_BUDGET


def test_a_clients_own_report_is_not_kept() -> None:
    assert stored_request({**TEXT, DROPPED_KEY: {"count": 9}}) == TEXT
