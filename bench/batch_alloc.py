"""Python memory allocated while 8 concurrent 1,000-id retrieve_batch answers are built.

`python -m bench.batch_alloc [--source DIR]`: the app in-process (no sockets, so no transport
back-pressure hides or adds anything), 1,000 tasks of ~150 KB records on SQLite, 8 batches
at once through the ASGI interface into a sink; prints tracemalloc's peak. `--source` runs
another checkout's code (the code before a change). Complements bench/batch_rss.py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec

TASKS, CONCURRENT, PAD = 1000, 8, 150_000


async def measure() -> str:
    import kling_gateway
    from kling_gateway.runtime.serve import build_app, migrate
    from kling_gateway.runtime.settings import load_settings
    from kling_gateway.storage.tokens import issue_token
    from tests.harness import make_task

    data = Path(tempfile.mkdtemp(prefix="kg-batch-alloc-"))
    settings = load_settings(environ={}, data_dir=str(data), worker=False, rate_limit_per_minute=0)
    await migrate(settings)
    app = build_app(settings)
    async with app.lifespan():
        issued = await issue_token(app.ctx.store, "bench")
        ids = []
        for i in range(TASKS):
            task = make_task(issued.user_id, padding=f"{i:06d}" + "p" * PAD)
            await app.ctx.store.insert_task(task, next_check_at=0, deadline_at=time.time() + 3600)
            ids.append(task.id)
        body = msgspec.json.encode({"action": "retrieve_batch", "ids": ids})
        sent = [0]

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Any) -> None:
            sent[0] += len(message.get("body", b""))

        auth = [(b"authorization", f"Bearer {issued.token}".encode())]
        scope = {"type": "http", "method": "POST", "path": "/kling/tasks", "headers": auth}
        tracemalloc.start()
        await asyncio.gather(*(app(dict(scope), receive, send) for _ in range(CONCURRENT)))
        peak = tracemalloc.get_traced_memory()[1]
    return (
        f"{Path(kling_gateway.__file__).parents[1]}: sent {sent[0] / 1e6:.0f} MB in all, "
        f"Python allocation peak {peak / 2**20:.0f} MiB"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, help="a checkout whose code to measure")
    args = parser.parse_args(argv)
    if args.source is not None:
        sys.path.insert(0, str(args.source))
        for name in [m for m in sys.modules if m.startswith("kling_gateway")]:
            del sys.modules[name]
    print(asyncio.run(measure()), flush=True)


if __name__ == "__main__":
    main()
