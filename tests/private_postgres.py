"""A PostgreSQL cluster of the test's own (initdb + pg_ctl in a temporary directory, on a free
loopback port), to stop and start again: the shared PostgreSQL on 5432 is never touched.

Skipped with the reason where Debian's server binaries (/usr/lib/postgresql/*/bin) are absent
(failed under KLING_GATEWAY_TEST_REQUIRE_SERVICES=1). PostgreSQL refuses to run as root: as
root the cluster is made and run as the ``postgres`` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.seaweed import free_port
from tests.services import services_required

START_SECONDS = 30


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _unavailable(reason: str) -> None:
    if services_required():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@dataclass
class PrivatePostgres:
    bin_dir: Path
    data: Path
    port: int
    user: str | None  # run as this system user (when we are root)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=START_SECONDS)

    def init(self) -> None:
        self.data.mkdir(parents=True)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for path in (self.data.parent, self.data):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-l",
                  str(self.data / "log"), "start")  # fmt: skip

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """The cluster, started; stopped and removed at the end. Its directory is one of its
    own under the system's temporary directory: pytest's are private to root."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        _unavailable("PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are not installed")
        raise AssertionError  # pragma: no cover - skip raised
    user = None
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            _unavailable("running as root without runuser: PostgreSQL will not start as root")
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root without a postgres user to run PostgreSQL as")
        user = "postgres"
    root = Path(tempfile.mkdtemp(prefix="kling-gateway-pg-"))
    server = PrivatePostgres(bin_dir, root / "data", free_port(), user)
    try:
        server.init()
        server.start()
        deadline = time.monotonic() + START_SECONDS
        while not server.answers():
            assert time.monotonic() < deadline, "the private PostgreSQL did not start"
            time.sleep(0.05)
        yield server
    finally:
        if server.answers():
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
