"""Shutdown starts at the signal: waiting requests are answered 503 at once.

uvicorn's own handler only sets a flag: it then stops accepting, waits up to its graceful
timeout for open requests (a blocking create waits up to 600 s) and only then runs the app's
lifespan shutdown. So the app learns of a SIGINT/SIGTERM here instead: this handler, chained
in front of uvicorn's, ends every waiting request and events stream first.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
Stop = Callable[[], Awaitable[None]]


def chain_exit_signals(on_exit: Callable[[], None]) -> Stop:
    """Call ``on_exit`` on the running loop at SIGINT/SIGTERM, then the handler in place
    before (uvicorn's). Outside the main thread (a test server in a thread) signals cannot be
    handled, and this does nothing. Returns what puts the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return _nothing
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handle(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(on_exit)
        before = previous.get(signum)
        if callable(before):
            before(signum, frame)
        elif before == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    for sig in SIGNALS:
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, handle)

    async def restore() -> None:
        for sig, before in previous.items():
            if signal.getsignal(sig) is handle and before is not None:
                signal.signal(sig, before)

    return restore


async def _nothing() -> None:
    return None
