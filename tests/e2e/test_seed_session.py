"""The seed's curl session against `kling-gateway serve`, with only the base URL changed."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from kling_gateway.storage.sqlite import SQLiteStore
from tests.e2e.proc import cli, free_port, running
from tests.harness import insert_finished, make_task

SEED_ID = "20068983-0cc9-4c6a-aeb6-9c6a3c668be0"
OTHER_ID = "e3a575aa-a4bd-49c8-9b12-cde38d5462e0"
pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def seed_retrieve(base: str, token: str) -> str:
    return f"""curl -X POST '{base}/kling/tasks' \\
-H 'accept: application/json' \\
-H 'authorization: Bearer {token}' \\
-H 'content-type: application/json' \\
-d '{{
  "id": "{SEED_ID}",
  "action": "retrieve"
}}'"""


def seed_batch(base: str, token: str) -> str:
    return f"""curl -X POST '{base}/kling/tasks' \\
-H 'accept: application/json' \\
-H 'authorization: Bearer {token}' \\
-H 'content-type: application/json' \\
-d '{{
  "ids": ["{OTHER_ID}","{SEED_ID}"],
  "action": "retrieve_batch"
}}'"""


def sh(command: str) -> dict[str, object]:
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    parsed: dict[str, object] = json.loads(out.stdout)
    return parsed


async def store_seed_tasks(data_dir: Path, user_id: str) -> None:
    store = SQLiteStore(f"sqlite:///{data_dir / 'kling-gateway.db'}")
    await store.open()
    try:
        for task_id in (SEED_ID, OTHER_ID):
            task = make_task(user_id)
            task.id = task_id
            await insert_finished(store, task)
    finally:
        await store.close()


def user_id_of(data_dir: Path) -> str:
    import sqlite3

    with sqlite3.connect(data_dir / "kling-gateway.db") as conn:
        return str(conn.execute("SELECT id FROM users WHERE name = 'alice'").fetchone()[0])


def test_seed_curl_session(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = cli("migrate", "--data-dir", str(data))
    assert first.startswith("applied ") and "0001_initial.sql" in first
    assert cli("migrate", "--data-dir", str(data)).strip() == "applied 0 migration(s)"
    token = cli("tokens", "create", "--user", "alice", "--data-dir", str(data)).strip()
    assert token.startswith("kg-") and "\n" not in token
    asyncio.run(store_seed_tasks(data, user_id_of(data)))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running("--data-dir", str(data), "--no-worker", port=port):
        record = sh(seed_retrieve(base, token))
        assert record["id"] == SEED_ID and record["type"] == "videos"
        assert record["response"]["task_id"] == SEED_ID  # type: ignore[index]
        batch = sh(seed_batch(base, token))
        assert [item["id"] for item in batch["items"]] == [OTHER_ID, SEED_ID]  # type: ignore[attr-defined]
        assert batch["count"] == 2
        listed = cli("tokens", "list", "--data-dir", str(data))
        assert "alice" in listed and token not in listed and token[:10] in listed
        cli("tokens", "revoke", token[:10], "--data-dir", str(data))
        # The revocation reaches the running server once its auth cache (5 s) expires; a
        # fresh server sees it at once.
    with running("--data-dir", str(data), "--no-worker", port=port):
        refused = sh(seed_retrieve(base, token))
        assert refused["error"] == {"code": "invalid_token", "message": refused["error"]["message"]}  # type: ignore[index]


def test_first_start_prints_a_working_curl_command(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "serve.log"
    port = free_port()
    with running("--data-dir", str(data), "--no-worker", port=port, log=log):
        printed = log.read_text()
        command = printed[printed.index("curl -X POST") : printed.index("}'") + 2]
        assert sh(command) == {}  # a valid token; the sample id does not exist yet
    with running("--data-dir", str(data), "--no-worker", port=port, log=log):
        assert "curl -X POST" not in log.read_text()  # only on an empty store
