"""Running the real `kling-gateway` command as a subprocess in end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

EXE = str(Path(sys.executable).parent / "kling-gateway")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any KLING_GATEWAY_* setting of the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLING_GATEWAY_")}
    env.update(extra)
    return env


def cli(*args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    done = subprocess.run(
        [EXE, *args], capture_output=True, text=True, env=env or clean_env(), timeout=60
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{args} exited {done.returncode}: {done.stderr}")
    return done.stdout


def wait_healthy(url: str, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"server at {url} did not become healthy")


@contextmanager
def running(
    *args: str, port: int, env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[str]]:
    """`kling-gateway serve ... --port PORT`, healthy on entry, SIGTERM'd on exit."""
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [EXE, "serve", "--port", str(port), *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
        env=env or clean_env(),
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield proc
    finally:
        stop(proc)
        if log:
            out.close()  # type: ignore[union-attr]


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
