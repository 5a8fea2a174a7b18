"""Idle and half-sent connections are closed at their deadline, connections over the bound
are answered 503 at once, and uvicorn-level 400s come in the error shape — through a real
`kling-gateway serve` on loopback, with a bounded number of raw sockets."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.proc import clean_env, cli, free_port, running

HALF_SENT = 40


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    data = tmp_path_factory.mktemp("slow") / "data"
    token = cli("tokens", "create", "--user", "alice", "--data-dir", str(data)).strip()
    port = free_port()
    args = ["--data-dir", str(data), "--no-worker", "--no-bootstrap-token"]
    args += ["--header-timeout", "1", "--body-timeout", "1", "--keep-alive-timeout", "1"]
    args += ["--max-connections", "60"]
    log = Path(str(data) + ".log")
    with running(*args, port=port, env=clean_env(), log=log):
        yield port, token


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(30)  # a bound for a broken server, far above the 1 s deadlines
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def retrieve(port: int, token: str) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{port}/kling/tasks",
        json={"action": "retrieve", "id": "nope"},
        headers={"authorization": f"Bearer {token}"},
        timeout=10,
    )


def error_of(reply: bytes) -> tuple[bytes, dict[str, object], dict[str, str]]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return lines[0].encode(), json.loads(body), headers


def test_half_sent_requests_are_closed_and_others_are_served_meanwhile(
    server: tuple[int, str],
) -> None:
    port, token = server
    kinds = [
        b"",  # connects, sends nothing
        b"POST /kling/tasks HTTP/1.1\r\nhost: x\r\n",  # half the headers
        # half a body, authorized (so the app waits for the rest)
        b"POST /kling/tasks HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n"
        + f"authorization: Bearer {token}\r\n\r\n{{".encode(),
    ]
    sockets = []
    for i in range(HALF_SENT):
        sock = connect(port)
        sock.sendall(kinds[i % len(kinds)])
        sockets.append(sock)
    assert retrieve(port, token).status_code == 200  # a normal request meanwhile
    for sock in sockets:
        with sock:
            assert read_all(sock) == b""  # closed by the server, no answer
    assert retrieve(port, token).status_code == 200


def test_a_half_sent_second_request_on_a_kept_alive_connection_is_closed(
    server: tuple[int, str],
) -> None:
    port, token = server
    whole = (
        b"POST /kling/tasks HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n"
        + f'authorization: Bearer {token}\r\n\r\n{{"id":"x"}}'.encode()
    )
    with connect(port) as sock:
        sock.sendall(whole + whole[:30])  # one request, then the start of a second
        reply = read_all(sock)
    # the first answered (a missing task: `{}`), the second closed at its header deadline
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"\r\n\r\n{}"), reply


def test_an_idle_kept_alive_connection_is_closed(server: tuple[int, str]) -> None:
    port, _ = server
    with connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        reply = read_all(sock)  # answered, then closed once idle
    assert reply.startswith(b"HTTP/1.1 200")


def test_connections_over_the_bound_are_answered_503_at_once(server: tuple[int, str]) -> None:
    port, token = server
    held = [connect(port) for _ in range(60)]
    try:
        # Held connections count once the server has accepted them: wait until one is over.
        deadline = time.monotonic() + 20
        while True:
            with connect(port) as extra:
                reply = read_all(extra)
            if reply:
                break
            assert time.monotonic() < deadline
        status, body, headers = error_of(reply)
        assert status == b"HTTP/1.1 503 Service Unavailable"
        assert body["success"] is False and body["trace_id"] == headers["x-trace-id"]
        assert body["error"]["code"] == "service_unavailable"  # type: ignore[index]
        assert int(headers["retry-after"]) >= 1
    finally:
        for sock in held:
            sock.close()
    # The held ones time out or are closed; the server serves again.
    deadline = time.monotonic() + 20
    while retrieve(port, token).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /kling/tasks HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nZZ\r\n",
        b"GET /healthz HTTP/1.1\r\nho\x01st: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nhost: \x00x\r\n\r\n",
    ],
)
def test_unparseable_requests_get_400_in_the_error_shape(
    server: tuple[int, str], request_bytes: bytes
) -> None:
    port, _ = server
    with connect(port) as sock:
        sock.sendall(request_bytes)
        reply = read_all(sock)
    status, body, headers = error_of(reply)
    assert status == b"HTTP/1.1 400 Bad Request"
    assert headers["content-type"] == "application/json"
    assert body["success"] is False and body["trace_id"] == headers["x-trace-id"]
    assert body["error"]["code"] == "bad_request"  # type: ignore[index]
    assert "invalid HTTP request" in body["error"]["message"]  # type: ignore[index]
