"""The HTTP status of a blocking /kling/videos call whose task failed (docs/contract.md §3, §4)."""

from __future__ import annotations

import pytest

from kling_gateway.api.routes.videos import _failure_status


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("timeout", 504),  # the task's own deadline passed
        ("upstream_unavailable", 503),  # Kling 5000-5002
        ("upstream_auth_failed", 502),
        ("upstream_timeout", 502),
        ("upstream_bad_response", 502),
        ("content_policy_violation", 200),  # the request was refused: a result, not a fault
        ("invalid_request", 200),
        ("video_not_found", 200),
        ("generation_failed", 200),
    ],
)
def test_upstream_faults_are_gateway_errors(code: str, status: int) -> None:
    assert _failure_status(code) == status
