"""Per-token rate limits over HTTP: 429 too_many_requests with Retry-After (docs/contract.md §4)."""

from __future__ import annotations

from pathlib import Path

from kling_gateway.domain.ids import new_task_id
from tests.harness import AppHarness, make_settings


async def test_fourth_request_in_a_minute_is_429_with_retry_after(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, worker=False, rate_limit_per_minute=3)
    async with AppHarness.start(settings) as gateway:
        await gateway.add_user("bob")
        body = {"id": new_task_id()}
        for _ in range(3):
            allowed = await gateway.tasks(body)
            assert allowed.status_code == 200, allowed.text
            assert "retry-after" not in allowed.headers

        refused = await gateway.tasks(body)
        assert refused.status_code == 429, refused.text
        error = refused.json()
        assert error["success"] is False
        assert error["error"]["code"] == "too_many_requests"
        assert error["error"]["message"]
        assert error["trace_id"] == refused.headers["x-trace-id"]
        retry_after = refused.headers["retry-after"]
        assert retry_after.isdigit()
        assert 1 <= int(retry_after) <= 20  # one request's allowance returns every 20 s

        # the limit counts per token: another user's token is unaffected
        for _ in range(3):
            other = await gateway.tasks(body, user="bob")
            assert other.status_code == 200, other.text

        # the limit spans APIs: /kling/videos is refused for the same token too
        videos = await gateway.videos({"action": "text2video", "prompt": "x", "async": True})
        assert videos.status_code == 429
        assert videos.json()["error"]["code"] == "too_many_requests"
        assert videos.headers["retry-after"].isdigit()


async def test_no_limit_when_set_to_zero(gateway: AppHarness) -> None:
    assert gateway.settings.rate_limit_per_minute == 0
    for _ in range(20):
        response = await gateway.tasks({"id": new_task_id()})
        assert response.status_code == 200


async def test_unauthenticated_requests_are_401_not_429(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, worker=False, rate_limit_per_minute=1)
    async with AppHarness.start(settings) as gateway:
        assert (await gateway.tasks({"id": new_task_id()})).status_code == 200
        for _ in range(3):
            response = await gateway.client.post(
                "/kling/tasks", json={"id": "x"}, headers={"authorization": "Bearer nope"}
            )
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "invalid_token"
