"""Local renders of the §6 shapes (docs/contract.md §6): render time per output second for a
720p std clip, a 3-shot storyboard and a 1080p turbo clip (audio on), and the peak RSS of one
1080p render. Each render runs in a fresh child process so its peak RSS is its own.

    .venv/bin/python -m bench.render_v3 [--out bench/render_v3_results.md]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES: dict[str, dict[str, object]] = {
    "720p std, text2video, 5 s": {"prompt": "a lighthouse in a storm", "duration": 5,
                                   "mode": "std"},
    "720p std, 3-shot storyboard, 6 s": {
        "prompt": "", "duration": 6, "mode": "std",
        "shots": [["a red fox in snow", 2], ["a ship at night", 2], ["green hills at dawn", 2]],
    },
    "1080p turbo (pro, audio on), 5 s": {"prompt": "a drum solo", "duration": 5, "mode": "pro",
                                          "audio": True},
}  # fmt: skip


def child(spec_json: str) -> None:
    """Render one spec; print seconds taken and the output's duration as JSON."""
    from kling_gateway.providers.local.render import RenderSpec, render_video

    raw = json.loads(spec_json)
    shots = tuple((str(p), float(s)) for p, s in raw.pop("shots", []))
    spec = RenderSpec(shots=shots, **raw)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = render_video(Path(tmp) / "out.mp4", spec)
        took = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": took, "duration": result.duration, "peak_mb": peak_mb,
                      "size": [result.width, result.height]}))  # fmt: skip


def run_case(spec: dict[str, object]) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.render_v3", "--child", json.dumps(spec)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    measured: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/render_v3_results.md"))
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    lines = [
        "# Local renders of the §6 shapes",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()} (shared with other work: best of the rounds)",
        "- command: `.venv/bin/python -m bench.render_v3`",
        "",
        "| case | size | output s | render s (best) | render s per output s | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, spec in CASES.items():
        runs = [run_case(spec) for _ in range(args.rounds)]
        best = min(runs, key=lambda r: r["seconds"])
        peak = max(r["peak_mb"] for r in runs)
        size = "x".join(str(int(v)) for v in best["size"])  # type: ignore[attr-defined]
        per = best["seconds"] / best["duration"]
        lines.append(
            f"| {name} | {size} | {best['duration']:.1f} | {best['seconds']:.2f} | {per:.2f} "
            f"| {peak:.0f} |"
        )
    lines += ["", "Target: one 1080p render's peak RSS ≤ 300 MB (the turbo row)."]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
