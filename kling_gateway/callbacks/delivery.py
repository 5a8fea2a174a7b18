"""The deliverer of the durable callback outbox.

Rows are written by ``Store.save_task`` in the same transaction as the task state they report.
The deliverer leases due rows, POSTs each (signed per Standard Webhooks), and records the
outcome with ``Store.finish_callback_attempt``. A worker that dies mid-delivery leaves its rows
leased until the lease runs out, then another deliverer sends them: at least once, and the
``webhook-id`` (the row id, the same on every attempt) lets receivers drop repeats.

Outcomes: 2xx delivered; 410 stops for good; a refused target (SSRF guard) stops for good; any
other status, a redirect (never followed), a timeout or a connection error is retried after the
next interval of the schedule (jittered ±10%, or the receiver's Retry-After when that is longer)
until the schedule runs out, and then the delivery is marked failed.

The SSRF guard runs on the connection itself (``infra.egress.GuardedTransport``): a DNS answer
that changes between the check and the connection (rebinding) never reaches a private network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

import httpx

from kling_gateway import __version__
from kling_gateway.callbacks.secrets import SecretStore
from kling_gateway.callbacks.signing import webhook_headers
from kling_gateway.domain.links import Links
from kling_gateway.infra.egress import (  # noqa: F401 - GuardedBackend: re-exported
    GuardedBackend,
    GuardedTransport,
    UnsafeTarget,
    check_callback_url,
)
from kling_gateway.infra.metrics import CALLBACK_ATTEMPTS
from kling_gateway.protocol.retry_after import parse_retry_after
from kling_gateway.storage.base import CallbackDelivery, Store

log = logging.getLogger("kling_gateway.callbacks")

USER_AGENT = f"kling-gateway/{__version__}"
JITTER = 0.1
LEASE_MARGIN = 30.0

Verdict = Literal["delivered", "stop", "retry"]


# -- one attempt's result and what it makes of the delivery -----------------------------------


@dataclass(frozen=True, slots=True)
class AttemptResult:
    verdict: Verdict
    status: int | None
    error: str | None
    retry_after: float | None = None


def classify(response: httpx.Response, now: float) -> AttemptResult:
    """What a receiver's answer means for the delivery."""
    status = response.status_code
    if 200 <= status < 300:
        return AttemptResult("delivered", status, None)
    if status == 410:
        return AttemptResult("stop", status, "receiver answered 410 Gone; delivery stopped")
    if 300 <= status < 400:
        where = response.headers.get("location", "")
        return AttemptResult("retry", status, f"redirect {status} to {where!r} not followed")
    retry_after = parse_retry_after(response.headers.get("retry-after"), now)
    return AttemptResult("retry", status, f"receiver answered HTTP {status}", retry_after)


def retry_delay(
    attempts: int, schedule: Sequence[float], retry_after: float | None, rng: random.Random
) -> float | None:
    """The wait before the next attempt after ``attempts`` attempts, or None when none is left.

    The schedule's interval with ±10% jitter; a longer Retry-After wins, capped at the
    schedule's longest interval so a receiver cannot park a delivery for ever.
    """
    if attempts > len(schedule):
        return None
    delay = schedule[attempts - 1] * rng.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None:
        delay = max(delay, min(retry_after, max(schedule)))
    return delay


def apply_result(
    delivery: CallbackDelivery,
    result: AttemptResult,
    now: float,
    schedule: Sequence[float],
    rng: random.Random,
) -> None:
    """Record one attempt in ``delivery`` (state, attempts, next attempt, last status/error)."""
    delivery.attempts += 1
    delivery.last_status = result.status
    delivery.last_error = result.error
    delivery.next_attempt_at = None
    if result.verdict == "delivered":
        delivery.state = "delivered"
        delivery.delivered_at = now
        return
    delay = None
    if result.verdict == "retry":
        delay = retry_delay(delivery.attempts, schedule, result.retry_after, rng)
    if delay is None:
        delivery.state = "failed"
        if result.verdict == "retry":
            delivery.last_error = f"{result.error}; gave up after {delivery.attempts} attempts"
        return
    delivery.state = "pending"
    delivery.next_attempt_at = now + delay


# -- the deliverer ----------------------------------------------------------------------------


class CallbackDeliverer:
    """Delivers due rows of the outbox; ``run`` loops, ``deliver_due`` does one round.

    ``transport`` replaces the guarded transport (and with it the SSRF guard): tests only.
    Use ``async with`` (or ``aclose``) to release connections.
    """

    def __init__(
        self,
        store: Store,
        secrets: SecretStore,
        *,
        schedule: tuple[float, ...],
        timeout: float,
        allow_private: bool,
        worker_id: str,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        concurrency: int = 16,
        rng: random.Random | None = None,
        links: Links | None = None,
    ) -> None:
        self._store = store
        # Bodies hold the stable links of records (domain/links.py), made absolute when sent.
        self._links = links
        self._secrets = secrets
        self._schedule = schedule
        self._timeout = timeout
        self._worker_id = worker_id
        self._clock = clock
        self._concurrency = max(1, concurrency)
        self._rng = rng if rng is not None else random.Random()
        self._client = httpx.AsyncClient(
            transport=transport if transport is not None else GuardedTransport(allow_private),
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(timeout),
        )

    async def __aenter__(self) -> CallbackDeliverer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    def lease_seconds(self, limit: int) -> float:
        """Long enough for a whole claimed batch to time out wave after wave, and then some."""
        waves = math.ceil(limit / self._concurrency)
        return waves * self._timeout + LEASE_MARGIN

    async def deliver_due(self, limit: int | None = None) -> int:
        """Claim the due deliveries (up to ``limit``), attempt each once; return how many."""
        limit = self._concurrency if limit is None else limit
        batch = await self._store.claim_due_callbacks(
            self._worker_id, self._clock(), limit, self.lease_seconds(limit)
        )
        if not batch:
            return 0
        gate = asyncio.Semaphore(self._concurrency)

        async def one(delivery: CallbackDelivery) -> None:
            async with gate:
                await self.deliver(delivery)

        results = await asyncio.gather(*(one(d) for d in batch), return_exceptions=True)
        for delivery, result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                log.error(
                    "callback %s: recording the attempt failed; retried when its lease ends",
                    delivery.id,
                    exc_info=result,
                )
            elif isinstance(result, BaseException):
                raise result
        return len(batch)

    async def deliver(self, delivery: CallbackDelivery) -> None:
        """One attempt at a claimed delivery, recorded in the store. The callbacks of a task
        deleted since are dropped, unsent: a deleted task tells no one about itself."""
        if await self._store.load_task(delivery.task_id) is None:
            result = AttemptResult("stop", None, "the task was deleted; callback dropped")
        else:
            result = await self.attempt(delivery)
        now = self._clock()
        apply_result(delivery, result, now, self._schedule, self._rng)
        _observe_attempt(delivery, result, now)
        await self._store.finish_callback_attempt(delivery, self._worker_id)

    async def attempt(self, delivery: CallbackDelivery) -> AttemptResult:
        """POST the delivery once; never raises for anything the receiver or network does."""
        body = delivery.body if self._links is None else self._links.resolve_body(delivery.body)
        headers = await self._headers(delivery, body)
        try:
            await check_callback_url(delivery.url, allow_private=True)  # the scheme only
            async with asyncio.timeout(self._timeout):
                return await self._post(delivery.url, body, headers)
        except UnsafeTarget as exc:
            return AttemptResult("stop", None, f"refused: {exc}")
        except httpx.InvalidURL as exc:
            return AttemptResult("stop", None, f"refused: invalid URL: {exc}")
        except (TimeoutError, httpx.TimeoutException):
            return AttemptResult("retry", None, f"timed out after {self._timeout:g}s")
        except (httpx.HTTPError, OSError) as exc:
            return AttemptResult("retry", None, f"connection error: {_describe(exc)}")

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> AttemptResult:
        async with self._client.stream("POST", url, content=body, headers=headers) as response:
            # The body is never read: only the status and headers matter.
            return classify(response, self._clock())

    async def _headers(self, delivery: CallbackDelivery, body: bytes) -> dict[str, str]:
        now = self._clock()
        secrets = await self._secrets.active_secrets(delivery.user_id, now=now)
        if not secrets:
            secrets = [await self._secrets.get_or_create_secret(delivery.user_id, now=now)]
        return {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **webhook_headers(secrets, delivery.id, int(now), body),
        }

    async def run(
        self, stop: asyncio.Event, idle: float = 1.0, wake: asyncio.Event | None = None
    ) -> None:
        """Deliver until ``stop`` is set; when nothing was due, rest until ``wake`` is set
        (a callback was enqueued, or ``stop``) or ``idle`` seconds pass."""
        wake = wake or asyncio.Event()
        while not stop.is_set():
            wake.clear()  # before looking, so an enqueue during the round is not missed
            try:
                count = await self.deliver_due()
            except Exception:
                log.exception("callback delivery round failed; trying again")
                count = 0
            if count == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), idle)


def _observe_attempt(delivery: CallbackDelivery, result: AttemptResult, now: float) -> None:
    """Count the attempt by outcome; log every failed one (a retry too, with when)."""
    extra = {"task_id": delivery.task_id}
    if delivery.state == "delivered":
        CALLBACK_ATTEMPTS.labels("delivered").inc()
    elif delivery.state == "failed":
        CALLBACK_ATTEMPTS.labels("failed").inc()
        log.warning(
            "callback %s to %s failed, attempt %d, giving up: %s",
            delivery.id, delivery.url, delivery.attempts, delivery.last_error, extra=extra,
        )  # fmt: skip
    else:
        CALLBACK_ATTEMPTS.labels("retrying").inc()
        wait = (delivery.next_attempt_at or now) - now
        log.warning(
            "callback %s to %s failed, attempt %d, next in %.0f s: %s",
            delivery.id, delivery.url, delivery.attempts, wait, result.error, extra=extra,
        )  # fmt: skip


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
