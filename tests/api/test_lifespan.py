"""The app's lifespan: a part that fails to start leaves nothing of the others running."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from kling_gateway.api.app import create_app
from kling_gateway.api.context import AppContext
from kling_gateway.storage.sqlite import SQLiteStore
from tests.harness import make_settings

Stop = Callable[[], Awaitable[None]]


class Boom(RuntimeError):
    pass


async def test_a_failing_service_stops_the_started_ones_and_closes_the_store(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, worker=False)
    store = SQLiteStore(settings.resolved_database_url)
    stopped: list[str] = []

    def service(name: str) -> Callable[[AppContext], Awaitable[Stop]]:
        async def start(ctx: AppContext) -> Stop:
            async def stop() -> None:
                stopped.append(name)

            return stop

        return start

    async def failing(ctx: AppContext) -> Stop:
        raise Boom("cannot start")

    app = create_app(settings, store, services=[service("one"), service("two"), failing])
    with pytest.raises(Boom):
        async with app.lifespan():
            pass
    assert stopped == ["two", "one"]
    assert store._reader is None  # closed again
