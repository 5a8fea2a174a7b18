"""`python -m bench.objects_bench [--size-mb 200] [--aiobotocore-python PY]`: the object store.

Uploads a SIZE-MB file to SeaweedFS (started here on loopback, as the tests do) and downloads
it again, once per client library, each in a fresh child process so that peak RSS is that
library's alone. Figures: MB/s up and down, idle RSS (imports done, client made), and the peak
RSS above idle during each transfer (Linux VmHWM, reset through /proc/self/clear_refs before
each transfer). The budget (issue 13): a 200 MB upload stays within 50 MB of idle.

Arms: ``obstore`` is the gateway's own S3 backend (``S3ObjectStore``, what the worker runs);
``file`` is the ``file://`` backend, for reference; ``aiobotocore`` is the alternative
considered, driven the streaming way (multipart upload of 8 MiB parts read one at a time, a
chunked download), run with ``--aiobotocore-python``, an interpreter that has aiobotocore
installed (it is not a project dependency). Writes bench/objects_results.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "objects_results.md"
BUCKET = "bench"
PART = 8 * 1024 * 1024
MB = 1024 * 1024


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


async def _timed(label: str, run: object, out: dict[str, float]) -> None:
    _reset_peak()
    idle = _status_kb("VmRSS")
    started = time.perf_counter()
    await run  # type: ignore[misc]
    out[f"{label}_seconds"] = time.perf_counter() - started
    out[f"{label}_peak_over_idle_mb"] = (_status_kb("VmHWM") - idle) / 1024


async def _child_gateway(kind: str, args: argparse.Namespace) -> dict[str, float]:
    from kling_gateway.infra.objects import open_object_store

    environ = json.loads(args.environ)
    url = f"s3://{BUCKET}/{kind}" if kind == "obstore" else f"file://{args.workdir}/store"
    store = open_object_store(
        url, default_dir=Path(args.workdir), s3_endpoint_url=args.endpoint, environ=environ
    )
    await store.check()
    out: dict[str, float] = {"idle_rss_mb": _status_kb("VmRSS") / 1024}

    async def download() -> None:
        stream = await store.open("big.mp4")
        async for _chunk in stream.chunks():
            pass
        await stream.aclose()

    await _timed("upload", store.put_file("big.mp4", Path(args.file)), out)
    await _timed("download", download(), out)
    await store.delete("big.mp4")
    return out


async def _child_aiobotocore(args: argparse.Namespace) -> dict[str, float]:
    from aiobotocore.session import get_session  # type: ignore[import-not-found]
    from botocore.config import Config  # type: ignore[import-not-found]

    environ = json.loads(args.environ)
    session = get_session()
    config = Config(s3={"addressing_style": "path"}, region_name="us-east-1")
    async with session.create_client(
        "s3",
        endpoint_url=args.endpoint,
        aws_access_key_id=environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=environ["AWS_SECRET_ACCESS_KEY"],
        config=config,
    ) as client:
        await client.list_objects_v2(Bucket=BUCKET, MaxKeys=1)
        out: dict[str, float] = {"idle_rss_mb": _status_kb("VmRSS") / 1024}
        key = "aiobotocore/big.mp4"

        async def upload() -> None:
            made = await client.create_multipart_upload(Bucket=BUCKET, Key=key)
            parts = []
            with Path(args.file).open("rb") as source:  # noqa: ASYNC230 - reads go to a thread
                number = 1
                while part := await asyncio.to_thread(source.read, PART):
                    sent = await client.upload_part(
                        Bucket=BUCKET,
                        Key=key,
                        UploadId=made["UploadId"],
                        PartNumber=number,
                        Body=part,
                    )
                    parts.append({"ETag": sent["ETag"], "PartNumber": number})
                    number += 1
            await client.complete_multipart_upload(
                Bucket=BUCKET,
                Key=key,
                UploadId=made["UploadId"],
                MultipartUpload={"Parts": parts},
            )

        async def download() -> None:
            got = await client.get_object(Bucket=BUCKET, Key=key)
            async with got["Body"] as body:
                async for _chunk in body.iter_chunks(MB):
                    pass

        await _timed("upload", upload(), out)
        await _timed("download", download(), out)
        await client.delete_object(Bucket=BUCKET, Key=key)
        return out


def _child(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    for name in ("kind", "file", "endpoint", "environ", "workdir"):
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args(argv)
    if args.kind == "aiobotocore":
        out = asyncio.run(_child_aiobotocore(args))
    else:
        out = asyncio.run(_child_gateway(args.kind, args))
    print(json.dumps(out))
    return 0


def _run_arm(python: str, kind: str, file: Path, server: object, workdir: Path) -> dict[str, float]:
    command = [
        python,
        "-m",
        "bench.objects_bench",
        "--child",
        "--kind",
        kind,
        "--file",
        str(file),
        "--endpoint",
        server.endpoint,  # type: ignore[attr-defined]
        "--environ",
        json.dumps(server.environ),
        "--workdir",
        str(workdir),  # type: ignore[attr-defined]
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} arm failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        return _child(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench.objects_bench", description=__doc__)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2, help="runs per arm (best kept)")
    parser.add_argument("--aiobotocore-python", default="", help="interpreter with aiobotocore")
    args = parser.parse_args(argv)
    os.environ.setdefault("KLING_GATEWAY_TEST_REQUIRE_SERVICES", "1")
    from tests.seaweed import require_seaweed

    server = require_seaweed()
    server.create_bucket(BUCKET)
    arms = [("file", sys.executable), ("obstore", sys.executable)]
    if args.aiobotocore_python:
        arms.append(("aiobotocore", args.aiobotocore_python))
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="kg-objects-bench-") as tmp:
        big = Path(tmp) / "big.mp4"
        with big.open("wb") as out:
            for _ in range(args.size_mb):
                out.write(os.urandom(MB))
        for kind, python in arms:
            runs = [_run_arm(python, kind, big, server, Path(tmp)) for _ in range(args.rounds)]
            best = min(runs, key=lambda r: r["upload_seconds"])
            best["upload_peak_over_idle_mb"] = max(r["upload_peak_over_idle_mb"] for r in runs)
            best["download_peak_over_idle_mb"] = max(r["download_peak_over_idle_mb"] for r in runs)
            rows.append((kind, best))
            print(kind, json.dumps(best), flush=True)
    server.stop()
    _write(rows, args, " ".join(["python -m bench.objects_bench", *argv]))
    return 0


def _write(
    rows: list[tuple[str, dict[str, float]]], args: argparse.Namespace, command: str
) -> None:
    lines = [
        f"# Object store: {args.size_mb} MB up and down (SeaweedFS on loopback)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `{command}`; best of "
        f"{args.rounds} for speed, worst of {args.rounds} for memory; 2 shared cores.",
        "",
        "| arm | idle RSS | upload MB/s | upload peak over idle | download MB/s "
        "| download peak over idle |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, r in rows:
        lines.append(
            f"| {kind} | {r['idle_rss_mb']:.0f} MB | {args.size_mb / r['upload_seconds']:.0f} "
            f"| {r['upload_peak_over_idle_mb']:.1f} MB "
            f"| {args.size_mb / r['download_seconds']:.0f} "
            f"| {r['download_peak_over_idle_mb']:.1f} MB |"
        )
    lines += ["", "Budget: upload peak over idle <= 50 MB (issue 13).", ""]
    RESULTS.write_text("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
