"""Coalescing the checks of many in-flight Kling jobs into few upstream requests.

The worker checks each task on its own schedule and calls ``KlingProvider.check`` once per
task; with thousands in flight, one GET per check is thousands of requests per round. The list
endpoint answers up to 500 tasks per page, newest first. ``CheckBatcher`` collects the checks
that arrive within a short window, per kind. When enough are waiting, one sweep pages the list
until every waiting job was seen (or a page cap is reached); the jobs it did not see, and small
batches, are individual GETs, run concurrently under a bound. One sweep of a kind runs at a
time (single-flight) and checks arriving meanwhile wait for the next one, so the request rate
follows the sweep rate, not the number of tasks. Each check still resolves to its own
``Status`` or its own ``ProviderError``.

Memory is bounded by the checks waiting (at most the worker's concurrency) plus one page.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kling_gateway.domain.outcomes import ProviderError, Status

log = logging.getLogger("kling_gateway.worker.kling")

# (kind, job id) -> its status, by one GET.
FetchOne = Callable[[str, str], Awaitable[Status]]
# (kind, job ids, page cap) -> (the statuses found in the list, pages read).
FetchMany = Callable[[str, set[str], int], Awaitable[tuple[dict[str, Status], int]]]

Waiting = dict[str, "asyncio.Future[Status]"]


@dataclass(frozen=True, slots=True)
class BatchConfig:
    # Seconds to collect checks before a sweep starts.
    window: float = 0.02
    # Fewer checks waiting than this, or than the pages the last sweep read: GETs instead (a
    # sweep of one page costs what one GET does).
    min_list_batch: int = 2
    # List pages (of up to 500 tasks) one sweep reads at most.
    max_pages: int = 20
    # Individual GETs in flight at once.
    get_concurrency: int = 16


@dataclass(slots=True)
class BatchStats:
    sweeps: int = 0
    pages: int = 0
    gets: int = 0
    found_in_list: int = 0


class CheckBatcher:
    """Single-flight, batched status checks (see the module docstring)."""

    def __init__(self, fetch_one: FetchOne, fetch_many: FetchMany, config: BatchConfig) -> None:
        self._fetch_one, self._fetch_many, self._config = fetch_one, fetch_many, config
        self._waiting: dict[str, Waiting] = {}
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._pages_needed: dict[str, int] = {}
        self._gets = asyncio.Semaphore(config.get_concurrency)
        self.stats = BatchStats()

    async def status(self, kind: str, job_id: str) -> Status:
        """The status of one job, fetched together with the others waiting now."""
        waiting = self._waiting.setdefault(kind, {})
        future = waiting.get(job_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            future.add_done_callback(_mark_retrieved)
            waiting[job_id] = future
        runner = self._runners.get(kind)
        if runner is None or runner.done():
            self._runners[kind] = asyncio.create_task(self._run(kind), name=f"kling-{kind}")
        # Shielded: one caller giving up (its deadline) must not cancel the others' answer.
        return await asyncio.shield(future)

    async def aclose(self) -> None:
        runners = list(self._runners.values())
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        closing = ProviderError("the provider is shutting down", retryable=True)
        for waiting in self._waiting.values():
            _fail_all(waiting, closing)
        self._waiting.clear()

    async def _run(self, kind: str) -> None:
        while self._waiting.get(kind):
            await asyncio.sleep(self._config.window)
            batch = self._waiting.pop(kind, {})
            try:
                await self._resolve(kind, batch)
            except Exception:
                log.exception("checking %d %s jobs failed unexpectedly", len(batch), kind)
                bug = ProviderError("checking the job failed unexpectedly", retryable=True)
                _fail_all(batch, bug)
            except BaseException:
                _fail_all(batch, ProviderError("the check was cancelled", retryable=True))
                raise

    async def _resolve(self, kind: str, batch: Waiting) -> None:
        needed = max(self._config.min_list_batch, self._pages_needed.get(kind, 0))
        if len(batch) >= needed:
            batch = await self._sweep(kind, batch)
        await asyncio.gather(*(self._get(kind, job, future) for job, future in batch.items()))

    async def _sweep(self, kind: str, batch: Waiting) -> Waiting:
        """Settle what the list shows; return the jobs still to GET one by one."""
        try:
            found, pages = await self._fetch_many(kind, set(batch), self._config.max_pages)
        except ProviderError as exc:
            if exc.retryable:
                _fail_all(batch, exc)
                return {}
            log.warning("listing %s jobs failed (%s); checking them one by one", kind, exc)
            return batch
        self._pages_needed[kind] = pages
        self.stats.sweeps += 1
        self.stats.pages += pages
        self.stats.found_in_list += len(found)
        for job_id, status in found.items():
            _settle(batch.pop(job_id), status)
        return batch

    async def _get(self, kind: str, job_id: str, future: asyncio.Future[Status]) -> None:
        async with self._gets:
            self.stats.gets += 1
            try:
                status = await self._fetch_one(kind, job_id)
            except ProviderError as exc:
                if not future.done():
                    future.set_exception(exc)
                return
        _settle(future, status)


def _settle(future: asyncio.Future[Status], status: Status) -> None:
    if not future.done():
        future.set_result(status)


def _fail_all(batch: Waiting, exc: ProviderError) -> None:
    for future in batch.values():
        if not future.done():
            future.set_exception(exc)


def _mark_retrieved(future: asyncio.Future[Status]) -> None:
    # Nobody may be left awaiting (every caller passed its deadline): no "never retrieved".
    if not future.cancelled():
        future.exception()
