"""POST /kling/tasks over the full ASGI stack: every action and error (docs/contract.md §1, §4)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import msgspec
import pytest

from kling_gateway.domain.ids import new_task_id
from tests.harness import AppHarness, insert_finished, make_task


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["trace_id"] == response.headers["x-trace-id"]
    assert set(body) == {"success", "error", "trace_id"}
    return body


async def stored(gateway: AppHarness, user: str = "alice", **kw: Any) -> dict[str, Any]:
    task = await insert_finished(gateway.store, make_task(gateway.user_ids[user], **kw))
    return task.record()


async def test_retrieve_returns_the_stored_record(gateway: AppHarness) -> None:
    record = await stored(gateway)
    response = await gateway.tasks({"id": record["id"], "action": "retrieve"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-trace-id"]
    body = response.json()
    assert body == msgspec.json.decode(msgspec.json.encode(record))
    assert body["response"]["task_id"] == body["id"]
    assert body["duration"] == body["elapsed"] == pytest.approx(5.1)
    assert "retry-after" not in response.headers


async def test_retrieve_is_the_default_action(gateway: AppHarness) -> None:
    record = await stored(gateway)
    response = await gateway.tasks({"id": record["id"]})
    assert response.json()["id"] == record["id"]


async def test_missing_and_foreign_tasks_look_the_same(gateway: AppHarness) -> None:
    await gateway.add_user("mallory")
    record = await stored(gateway, user="alice")
    foreign = await gateway.tasks({"id": record["id"]}, user="mallory")
    missing = await gateway.tasks({"id": new_task_id()}, user="mallory")
    assert foreign.status_code == missing.status_code == 200
    assert foreign.content == missing.content == b"{}"


async def test_unfinished_record_carries_a_retry_hint(gateway: AppHarness) -> None:
    task = make_task(gateway.user_ids["alice"])
    await gateway.store.insert_task(task, next_check_at=time.time() + 999, deadline_at=1e12)
    response = await gateway.tasks({"id": task.id})
    assert response.json()["id"] == task.id
    assert "response" not in response.json()
    assert response.headers["retry-after"] == "3"


async def test_retrieve_batch_keeps_order_drops_unknown_and_duplicates(gateway: AppHarness) -> None:
    await gateway.add_user("mallory")
    a, b = await stored(gateway), await stored(gateway)
    foreign = await stored(gateway, user="mallory")
    ids = [b["id"], new_task_id(), a["id"], b["id"], foreign["id"]]
    response = await gateway.tasks({"action": "retrieve_batch", "ids": ids})
    body = response.json()
    assert [item["id"] for item in body["items"]] == [b["id"], a["id"]]
    assert body["count"] == 2


async def test_retrieve_batch_with_filters_pages_newest_first(gateway: AppHarness) -> None:
    base = 1_700_000_000.0
    ids = [(await stored(gateway, created_at=base + i))["id"] for i in range(5)]
    body = {"action": "retrieve_batch", "limit": 2, "offset": 1, "type": "videos"}
    page = (await gateway.tasks(body)).json()
    assert [item["id"] for item in page["items"]] == [ids[3], ids[2]]
    assert page["count"] == 5
    ranged = {"action": "retrieve_batch", "created_at_min": base + 1, "created_at_max": base + 3}
    page = (await gateway.tasks(ranged)).json()
    assert [item["id"] for item in page["items"]] == [ids[3], ids[2], ids[1]]
    assert page["count"] == 3
    other_type = (await gateway.tasks({"action": "retrieve_batch", "type": "images"})).json()
    assert other_type == {"items": [], "count": 0}


async def test_delete_own_task_only(gateway: AppHarness) -> None:
    await gateway.add_user("mallory")
    record = await stored(gateway)
    refused = await gateway.tasks({"action": "delete", "id": record["id"]}, user="mallory")
    assert refused.json() == {"id": record["id"], "deleted": False}
    deleted = await gateway.tasks({"action": "delete", "id": record["id"]})
    assert deleted.json() == {"id": record["id"], "deleted": True}
    assert (await gateway.tasks({"id": record["id"]})).content == b"{}"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b"[1, 2]", "JSON object"),
        (b'{"id": 5}', "`id`"),
        (b'{"id": ""}', "`id`"),
        (b'{"id": "   "}', "`id`"),
        (b'{"action": "retrieve"}', "`id` is required"),
        (b'{"action": 3, "id": "x"}', "`action`"),
        (b'{"action": "retrieve_batch", "ids": "abc"}', "`ids`"),
        (b'{"action": "retrieve_batch", "ids": [1]}', "`ids"),
        (b'{"action": "retrieve_batch", "ids": [""]}', "`ids`"),
        (b'{"action": "retrieve_batch", "ids": []}', "`ids`"),
        (b'{"action": "retrieve_batch", "limit": 101}', "`limit`"),
        (b'{"action": "retrieve_batch", "limit": 0}', "`limit`"),
        (b'{"action": "retrieve_batch", "limit": 2.5}', "`limit`"),
        (b'{"action": "retrieve_batch", "offset": -1}', "`offset`"),
        (b'{"action": "retrieve_batch", "created_at_min": "yesterday"}', "`created_at_min`"),
        (b'{"action": "delete"}', "`id` is required"),
        (b'{"id": "x", "wait": 61}', "`wait`"),
        (b'{"id": "x", "wait": -1}', "`wait`"),
    ],
)
async def test_bad_requests_name_the_problem(
    gateway: AppHarness, body: bytes, fragment: str
) -> None:
    headers = {**gateway.headers(), "content-type": "application/json"}
    response = await gateway.client.post("/kling/tasks", content=body, headers=headers)
    error = assert_error(response, 400, "bad_request")
    assert fragment in error["error"]["message"]


async def test_too_many_ids(gateway: AppHarness) -> None:
    ids = [new_task_id() for _ in range(1001)]
    response = await gateway.tasks({"action": "retrieve_batch", "ids": ids})
    assert "at most 1000" in assert_error(response, 400, "bad_request")["error"]["message"]
    ok = await gateway.tasks({"action": "retrieve_batch", "ids": ids[:1000]})
    assert ok.json() == {"items": [], "count": 0}


async def test_body_over_the_cap(gateway: AppHarness) -> None:
    cap = gateway.settings.max_body_bytes
    response = await gateway.tasks({"id": "x", "pad": "a" * cap})
    assert "larger than" in assert_error(response, 400, "bad_request")["error"]["message"]


async def test_unknown_action(gateway: AppHarness) -> None:
    response = await gateway.tasks({"action": "explode", "id": "x"})
    assert "explode" in assert_error(response, 400, "api_not_implemented")["error"]["message"]


async def test_unknown_fields_are_ignored(gateway: AppHarness) -> None:
    record = await stored(gateway)
    response = await gateway.tasks({"id": record["id"], "timeout": 5, "extra": {"a": 1}})
    assert response.json()["id"] == record["id"]


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic abc", "Bearer kg-unknown", "Bearer a b", "kg-token"],
)
async def test_invalid_tokens(gateway: AppHarness, authorization: str | None) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    response = await gateway.client.post("/kling/tasks", json={"id": "x"}, headers=headers)
    assert_error(response, 401, "invalid_token")


async def test_revoked_token_is_refused(gateway: AppHarness) -> None:
    token = await gateway.add_user("bob")
    prefix = token[:10]
    await gateway.store.revoke_credential(prefix, time.time())
    gateway.app.ctx.auth._cache.clear()  # the cache holds a token for auth_cache_seconds
    assert_error(await gateway.tasks({"id": "x"}, user="bob"), 401, "invalid_token")


async def test_expired_token(gateway: AppHarness) -> None:
    from kling_gateway.storage.tokens import issue_token

    issued = await issue_token(gateway.store, "old", expires_in_days=-1)
    headers = {"authorization": f"Bearer {issued.token}"}
    response = await gateway.client.post("/kling/tasks", json={"id": "x"}, headers=headers)
    assert_error(response, 401, "token_expired")


async def test_token_not_granted_this_api(gateway: AppHarness) -> None:
    await gateway.add_user("maker", apis=("kling.videos",))
    assert_error(await gateway.tasks({"id": "x"}, user="maker"), 400, "token_mismatched")


async def test_disabled_application(gateway: AppHarness) -> None:
    await gateway.add_user("frozen")
    await gateway.store.set_application("frozen", disabled=True)
    assert_error(await gateway.tasks({"id": "x"}, user="frozen"), 400, "disabled")


async def test_unknown_path_and_method(gateway: AppHarness) -> None:
    response = await gateway.client.post("/kling/nothing", json={})
    assert_error(response, 404, "no_api")
    response = await gateway.client.get("/kling/tasks")
    assert_error(response, 404, "no_api")


async def test_unexpected_fault_is_a_500_without_internals(
    gateway: AppHarness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_: Any) -> bytes:
        raise RuntimeError("database file is on fire at /secret/path")

    monkeypatch.setattr(gateway.store, "get_task_record", broken)
    response = await gateway.tasks({"id": "x"})
    body = assert_error(response, 500, "api_error")
    assert "fire" not in response.text and "Traceback" not in response.text
    assert body["trace_id"] in caplog.text


async def test_health_and_openapi_carry_trace_ids(gateway: AppHarness) -> None:
    for path in ("/healthz", "/openapi.json", "/docs"):
        response = await gateway.client.get(path)
        assert response.status_code == 200
        assert response.headers["x-trace-id"]


@pytest.mark.parametrize(
    "body",
    [
        {"id": "a\x00b"},
        {"action": "retrieve_batch", "ids": ["a\x00b"]},
        {"action": "retrieve_batch", "type": "vid\x00eos"},
        {"action": "delete", "id": "\x00"},
    ],
)
async def test_nul_characters_are_a_400(gateway: AppHarness, body: dict[str, Any]) -> None:
    assert "NUL" in assert_error(await gateway.tasks(body), 400, "bad_request")["error"]["message"]


async def test_an_unreachable_store_is_a_503(
    gateway: AppHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refused(*_: Any) -> bytes:
        raise ConnectionRefusedError("connection refused")

    monkeypatch.setattr(gateway.store, "get_task_record", refused)
    body = assert_error(await gateway.tasks({"id": "x"}), 503, "service_unavailable")
    assert "refused" not in body["error"]["message"]
