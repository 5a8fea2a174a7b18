"""/admin/v1/users, /applications, /tokens, /assets over the full ASGI stack: admin tokens
only, the error shape, and the same effects as the CLI's commands."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.api.admin.helpers import ADMIN, add_admin, admin
from tests.api.test_tasks import assert_error
from tests.harness import AppHarness, make_settings


@pytest.fixture
async def gw(gateway: AppHarness) -> AppHarness:
    await add_admin(gateway)
    return gateway


@pytest.mark.parametrize("path", ["/users", "/applications", "/tokens", "/tasks", "/accounts"])
async def test_a_user_token_is_forbidden_and_no_token_is_unauthorised(
    gw: AppHarness, path: str
) -> None:
    assert_error(await admin(gw, "GET", path, user="alice"), 403, "forbidden")
    assert_error(await gw.client.get("/admin/v1" + path), 401, "invalid_token")
    bad = {"authorization": "Bearer kg-nope"}
    assert_error(await gw.client.get("/admin/v1" + path, headers=bad), 401, "invalid_token")


async def test_an_admin_token_still_calls_the_client_apis(gw: AppHarness) -> None:
    response = await gw.tasks({"action": "retrieve_batch"}, user=ADMIN)
    assert response.status_code == 200
    assert response.json() == {"items": [], "count": 0}


async def test_users_lists_each_user_with_application_and_counts(gw: AppHarness) -> None:
    response = await admin(gw, "GET", "/users")
    assert response.status_code == 200
    assert response.headers["x-trace-id"]
    body = response.json()
    assert body["count"] == 2
    alice = next(u for u in body["items"] if u["name"] == "alice")
    assert alice["id"] == gw.user_ids["alice"]
    assert alice["tokens"] == 1 and alice["tasks"] == 0
    app = alice["application"]
    assert app["user"] == "alice" and app["disabled"] is False and app["metered"] is False
    assert app["in_flight"] == 0 and app["available"] is None


async def test_disabling_an_application_refuses_its_tokens(gw: AppHarness) -> None:
    assert (await gw.tasks({"action": "retrieve_batch"})).status_code == 200  # now cached
    response = await admin(gw, "PATCH", "/applications/alice", json={"disabled": True})
    assert response.status_code == 200, response.text
    assert response.json()["disabled"] is True
    # At once in this process, although the token's principal was cached.
    assert_error(await gw.tasks({"action": "retrieve_batch"}), 400, "disabled")
    body = {"disabled": False, "max_in_flight": 3}
    response = await admin(gw, "PATCH", "/applications/alice", json=body)
    assert response.json()["disabled"] is False and response.json()["max_in_flight"] == 3
    listed = (await admin(gw, "GET", "/applications")).json()["items"]
    assert {a["user"]: a["max_in_flight"] for a in listed} == {"alice": 3, ADMIN: None}


async def test_granting_credits_meters_the_application(gw: AppHarness) -> None:
    granted = await admin(gw, "POST", "/applications/alice/grants", json={"credits": 40})
    assert granted.status_code == 201, granted.text
    assert granted.json()["metered"] is True and granted.json()["balance"] == 40
    taken = await admin(
        gw, "POST", "/applications/alice/grants", json={"credits": -15, "note": "typo"}
    )
    assert taken.json()["balance"] == 25 and taken.json()["available"] == 25
    assert (await admin(gw, "GET", "/applications/alice")).json() == taken.json()
    assert_error(await admin(gw, "GET", "/applications/nobody"), 404, "not_found")
    ledger = (await admin(gw, "GET", "/ledger", params={"user": "alice"})).json()["items"]
    assert [(e["entry"], e["credits"]) for e in ledger][-2:] == [("grant", 40), ("adjustment", -15)]
    missing = await admin(gw, "POST", "/applications/nobody/grants", json={"credits": 1})
    assert_error(missing, 404, "not_found")
    for bad, field in (({"credits": 0}, "credits"), ({"credits": 1.5}, "credits"), ({}, "credits")):
        response = await admin(gw, "POST", "/applications/alice/grants", json=bad)
        assert field in assert_error(response, 400, "bad_request")["error"]["message"]


async def test_application_changes_are_validated(gw: AppHarness) -> None:
    assert_error(await admin(gw, "PATCH", "/applications/nobody", json={}), 404, "not_found")
    bad = await admin(gw, "PATCH", "/applications/alice", json={"disabled": "yes"})
    assert "disabled" in assert_error(bad, 400, "bad_request")["error"]["message"]
    typo = await admin(gw, "PATCH", "/applications/alice", json={"disable": True})
    assert "disable" in assert_error(typo, 400, "bad_request")["error"]["message"]
    negative = await admin(gw, "PATCH", "/applications/alice", json={"max_in_flight": -1})
    assert "max_in_flight" in assert_error(negative, 400, "bad_request")["error"]["message"]


async def test_create_list_and_revoke_tokens(gw: AppHarness) -> None:
    created = await admin(gw, "POST", "/tokens", json={"user": "carol", "expires_in_days": 2})
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert token.startswith("kg-")
    headers = {"authorization": f"Bearer {token}"}
    batch = await gw.client.post("/kling/tasks", json={"action": "retrieve_batch"}, headers=headers)
    assert batch.status_code == 200
    gw.tokens["carol"] = token

    listed = (await admin(gw, "GET", "/tokens")).json()["items"]
    carol = next(t for t in listed if t["user"] == "carol")
    assert carol["status"] == "active" and carol["admin"] is False
    assert carol["expires_at"] > carol["created_at"]
    assert token not in str(listed)  # only the prefix is ever shown again
    assert next(t for t in listed if t["user"] == ADMIN)["admin"] is True

    revoked = await admin(gw, "DELETE", f"/tokens/{carol['id']}")
    assert revoked.json() == {"revoked": 1}
    assert_error(await gw.tasks({"action": "retrieve_batch"}, user="carol"), 401, "invalid_token")
    assert_error(await admin(gw, "DELETE", f"/tokens/{carol['id']}"), 404, "not_found")
    listed = (await admin(gw, "GET", "/tokens")).json()["items"]
    assert next(t for t in listed if t["user"] == "carol")["status"] == "revoked"


async def test_an_admin_token_made_over_http_is_an_admin_token(gw: AppHarness) -> None:
    created = await admin(gw, "POST", "/tokens", json={"user": "ops", "admin": True})
    assert "kling.admin" in created.json()["apis"]
    gw.tokens["ops"] = created.json()["token"]
    assert (await admin(gw, "GET", "/users", user="ops")).status_code == 200


async def test_token_creation_is_validated(gw: AppHarness) -> None:
    for body, field in (
        ({}, "user"),
        ({"user": " "}, "user"),
        ({"user": "x", "apis": ["kling.nope"]}, "apis"),
        ({"user": "x", "expires_in_days": 0}, "expires_in_days"),
    ):
        response = await admin(gw, "POST", "/tokens", json=body)
        assert field in assert_error(response, 400, "bad_request")["error"]["message"]


async def test_assets_are_registered_for_a_user(gw: AppHarness) -> None:
    body = {"user": "alice", "kind": "element", "upstream_id": "el-123"}
    response = await admin(gw, "POST", "/assets", json=body)
    assert response.status_code == 201
    asset_id = response.json()["id"]
    found = await gw.store.find_user_assets(gw.user_ids["alice"], "element", [asset_id])
    assert {key: asset.upstream_id for key, asset in found.items()} == {asset_id: "el-123"}
    wrong = await admin(gw, "POST", "/assets", json={**body, "kind": "song"})
    assert "kind" in assert_error(wrong, 400, "bad_request")["error"]["message"]


async def test_a_users_signing_secret_is_read_and_rotated(gw: AppHarness) -> None:
    first = await admin(gw, "GET", "/users/alice/secret")
    assert first.status_code == 200
    secret = first.json()["secret"]
    assert first.json() == {"user": "alice", "secret": secret, "previous": 0, "rotated": False}
    assert (await admin(gw, "GET", "/users/alice/secret")).json()["secret"] == secret
    rotated = await admin(gw, "POST", "/users/alice/secret", json={"grace_seconds": 60})
    assert rotated.json()["secret"] != secret and rotated.json()["previous"] == 1
    signing = await gw.store.signing_secrets(gw.user_ids["alice"], time.time())
    assert len(signing) == 2
    assert_error(await admin(gw, "GET", "/users/nobody/secret"), 404, "not_found")
    bad = await admin(gw, "POST", "/users/alice/secret", json={"grace_seconds": -1})
    assert "grace_seconds" in assert_error(bad, 400, "bad_request")["error"]["message"]


async def test_a_user_made_over_http_gets_the_default_credits(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, worker=False, default_credits="50")
    async with AppHarness.start(settings) as gw:
        await add_admin(gw)
        assert (await admin(gw, "POST", "/tokens", json={"user": "dora"})).status_code == 201
        app = (await admin(gw, "GET", "/applications/dora")).json()
        assert app["metered"] is True and app["balance"] == 50
