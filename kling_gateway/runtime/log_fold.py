"""Repeated identical log lines folded into one per interval, with a count.

During an outage every request and every worker loop fails the same way: without this, 20 s of
PostgreSQL downtime wrote 409 tracebacks. The first of a kind is logged as it comes; repeats
within ``interval`` seconds are counted, not written; the first after the interval is written
with "(and N more like it in the last S s)".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

MAX_KINDS = 1_000


class FoldRepeats(logging.Filter):
    def __init__(
        self,
        interval: float = 30.0,
        *,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.interval = interval
        self.level = level
        self._clock = clock
        self._kinds: dict[tuple[object, ...], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            return True
        key = _kind(record)
        now = self._clock()
        since, folded = self._kinds.get(key, (None, 0))
        if since is not None and now - since < self.interval:
            self._kinds[key] = (since, folded + 1)
            return False
        if folded:
            record.msg = f"{record.getMessage()} (and {folded} more like it in the last "
            record.msg += f"{now - since:.0f} s)" if since is not None else ")"
            record.args = None
        self._remember(key, now)
        return True

    def _remember(self, key: tuple[object, ...], now: float) -> None:
        if len(self._kinds) >= MAX_KINDS:
            self._kinds = {k: v for k, v in self._kinds.items() if now - v[0] < self.interval}
        self._kinds[key] = (now, 0)


def _kind(record: logging.LogRecord) -> tuple[object, ...]:
    """What makes two records "identical": logger, level, text and the exception's kind."""
    exc = record.exc_info[1] if record.exc_info else None
    return (
        record.name,
        record.levelno,
        record.getMessage(),
        type(exc).__name__ if exc else None,
        str(exc) if exc else None,
    )


def install(interval: float = 30.0) -> FoldRepeats:
    """Fold repeats on every handler of the root logger (where the gateway's loggers go)."""
    fold = FoldRepeats(interval)
    for handler in logging.getLogger().handlers:
        handler.addFilter(fold)
    return fold
