"""Reading a ``Retry-After`` header: the SDK, the Kling provider and the callback deliverer."""

from __future__ import annotations

import email.utils
import math
import time


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait: delay-seconds or an HTTP date; ``None`` when absent or unreadable.

    A date without a time zone is unreadable (it would be taken as local time), and a wait
    in the past is no wait (0).
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds: float | None = float(text)
    except ValueError:
        seconds = _seconds_until(text, time.time() if now is None else now)
    if seconds is None or not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _seconds_until(text: str, now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return None if when.tzinfo is None else when.timestamp() - now
