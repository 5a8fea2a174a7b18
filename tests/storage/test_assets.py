"""Element and voice ids per user (migrations 0008, 0010; docs/contract.md §6, §6.1), on every
backend."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kling_gateway.domain.assets import Asset, new_asset
from kling_gateway.storage.base import IdempotencyConflict, Store
from tests.services import fresh_postgres_database
from tests.storage.helpers import migrated_store, owner


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
        return
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
    assert _upstream(await store.find_user_assets(alice, "element", [element, voice, "x"])) == {
        element: "up-e"
    }
    assert _upstream(await store.find_user_assets(alice, "voice", [voice])) == {voice: "up-v"}
    assert await store.find_user_assets(bob, "element", [element]) == {}


async def test_two_registrations_of_one_upstream_id_are_two_ids(store: Store) -> None:
    alice, bob = (await owner(store, "alice")).user_id, (await owner(store, "bob")).user_id
    now = time.time()
    first = await store.add_asset(user_id=alice, kind="element", upstream_id="same", now=now)
    second = await store.add_asset(user_id=bob, kind="element", upstream_id="same", now=now)
    assert first != second
    assert _upstream(await store.find_user_assets(bob, "element", [first, second])) == {
        second: "same"
    }


def _upstream(found: dict[str, Asset]) -> dict[str, str | None]:
    return {asset_id: asset.upstream_id for asset_id, asset in found.items()}


async def _processing(store: Store, user_id: str, kind: str = "element", at: float = 0.0) -> Asset:
    asset = new_asset(user_id, kind, {"element_name": "cat"}, at or time.time())
    asset.account = "acct-1"
    await store.insert_asset(asset)
    return asset


async def test_a_created_asset_is_found_only_once_it_succeeded(store: Store) -> None:
    alice = (await owner(store, "alice")).user_id
    asset = await _processing(store, alice)
    assert await store.find_user_assets(alice, "element", [asset.id]) == {}
    got = await store.get_asset(alice, "element", asset.id)
    assert got is not None and got.state == "processing" and got.spec == {"element_name": "cat"}
    got.job_id = "job-1"
    got.succeed("up-1", {"element_image_list": {"frontal_image": "http://x/a.png"}}, time.time())
    assert await store.save_asset(got, expected_version=0)
    found = await store.find_user_assets(alice, "element", [asset.id])
    assert found[asset.id].upstream_id == "up-1" and found[asset.id].account == "acct-1"
    again = await store.get_asset(alice, "element", asset.id)
    assert again is not None and again.job_id == "job-1" and again.version == 1
    assert again.result == {"element_image_list": {"frontal_image": "http://x/a.png"}}


async def test_a_save_is_a_compare_and_set_only_while_processing(store: Store) -> None:
    alice = (await owner(store, "alice")).user_id
    asset = await _processing(store, alice)
    first = await store.get_asset(alice, "element", asset.id)
    second = await store.get_asset(alice, "element", asset.id)
    assert first is not None and second is not None
    first.fail("upstream_failed", "no face", time.time())
    assert await store.save_asset(first, expected_version=0)
    second.succeed("up-2", {}, time.time())
    assert not await store.save_asset(second, expected_version=0)  # stale
    assert not await store.save_asset(first, expected_version=1)  # finished: never again
    stored = await store.get_asset(alice, "element", asset.id)
    assert stored is not None and stored.state == "failed"
    assert stored.error == {"code": "upstream_failed", "message": "no face"}


async def test_get_list_delete_see_only_the_owner_and_the_kind(store: Store) -> None:
    alice, bob = (await owner(store, "alice")).user_id, (await owner(store, "bob")).user_id
    now = time.time()
    older = await _processing(store, alice, at=now - 10)
    newer = await _processing(store, alice, at=now)
    voice = await _processing(store, alice, kind="voice")
    await _processing(store, bob)
    assert await store.get_asset(bob, "element", older.id) is None
    assert await store.get_asset(alice, "voice", older.id) is None
    items, total = await store.list_assets(alice, "element", 10, 0)
    assert [a.id for a in items] == [newer.id, older.id] and total == 2
    page, total = await store.list_assets(alice, "element", 1, 1)
    assert [a.id for a in page] == [older.id] and total == 2
    assert not await store.delete_asset(bob, "element", older.id)
    assert not await store.delete_asset(alice, "element", voice.id)
    assert await store.delete_asset(alice, "element", older.id)
    assert await store.get_asset(alice, "element", older.id) is None
    assert not await store.delete_asset(alice, "element", older.id)


async def test_an_idempotency_key_answers_the_first_asset(store: Store) -> None:
    alice = (await owner(store, "alice")).user_id
    first = new_asset(alice, "voice", {"voice_name": "a"}, time.time())
    assert (await store.insert_asset(first, "k1")).id == first.id
    again = new_asset(alice, "voice", {"voice_name": "a"}, time.time())
    assert (await store.insert_asset(again, "k1")).id == first.id
    other_kind = new_asset(alice, "element", {"voice_name": "a"}, time.time())
    assert (await store.insert_asset(other_kind, "k1")).id == other_kind.id
    with pytest.raises(IdempotencyConflict):
        await store.insert_asset(new_asset(alice, "voice", {"voice_name": "b"}, time.time()), "k1")
    _, total = await store.list_assets(alice, "voice", 10, 0)
    assert total == 1


async def test_an_idempotency_key_expires_after_a_day(store: Store) -> None:
    alice = (await owner(store, "alice")).user_id
    old = new_asset(alice, "voice", {"voice_name": "a"}, time.time() - 2 * 86_400)
    await store.insert_asset(old, "k")
    fresh = new_asset(alice, "voice", {"voice_name": "other"}, time.time())
    assert (await store.insert_asset(fresh, "k")).id == fresh.id
