"""The two log formats: request fields from the log context, a task's id from extras, one
JSON object a line (tracebacks inside it)."""

from __future__ import annotations

import json
import logging

import pytest

from kling_gateway.infra.log_context import CURRENT, RequestLog, note_task, note_user
from kling_gateway.runtime.log_format import JsonFormatter, TextFormatter


def record(message: str, *, exc: BaseException | None = None, **extra: object) -> logging.LogRecord:
    rec = logging.getLogger("kling_gateway.api").makeRecord(
        "kling_gateway.api", logging.ERROR, __file__, 1, message, None,
        (type(exc), exc, exc.__traceback__) if exc else None, extra=extra,
    )  # fmt: skip
    return rec


def test_a_record_written_while_serving_carries_its_request() -> None:
    token = CURRENT.set(RequestLog("trace-1", "/kling/videos", "POST"))
    try:
        note_user("alice")
        note_task("task-9")
        text = TextFormatter().format(record("store unavailable"))
        doc = json.loads(JsonFormatter().format(record("store unavailable", status=503)))
    finally:
        CURRENT.reset(token)
    assert text.endswith("store unavailable [trace_id=trace-1 user=alice task_id=task-9]")
    assert doc["message"] == "store unavailable" and doc["level"] == "ERROR"
    assert (doc["trace_id"], doc["route"], doc["method"]) == ("trace-1", "/kling/videos", "POST")
    assert (doc["user"], doc["task_id"], doc["status"]) == ("alice", "task-9", 503)


def test_outside_a_request_only_what_the_record_says() -> None:
    text = TextFormatter().format(record("task T failed", task_id="T"))
    assert text.endswith("kling_gateway.api: task T failed [task_id=T]")
    doc = json.loads(JsonFormatter().format(record("plain")))
    assert set(doc) == {"ts", "level", "logger", "message"}


def test_a_traceback_stays_inside_its_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        line = JsonFormatter().format(record("unexpected", exc=exc))
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


# The two tests below run in this order (pytest keeps a module's order): the first sets up
# logging as `kling-gateway` does in a process, the second is any later test. They check the
# suite's own isolation (tests/conftest.py), which a CI run once lost to a "--- Logging
# error ---" from a handler on the first test's closed capture stream.


def test_setting_up_logging_in_process_replaces_the_root_handlers() -> None:
    from kling_gateway.runtime.log_format import configure_logging

    configure_logging("warning", "json")
    root = logging.getLogger()
    assert [type(h) for h in root.handlers] == [logging.StreamHandler]
    assert root.level == logging.WARNING


def test_a_later_test_logs_to_pytest_again(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    assert not [h for h in root.handlers if type(h) is logging.StreamHandler]
    logging.getLogger("kling_gateway.redis").warning("Redis unavailable")
    assert [r.getMessage() for r in caplog.records] == ["Redis unavailable"]
    assert "Logging error" not in capsys.readouterr().err
