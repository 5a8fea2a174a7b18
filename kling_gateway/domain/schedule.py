"""When to look at a task again: per-task backoff with jitter."""

from __future__ import annotations

import random


def backoff(attempt: int, first: float, cap: float, rng: random.Random | None = None) -> float:
    """``first`` doubled per earlier attempt, capped, spread by ±20% so that tasks created
    together do not come due together forever."""
    base = min(cap, first * (2 ** min(attempt, 30)))
    return float(base * (rng or random).uniform(0.8, 1.2))
