"""The fake upstream's accounts: per-account concurrency (1303), packs, account errors, costs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from kling_gateway.fake_upstream import FakeUpstreamConfig, create_fake_upstream
from kling_gateway.fake_upstream.accounts import FakeAccount, ResourcePack
from kling_gateway.providers.kling.auth import make_kling_jwt

A = FakeAccount("acct-a", "ak-a", "sk-a-0123456789", max_concurrency=2)
B = FakeAccount("acct-b", "ak-b", "sk-b-0123456789", max_concurrency=1, packs=[ResourcePack()])


@pytest.fixture
def fake_app() -> Starlette:
    accounts = [
        FakeAccount(A.name, A.access_key, A.secret_key, max_concurrency=A.max_concurrency),
        FakeAccount(B.name, B.access_key, B.secret_key, max_concurrency=1, packs=[ResourcePack()]),
    ]
    config = FakeUpstreamConfig(
        accounts=accounts, processing_after=0.02, finish_after=(0.3, 0.3), seed=1
    )
    return create_fake_upstream(config)


def auth(account: FakeAccount) -> dict[str, str]:
    token = make_kling_jwt(account.access_key, account.secret_key, time.time())
    return {"Authorization": f"Bearer {token}"}


async def create(admin: httpx.AsyncClient, account: FakeAccount, ext: str) -> httpx.Response:
    body = {"prompt": "a cat", "external_task_id": ext}
    return await admin.post("/v1/videos/text2video", json=body, headers=auth(account))


async def accounts(admin: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    docs = (await admin.get("/fake-admin/accounts")).json()
    return {doc["name"]: doc for doc in docs}


async def test_over_the_limit_answers_1303_per_account(admin: httpx.AsyncClient) -> None:
    first = [await create(admin, A, f"a{i}") for i in range(2)]
    assert [r.status_code for r in first] == [200, 200]
    over = await create(admin, A, "a2")
    assert over.status_code == 429
    assert over.json()["code"] == 1303
    # The other account's slots are its own.
    assert (await create(admin, B, "b0")).status_code == 200
    state = await accounts(admin)
    assert state["acct-a"]["in_flight"] == 2
    assert state["acct-a"]["rejected_over_limit"] == 1
    assert state["acct-b"]["in_flight"] == 1


async def test_a_slot_frees_when_the_task_ends(admin: httpx.AsyncClient) -> None:
    assert (await create(admin, B, "b0")).status_code == 200
    assert (await create(admin, B, "b1")).json()["code"] == 1303
    for _ in range(100):
        if (await accounts(admin))["acct-b"]["in_flight"] == 0:
            break
        await asyncio.sleep(0.05)
    assert (await create(admin, B, "b1")).status_code == 200
    assert (await accounts(admin))["acct-b"]["peak_in_flight"] == 1


async def test_tasks_are_per_account(admin: httpx.AsyncClient) -> None:
    created = await create(admin, A, "shared-ext")
    task_id = created.json()["data"]["task_id"]
    mine = await admin.get(f"/v1/videos/text2video/{task_id}", headers=auth(A))
    theirs = await admin.get("/v1/videos/text2video/shared-ext", headers=auth(B))
    assert mine.status_code == 200
    assert theirs.status_code == 404


async def test_costs_shows_packs_and_limits_qps(admin: httpx.AsyncClient) -> None:
    url = "/account/costs?start_time=0&end_time=1"
    first = await admin.get(url, headers=auth(B))
    assert first.status_code == 200
    packs = first.json()["data"]["resource_pack_subscribe_infos"]
    assert [(p["status"], p["remaining_quantity"]) for p in packs] == [("online", 1000.0)]
    again = await admin.get(url, headers=auth(B))
    assert (again.status_code, again.json()["code"]) == (429, 1302)
    assert (await accounts(admin))["acct-b"]["costs_requests"] == 2


async def test_run_out_packs_answer_1102(admin: httpx.AsyncClient) -> None:
    packs = [{"status": "runOut", "remaining_quantity": 0}]
    updated = await admin.post("/fake-admin/accounts/acct-b", json={"packs": packs})
    assert updated.status_code == 200
    refused = await create(admin, B, "b0")
    assert (refused.status_code, refused.json()["code"]) == (429, 1102)


@pytest.mark.parametrize(("code", "status"), [(1100, 429), (1101, 429), (1103, 403)])
async def test_account_errors(admin: httpx.AsyncClient, code: int, status: int) -> None:
    await admin.post("/fake-admin/accounts/acct-a", json={"error_code": code})
    refused = await create(admin, A, "a0")
    assert (refused.status_code, refused.json()["code"]) == (status, code)
    assert (await create(admin, B, "b0")).status_code == 200
    await admin.post("/fake-admin/accounts/acct-a", json={"error_code": None})
    assert (await create(admin, A, "a0")).status_code == 200


async def test_a_wrong_secret_is_refused(admin: httpx.AsyncClient) -> None:
    wrong = FakeAccount("x", A.access_key, B.secret_key)
    refused = await create(admin, wrong, "a0")
    assert (refused.status_code, refused.json()["code"]) == (401, 1002)


def test_accounts_from_the_command_line() -> None:
    from kling_gateway.fake_upstream.__main__ import config_from_args, parse_args

    doc = '[{"name": "x", "access_key": "ak", "secret_key": "sk", "max_concurrency": 4}]'
    config = config_from_args(parse_args(["--accounts", doc]))
    assert [(a.name, a.access_key, a.max_concurrency) for a in config.accounts] == [("x", "ak", 4)]
    with pytest.raises(ValueError, match="name, access_key and secret_key"):
        config_from_args(parse_args(["--accounts", '[{"name": "x"}]']))
