"""/admin/v1/usage, /ledger, refunds and GET /kling/usage against a gateway whose worker runs
tasks to the end: the reports are the ledger's (domain.billing.usage_report)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from kling_gateway.storage.engine import SQLStore
from kling_gateway.storage.tokens import hash_token
from tests.api.admin.helpers import add_admin, admin
from tests.api.test_tasks import assert_error
from tests.harness import AppHarness, make_settings


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[AppHarness]:
    async with AppHarness.start(make_settings(tmp_path)) as harness:  # with its worker
        await add_admin(harness)
        yield harness


async def _finished(gw: AppHarness, **body: Any) -> dict[str, Any]:
    created = await gw.videos({"action": "text2video", "prompt": "a kite", "async": True, **body})
    assert created.status_code == 200, created.text
    task_id = created.json()["task_id"]
    record: dict[str, Any] = (await gw.tasks({"id": task_id, "wait": 30})).json()
    assert record["response"]["state"] == "succeed"
    return record


async def test_usage_by_day_and_model_matches_what_ran(gw: AppHarness) -> None:
    await admin(gw, "POST", "/applications/alice/grants", json={"credits": 1000})
    first = await _finished(gw)
    await _finished(gw, model="kling-v1-6", duration=10)
    by_model = (await admin(gw, "GET", "/usage", params={"by": "model"})).json()
    rows = {r["key"]: r for r in by_model["rows"]}
    assert set(rows) == {"kling-v1", "kling-v1-6"}
    assert rows["kling-v1"]["tasks"] == 1 and rows["kling-v1"]["credits"] > 0
    assert by_model["total"]["tasks"] == 2
    day = (await admin(gw, "GET", "/usage", params={"by": "day", "model": "kling-v1"})).json()
    assert [r["tasks"] for r in day["rows"]] == [1]
    assert day["rows"][0]["credits"] == rows["kling-v1"]["credits"]

    refund = await admin(gw, "POST", f"/tasks/{first['id']}/refund", json={})
    assert refund.json() == {"task_id": first["id"], "refunded": rows["kling-v1"]["credits"]}
    again = await admin(gw, "POST", f"/tasks/{first['id']}/refund", json={})
    assert again.json()["refunded"] == 0
    assert_error(await admin(gw, "POST", "/tasks/nope/refund", json={}), 404, "not_found")
    after = (await admin(gw, "GET", "/usage", params={"by": "model"})).json()
    assert {r["key"]: r["refunded"] for r in after["rows"]}["kling-v1"] > 0

    mine = (await gw.client.get("/kling/usage", headers=gw.headers())).json()
    assert mine["application"]["user"] == "alice"
    assert mine["application"]["balance"] == 1000 - after["total"]["credits"]
    assert mine["usage"]["total"] == after["total"]
    assert (await admin(gw, "GET", "/usage", params={"user": "root"})).json()["rows"] == []


async def test_usage_queries_are_validated_and_need_a_token(gw: AppHarness) -> None:
    bad = await admin(gw, "GET", "/usage", params={"by": "week"})
    assert "by" in assert_error(bad, 400, "bad_request")["error"]["message"]
    bad = await gw.client.get("/kling/usage", params={"since": "soon"}, headers=gw.headers())
    assert "since" in assert_error(bad, 400, "bad_request")["error"]["message"]
    assert_error(await gw.client.get("/kling/usage"), 401, "invalid_token")
    assert_error(await admin(gw, "GET", "/usage", user="alice"), 403, "forbidden")


async def test_kling_usage_reports_the_tokens_application(gw: AppHarness) -> None:
    """A user may have two applications: a token sees its own, never the user's first."""
    before = (await gw.client.get("/kling/usage", headers=gw.headers())).json()
    principal = await gw.store.find_principal(hash_token(gw.tokens["alice"]))
    assert principal is not None and before["application"]["id"] == principal.application_id
    older = str(uuid.uuid4())  # older than the token's: the user's "first" application now
    insert = "INSERT INTO applications (id, user_id, created_at) VALUES (?, ?, ?)"
    store = cast(SQLStore, gw.store)  # SQLite here (not a BOTH_STORES module)
    await store._write(lambda tx: tx.execute(insert, older, gw.user_ids["alice"], 0.0))
    granted = await admin(gw, "POST", "/applications/alice/grants", json={"credits": 7})
    assert granted.status_code == 201, granted.text
    assert (await gw.store.find_application("alice")).id == older  # type: ignore[union-attr]
    after = (await gw.client.get("/kling/usage", headers=gw.headers())).json()
    assert after == before  # the grant went to the other application
