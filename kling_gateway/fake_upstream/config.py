"""Settings of the fake upstream: timings, credentials and injected faults."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kling_gateway.fake_upstream.accounts import FakeAccount

# Faults that change how one API request is answered.
REQUEST_FAULTS = ("hang", "slow", "server_error", "rate_limit", "malformed_json", "huge_body")
# Faults decided when a task is created (on the create route only).
CREATE_FAULTS = ("create_safety", "task_safety", "task_failure")
FAULT_KINDS = REQUEST_FAULTS + CREATE_FAULTS
API_ROUTES = frozenset({"create", "get", "list"})
# ``media``: the result video downloads; a rule applies to them only when it names them.
# ``costs``: ``GET /account/costs``; a rule applies to it only when it names it.
# ``identify``, ``tts``: the synchronous lip-sync calls; a rule applies to them when it names them.
ROUTES = API_ROUTES | {"media", "costs", "identify", "tts"}

SAFETY_MESSAGE = "Failure to pass the risk control system"
FAILURE_MESSAGE = "The generation failed, please try again"


class FaultConfigError(ValueError):
    """A fault description that cannot be used."""


@dataclass(slots=True)
class FaultRule:
    """When and how one kind of fault fires.

    The next ``count`` matching requests get it; after that each gets it with ``probability``.
    ``routes`` limits it to some of ``create``/``get``/``list``/``media`` (None: the three API
    routes; create-time faults always apply to ``create`` only; ``media`` takes the request
    faults but malformed_json and huge_body). ``after``: hang/slow/server_error happen after the
    request took effect (a create that made a task, then no proper answer).
    """

    probability: float = 0.0
    count: int = 0
    routes: frozenset[str] | None = None
    after: bool = False
    delay: float = 1.0
    retry_after: float = 1.0
    message: str | None = None
    # huge_body: bytes of the streamed answer (no Content-Length, so only counting stops it).
    size: int = 200 * 1024 * 1024

    def matches(self, route: str) -> bool:
        return route in (API_ROUTES if self.routes is None else self.routes)

    def fire(self, rng: random.Random) -> bool:
        if self.count > 0:
            self.count -= 1
            return True
        return self.probability > 0 and rng.random() < self.probability

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["routes"] = None if self.routes is None else sorted(self.routes)
        return doc


def _number(doc: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = doc.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FaultConfigError(f"{name} must be a number")
    if not low <= value <= high:
        raise FaultConfigError(f"{name} must be within [{low}, {high}]")
    return float(value)


def _routes(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise FaultConfigError("routes must be a list of route names")
    unknown = set(value) - ROUTES
    if unknown:
        raise FaultConfigError(f"unknown routes {sorted(unknown)}; known: {sorted(ROUTES)}")
    return frozenset(value)


def rule_from_json(doc: Any) -> FaultRule:
    if not isinstance(doc, dict):
        raise FaultConfigError("a fault rule must be an object")
    unknown = set(doc) - set(FaultRule.__dataclass_fields__)
    if unknown:
        raise FaultConfigError(f"unknown fault rule fields {sorted(unknown)}")
    count = doc.get("count", 0)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise FaultConfigError("count must be a non-negative integer")
    message = doc.get("message")
    if message is not None and not isinstance(message, str):
        raise FaultConfigError("message must be a string")
    return FaultRule(
        probability=_number(doc, "probability", 0.0, 0.0, 1.0),
        count=count,
        routes=_routes(doc.get("routes")),
        after=bool(doc.get("after", False)),
        delay=_number(doc, "delay", 1.0, 0.0, 3600.0),
        retry_after=_number(doc, "retry_after", 1.0, 0.0, 3600.0),
        message=message,
        size=int(_number(doc, "size", 200 * 1024 * 1024, 0, 2**34)),
    )


def faults_from_json(doc: Any) -> dict[str, FaultRule]:
    """``{"server_error": {"count": 2}, ...}`` as rules; unknown kinds are an error."""
    if not isinstance(doc, dict):
        raise FaultConfigError("faults must be an object of kind -> rule")
    unknown = set(doc) - set(FAULT_KINDS)
    if unknown:
        raise FaultConfigError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
    return {kind: rule_from_json(rule) for kind, rule in doc.items()}


@dataclass(slots=True)
class FakeUpstreamConfig:
    """Everything the fake needs; nothing is read from the environment."""

    access_key: str = "fake-access-key"
    secret_key: str = "fake-secret-key"
    # Several Kling accounts, each with its own key pair, concurrency limit and packs; empty:
    # one account of ``access_key``/``secret_key`` without a limit.
    accounts: list[FakeAccount] = field(default_factory=list)
    # Seconds from create to "processing", and the range of seconds from create to the end.
    processing_after: float = 0.05
    finish_after: tuple[float, float] = (0.2, 0.5)
    seed: int | None = 0
    # Base URL of result links; None: the base URL of the create request.
    public_url: str | None = None
    callback_timeout: float = 2.0
    # How long a "hang" fault waits for the client to give up before answering 504 anyway.
    hang_max: float = 300.0
    # Reject request fields the spec page does not list (catches mapping mistakes).
    strict_fields: bool = True
    faults: dict[str, FaultRule] = field(default_factory=dict)
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        low, high = self.finish_after
        if not 0 <= self.processing_after <= low <= high:
            raise ValueError("need 0 <= processing_after <= finish_after[0] <= finish_after[1]")
