"""/admin/v1/usage, /ledger, refunds and GET /kling/usage against a gateway whose worker runs
tasks to the end: the reports are the ledger's (domain.billing.usage_report)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

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
