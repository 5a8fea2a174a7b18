"""Retention: finished tasks older than ``--retention-days`` go, with their videos and their
callbacks, in bounded batches, by one process at a time (``Store.sweep_lock``).

A batch removes the videos first, then the rows: when the video store cannot be reached the
sweep stops with the rows still there, so their videos are tried again at the next sweep and
no video is left behind without a row naming it. ``kling-gateway prune`` runs the same
``prune`` on demand.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from kling_gateway.infra.files import VideoFiles, videos_of
from kling_gateway.infra.objects import ObjectStoreError
from kling_gateway.storage.base import Store

log = logging.getLogger("kling_gateway.retention")

BATCH = 100
MAX_BATCHES = 50  # per sweep: a huge backlog is worked off over several sweeps


@dataclass
class PruneReport:
    tasks: list[str] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    complete: bool = True  # False: stopped early (batch cap, or the video store failed)


async def prune(
    store: Store,
    files: VideoFiles,
    before: float,
    *,
    dry_run: bool = False,
    batch: int = BATCH,
    max_batches: int = MAX_BATCHES,
) -> PruneReport:
    """Remove (or with ``dry_run`` only list) tasks finished before ``before``."""
    report = PruneReport()
    if dry_run:
        expired = await store.expired_tasks(before, batch * max_batches)
        report.tasks = [stored.task.id for stored in expired]
        report.videos = [v for stored in expired for v in videos_of(stored.task)]
        report.complete = len(expired) < batch * max_batches
        return report
    for _ in range(max_batches):
        expired = await store.expired_tasks(before, batch)
        if not expired:
            return report
        try:
            for stored in expired:
                report.videos += await files.remove_task_videos(stored.task)
        except ObjectStoreError as exc:
            log.warning("retention stopped: the video store failed: %s", exc)
            report.complete = False
            return report
        ids = [stored.task.id for stored in expired]
        await store.purge_tasks(ids, before)
        report.tasks += ids
        if len(expired) < batch:
            return report
    report.complete = False
    return report


async def run_retention(
    store: Store, files: VideoFiles, days: float, interval: float, stop: asyncio.Event
) -> None:
    """Sweep every ``interval`` seconds until ``stop``; only the lock holder sweeps."""
    while not stop.is_set():
        try:
            async with store.sweep_lock() as held:
                if held:
                    report = await prune(store, files, time.time() - days * 86_400.0)
                    if report.tasks:
                        log.info("retention removed %d task(s)", len(report.tasks))
        except Exception:
            log.exception("retention sweep failed; trying again at the next one")
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            continue
