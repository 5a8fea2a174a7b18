"""The SDK's pure pieces: outcome rules, retry policy, error typing, the poll schedule.

The SDK against a live server is in ``tests/client/test_hosted_fake.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from kling_gateway.client import (
    LONG_POLL_HEADER,
    ApiError,
    BadRequestError,
    Client,
    GatewayTimeoutError,
    InvalidTokenError,
    RateLimitError,
    TokenExpiredError,
    UnknownError,
    task_outcome,
)
from kling_gateway.client._base import (
    Core,
    PollSchedule,
    RetryPolicy,
    error_from_response,
    parse_retry_after,
)
from kling_gateway.client.errors import error_for


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        ({}, "running"),
        ({"response": {"task_id": "t", "state": "pending"}}, "running"),
        ({"response": {"task_id": "t", "state": "processing"}}, "running"),
        (
            {"response": {"state": "succeed", "success": True, "video_url": "https://x"}},
            "succeeded",
        ),
        ({"state": "succeeded"}, "succeeded"),
        ({"state": "SUCCESS"}, "succeeded"),
        ({"state": "completed"}, "succeeded"),
        ({"success": True, "video_url": "https://x"}, "succeeded"),
        ({"success": True}, "running"),  # success without a URL is not yet a result
        ({"response": {"state": "failed", "success": False}}, "failed"),
        ({"state": "error"}, "failed"),
        ({"state": "cancelled"}, "failed"),
        ({"success": False, "error": {"code": "x", "message": "y"}}, "failed"),
        ({"success": False}, "running"),
    ],
)
def test_task_outcome_follows_the_hosted_clients(body: dict[str, Any], outcome: str) -> None:
    assert task_outcome(body) == outcome


def test_parse_retry_after() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 100 < (parse_retry_after(later) or 0) <= 120


def _response(status: int, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("POST", "http://x"), **kw)


def test_retry_policy_backoff_and_limits() -> None:
    policy = RetryPolicy(max_retries=5, jitter=lambda: 1.0)
    assert [policy.backoff(n) for n in range(5)] == [1.25, 2.5, 5.0, 10.0, 10.0]
    assert policy.delay_after(_response(503), 0) == 1.25
    assert policy.delay_after(_response(429, {"retry-after": "9"}), 0) == 9.0
    assert policy.delay_after(_response(400), 0) is None
    assert policy.delay_after(_response(200), 0) is None
    assert policy.delay_after(httpx.ConnectError("refused"), 4) == 10.0
    assert policy.delay_after(_response(503), 5) is None
    for status in (408, 409, 429, 500, 502, 503, 504):
        assert policy.delay_after(_response(status), 0) is not None


@pytest.mark.parametrize(
    ("status", "code", "expected", "expected_code"),
    [
        (400, "bad_request", BadRequestError, "bad_request"),
        (401, "token_expired", TokenExpiredError, "token_expired"),
        (401, None, InvalidTokenError, "invalid_token"),
        (400, "token_expired", TokenExpiredError, "token_expired"),  # the code wins
        (500, "new_code", ApiError, "new_code"),  # an unknown code is kept, typed by status
        (504, None, GatewayTimeoutError, "timeout"),
        (422, None, UnknownError, "http_422"),
    ],
)
def test_error_for(
    status: int, code: str | None, expected: type[Exception], expected_code: str
) -> None:
    error = error_for(status, code, "msg")
    assert type(error) is expected
    assert (error.status, error.code, error.message) == (status, expected_code, "msg")


def test_error_from_response_reads_body_and_headers() -> None:
    body = {"success": False, "error": {"code": "too_many_requests", "message": "slow down"}}
    error = error_from_response(
        _response(429, {"retry-after": "3", "x-trace-id": "from-header"}, json=body)
    )
    assert isinstance(error, RateLimitError)
    assert (error.retry_after, error.trace_id, error.message) == (3.0, "from-header", "slow down")
    assert "HTTP 429 too_many_requests: slow down" in str(error)


def _core(now: list[float]) -> Core:
    return Core(
        base_url="http://x/",
        token="t",
        timeout=10,
        max_retries=0,
        max_batch_size=10,
        clock=lambda: now[0],
    )


def test_poll_schedule_trusts_long_poll_only_when_it_held_or_brought_news() -> None:
    now = [0.0]
    schedule = PollSchedule(_core(now), timeout=100, poll_interval=3)
    assert schedule.window() == 30.0
    long_poll = _response(200, {LONG_POLL_HEADER: "1"})
    assert schedule.next_delay(long_poll, 30.0, changed=True, took=0.1) == 0.0
    assert schedule.long_poll is True
    assert schedule.next_delay(long_poll, 30.0, changed=False, took=30.0) == 0.0
    # Came back at once with nothing new: a misbehaving server must not make us spin.
    assert (schedule.next_delay(long_poll, 30.0, changed=False, took=0.1) or 0) >= 3
    now[0] = 90.0
    assert schedule.window() == 10.0  # never past the deadline
    now[0] = 100.0
    assert schedule.next_delay(long_poll, 10.0, changed=False, took=10) is None


def test_poll_schedule_falls_back_and_takes_retry_after_hints() -> None:
    now = [0.0]
    schedule = PollSchedule(_core(now), timeout=100, poll_interval=3)
    assert schedule.next_delay(_response(200, {"retry-after": "7"}), 30.0, True, 0.1) == 7.0
    assert schedule.long_poll is False
    assert schedule.window() is None


def test_client_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="token"):
        Client(token="")
    with pytest.raises(ValueError, match="max_batch_size"):
        Client(token="t", max_batch_size=0)


def test_requests_carry_the_timeout_and_long_poll_read_margin() -> None:
    core = _core([0.0])
    request = core.build("/kling/tasks", {"id": "x"}, min_read_timeout=45)
    assert str(request.url) == "http://x/kling/tasks"
    assert request.extensions["timeout"]["read"] == 45
    assert request.extensions["timeout"]["connect"] == 10
