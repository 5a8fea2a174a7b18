"""Element and voice ids per user (migration 0008, docs/contract.md §6), on both backends."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kling_gateway.storage.base import Store
from tests.services import fresh_postgres_database
from tests.storage.helpers import migrated_store, owner


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
        return
    with fresh_postgres_database("kg_assets") as url:
        yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    st = await migrated_store(store_url)
    try:
        yield st
    finally:
        await st.close()


async def test_an_asset_is_found_only_for_its_user_and_kind(store: Store) -> None:
    alice, bob = (await owner(store, "alice")).user_id, (await owner(store, "bob")).user_id
    now = time.time()
    element = await store.add_asset(user_id=alice, kind="element", upstream_id="up-e", now=now)
    voice = await store.add_asset(user_id=alice, kind="voice", upstream_id="up-v", now=now)
    assert element.startswith("el_") and voice.startswith("vo_") and element != voice
    assert await store.find_user_assets(alice, "element", [element, voice, "x"]) == {
        element: "up-e"
    }
    assert await store.find_user_assets(alice, "voice", [voice]) == {voice: "up-v"}
    assert await store.find_user_assets(bob, "element", [element]) == {}


async def test_two_registrations_of_one_upstream_id_are_two_ids(store: Store) -> None:
    alice, bob = (await owner(store, "alice")).user_id, (await owner(store, "bob")).user_id
    now = time.time()
    first = await store.add_asset(user_id=alice, kind="element", upstream_id="same", now=now)
    second = await store.add_asset(user_id=bob, kind="element", upstream_id="same", now=now)
    assert first != second
    assert await store.find_user_assets(bob, "element", [first, second]) == {second: "same"}
