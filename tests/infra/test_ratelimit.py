"""The in-process rate limiter (GCRA): the burst, Retry-After, independent keys, recovery."""

from __future__ import annotations

import pytest

from kling_gateway.infra.ratelimit import MemoryRateLimiter, NoRateLimit
from kling_gateway.protocol.errors import TooManyRequests


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def burst(limiter: MemoryRateLimiter, key: str, limit: int = 10_000) -> int:
    """How many hits ``key`` gets before the first refusal."""
    for count in range(limit):
        if await limiter.hit(key) is not None:
            return count
    raise AssertionError("never refused")


@pytest.mark.parametrize("per_minute", [1, 2, 3, 7, 10, 60, 97, 600, 997, 1000])
async def test_allows_a_burst_of_per_minute_then_refuses(per_minute: int) -> None:
    limiter = MemoryRateLimiter(per_minute, clock=Clock())
    assert await burst(limiter, "token") == per_minute


async def test_refusal_carries_a_positive_retry_after() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(3, clock=clock)
    for _ in range(3):
        assert await limiter.hit("k") is None
    wait = await limiter.hit("k")
    assert wait is not None
    # one request's worth of allowance comes back every 60/3 = 20 s
    assert wait == pytest.approx(20.0)
    clock.advance(5)
    later = await limiter.hit("k")
    assert later == pytest.approx(15.0)


async def test_refused_hits_are_not_counted() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(3, clock=clock)
    await burst(limiter, "k")
    for _ in range(20):
        assert await limiter.hit("k") is not None
    clock.advance(20)
    assert await limiter.hit("k") is None


async def test_keys_are_independent() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(2, clock=clock)
    assert await burst(limiter, "alice") == 2
    assert await limiter.hit("bob") is None
    assert await limiter.hit("bob") is None
    assert await limiter.hit("bob") is not None
    assert await limiter.hit("carol") is None


async def test_recovers_as_time_passes() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(6, clock=clock)  # one every 10 s
    await burst(limiter, "k")
    clock.advance(9.9)
    assert await limiter.hit("k") is not None
    clock.advance(0.1)
    assert await limiter.hit("k") is None
    assert await limiter.hit("k") is not None
    clock.advance(60)
    assert await burst(limiter, "k") == 6


async def test_the_wait_it_gives_is_enough() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(7, clock=clock)
    await burst(limiter, "k")
    wait = await limiter.hit("k")
    assert wait is not None and wait > 0
    clock.advance(wait)
    assert await limiter.hit("k") is None


async def test_retry_after_header_is_whole_seconds_rounded_up() -> None:
    assert TooManyRequests(0.01).headers == {"retry-after": "1"}
    assert TooManyRequests(1.0).headers == {"retry-after": "1"}
    assert TooManyRequests(1.2).headers == {"retry-after": "2"}
    assert TooManyRequests(20.0).retry_after == 20


async def test_sweeping_old_keys_keeps_live_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    import kling_gateway.infra.ratelimit as ratelimit

    monkeypatch.setattr(ratelimit, "_SWEEP_EVERY", 4)
    clock = Clock()
    limiter = MemoryRateLimiter(2, clock=clock)
    await burst(limiter, "busy")
    clock.advance(1)
    for key in ("a", "b", "c"):  # the 4th counted hit sweeps
        assert await limiter.hit(key) is None
    # the limited key was still within its window: it stays limited
    assert await limiter.hit("busy") is not None


async def test_uses_the_monotonic_clock_by_default() -> None:
    limiter = MemoryRateLimiter(1)
    assert await limiter.hit("k") is None
    wait = await limiter.hit("k")
    assert wait is not None
    assert 59 < wait <= 60


async def test_no_rate_limit_never_refuses() -> None:
    limiter = NoRateLimit()
    for _ in range(1000):
        assert await limiter.hit("k") is None
    await limiter.aclose()
