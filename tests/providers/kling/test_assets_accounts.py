"""Elements and voices with several upstream accounts (docs/contract.md §6.1, §6): an asset
lives on the account it was made on, and so do the video tasks that use it (the fake, like
Kling, refuses another account's element ids)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.applications import Starlette

from kling_gateway.domain.accounts import Account
from kling_gateway.fake_upstream import FakeUpstreamConfig, create_fake_upstream
from kling_gateway.fake_upstream.accounts import FakeAccount
from kling_gateway.runtime.settings import Settings
from kling_gateway.runtime.worker import server_sealer
from kling_gateway.storage import open_store
from kling_gateway.storage.upstream_keys import add_account
from tests.api.test_assets import ELEMENT, VOICE, call
from tests.harness import AppHarness
from tests.providers.kling.test_gateway import AK, SK, kling_settings, settled

HEAVY = ("heavy", "assets-ak-heavy", "assets-sk-heavy-0123456789")


@pytest.fixture
def fake_app() -> Starlette:
    accounts = [FakeAccount("default", AK, SK), FakeAccount(*HEAVY)]
    config = FakeUpstreamConfig(
        accounts=accounts, processing_after=0.02, finish_after=(0.1, 0.2), seed=9
    )
    return create_fake_upstream(config)


@pytest.fixture
async def gateway(tmp_path: Path, upstream: str) -> AsyncIterator[AppHarness]:
    settings: Settings = kling_settings(tmp_path, upstream, kling_max_concurrency=50)
    store = open_store(settings.resolved_database_url)
    await store.open()
    try:
        await store.migrate()
        # The heavier account takes new assets; its few slots make it the second choice of a
        # task that names no asset (free slots x weight: 1 x 3 against 50 x 1).
        account = Account(HEAVY[0], HEAVY[1], max_concurrency=1, weight=3.0)
        await add_account(store, server_sealer(settings), account, HEAVY[2])
    finally:
        await store.close()
    async with AppHarness.start(settings) as harness:
        yield harness


async def test_a_task_with_an_element_runs_on_the_elements_account(gateway: AppHarness) -> None:
    element = (await call(gateway, "element", ELEMENT)).json()
    assert element["status"] == "succeed", element
    stored = await gateway.store.get_asset(
        gateway.user_ids["alice"], "element", element["element_id"]
    )
    assert stored is not None and stored.account == "heavy"
    body = {"action": "text2video", "model": "kling-v3", "prompt": "a cat", "async": True}
    pinned = await gateway.videos({**body, "element_list": [{"element_id": element["element_id"]}]})
    plain = await gateway.videos(body)
    ids = [pinned.json()["task_id"], plain.json()["task_id"]]
    found = await settled(gateway.client, gateway.headers(), ids)
    assert {found[i]["response"]["state"] for i in ids} == {"succeed"}, found
    ran_on = [(await gateway.store.load_task(i)) for i in ids]
    assert [s.account if s else None for s in ran_on] == ["heavy", "default"]


async def test_an_element_lives_beside_its_voice(gateway: AppHarness) -> None:
    voice = (await call(gateway, "voice", VOICE)).json()
    element = await call(gateway, "element", {**ELEMENT, "element_voice_id": voice["voice_id"]})
    assert element.json()["status"] == "succeed", element.text
    user = gateway.user_ids["alice"]
    stored_voice = await gateway.store.get_asset(user, "voice", voice["voice_id"])
    stored = await gateway.store.get_asset(user, "element", element.json()["element_id"])
    assert stored is not None and stored_voice is not None
    assert stored.account == stored_voice.account == "heavy"
