"""Identifiers: task ids (UUID4), document ids (ObjectId-like) and trace ids."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid

_counter_lock = threading.Lock()
_counter = int.from_bytes(os.urandom(3), "big")
_process_random = os.urandom(5)


def new_task_id() -> str:
    return str(uuid.uuid4())


def new_trace_id() -> str:
    """A random (version 4) UUID string, formatted directly: every response carries one, and
    building a ``uuid.UUID`` object first cost a few microseconds of the retrieve hot path.
    The version and variant bits are set on the integer, and its bytes' hex is cut once
    (formatting the integer itself, or each field, cost more: bench/instructions.py).

    A trace id names a request in the logs and needs no secrecy, so it comes from ``random``
    (no system call), whose shared generator CPython re-seeds in a forked child.
    """
    h = (random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET).to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# Version 4 in bits 76-79, the RFC 4122 variant (binary 10) in bits 62-63.
_UUID4_CLEAR = ~((0xF << 76) | (0x3 << 62))
_UUID4_SET = (0x4 << 76) | (0x2 << 62)


def new_object_id(now: float | None = None) -> str:
    """24 lowercase hex characters laid out like a MongoDB ObjectId.

    4 bytes of epoch seconds, 5 random bytes fixed per process, a 3-byte counter: sortable by
    creation time, as the hosted service's ``_id`` is.
    """
    global _counter
    seconds = int(time.time() if now is None else now) & 0xFFFFFFFF
    with _counter_lock:
        _counter = (_counter + 1) & 0xFFFFFF
        count = _counter
    return (seconds.to_bytes(4, "big") + _process_random + count.to_bytes(3, "big")).hex()


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


ASSET_PREFIXES = {"element": "el_", "voice": "vo_"}


# The kinds of registered upstream ids (docs/contract.md §6): `assets add --kind`, the admin API.
ASSET_KINDS = tuple(ASSET_PREFIXES)


def new_asset_id(kind: str) -> str:
    """A gateway element or voice id: its kind's prefix and 128 random bits."""
    return ASSET_PREFIXES[kind] + uuid.uuid4().hex
