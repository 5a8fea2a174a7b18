"""Repeated identical errors are logged once per interval, with a count."""

from __future__ import annotations

import logging

from kling_gateway.runtime.log_fold import FoldRepeats


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def capture(fold: FoldRepeats) -> tuple[logging.Logger, list[str]]:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger(f"test.fold.{id(fold)}")
    logger.propagate = False
    handler = Keep()
    handler.addFilter(fold)
    logger.addHandler(handler)
    return logger, lines


def test_an_outage_is_logged_once_per_interval_with_a_count() -> None:
    clock = Clock()
    logger, lines = capture(FoldRepeats(30.0, clock=clock))
    for _ in range(409):
        try:
            raise ConnectionRefusedError("connection refused")
        except ConnectionRefusedError:
            logger.exception("worker: cannot claim tasks")
        clock.now += 0.05  # 409 failures in ~20 s
    assert lines == ["worker: cannot claim tasks"]
    clock.now += 30
    logger.error(
        "worker: cannot claim tasks", exc_info=ConnectionRefusedError("connection refused")
    )
    assert len(lines) == 2
    assert lines[1].startswith("worker: cannot claim tasks (and 408 more like it in the last")


def test_different_errors_and_info_lines_are_not_folded() -> None:
    clock = Clock()
    logger, lines = capture(FoldRepeats(30.0, clock=clock))
    logger.setLevel(logging.INFO)
    logger.error("store unavailable: %s", "refused")
    logger.error("store unavailable: %s", "reset")
    logger.error("store unavailable: %s", "refused")
    for _ in range(3):
        logger.info("task done")
    assert lines == [
        "store unavailable: refused",
        "store unavailable: reset",
        "task done",
        "task done",
        "task done",
    ]
