"""GET /files/videos/...: missing files are 404 `not_found` in the error shape (also before the
videos folder exists), served files carry nosniff, and Starlette HTTP errors keep their status."""

from __future__ import annotations

from pathlib import Path

import pytest

from kling_gateway.api.pages import http_error
from tests.api.test_tasks import assert_error
from tests.harness import AppHarness


async def test_a_missing_file_before_the_videos_folder_exists_is_not_found(
    gateway: AppHarness,
) -> None:
    assert not gateway.settings.videos_dir.exists()
    response = await gateway.client.get("/files/videos/x.mp4")
    body = assert_error(response, 404, "not_found")
    assert body["error"]["message"] == "no file at /files/videos/x.mp4"


async def test_a_missing_file_is_not_found(gateway: AppHarness) -> None:
    gateway.settings.videos_dir.mkdir(parents=True)
    for path in ("/files/videos/x.mp4", "/files/videos/", "/files/videos/a/../b.mp4"):
        assert_error(await gateway.client.get(path), 404, "not_found")


def put_file(folder: Path, name: str, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


async def test_a_served_file_is_not_sniffed(gateway: AppHarness) -> None:
    put_file(gateway.settings.videos_dir, "v.mp4", b"<html><script>alert(1)</script>")
    response = await gateway.client.get("/files/videos/v.mp4")
    assert response.status_code == 200
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-type"] == "video/mp4"
    ranged = await gateway.client.get("/files/videos/v.mp4", headers={"range": "bytes=0-3"})
    assert ranged.status_code == 206 and ranged.content == b"<htm"
    assert ranged.headers["x-content-type-options"] == "nosniff"


async def test_an_unknown_path_is_still_no_api(gateway: AppHarness) -> None:
    assert_error(await gateway.client.get("/no/such/path"), 404, "no_api")
    assert_error(await gateway.client.post("/files/videos/v.mp4"), 404, "no_api")


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "bad_request"),
        (401, "invalid_token"),
        (413, "bad_request"),
        (416, "bad_request"),
        (500, "api_error"),
        (503, "service_unavailable"),
    ],
)
def test_a_starlette_http_error_keeps_its_status(status: int, code: str) -> None:
    error = http_error(status, "detail")
    assert (error.status, error.code, error.message) == (status, code, "detail")
    if status == 503:
        assert error.headers["retry-after"]
