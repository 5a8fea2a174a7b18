"""``/metrics`` (Prometheus) and ``/readyz`` (readiness); ``/healthz`` (liveness) is in pages.

Readiness asks every part a request needs: the store, the object storage of the videos and,
when configured, Redis (``Probe``s the runtime adds). It answers 503 naming each part that
failed, so a load balancer stops sending traffic to a process that cannot serve it, while
liveness stays 200 as long as the process answers at all (restarting it would not help).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kling_gateway.api.context import AppContext
from kling_gateway.infra.metrics import CONTENT_TYPE, exposition
from kling_gateway.infra.metrics_store import stats_exposition
from kling_gateway.infra.objects import ObjectStoreError
from kling_gateway.infra.request_metrics import flush_requests
from kling_gateway.storage.stats import StoreStats

# One probe of /readyz may take this long before it counts as failed.
PROBE_SECONDS = 2.0

log = logging.getLogger("kling_gateway.api")


@dataclass(frozen=True, slots=True)
class Probe:
    """A part ``/readyz`` checks: None when it answers, else why not (one line)."""

    name: str
    check: Callable[[], Awaitable[str | None]]


def default_probes(ctx: AppContext) -> list[Probe]:
    async def store() -> str | None:
        health = await ctx.store.health()
        return None if health.ok else health.reason or "the store is not healthy"

    async def storage() -> str | None:
        try:
            await ctx.files.objects.check()
        except ObjectStoreError as exc:
            return str(exc) or type(exc).__name__
        return None

    return [Probe("store", store), Probe("storage", storage)]


async def run_probe(probe: Probe) -> str | None:
    try:
        async with asyncio.timeout(PROBE_SECONDS):
            return await probe.check()
    except TimeoutError:
        return f"no answer within {PROBE_SECONDS:g} s"
    except Exception as exc:  # noqa: BLE001 - a probe that raises is a failed part, said once
        return f"{type(exc).__name__}: {exc}"


def observe_routes(ctx: AppContext) -> list[BaseRoute]:
    probes = [*default_probes(ctx), *ctx.probes]

    async def readyz(_: Request) -> Response:
        problems = await asyncio.gather(*(run_probe(p) for p in probes))
        failing = {p.name: why for p, why in zip(probes, problems, strict=True) if why}
        if failing:
            # The reasons go to the log only: the route is anonymous, and they name files,
            # hosts and ports.
            for name, why in sorted(failing.items()):
                log.warning("readiness: %s is failing: %s", name, why)
            body = {"ok": False, "failing": sorted(failing)}
            return JSONResponse(body, status_code=503, headers={"retry-after": "5"})
        return JSONResponse({"ok": True, "checked": [p.name for p in probes]})

    async def metrics(_: Request) -> Response:
        now = time.time()
        stats: StoreStats | None
        try:
            async with asyncio.timeout(PROBE_SECONDS):
                stats = await ctx.store.stats(now)
        except Exception:  # noqa: BLE001 - a scrape during an outage still answers (store_up 0)
            stats = None
        flush_requests()  # this process's requests up to now
        return Response(exposition() + stats_exposition(stats, now), media_type=CONTENT_TYPE)

    return [Route("/readyz", readyz), Route("/metrics", metrics)]
