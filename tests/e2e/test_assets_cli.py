"""`kling-gateway assets add` (docs/contract.md §6): the printed gateway id is usable in
`element_list` / `voice_list` by that user alone, over the real command and server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from tests.e2e.proc import EXE, clean_env, cli, free_port, running


def _create(url: str, token: str, body: dict[str, object]) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"}
    return httpx.post(f"{url}/kling/videos", json={**body, "async": True}, headers=headers)


def test_assets_add_prints_an_id_only_its_user_can_use(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    alice = cli("tokens", "create", "--user", "alice", "--data-dir", data).strip()
    bob = cli("tokens", "create", "--user", "bob", "--data-dir", data).strip()
    add = ("assets", "add", "--user", "alice", "--data-dir", data)
    element = cli(*add, "--kind", "element", "--upstream-id", "kling-el-1").strip()
    voice = cli(*add, "--kind", "voice", "--upstream-id", "kling-vo-1").strip()
    assert element.startswith("el_") and voice.startswith("vo_")
    assert "\n" not in element  # the id alone, for scripts
    v3 = {"action": "text2video", "model": "kling-v3", "prompt": "a mug"}
    v26 = {
        "action": "text2video", "model": "kling-v2-6", "mode": "pro", "generate_audio": True,
        "prompt": "<<<voice_1>>> says hello",
    }  # fmt: skip
    port = free_port()
    with running("--data-dir", data, "--no-worker", port=port, log=tmp_path / "serve.log"):
        url = f"http://127.0.0.1:{port}"
        with_element = {**v3, "element_list": [{"element_id": element}]}
        with_voice = {**v26, "voice_list": [{"voice_id": voice}]}
        assert _create(url, alice, with_element).status_code == 200
        assert _create(url, alice, with_voice).status_code == 200
        refused = _create(url, bob, with_element)
        assert refused.status_code == 400
        assert "`element_list[0].element_id`" in refused.json()["error"]["message"]
        assert _create(url, bob, with_voice).status_code == 400


def test_assets_add_refuses_an_unknown_kind(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    args = ("assets", "add", "--user", "a", "--kind", "face", "--upstream-id", "x")
    done = subprocess.run(
        [EXE, *args, "--data-dir", data], capture_output=True, text=True, env=clean_env(),
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--kind" in done.stderr
