"""A client that leaves a blocking create or a long-poll ends its server-side waiter at once
(the server watches ``http.disconnect``), over a real uvicorn on loopback."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from kling_gateway.api.waiting import Waiters
from tests.harness import make_settings
from tests.real_gateway import RealGateway, real_gateway


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealGateway]:
    data: Path = tmp_path_factory.mktemp("disconnect")
    # No worker: a task never finishes, so only a disconnect can end its waiter early.
    settings_for = lambda port: make_settings(data, worker=False, port=port)  # noqa: E731
    with real_gateway(settings_for) as gw:
        gw.add_user("alice")
        yield gw


def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def post(server: RealGateway, path: str, body: dict[str, object]) -> socket.socket:
    """Send a whole POST on a raw socket and leave it open, unanswered."""
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {server.tokens['alice']}\r\ncontent-length: {len(payload)}\r\n\r\n"
    )
    sock.sendall(head.encode() + payload)
    return sock


def create_async(server: RealGateway) -> str:
    response = httpx.post(
        f"{server.url}/kling/videos",
        json={"action": "text2video", "prompt": "a mug", "async": True},
        headers={"authorization": f"Bearer {server.tokens['alice']}"},
    )
    return str(response.json()["task_id"])


def waiters(server: RealGateway) -> Waiters:
    return server.app.ctx.waiters


def test_a_client_leaving_a_blocking_create_ends_its_waiter(server: RealGateway) -> None:
    sockets = [
        post(server, "/kling/videos", {"action": "text2video", "prompt": "a mug"}) for _ in range(5)
    ]
    until(lambda: waiters(server).active == 5)
    for sock in sockets[:3]:
        sock.close()
    until(lambda: waiters(server).active == 2)
    for sock in sockets[3:]:
        sock.close()
    until(lambda: waiters(server).active == 0)
    until(lambda: server.app.ctx.events.waiting == 0)  # type: ignore[attr-defined]


def test_a_client_leaving_a_long_poll_ends_its_waiter(server: RealGateway) -> None:
    task_id = create_async(server)
    sock = post(server, "/kling/tasks", {"action": "retrieve", "id": task_id, "wait": 60})
    until(lambda: waiters(server).active == 1)
    sock.close()
    until(lambda: waiters(server).active == 0)
    until(lambda: server.app.ctx.events.waiting == 0)  # type: ignore[attr-defined]


def test_a_client_that_stays_is_still_answered(server: RealGateway) -> None:
    task_id = create_async(server)
    sock = post(server, "/kling/tasks", {"action": "retrieve", "id": task_id, "wait": 0.5})
    with sock:
        sock.settimeout(30)
        reply = b""
        while task_id.encode() not in reply:
            chunk = sock.recv(65536)
            assert chunk, reply
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200")
    until(lambda: waiters(server).active == 0)
