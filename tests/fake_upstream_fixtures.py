"""Fixtures for the tests that drive the fake Kling upstream (a plugin of tests/conftest.py).

Each such module defines its own ``fake_app`` (its timings and seed); these build on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from starlette.applications import Starlette

from kling_gateway.fake_upstream import FakeUpstream
from tests.servers import serve_asgi


@pytest.fixture
def fake(fake_app: Starlette) -> FakeUpstream:
    upstream: FakeUpstream = fake_app.state.fake
    return upstream


@pytest.fixture
def upstream(fake_app: Starlette) -> Iterator[str]:
    with serve_asgi(fake_app) as url:
        yield url


@pytest.fixture
async def admin(upstream: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=upstream, timeout=10) as client:
        yield client
