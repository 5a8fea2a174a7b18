"""/admin/v1/accounts, /tasks, /callbacks over the full ASGI stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from kling_gateway.protocol.task import TaskState
from kling_gateway.storage.base import Outcome
from tests.api.admin.helpers import add_admin, admin
from tests.api.test_tasks import assert_error
from tests.harness import AppHarness, insert_finished, make_settings, make_task

ACCOUNT = {"name": "main", "access_key": "AKMAIN123", "secret_key": "sk-secret", "models": []}


@pytest.fixture
async def gw(gateway: AppHarness) -> AppHarness:
    await add_admin(gateway)
    await gateway.add_user("bob")
    return gateway


async def test_accounts_add_list_disable_enable_remove(gw: AppHarness) -> None:
    created = await admin(gw, "POST", "/accounts", json={**ACCOUNT, "max_concurrency": 3})
    assert created.status_code == 201, created.text
    assert created.json()["max_concurrency"] == 3
    listed = (await admin(gw, "GET", "/accounts")).json()
    (main,) = listed["items"]
    assert main["name"] == "main" and main["state"] == "enabled" and main["in_flight"] == 0
    assert "sk-secret" not in str(listed) and "AKMAIN123" not in str(listed)
    (row,) = await gw.store.list_upstream_accounts()
    assert "sk-secret" not in row.sealed_secret  # sealed under the server key

    disabled = await admin(gw, "PATCH", "/accounts/main", json={"state": "disabled"})
    assert disabled.json()["state"] == "disabled"
    assert disabled.json()["last_error"] == "disabled by an operator"
    enabled = await admin(gw, "PATCH", "/accounts/main", json={"state": "enabled"})
    assert enabled.json()["state"] == "enabled"
    assert (await admin(gw, "DELETE", "/accounts/main")).json() == {"name": "main", "removed": True}
    assert_error(await admin(gw, "DELETE", "/accounts/main"), 404, "not_found")


async def test_without_a_server_key_sealing_endpoints_answer_503(tmp_path: Path) -> None:
    # The key is read once at app start; one that can't be loaded (here DATA_DIR/secret.key
    # is unreadable: a directory) is a clear 503, not a 500.
    (tmp_path / "data" / "secret.key").mkdir(parents=True)
    settings = make_settings(tmp_path, worker=False)
    async with AppHarness.start(settings) as gw:
        await add_admin(gw)
        created = await admin(gw, "POST", "/accounts", json=ACCOUNT)
        message = assert_error(created, 503, "service_unavailable")["error"]["message"]
        assert "no server key" in message
        secret = await admin(gw, "POST", "/users/alice/secret", json={})
        assert (
            "no server key" in assert_error(secret, 503, "service_unavailable")["error"]["message"]
        )
        assert await gw.store.list_upstream_accounts() == []


async def test_account_input_is_validated(gw: AppHarness) -> None:
    for change, field in (
        ({"name": "bad name"}, "`name`"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"weight": 0}, "weight"),
        ({"secret_key": ""}, "secret_key"),
        ({"max_concurrency": "many"}, "max_concurrency"),
    ):
        response = await admin(gw, "POST", "/accounts", json={**ACCOUNT, **change})
        assert field in assert_error(response, 400, "bad_request")["error"]["message"]
    assert (await admin(gw, "POST", "/accounts", json=ACCOUNT)).status_code == 201
    again = await admin(gw, "POST", "/accounts", json=ACCOUNT)
    assert "main" in assert_error(again, 409, "conflict")["error"]["message"]
    state = await admin(gw, "PATCH", "/accounts/main", json={"state": "off"})
    assert "state" in assert_error(state, 400, "bad_request")["error"]["message"]
    missing = await admin(gw, "PATCH", "/accounts/none", json={"state": "enabled"})
    assert_error(missing, 404, "not_found")


async def test_tasks_across_users_with_filters_and_paging(gw: AppHarness) -> None:
    alice, bob = gw.user_ids["alice"], gw.user_ids["bob"]
    done = await insert_finished(gw.store, make_task(alice, created_at=1000.0))
    waiting = make_task(bob, created_at=1001.0)
    await gw.store.insert_task(waiting, next_check_at=2000.0, deadline_at=9e9)

    everything = (await admin(gw, "GET", "/tasks")).json()
    assert everything["count"] == 2
    assert [r["id"] for r in everything["items"]] == [waiting.id, done.id]
    by_user = (await admin(gw, "GET", "/tasks", params={"user": "alice"})).json()
    assert [r["id"] for r in by_user["items"]] == [done.id]
    assert (await admin(gw, "GET", "/tasks", params={"user": "nobody"})).json()["count"] == 0
    pending = (await admin(gw, "GET", "/tasks", params={"state": "pending"})).json()
    assert [r["id"] for r in pending["items"]] == [waiting.id]
    page = (await admin(gw, "GET", "/tasks", params={"limit": 1, "offset": 1})).json()
    assert page["count"] == 2 and [r["id"] for r in page["items"]] == [done.id]
    ranged = await admin(gw, "GET", "/tasks", params={"created_at_max": 1000.5})
    assert [r["id"] for r in ranged.json()["items"]] == [done.id]
    for params, field in (
        ({"state": "done"}, "state"),
        ({"limit": 0}, "limit"),
        ({"offset": "x"}, "offset"),
        ({"limit": "inf"}, "limit"),
        ({"offset": "nan"}, "offset"),
        ({"created_at_min": "soon"}, "created_at_min"),
        ({"created_at_max": "-inf"}, "created_at_max"),
    ):
        response = await admin(gw, "GET", "/tasks", params=params)
        assert field in assert_error(response, 400, "bad_request")["error"]["message"]


async def _task_with_callback(gw: AppHarness) -> tuple[str, str]:
    task = make_task(gw.user_ids["bob"])
    await gw.store.insert_task(task, next_check_at=task.created_at, deadline_at=9e9)
    task.state = TaskState.FAILED
    outcome = Outcome(next_check_at=None, callbacks=(("http://127.0.0.1:9/cb", "failed", b"{}"),))
    assert await gw.store.save_task(task, expected_version=0, worker_id=None, outcome=outcome)
    (delivery,) = await gw.store.list_callbacks(task_id=task.id)
    return task.id, delivery.id


async def test_a_task_of_any_user_with_its_deliveries(gw: AppHarness) -> None:
    task_id, delivery_id = await _task_with_callback(gw)
    response = await admin(gw, "GET", f"/tasks/{task_id}")
    assert response.status_code == 200
    doc = response.json()
    assert doc["record"]["id"] == task_id and doc["record"]["user_id"] == gw.user_ids["bob"]
    assert [d["id"] for d in doc["callbacks"]] == [delivery_id]
    assert_error(await admin(gw, "GET", "/tasks/nope"), 404, "not_found")


async def test_callbacks_list_and_redeliver(gw: AppHarness) -> None:
    task_id, delivery_id = await _task_with_callback(gw)
    listed = (await admin(gw, "GET", "/callbacks", params={"task": task_id})).json()
    assert [d["id"] for d in listed["items"]] == [delivery_id]
    assert listed["items"][0]["state"] == "pending" and "body" not in listed["items"][0]
    assert (await admin(gw, "GET", "/callbacks", params={"failed": "true"})).json()["count"] == 0
    queued = await admin(gw, "POST", f"/callbacks/{delivery_id}/redeliver")
    assert queued.json() == {"id": delivery_id, "queued": True}
    assert_error(await admin(gw, "POST", "/callbacks/nope/redeliver"), 404, "not_found")
    bad = await admin(gw, "GET", "/callbacks", params={"failed": "maybe"})
    assert "failed" in assert_error(bad, 400, "bad_request")["error"]["message"]


async def test_user_listing_takes_a_state_filter(gw: AppHarness) -> None:
    done = await insert_finished(gw.store, make_task(gw.user_ids["alice"]))
    waiting = make_task(gw.user_ids["alice"])
    await gw.store.insert_task(waiting, next_check_at=9e9, deadline_at=9e9)
    found = (await gw.tasks({"action": "retrieve_batch", "state": "succeed"})).json()
    assert [r["id"] for r in found["items"]] == [done.id] and found["count"] == 1
    bad = await gw.tasks({"action": "retrieve_batch", "state": "finished"})
    assert "state" in assert_error(bad, 400, "bad_request")["error"]["message"]


async def test_an_account_holding_tasks_is_not_removed(gw: AppHarness) -> None:
    assert (await admin(gw, "POST", "/accounts", json=ACCOUNT)).status_code == 201
    task = make_task(gw.user_ids["alice"])
    await gw.store.insert_task(task, next_check_at=task.created_at, deadline_at=9e9)
    assert len(await gw.store.claim_for_slots("w", task.created_at + 1, 1, 60)) == 1
    (main,) = (await admin(gw, "GET", "/accounts")).json()["items"]
    assert main["in_flight"] == 1
    busy = await admin(gw, "DELETE", "/accounts/main")
    assert "disable it" in assert_error(busy, 409, "conflict")["error"]["message"]
    detail = (await admin(gw, "GET", f"/tasks/{task.id}")).json()
    assert detail["account"] == "main"
