"""Decoding request bodies with msgspec, turning every problem into a 400 that names it."""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec

from kling_gateway.protocol.errors import BadRequest

T = TypeVar("T")
TOO_DEEP = "request body is nested too deeply"

# DOTALL: a field name may hold a newline, and the message quotes it.
_AT_PATH = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


def decode_body(body: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise BadRequest(describe_validation_error(exc)) from exc
    except msgspec.DecodeError as exc:
        # Told apart only on failure: stripping every body first costs a copy on the hot path.
        if not body.strip():
            raise BadRequest("request body is empty; send a JSON object") from exc
        raise BadRequest("request body is not valid JSON") from exc
    except RecursionError as exc:  # msgspec's guard against deep nesting
        raise BadRequest(TOO_DEEP) from exc


def describe_validation_error(exc: msgspec.ValidationError) -> str:
    """msgspec's message, rephrased to name the field (``$.camera_control.type``)."""
    match = _AT_PATH.match(str(exc))
    what, path = (match["what"], match["path"]) if match else (str(exc), None)
    if not path:
        if "Expected `object`" in what:
            return "request body must be a JSON object"
        return f"invalid request body: {what}"
    field = path.lstrip(".")
    return f"invalid field `{field}`: {what[0].lower()}{what[1:]}"
