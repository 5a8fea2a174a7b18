"""Per-token rate limits: the generic cell rate algorithm (GCRA), one float per key.

GCRA spreads the allowance evenly (no burst at a window edge) and tells exactly how long
to wait, which becomes ``Retry-After``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

_SWEEP_EVERY = 10_000


class RateLimiter(Protocol):
    async def hit(self, key: str) -> float | None:
        """Count one request for ``key``; None when allowed, else seconds until allowed."""
        ...

    async def aclose(self) -> None: ...


class MemoryRateLimiter:
    """The limit of one process: ``per_minute`` requests, with a burst of the same size."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._interval = 60.0 / per_minute
        self._burst = 60.0  # a full minute's allowance may be spent at once
        # Summing ``interval`` per_minute times drifts by a few ulps; without this slack a
        # limit such as 7 per minute would allow a burst of only 6.
        self._slack = self._interval * 1e-6
        self._tat: dict[str, float] = {}  # theoretical arrival time per key
        self._hits = 0

    async def hit(self, key: str) -> float | None:
        now = self._clock()
        tat = max(self._tat.get(key, now), now)
        if tat - now > self._burst - self._interval + self._slack:
            return tat - now - (self._burst - self._interval)
        self._tat[key] = tat + self._interval
        self._hits += 1
        if self._hits % _SWEEP_EVERY == 0:
            self._tat = {k: v for k, v in self._tat.items() if v > now}
        return None

    async def aclose(self) -> None:
        return None


class NoRateLimit:
    async def hit(self, key: str) -> float | None:
        return None

    async def aclose(self) -> None:
        return None
