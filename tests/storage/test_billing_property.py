"""A property of the ledger (issue 15): for any interleaving of create, succeed, fail, replay
(a create with a key used before), delete and grant, an application's balance is its grants
less what its succeeded tasks settled at, and what it holds is the sum of the prices of its
tasks not finished (nor deleted). On memory:// and SQLite (PostgreSQL runs the same engine).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kling_gateway.storage.base import QuotaUsedUp, Store
from tests.storage.billing_helpers import (
    create,
    fail_outcome,
    finish_task,
    priced_task,
    succeed_outcome,
)
from tests.storage.helpers import migrated_store, owner

_index = st.integers(0, 30)
OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("create"),
            st.sampled_from([5, 10]),
            st.sampled_from(["std", "pro"]),
            st.sampled_from([None, "k1", "k2"]),  # a key used before: a replay
        ),
        st.tuples(st.just("succeed"), _index, st.floats(1.0, 12.0)),
        st.tuples(st.just("fail"), _index),
        st.tuples(st.just("delete"), _index),
        st.tuples(st.just("grant"), st.integers(0, 30)),
    ),
    max_size=25,
)


@dataclass
class Model:
    grants: int = 0
    settled: int = 0
    open: dict[str, int] = field(default_factory=dict)  # unfinished task -> its price
    ids: list[str] = field(default_factory=list)  # every task created, deleted ones too


async def _apply(store: Store, ops: list[tuple[Any, ...]]) -> None:
    who = await owner(store)
    model = Model()
    await store.grant_credits("alice", 20, time.time())
    model.grants += 20
    for op in ops:
        await _step(store, who, model, op)
        app = await store.find_application("alice")
        assert app is not None
        assert app.balance == model.grants - model.settled
        assert app.held == sum(model.open.values())
        assert app.available is not None and app.available >= 0


async def _step(store: Store, who: Any, model: Model, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "grant":
        await store.grant_credits("alice", op[1], time.time())
        model.grants += op[1]
        return
    if kind == "create":
        task = priced_task(who, duration=op[1], mode=op[2])
        try:
            stored = await create(store, task, key=op[3])
        except QuotaUsedUp:
            return
        if stored.id == task.id:  # not a replay: it holds its price
            assert task.usage is not None
            model.open[task.id] = task.usage.credits
            model.ids.append(task.id)
        return
    if not model.ids:
        return
    task_id = model.ids[op[1] % len(model.ids)]
    if kind == "delete":
        if await store.delete_task(who.user_id, task_id):
            model.open.pop(task_id, None)
        return
    outcome = succeed_outcome(op[2]) if kind == "succeed" else fail_outcome()
    if await finish_task(store, task_id, outcome):
        model.open.pop(task_id)
        if kind == "succeed":
            found = await store.load_task(task_id)
            assert found is not None and found.task.usage is not None
            model.settled += found.task.usage.credits


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_the_ledger_balances_on_memory(ops: list[tuple[Any, ...]]) -> None:
    async def go() -> None:
        store = await migrated_store("memory://")
        await _apply(store, ops)

    asyncio.run(go())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_the_ledger_balances_on_sqlite(ops: list[tuple[Any, ...]]) -> None:
    async def go(path: Path) -> None:
        store = await migrated_store(f"sqlite:///{path / 'store.db'}")
        try:
            await _apply(store, ops)
        finally:
            await store.close()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(go(Path(tmp)))
