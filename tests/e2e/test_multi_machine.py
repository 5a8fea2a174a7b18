"""Two "machines" that share no disk: on each an API process and a worker, every one in a data
directory of its own, over PostgreSQL, Redis and SeaweedFS (s3://). A video rendered by
worker A is served by API process B, extended by worker B (its source read back from the
bucket), and deleted through API A, which removes its object from the bucket.

Real `kling-gateway` processes; skipped with the reason (failing under
KLING_GATEWAY_TEST_REQUIRE_SERVICES=1) when a service is absent. No wall-clock assertions.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from kling_gateway.providers.local.render import probe_video
from tests.e2e.proc import EXE, clean_env, free_port, stop, wait_healthy
from tests.seaweed import SeaweedS3, require_seaweed
from tests.services import (
    PATIENT_REDIS_TIMEOUT,
    fresh_postgres_database,
    fresh_redis_url,
    redis_url,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

BUCKET = "kg-machines"
MUG = {"action": "text2video", "prompt": "White ceramic coffee mug on marble", "duration": 5}


def machine_env(base: dict[str, str], data_dir: Path, port: int | None = None) -> dict[str, str]:
    env = {**base, "KLING_GATEWAY_DATA_DIR": str(data_dir)}
    if port is not None:
        env["KLING_GATEWAY_PORT"] = str(port)
    return env


@contextlib.contextmanager
def process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[str]]:
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
        try:
            yield proc
        finally:
            stop(proc)


@contextlib.contextmanager
def api(env: dict[str, str], log: Path) -> Iterator[str]:
    """`serve --no-worker` on env's port, healthy on entry."""
    url = f"http://127.0.0.1:{env['KLING_GATEWAY_PORT']}"
    with process([EXE, "serve", "--no-worker"], env, log) as proc:
        wait_healthy(url, proc)
        yield url


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[dict[str, str], SeaweedS3, str]]:
    """The shared services and the environment every process gets."""
    seaweed = require_seaweed()
    seaweed.create_bucket(BUCKET)
    prefix = f"videos-{secrets.token_hex(4)}"
    db = int(urlsplit(redis_url()).path.strip("/") or 15)
    with fresh_postgres_database("kg_machines") as database_url:
        settings = {
            "database_url": database_url,
            "redis_url": fresh_redis_url(db),
            "redis_timeout": str(PATIENT_REDIS_TIMEOUT),
            "storage_url": f"s3://{BUCKET}/{prefix}",
            "s3_endpoint_url": seaweed.endpoint,
            # Links in records: the API's public URL, whichever process wrote them.
            "public_url": "https://kling.example",
            "host": "127.0.0.1",
            "log_level": "warning",
            "local_delay": "0.1",
            "local_max_side": "64",
            "bootstrap_token": "false",
        }
        env = clean_env(
            **{f"KLING_GATEWAY_{k.upper()}": v for k, v in settings.items()}, **seaweed.environ
        )
        yield env, seaweed, prefix


def run(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, f"{argv[1:]} exited {done.returncode}: {done.stderr}"
    return done.stdout


def test_render_on_a_serve_on_b_extend_on_b_delete_through_a(
    tmp_path: Path, world: tuple[dict[str, str], SeaweedS3, str]
) -> None:
    env, seaweed, prefix = world
    a, b = tmp_path / "machine-a", tmp_path / "machine-b"
    dirs = {
        name: path
        for m in (a, b)
        for name, path in ((f"{m.name}/api", m / "api"), (f"{m.name}/worker", m / "worker"))
    }
    run([EXE, "migrate"], machine_env(env, a / "api"))
    token = run([EXE, "tokens", "create", "--user", "alice"], machine_env(env, a / "api")).strip()
    auth = {"authorization": f"Bearer {token}"}
    env_api_a = machine_env(env, a / "api", free_port())
    env_api_b = machine_env(env, b / "api", free_port())
    with (
        api(env_api_a, tmp_path / "api-a.log") as url_a,
        api(env_api_b, tmp_path / "api-b.log") as url_b,
    ):
        # Worker A alone renders.
        with process([EXE, "worker"], machine_env(env, a / "worker"), tmp_path / "w-a.log"):
            made = httpx.post(f"{url_a}/kling/videos", json=MUG, headers=auth, timeout=120)
        body = made.json()
        assert body["state"] == "succeed", body
        video_id, task_id = body["video_id"], body["task_id"]
        path = f"/files/videos/{video_id}.mp4"
        assert body["video_url"] == f"https://kling.example{path}"  # no worker's host
        assert seaweed.list_keys(BUCKET, prefix + "/") == [f"{prefix}/{video_id}.mp4"]

        # API B serves it (worker A is gone; nothing is on B's disk).
        served = httpx.get(f"{url_b}{path}", timeout=30)
        assert served.status_code == 200
        rendered = tmp_path / "rendered.mp4"
        rendered.write_bytes(served.content)
        source_frames = probe_video(rendered).frames
        ranged = httpx.get(f"{url_b}{path}", headers={"range": "bytes=0-7"}, timeout=30)
        assert (ranged.status_code, ranged.content) == (206, served.content[:8])

        # Worker B alone extends it, through API B.
        with process([EXE, "worker"], machine_env(env, b / "worker"), tmp_path / "w-b.log"):
            extend = {"action": "extend", "video_id": video_id, "prompt": "longer", "duration": 5}
            longer = httpx.post(f"{url_b}/kling/videos", json=extend, headers=auth, timeout=120)
        extended = longer.json()
        assert extended["state"] == "succeed", extended
        got = httpx.get(f"{url_a}/files/videos/{extended['video_id']}.mp4", timeout=30)
        (tmp_path / "extended.mp4").write_bytes(got.content)
        assert probe_video(tmp_path / "extended.mp4").frames > source_frames

        # Deleted through API A: the object leaves the bucket, B refuses the URL.
        deleted = httpx.post(
            f"{url_a}/kling/tasks", json={"action": "delete", "id": task_id}, headers=auth
        )
        assert deleted.json()["deleted"] is True
        assert f"{prefix}/{video_id}.mp4" not in seaweed.list_keys(BUCKET, prefix + "/")
        assert f"{prefix}/{extended['video_id']}.mp4" in seaweed.list_keys(BUCKET, prefix + "/")
        gone = httpx.get(f"{url_b}{path}", timeout=30)
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"

    # No process kept a video on its own disk: no shared directory was needed.
    for name, directory in dirs.items():
        assert not (directory / "videos").exists() or not any((directory / "videos").iterdir()), (
            name
        )
        assert not any(directory.glob("scratch/*")), name
