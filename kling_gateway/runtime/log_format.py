"""One log format for every record, the gateway's and uvicorn's: ``--log-format text|json``.

uvicorn runs without a logging config of its own (``log_config=None``): its records reach the
root logger's one handler, formatted here like the gateway's. Both formats carry what the
record knows of its request (``infra.log_context``: trace id, route, user, task) and the
``task_id``, ``status``, ``duration`` and ``path`` a record was given as extras.

- text: ``2026-12-04 03:00:00,123 INFO kling_gateway.api: message [trace_id=... user=...]``
- json: one object a line: ``ts``, ``level``, ``logger``, ``message``, then the request
  fields that are known, and ``exception`` (the traceback) when there is one.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from kling_gateway.infra.log_context import current

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Extras a record may carry, in the order they are written.
_EXTRAS = ("task_id", "status", "duration", "path")
# The access log writes its request's fields in its message already.
_ACCESS = "kling_gateway.access"


def request_fields(record: logging.LogRecord) -> dict[str, Any]:
    """What the record says of its request and task, known fields only."""
    fields: dict[str, Any] = {}
    request = current()
    if request is not None:
        fields["trace_id"] = request.trace_id
        fields["method"] = request.method
        fields["route"] = request.route
        if request.user is not None:
            fields["user"] = request.user
        if request.task_id is not None:
            fields["task_id"] = request.task_id
    for name in _EXTRAS:
        value = record.__dict__.get(name)
        if value is not None:
            fields[name] = value
    return fields


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.name == _ACCESS:
            return text
        fields = request_fields(record)
        keep = ("trace_id", "user", "task_id")
        context = " ".join(f"{k}={fields[k]}" for k in keep if k in fields)
        if not context:
            return text
        first, newline, rest = text.partition("\n")  # after the message, before a traceback
        return f"{first} [{context}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **request_fields(record),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: str) -> None:
    """The root logger's one handler (stderr) in ``log_format``; repeats folded
    (``log_fold``). An unknown format falls back to text (the settings refuse it later)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or "info").upper())
    # httpx logs every request at INFO: one line per callback or upstream call is noise.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from kling_gateway.runtime.log_fold import install

    install()  # an outage logs each failure once per interval, with a count
