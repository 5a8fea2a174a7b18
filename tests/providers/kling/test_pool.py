"""The account pool end to end: the gateway with its worker against a fake upstream with
several accounts, each with its own key pair and concurrency limit (issue 14)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from kling_gateway.domain.accounts import Account, AccountState
from kling_gateway.fake_upstream import FakeUpstreamConfig, create_fake_upstream
from kling_gateway.fake_upstream.accounts import FakeAccount, ResourcePack
from kling_gateway.runtime.settings import Settings
from kling_gateway.runtime.worker import server_sealer
from kling_gateway.storage import open_store
from kling_gateway.storage.upstream_keys import add_account
from tests.harness import AppHarness
from tests.providers.kling.test_gateway import (
    AK,
    SK,
    create,
    creates_by_task,
    kling_settings,
    settled,
    states,
)

# name -> (access key, secret key, the fake's limit); "default" is the old single key pair.
ACCOUNTS = {
    "default": (AK, SK, 5),
    "b": ("pool-ak-b", "pool-sk-b-0123456789", 2),
    "c": ("pool-ak-c", "pool-sk-c-0123456789", 3),
}


@pytest.fixture
def fake_app() -> Starlette:
    accounts = [
        FakeAccount(name, ak, sk, max_concurrency=limit, packs=[ResourcePack()])
        for name, (ak, sk, limit) in ACCOUNTS.items()
    ]
    config = FakeUpstreamConfig(
        accounts=accounts, processing_after=0.02, finish_after=(0.2, 0.4), seed=5
    )
    return create_fake_upstream(config)


async def stored_accounts(settings: Settings, **limits: int) -> None:
    """Add the accounts but the implicit one before the gateway starts (its own limits)."""
    store = open_store(settings.resolved_database_url)
    await store.open()
    try:
        await store.migrate()
        sealer = server_sealer(settings)
        for name, (ak, sk, limit) in ACCOUNTS.items():
            if name != "default":
                account = Account(name, ak, max_concurrency=limits.get(name, limit))
                await add_account(store, sealer, account, sk)
    finally:
        await store.close()


@pytest.fixture
def settings(tmp_path: Path, upstream: str) -> Settings:
    return kling_settings(tmp_path, upstream, worker_concurrency=64, kling_max_concurrency=5)


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[AppHarness]:
    await stored_accounts(settings)
    async with AppHarness.start(settings) as harness:
        yield harness


async def fake_accounts(admin: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in (await admin.get("/fake-admin/accounts")).json()}


async def listed(h: AppHarness) -> dict[str, Account]:
    return {row.account.name: row.account for row in await h.store.list_upstream_accounts()}


async def test_slots_are_kept_and_every_account_works(
    gateway: AppHarness, admin: httpx.AsyncClient
) -> None:
    ids = await create(gateway, 40)
    found = await settled(gateway.client, gateway.headers(), ids, timeout=60)
    assert states(found) == {"succeed": 40}
    assert set((await creates_by_task(admin)).values()) == {1}
    upstream = await fake_accounts(admin)
    for name, (_, _, limit) in ACCOUNTS.items():
        assert 1 <= upstream[name]["peak_in_flight"] <= limit, name
        # The gateway knows its slots: it never sent a create the upstream had to refuse.
        assert upstream[name]["rejected_over_limit"] == 0, name
    accounts = await listed(gateway)
    assert {a.in_flight for a in accounts.values()} == {0}
    # Packs were read once per account (at most once a minute), and are shown.
    assert {a.packs_remaining for a in accounts.values()} == {1000.0}
    assert all(upstream[name]["costs_requests"] == 1 for name in ACCOUNTS)


async def test_1303_queues_the_task_again_and_never_fails_it(
    tmp_path: Path, settings: Settings, admin: httpx.AsyncClient
) -> None:
    # The gateway believes b has 4 slots; the upstream allows 2: some creates bounce.
    await stored_accounts(settings, b=4)
    async with AppHarness.start(settings) as h:
        ids = await create(h, 40)
        found = await settled(h.client, h.headers(), ids, timeout=60)
    assert states(found) == {"succeed": 40}
    assert set((await creates_by_task(admin)).values()) == {1}
    upstream = await fake_accounts(admin)
    assert upstream["b"]["rejected_over_limit"] > 0
    assert upstream["b"]["peak_in_flight"] == 2


async def test_an_account_error_disables_the_account_and_work_moves(
    settings: Settings, admin: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await admin.post("/fake-admin/accounts/c", json={"error_code": 1101})
    caplog.set_level(logging.ERROR, logger="kling_gateway.accounts")
    await stored_accounts(settings)
    async with AppHarness.start(settings) as h:
        ids = await create(h, 20)
        found = await settled(h.client, h.headers(), ids, timeout=60)
        accounts = await listed(h)
    assert states(found) == {"succeed": 20}
    assert accounts["c"].state is AccountState.DISABLED
    assert accounts["c"].last_error is not None and "1101" in accounts["c"].last_error
    assert any("upstream account c disabled" in r.message for r in caplog.records)
    tasks = (await admin.get("/fake-admin/tasks")).json()
    assert len(tasks) == 20


async def test_secret_keys_are_sealed_at_rest(gateway: AppHarness) -> None:
    path = gateway.settings.resolved_database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        rows = dict(conn.execute("SELECT name, secret_key FROM upstream_accounts").fetchall())
    assert set(rows) == set(ACCOUNTS)
    for name, (_, secret, _) in ACCOUNTS.items():
        assert rows[name].startswith("v1:") and secret not in rows[name]
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE upstream_accounts SET secret_key = ? WHERE name = 'b'", (rows["c"],))
    # A sealed value moved to another account's row does not open (bound to the name).
    with pytest.raises(Exception, match="does not open"):
        sealer = server_sealer(gateway.settings)
        sealer.open(rows["c"], "upstream-account:b")


async def test_changed_old_flags_warn_that_the_stored_keys_are_used(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(settings.resolved_database_url)
    await store.open()
    try:
        await store.migrate()
        old = Account("default", "an-older-access-key", max_concurrency=5)
        await add_account(store, server_sealer(settings), old, "an-older-secret")
    finally:
        await store.close()
    caplog.set_level(logging.WARNING, logger="kling_gateway.accounts")
    async with AppHarness.start(settings):
        pass
    assert any("other keys than --kling-access-key" in r.message for r in caplog.records)


async def test_a_lip_sync_queued_again_identifies_anew_on_its_next_account(
    tmp_path: Path, settings: Settings, admin: httpx.AsyncClient
) -> None:
    # Sessions and speech belong to the account that made them (the fake checks it): a
    # lip-sync whose create bounced (1303) must not carry them to another account.
    await stored_accounts(settings, b=4)
    text = "Good morning, this is a test of speech"
    body = {"mode": "text2video", "video_url": "https://cdn.example/talk.mp4", "text": text,
            "voice_id": "v1", "async": True}  # fmt: skip
    async with AppHarness.start(settings) as h:
        ids = [(await h.create("/kling/lip-sync", body)).json()["task_id"] for _ in range(30)]
        found = await settled(h.client, h.headers(), ids, timeout=60)
    assert states(found) == {"succeed": 30}, found
    assert set((await creates_by_task(admin)).values()) == {1}
    assert (await fake_accounts(admin))["b"]["rejected_over_limit"] > 0
