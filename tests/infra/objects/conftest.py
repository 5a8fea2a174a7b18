"""The object store under test, once per backend: ``file://`` in a temporary directory and
``s3://`` on the session's SeaweedFS (a fresh prefix per test)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from kling_gateway.infra.objects import ObjectStore, open_object_store
from tests.seaweed import SeaweedS3, require_seaweed

BUCKET = "kg-objects"


@dataclass
class Backend:
    """A store plus a way to see what it really holds, from outside the port."""

    name: str
    store: ObjectStore
    visible_keys: Callable[[], list[str]]
    url: str


def _file_backend(tmp_path: Path) -> Backend:
    root = tmp_path / "videos"
    store = open_object_store(f"file://{root}", default_dir=tmp_path / "unused")

    def keys() -> list[str]:
        if not root.exists():
            return []
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    return Backend("file", store, keys, f"file://{root}")


def _s3_backend(server: SeaweedS3) -> Backend:
    server.create_bucket(BUCKET)
    prefix = f"t-{secrets.token_hex(6)}"
    url = f"s3://{BUCKET}/{prefix}"
    store = open_object_store(
        url,
        default_dir=Path("/nonexistent"),
        s3_endpoint_url=server.endpoint,
        environ=server.environ,
    )

    def keys() -> list[str]:
        found = server.list_keys(BUCKET, prefix + "/")
        return sorted(key.removeprefix(prefix + "/") for key in found)

    return Backend("s3", store, keys, url)


@pytest.fixture(params=["file", "s3"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    made = _file_backend(tmp_path) if request.param == "file" else _s3_backend(require_seaweed())
    try:
        yield made
    finally:
        await made.store.aclose()


@pytest.fixture
def seaweed() -> SeaweedS3:
    server = require_seaweed()
    server.create_bucket(BUCKET)
    return server
