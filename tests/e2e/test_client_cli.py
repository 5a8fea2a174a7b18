"""The client CLI (`tasks ...`, `videos create`) as subprocesses against `kling-gateway serve`.

stdout is a pipe here, so every command prints JSON; progress goes to stderr as plain lines.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kling_gateway.providers.local.render import probe_video
from tests.e2e.proc import EXE, clean_env, cli, free_port, running


@dataclass
class Gateway:
    url: str
    token: str
    workdir: Path

    def run(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        env = clean_env(KLING_GATEWAY_URL=self.url, KLING_GATEWAY_TOKEN=token or self.token)
        return subprocess.run(
            [EXE, *args], capture_output=True, text=True, env=env, cwd=self.workdir, timeout=120
        )

    def json(self, *args: str) -> Any:
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("cli")
    data = str(root / "data")
    token = cli("tokens", "create", "--user", "alice", "--data-dir", data).strip()
    port = free_port()
    flags = ("--data-dir", data, "--local-delay", "0.3", "--local-max-side", "64")
    with running(*flags, "--no-bootstrap-token", port=port, log=root / "serve.log"):
        yield Gateway(f"http://127.0.0.1:{port}", token, root)


def test_videos_create_waits_and_saves_a_real_mp4(gateway: Gateway) -> None:
    done = gateway.run(
        "videos", "create", "a mug", "--wait", "--output", "out.mp4",
        "--duration", "5", "--aspect-ratio", "1:1", "--model", "kling-v1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["response"]["state"] == "succeed"
    assert record["request"]["prompt"] == "a mug"
    assert f"task {record['id']}: succeed" in done.stderr  # the progress lines
    video = probe_video(gateway.workdir / "out.mp4")
    assert video.width == video.height and video.frames > 0
    assert video.duration == pytest.approx(5.0, abs=0.2)
    assert not (gateway.workdir / "out.mp4.part").exists()


def test_videos_create_without_wait_prints_the_task_id(gateway: Gateway) -> None:
    created = gateway.json("videos", "create", "a cup")
    assert set(created) == {"task_id", "trace_id", "usage"}


def test_tasks_get_batch_list_and_wait(gateway: Gateway) -> None:
    first = gateway.json("videos", "create", "first")["task_id"]
    second = gateway.json("videos", "create", "second")["task_id"]
    waited = gateway.json("tasks", "wait", second)
    assert waited["id"] == second and waited["response"]["state"] == "succeed"
    assert gateway.json("tasks", "get", second) == waited
    batch = gateway.json("tasks", "batch", second, "no-such-task", first)
    assert [item["id"] for item in batch["items"]] == [second, first]
    assert batch["count"] == 2
    listed = gateway.json("tasks", "list", "--limit", "2")
    assert [item["id"] for item in listed["items"]] == [second, first]  # newest first
    assert gateway.json("tasks", "list", "--since", "1e12") == {"items": [], "count": 0}


def test_errors_exit_non_zero_with_the_code(gateway: Gateway) -> None:
    bad_token = gateway.run("tasks", "get", "any", token="kg-wrong")
    assert bad_token.returncode == 1 and bad_token.stdout == ""
    assert bad_token.stderr.startswith("kling-gateway: invalid_token: ")
    bad_field = gateway.run("videos", "create", "a mug", "--duration", "7")
    assert bad_field.returncode == 1
    assert bad_field.stderr.startswith("kling-gateway: bad_request: ")
    assert "duration" in bad_field.stderr
    missing = gateway.run("tasks", "get", "no-such-task")
    assert missing.returncode == 1 and "no-such-task" in missing.stderr


def test_missing_token_is_a_usage_error(gateway: Gateway) -> None:
    env = clean_env(KLING_GATEWAY_URL=gateway.url)
    done = subprocess.run([EXE, "tasks", "get", "x"], capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert "token" in done.stderr


def test_videos_create_storyboard_with_audio(gateway: Gateway) -> None:
    # docs/contract.md §6: --shot SECONDS:PROMPT per shot (the duration is their sum), --audio
    done = gateway.run(
        "videos", "create", "--model", "kling-v3", "--shot", "2:a red fox",
        "--shot", "1:a blue ship", "--audio", "--output", "story.mp4",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["request"]["multi_prompt"] == [
        {"index": 1, "prompt": "a red fox", "duration": 2},
        {"index": 2, "prompt": "a blue ship", "duration": 1},
    ]
    assert (record["request"]["duration"], record["request"]["generate_audio"]) == (3, True)
    import av

    with av.open(str(gateway.workdir / "story.mp4")) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]


def test_videos_create_omni_references(gateway: Gateway) -> None:
    done = gateway.run(
        "videos", "create", "<<<image_1>>> walks", "--model", "kling-o1",
        "--image-ref", "https://img.example/a.png:first_frame",
        "--image-ref", "https://img.example:8443/b.png",
        "--video-ref", "https://v.example/a.mp4:feature",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    request = json.loads(done.stdout)
    record = json.loads(gateway.run("tasks", "get", request["task_id"]).stdout)
    assert record["request"]["image_list"] == [
        {"image_url": "https://img.example/a.png", "type": "first_frame"},
        {"image_url": "https://img.example:8443/b.png"},
    ]
    assert record["request"]["video_list"] == [
        {"video_url": "https://v.example/a.mp4", "refer_type": "feature"}
    ]
