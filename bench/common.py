"""What the groups share: servers as subprocesses, wrk, /proc readings, the machine."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
BIN = Path(sys.executable).parent  # the venv's bin: kling-gateway, uvicorn
WORK = BENCH_DIR / "work"
HOST = "127.0.0.1"  # loopback only
SERVER_CPU = "0"
LOAD_CPU = "1"


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pinned(cmd: Sequence[str], cpu: str | None) -> list[str]:
    """``cmd`` under ``taskset -c CPU`` when there is a CPU to pin to and taskset exists."""
    if cpu is None or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return list(cmd)
    return ["taskset", "-c", cpu, *cmd]


class Server:
    """A server subprocess: started, waited for, measured through /proc, always stopped."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        port: int | None,
        cpu: str | None = SERVER_CPU,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.cmd = pinned(cmd, cpu)
        self.port = port
        self.env = {**os.environ, **(env or {})}
        self.log_path = WORK / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid  # taskset execs the command: same pid

    def start(self, timeout: float = 30.0) -> Server:
        WORK.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                self.cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        if self.port is not None:
            self._wait_listening(timeout)
        return self

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early; see {self.log_path}")
            try:
                httpx.get(f"http://{HOST}:{self.port}/", timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start listening in {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def peak_rss_mb(self) -> float:
        """VmHWM: the peak resident set size of the process so far."""
        return _status_kb(self.pid, "VmHWM") / 1024

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the process (all its threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cpu_busy_seconds(cpu: str) -> float:
    """Busy (non-idle, non-iowait) time of one CPU since boot, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            ticks = [int(v) for v in line.split()[1:]]
            busy = sum(ticks[:8]) - ticks[3] - ticks[4]  # minus idle and iowait
            return busy / os.sysconf("SC_CLK_TCK")
    return 0.0


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def gateway_cmd(data_dir: str, port: int, *extra: str) -> list[str]:
    return [
        str(BIN / "kling-gateway"),
        "serve",
        "--data-dir",
        data_dir,
        "--host",
        HOST,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-bootstrap-token",
        *extra,
    ]


def warm_page_cache(path: Path) -> None:
    """Read a database file once, so the OS holds it in its page cache (this VM reclaims
    cold page cache: a 4 GB file left a third on disk, and lookups then measured the disk)."""
    for name in (path, Path(f"{path}-wal")):
        if name.exists():
            with open(name, "rb", buffering=0) as f:
                while f.read(16 << 20):
                    pass


def resident_share(path: Path) -> float | None:
    """How much of ``path`` is in the OS page cache (util-linux ``fincore``), if known."""
    if shutil.which("fincore") is None:
        return None
    done = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        res, size = (int(v) for v in done.stdout.split())
    except ValueError:
        return None
    return res / size if size else None


# -- wrk


def ensure_wrk() -> str:
    """The wrk binary; installed with apt-get when missing and running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk is missing: installing the Debian package `wrk` with apt-get (root)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "wrk"]
        if subprocess.run(install, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=True)
            subprocess.run(install, env=env, check=True)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit(
        "make bench needs the load generator wrk: install it (Debian/Ubuntu: "
        "`sudo apt-get install wrk`; macOS: `brew install wrk`) and run `make bench` again"
    )


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    bytes_per_response: float
    errors: str  # "" when none
    others_on_server_cpu: float = 0.0  # share of the server's CPU used by other processes
    server_cpu_us: float = 0.0  # server CPU time (user + system) per request, microseconds

    @property
    def ok(self) -> bool:
        return not self.errors


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_SIZE = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> WrkResult:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    done = re.search(r"(\d+) requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB) read", output)
    assert done is not None, output
    requests = int(done.group(1))
    size = float(done.group(2)) * _SIZE[done.group(3)]
    errors = []
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors.append(f"{non2xx.group(1)} non-2xx responses")
    sockets = re.search(r"Socket errors: (.*)", output)
    if sockets:
        errors.append(f"socket errors: {sockets.group(1)}")
    return WrkResult(rps, p50, p99, requests, size / max(requests, 1), "; ".join(errors))


def run_wrk(
    url: str,
    *,
    ids_file: str,
    token: str,
    mode: str,
    duration: float,
    warmup: float,
    connections: int,
    batch: int = 100,
) -> WrkResult:
    """A warm-up run (discarded), then the measured run: one wrk thread on the load CPU."""
    wrk = ensure_wrk()
    script = str(BENCH_DIR / "post_ids.lua")

    def once(seconds: float) -> str:
        cmd = pinned(
            [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", script, url],
            LOAD_CPU,
        )
        cmd += ["--", ids_file, token, mode, str(batch)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return done.stdout

    if warmup > 0:
        once(warmup)
    return parse_wrk(once(duration))


# -- the machine


def machine() -> dict[str, str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = _meminfo_kb("MemTotal")
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
    }


def _meminfo_kb(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0
