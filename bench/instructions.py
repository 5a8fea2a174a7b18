"""Group instructions: machine instructions per retrieve, gateway against the raw reference (R).

The tasks_api group measures CPU time, which moves by up to ~40 % on this shared machine when
other processes thrash the same core. Instructions executed do not: both servers run under
``valgrind --tool=callgrind`` (uninstrumented through start-up), and for each the counters are
zeroed after a warm-up and dumped after exactly N requests (``callgrind_control``), so the
figure is the server's own work for those N requests, whatever else the machine is doing.
The ratio (R) / gateway is the share of the gateway's instructions that the reference needs.

Instructions are not time (cache misses and syscalls cost more than their count), so this is
read beside the CPU ratio of tasks_api, not instead of it. The gateway runs without its worker
(``--no-worker``) so that nothing but the requests runs during the window.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import HOST, WORK, Server, free_port, gateway_cmd, log, machine
from bench.dataset import Dataset, ensure_dataset
from bench.tasks_api import reference_cmd

RESULTS = Path(__file__).with_name("instructions_results.md")
DATASET = ("tasks-10k", 10_000)
WARM_UP = 300
REQUESTS = 2_000
START_TIMEOUT = 300.0  # start-up under valgrind is slow


@dataclass
class Count:
    name: str
    requests: int
    instructions: int

    @property
    def per_request(self) -> float:
        return self.instructions / self.requests


def under_callgrind(cmd: list[str], out_dir: Path) -> list[str]:
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out_dir}/callgrind.%p",
        *cmd,
    ]


def request_bytes(dataset: Dataset, task_id: str, port: int) -> bytes:
    body = json.dumps({"action": "retrieve", "id": task_id}).encode()
    head = (
        f"POST /kling/tasks HTTP/1.1\r\nhost: {HOST}:{port}\r\n"
        f"authorization: Bearer {dataset.token}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def drive(port: int, requests: list[bytes]) -> None:
    """Send each request on one kept-alive connection and read its whole answer."""
    with socket.create_connection((HOST, port), timeout=60) as conn:
        reader = conn.makefile("rb")
        for raw in requests:
            conn.sendall(raw)
            status, length = reader.readline(), 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = reader.read(length)
            if not status.startswith(b"HTTP/1.1 200") or b'"id"' not in body:
                raise RuntimeError(f"port {port}: not a record: {body[:200]!r}")


def callgrind_control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


def dumped_total(out_dir: Path, pid: int) -> int:
    """The instruction total of the newest dump of ``pid`` (``summary:``/``totals:`` line)."""
    dumps = sorted(out_dir.glob(f"callgrind.{pid}.*"), key=lambda p: p.stat().st_mtime)
    for line in dumps[-1].read_text(errors="replace").splitlines():
        match = re.match(r"(?:summary|totals):\s+(\d+)", line)
        if match:
            return int(match.group(1))
    raise RuntimeError(f"no total in {dumps[-1]}")


def count(server: Server, dataset: Dataset, out_dir: Path, requests: int) -> Count:
    ids = Path(dataset.ids_file).read_text().split()
    assert server.port is not None
    raws = [request_bytes(dataset, ids[i * 7919 % len(ids)], server.port) for i in range(requests)]
    callgrind_control("-i", "on", str(server.pid))
    drive(server.port, raws[:WARM_UP])
    callgrind_control("-z", str(server.pid))
    drive(server.port, raws)
    callgrind_control("-d", str(server.pid))
    time.sleep(1.0)
    return Count(server.name, requests, dumped_total(out_dir, server.pid))


def run(requests: int) -> list[Count]:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("the instructions group needs valgrind (Debian: apt-get install valgrind)")
    dataset, _ = ensure_dataset(*DATASET)
    out_dir = WORK / "callgrind"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    results = []
    for name, cmd, env in _servers(dataset):
        port = int(cmd[cmd.index("--port") + 1])
        server = Server(name, under_callgrind(cmd, out_dir), port=port, cpu=None, env=env)
        server.start(timeout=START_TIMEOUT)
        try:
            results.append(count(server, dataset, out_dir, requests))
            log(f"{name}: {results[-1].per_request:,.0f} instructions per retrieve")
        finally:
            server.stop()
    return results


def _servers(dataset: Dataset) -> list[tuple[str, list[str], dict[str, str]]]:
    gateway = gateway_cmd(
        dataset.data_dir, free_port(), "--rate-limit-per-minute", "0", "--no-worker"
    )
    env = {"BENCH_DB": str(dataset.db_path), "BENCH_USER_ID": dataset.user_id}
    return [("gateway", gateway, {}), ("reference", reference_cmd(free_port()), env)]


def write_results(results: list[Count], requests: int) -> str:
    gateway, reference = results
    ratio = reference.per_request / gateway.per_request
    facts, when = machine(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = "\n".join(
        [
            "# instructions: machine instructions per retrieve (bench/instructions.py)",
            "",
            f"`python -m bench.instructions --write-results`, {when}, "
            f"{facts['nproc']} CPUs, Python {facts['python']}. Both servers under "
            f"callgrind; counters zeroed after {WARM_UP} warm-up retrieves and dumped after "
            f"{requests:,} more on one kept-alive connection; {DATASET[1]:,} stored tasks; the "
            "gateway with `--no-worker`. Deterministic: the count does not depend on other load.",
            "",
            "| server | instructions per retrieve |",
            "|---|---:|",
            f"| (R) reference raw ASGI | {reference.per_request:,.0f} |",
            f"| gateway | {gateway.per_request:,.0f} |",
            "",
            f"(R) / gateway: **{ratio:.0%}** of the gateway's instructions are the reference's "
            "(the share that is not the gateway's own overhead).",
            "",
        ]
    )
    RESULTS.write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    results = run(args.requests)
    text = write_results(results, args.requests) if args.write_results else ""
    print(text or "\n".join(f"{r.name}: {r.per_request:,.0f}" for r in results))


if __name__ == "__main__":
    main()
