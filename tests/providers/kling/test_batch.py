"""CheckBatcher: concurrent checks coalesced into list sweeps and bounded GETs."""

from __future__ import annotations

import asyncio

import pytest

from kling_gateway.domain.outcomes import ProviderError, Status
from kling_gateway.protocol.task import TaskState
from kling_gateway.providers.kling.batch import BatchConfig, CheckBatcher


class Upstream:
    """Records the calls; the list shows ``listed`` jobs, GETs answer every job."""

    def __init__(self, listed: set[str], list_error: ProviderError | None = None) -> None:
        self.listed, self.list_error = listed, list_error
        self.gets: list[str] = []
        self.sweeps: list[set[str]] = []

    async def one(self, kind: str, job_id: str) -> Status:
        self.gets.append(job_id)
        await asyncio.sleep(0)
        if job_id == "broken":
            raise ProviderError("no such job", code="upstream_not_found")
        return Status(TaskState.PROCESSING, provider_data={"via": "get"})

    async def many(self, kind: str, wanted: set[str], pages: int) -> tuple[dict[str, Status], int]:
        self.sweeps.append(set(wanted))
        if self.list_error is not None:
            raise self.list_error
        found = {j: Status(TaskState.SUCCEED, provider_data={"via": "list"}) for j in wanted}
        return {j: s for j, s in found.items() if j in self.listed}, 2


def batcher(upstream: Upstream, **config: object) -> CheckBatcher:
    settings = {"window": 0.01, "min_list_batch": 4, **config}
    return CheckBatcher(upstream.one, upstream.many, BatchConfig(**settings))  # type: ignore[arg-type]


async def check_all(b: CheckBatcher, jobs: list[str]) -> list[Status | BaseException]:
    return await asyncio.gather(*(b.status("text2video", j) for j in jobs), return_exceptions=True)


async def test_few_checks_are_individual_gets() -> None:
    upstream = Upstream(listed={"a", "b"})
    results = await check_all(batcher(upstream), ["a", "b"])
    assert upstream.sweeps == [] and sorted(upstream.gets) == ["a", "b"]
    assert all(isinstance(r, Status) and r.provider_data == {"via": "get"} for r in results)


async def test_many_checks_share_one_sweep_and_unlisted_jobs_fall_back() -> None:
    jobs = [f"j{i}" for i in range(10)]
    upstream = Upstream(listed=set(jobs[:8]))
    results = await check_all(batcher(upstream), jobs)
    assert upstream.sweeps == [set(jobs)]
    assert sorted(upstream.gets) == ["j8", "j9"]
    via = [r.provider_data["via"] for r in results if isinstance(r, Status) and r.provider_data]
    assert via == ["list"] * 8 + ["get"] * 2


async def test_the_same_job_is_fetched_once() -> None:
    upstream = Upstream(listed=set())
    results = await check_all(batcher(upstream), ["a", "a", "a"])
    assert upstream.gets == ["a"] and len(results) == 3


async def test_errors_stay_with_their_own_check() -> None:
    upstream = Upstream(listed=set())
    ok, broken = await check_all(batcher(upstream), ["a", "broken"])
    assert isinstance(ok, Status)
    assert isinstance(broken, ProviderError) and broken.code == "upstream_not_found"


async def test_a_retryable_list_error_goes_to_every_waiting_check() -> None:
    busy = ProviderError("rate limited", code="upstream_rate_limited", retryable=True)
    upstream = Upstream(listed=set(), list_error=busy)
    results = await check_all(batcher(upstream), [f"j{i}" for i in range(6)])
    assert all(r is busy for r in results) and upstream.gets == []


async def test_a_refused_list_falls_back_to_gets() -> None:
    refused = ProviderError("no access", code="upstream_forbidden")
    upstream = Upstream(listed=set(), list_error=refused)
    results = await check_all(batcher(upstream), [f"j{i}" for i in range(6)])
    assert all(isinstance(r, Status) for r in results) and len(upstream.gets) == 6


async def test_a_sweep_that_read_many_pages_raises_the_bar_for_the_next() -> None:
    upstream = Upstream(listed=set())
    b = batcher(upstream, min_list_batch=1)
    await check_all(b, ["a"])  # one sweep; it read 2 pages
    await check_all(b, ["b"])  # 1 waiting < 2 pages: a GET is cheaper
    assert len(upstream.sweeps) == 1 and upstream.gets == ["a", "b"]


async def test_a_caller_giving_up_does_not_cancel_the_others() -> None:
    upstream = Upstream(listed=set())
    b = batcher(upstream, window=0.05)
    impatient = asyncio.create_task(b.status("text2video", "a"))
    patient = asyncio.create_task(b.status("text2video", "a"))
    await asyncio.sleep(0.01)
    impatient.cancel()
    assert isinstance(await patient, Status)
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_closing_fails_waiting_checks_as_retryable() -> None:
    upstream = Upstream(listed=set())
    b = batcher(upstream, window=10.0)
    waiting = asyncio.create_task(b.status("text2video", "a"))
    await asyncio.sleep(0.01)
    await b.aclose()
    with pytest.raises(ProviderError) as caught:
        await waiting
    assert caught.value.retryable
