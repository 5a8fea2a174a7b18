"""Run any ASGI app as a real uvicorn server on a loopback ephemeral port, in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn


def loopback_socket(host: str = "127.0.0.1") -> socket.socket:
    """A listening socket on an ephemeral port (to know the URL before building the app)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(128)
    return sock


def socket_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


@contextlib.contextmanager
def serve_asgi(
    app: Any,
    *,
    host: str = "127.0.0.1",
    startup_timeout: float = 10.0,
    sock: socket.socket | None = None,
) -> Iterator[str]:
    """Serve ``app`` (lifespan included) until the block ends; yields ``http://host:port``.

    ``sock``: serve on this listening socket (from ``loopback_socket``) instead of a new one.
    """
    sock = sock if sock is not None else loopback_socket(host)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
