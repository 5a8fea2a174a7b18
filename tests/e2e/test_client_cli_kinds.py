"""The client CLI's `motion|lip-sync|talking-photo create` as subprocesses against
`kling-gateway serve` (docs/contract.md §7): JSON on stdout (a pipe), real outputs saved."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kling_gateway.providers.local.render import probe_video
from tests.e2e.proc import cli, free_port, running
from tests.e2e.test_client_cli import Gateway
from tests.providers.local.media import (
    decode_track,
    encode_audio,
    png,
    silence_then_tone,
    still_video,
    textured,
)
from tests.servers import serve_asgi


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("inputs")
    bodies = {
        "/photo.png": png(textured(96, 54)),
        "/dance.mp4": still_video(folder / "dance.mp4", seconds=2.0, fps=8).read_bytes(),
        "/speech.wav": encode_audio(silence_then_tone(2.5), "wav"),
    }

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        if scope["type"] != "http":
            return
        body = bodies.get(str(scope["path"]), b"")
        await send({"type": "http.response.start", "status": 200 if body else 404,  # type: ignore[operator]
                    "headers": []})  # fmt: skip
        await send({"type": "http.response.body", "body": body})  # type: ignore[operator]

    with serve_asgi(app) as url:
        yield url


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("cli-kinds")
    data = str(root / "data")
    token = cli("tokens", "create", "--user", "alice", "--data-dir", data).strip()
    port = free_port()
    flags = ("--data-dir", data, "--local-delay", "0.1", "--local-max-side", "64",
             "--callback-allow-private", "--no-bootstrap-token")  # fmt: skip
    with running(*flags, port=port, log=root / "serve.log"):
        yield Gateway(f"http://127.0.0.1:{port}", token, root)


def test_motion_create_waits_and_saves(gateway: Gateway, media: str) -> None:
    done = gateway.run("motion", "create", f"{media}/photo.png", f"{media}/dance.mp4",
                       "--orientation", "video", "--output", "motion.mp4")  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["type"] == "motion" and record["response"]["state"] == "succeed"
    assert probe_video(gateway.workdir / "motion.mp4").frames > 0


def test_lip_sync_create_with_a_file(gateway: Gateway, media: str) -> None:
    clip = gateway.workdir / "speech.wav"
    clip.write_bytes(encode_audio(silence_then_tone(2.0), "wav"))
    done = gateway.run("lip-sync", "create", "--video-url", f"{media}/dance.mp4",
                       "--audio-file", str(clip), "--output", "synced.mp4")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert decode_track(gateway.workdir / "synced.mp4") is not None


def test_talking_photo_create_async(gateway: Gateway, media: str) -> None:
    created = gateway.json("talking-photo", "create", f"{media}/photo.png",
                           f"{media}/speech.wav", "--duration", "5")  # fmt: skip
    assert set(created) == {"task_id", "trace_id", "usage"}
    record = gateway.json("tasks", "wait", created["task_id"])
    assert record["response"]["source_video_url"]


def test_usage_errors_exit_2(gateway: Gateway, media: str) -> None:
    done = gateway.run("lip-sync", "create", "--video-url", f"{media}/dance.mp4", "--text", "hi")
    assert done.returncode == 2 and "--voice-id" in done.stderr
    missing = gateway.run("lip-sync", "create", "--video-url", f"{media}/d.mp4",
                          "--audio-file", str(Path(gateway.workdir) / "nope.wav"))  # fmt: skip
    assert missing.returncode == 2
