"""The scale-out deployment of the README, run as written: real `kling-gateway`
processes on a fresh PostgreSQL database and Redis (database 15, emptied first).

The commands are read from the document, so the document cannot drift from what is tested;
the environment only points them at the test services and shortens the timings. Skipped,
saying why, when PostgreSQL or Redis does not answer (failing instead under
KLING_GATEWAY_TEST_REQUIRE_SERVICES=1). No assertion is about wall-clock durations.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from kling_gateway.storage.migrations import migration_scripts
from tests.e2e.proc import EXE, clean_env, free_port, stop, wait_healthy
from tests.services import PATIENT_REDIS_TIMEOUT, fresh_postgres_database, fresh_redis_url, run_sync

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

DOC = Path(__file__).resolve().parents[2] / "README.md"
BEGIN, END = "<!-- scale-out-commands", "<!-- /scale-out-commands -->"
AK, SK = "scale-out-ak", "scale-out-sk-0123456789abcdef"
TASKS = 500
WORKERS = 3


def documented_commands() -> dict[str, list[str]]:
    """The deployment's command lines, by subcommand, exactly as the document has them."""
    block = DOC.read_text().split(BEGIN, 1)[1].split(END, 1)[0]
    commands: dict[str, list[str]] = {}
    for line in block.splitlines():
        argv = shlex.split(line, comments=True)
        if argv and argv[0] == "kling-gateway":
            commands[argv[1]] = [EXE, *argv[1:]]
    return commands


def test_the_document_has_the_four_commands() -> None:
    assert list(documented_commands()) == ["migrate", "tokens", "serve", "worker"]


# -- the world around the gateway -------------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def callback_receiver() -> Iterator[str]:
    """A loopback endpoint answering 200 to every callback."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    with open(log, "w") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)


@contextlib.contextmanager
def fake_upstream(tmp_path: Path) -> Iterator[str]:
    """`kling-gateway fake-upstream` (the outside world) with short task timings."""
    port = free_port()
    argv = [EXE, "fake-upstream", "--port", str(port), "--access-key", AK]
    argv += ["--secret-key", SK, "--finish-min", "0.3", "--finish-max", "1.0", "--seed", "7"]
    proc = spawn(argv, clean_env(), tmp_path / "fake-upstream.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_answering(f"{url}/fake-admin/counters", proc)
        yield url
    finally:
        stop(proc)


def wait_answering(url: str, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer (exit code {proc.poll()})")


# -- the deployment ---------------------------------------------------------------------------


@dataclass
class Deployment:
    base_url: str
    token: str
    database_url: str
    redis_url: str
    api: subprocess.Popen[str]
    workers: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def limiter_pids(self) -> set[str]:
        """Pids of the processes holding a rate-limiter connection to Redis."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            names = [c["name"] for c in client.client_list()]
        finally:
            client.close()
        return {n.rsplit("-", 1)[1] for n in names if n.startswith("kling-gateway-limiter-")}


def gateway_env(tmp_path: Path, database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    settings = {
        "database_url": database_url,
        "redis_url": redis_url,
        "redis_timeout": str(PATIENT_REDIS_TIMEOUT),
        "data_dir": str(tmp_path / "data"),
        "host": "127.0.0.1",
        "port": str(free_port()),
        "log_level": "warning",
        "callback_allow_private": "true",
        **extra,
    }
    return clean_env(**{f"KLING_GATEWAY_{k.upper()}": v for k, v in settings.items()})


def run_once(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, f"{argv[1:]} exited {done.returncode}: {done.stderr}"
    return done.stdout


@contextlib.contextmanager
def deployment(tmp_path: Path, env: dict[str, str], workers: int) -> Iterator[Deployment]:
    """The documented commands: migrate (twice: the second is a no-op), a token, the API
    processes, ``workers`` workers; every process stopped at the end."""
    commands = documented_commands()
    first = run_once(commands["migrate"], env)
    shipped = migration_scripts("postgres")
    assert first.startswith(f"applied {len(shipped)} migration(s)"), first
    assert run_once(commands["migrate"], env).strip() == "applied 0 migration(s)"
    token = run_once(commands["tokens"], env).strip()
    api = spawn(commands["serve"], env, tmp_path / "serve.log")
    base_url = f"http://127.0.0.1:{env['KLING_GATEWAY_PORT']}"
    found = Deployment(
        base_url, token, env["KLING_GATEWAY_DATABASE_URL"], env["KLING_GATEWAY_REDIS_URL"], api
    )
    try:
        wait_healthy(base_url, api)
        for n in range(workers):
            found.workers.append(spawn(commands["worker"], env, tmp_path / f"worker-{n}.log"))
        yield found
    finally:
        for proc in [*found.workers, api]:
            stop(proc)


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    with fresh_postgres_database("kg_scale_out") as database_url:
        yield database_url, fresh_redis_url()


# -- 500 tasks, 2 API processes, 3 workers, one of them killed --------------------------------


def test_every_task_is_submitted_once_and_finished_once_while_a_worker_is_killed(
    tmp_path: Path, databases: tuple[str, str]
) -> None:
    database_url, redis_url = databases
    with fake_upstream(tmp_path) as upstream, callback_receiver() as hook:
        env = gateway_env(
            tmp_path,
            database_url,
            redis_url,
            provider="kling",
            kling_base_url=upstream,
            kling_access_key=AK,
            kling_secret_key=SK,
            kling_download_results="false",
            # A killed worker's tasks come due again after the lease; it must outlast one
            # provider call, so both are short here.
            provider_timeout="2",
            lease_seconds="3",
            check_interval="0.2",
            check_max_interval="0.5",
            idle_poll_seconds="0.5",
            rate_limit_per_minute="100000",
        )
        with deployment(tmp_path, env, WORKERS) as gw:
            ids = asyncio.run(create_tasks(gw, TASKS, hook))
            in_hand = kill_a_busy_worker(gw, upstream)
            records = wait_all_finished(gw, ids)
            counters = httpx.get(f"{upstream}/fake-admin/counters").json()
    assert in_hand > 0, "the killed worker held no task"
    assert {r["id"]: r["response"]["state"] for r in records} == dict.fromkeys(ids, "succeed")
    creates: dict[str, int] = counters["creates_by_external_id"]
    assert set(creates) == set(ids)
    assert set(creates.values()) == {1}, {k: v for k, v in creates.items() if v != 1}
    assert final_callbacks_per_task(database_url) == dict.fromkeys(ids, 1)


async def create_tasks(gw: Deployment, count: int, hook: str) -> list[str]:
    """``count`` asynchronous creates over HTTP, a few at a time, spread over both processes."""
    body = {"action": "text2video", "prompt": "a mug", "callback_url": hook, "async": True}
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=gw.base_url, headers=gw.headers, timeout=30) as client:

        async def create() -> str:
            async with gate:
                response = await client.post("/kling/videos", json=body)
            assert response.status_code == 200, response.text
            task_id: str = response.json()["task_id"]
            return task_id

        return list(await asyncio.gather(*(create() for _ in range(count))))


def kill_a_busy_worker(gw: Deployment, upstream: str) -> int:
    """Once a fifth of the tasks reached the provider, SIGKILL the worker holding the most;
    how many it held."""
    poll_until(lambda: upstream_creates(upstream) >= TASKS // 5, "tasks reaching the provider")
    held = run_sync(lambda: tasks_in_hand(gw.database_url))
    by_pid = {p.pid: p for p in gw.workers}
    pid, count = max(((p, n) for p, n in held.items() if p in by_pid), key=lambda x: x[1])
    by_pid[pid].send_signal(signal.SIGKILL)
    by_pid[pid].wait()
    return count


def upstream_creates(upstream: str) -> int:
    return int(httpx.get(f"{upstream}/fake-admin/counters").json()["creates"])


async def tasks_in_hand(database_url: str) -> dict[int, int]:
    """Unfinished tasks under a lease, by the pid in their worker's id (host:pid:random)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT lease_owner, count(*) FROM tasks WHERE lease_owner IS NOT NULL "
            "AND next_check_at IS NOT NULL GROUP BY lease_owner"
        )
    finally:
        await conn.close()
    return {int(owner.split(":")[1]): int(n) for owner, n in rows}


def wait_all_finished(gw: Deployment, ids: list[str]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []

    def all_finished() -> bool:
        nonlocal records
        body = {"action": "retrieve_batch", "ids": ids}
        response = httpx.post(f"{gw.base_url}/kling/tasks", json=body, headers=gw.headers)
        records = response.json()["items"]
        return all("finished_at" in r for r in records) and len(records) == len(ids)

    poll_until(all_finished, "every task finishing", timeout=120.0)
    return records


def final_callbacks_per_task(database_url: str) -> dict[str, int]:
    async def count() -> dict[str, int]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch("SELECT task_id, count(*) FROM callbacks GROUP BY task_id")
        finally:
            await conn.close()
        return {task_id: int(n) for task_id, n in rows}

    return run_sync(count)


def poll_until(condition: Any, what: str, timeout: float = 60.0) -> None:
    """Poll another process's state; the timeout only keeps a broken run from hanging."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


# -- rate limits and long polls across processes ----------------------------------------------


def test_a_rate_limit_holds_across_two_api_processes(
    tmp_path: Path, databases: tuple[str, str]
) -> None:
    limit = 10
    env = gateway_env(tmp_path, *databases, rate_limit_per_minute=str(limit))
    with deployment(tmp_path, env, workers=0) as gw:
        statuses: list[int] = []
        # Three times the limit, a new connection each, so that both processes get some; then
        # on until both have counted requests in Redis.
        while len(statuses) < 3 * limit or len(gw.limiter_pids()) < 2:
            assert len(statuses) < 300, "one API process never got a request"
            body = {"action": "retrieve", "id": "no-such-task"}
            statuses.append(
                httpx.post(f"{gw.base_url}/kling/tasks", json=body, headers=gw.headers).status_code
            )
    assert set(statuses) <= {200, 429}
    # Each process alone would allow `limit`, 2 x limit in all; shared, the limit (plus the
    # allowance of one refill interval, 6 s, should the run be slow).
    assert limit <= statuses.count(200) < 2 * limit, statuses


def test_a_long_poll_answers_when_a_worker_in_another_process_finishes_the_task(
    tmp_path: Path, databases: tuple[str, str]
) -> None:
    env = gateway_env(
        tmp_path,
        *databases,
        provider="local",
        local_delay="0.5",
        local_render="false",
        # Longer than the wait below: only the wake-up through Redis can get the task claimed
        # in time, not the worker's own look for work.
        idle_poll_seconds="300",
    )
    with deployment(tmp_path, env, workers=1) as gw:
        wait_subscribed(gw)
        body = {"action": "text2video", "prompt": "a mug", "async": True}
        created = httpx.post(f"{gw.base_url}/kling/videos", json=body, headers=gw.headers)
        task_id = created.json()["task_id"]
        asked = time.time()
        poll = {"action": "retrieve", "id": task_id, "wait": 30}
        answer = httpx.post(f"{gw.base_url}/kling/tasks", json=poll, headers=gw.headers, timeout=60)
        answered = time.time()
    record = answer.json()
    # The answer came after the task finished (it carries the finished record), and before the
    # 30 s wait ran out (had it run out, the record would be the unfinished one).
    assert record["response"]["state"] == "succeed"
    assert asked <= record["finished_at"] <= answered


def wait_subscribed(gw: Deployment) -> None:
    """Until the worker process's notifier is subscribed (its first look for work follows)."""
    pid = str(gw.workers[0].pid)
    client = redis.Redis.from_url(gw.redis_url)
    try:
        poll_until(
            lambda: any(
                c["name"] == f"kling-gateway-events-{pid}"
                for c in client.client_list(_type="pubsub")
            ),
            "the worker subscribing",
        )
    finally:
        client.close()


def test_serve_refuses_several_processes_on_sqlite(tmp_path: Path) -> None:
    argv = [EXE, "serve", "--processes", "2", "--data-dir", str(tmp_path), "--port", "1"]
    done = subprocess.run(argv, capture_output=True, text=True, env=clean_env(), timeout=60)
    assert done.returncode == 2
    assert "processes > 1 needs PostgreSQL" in done.stderr
