"""The create endpoints (POST /kling/videos and the §7 ones: /kling/motion, /kling/lip-sync,
/kling/talking-photo): one route parametrised by a ``domain.kinds.TaskKind``. Store the task,
then answer at once (async) or when it ends (blocking)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import msgspec

from kling_gateway.api.asgi import Receive, Reply, Scope, header
from kling_gateway.api.context import AppContext
from kling_gateway.api.instrument import task_created
from kling_gateway.api.ownership import resolve_owned
from kling_gateway.api.requests import decode_body, describe_validation_error
from kling_gateway.api.waiting import is_finished, wait_until_finished
from kling_gateway.domain.ids import new_object_id, new_task_id
from kling_gateway.domain.kinds import TaskKind
from kling_gateway.domain.params import TaskParams, hash_input
from kling_gateway.domain.pricing import PriceError, price
from kling_gateway.domain.task import Task
from kling_gateway.domain.videos import known_fields, stored_request
from kling_gateway.infra.egress import UnsafeTarget, check_callback_url
from kling_gateway.infra.notify import WORKER_WAKEUP
from kling_gateway.protocol.errors import BadRequest, GatewayTimeout, TooManyRequests, UsedUp
from kling_gateway.protocol.task import API_VIDEOS
from kling_gateway.storage.base import (
    IdempotencyConflict,
    Principal,
    QuotaUsedUp,
    TooManyInFlight,
)

MAX_IDEMPOTENCY_KEY = 255
# Retry-After of a create over the application's max_in_flight: about one check of a task.
IN_FLIGHT_RETRY_AFTER = 5.0


# A finished-but-failed blocking call answers the failed body (docs/contract.md §3). Failures
# caused by the upstream rather than by the request are the gateway errors of §4, with their
# HTTP status.
def _failure_status(code: str) -> int:
    if code == "timeout":
        return 504
    if code == "upstream_unavailable":
        return 503
    if code == "storage_full":
        return 507
    return 502 if code.startswith("upstream_") else 200


class CreateEndpoint:
    """POST to ``kind.path``. Every kind is part of the videos API (a token granted
    ``kling.videos`` may create any of them; docs/contract.md §7)."""

    def __init__(self, ctx: AppContext, kind: TaskKind) -> None:
        self.ctx = ctx
        self.kind = kind
        self._known_fields = known_fields(kind.body)

    async def __call__(self, scope: Scope, receive: Receive, trace_id: str) -> Reply:
        principal, body = await self.ctx.admit(scope, receive, API_VIDEOS, max_body=self.max_body)
        key = idempotency_key(scope)
        task, params = await self.submit(principal, body, trace_id, key)
        if params.asynchronous:
            return _json(200, async_answer(task, trace_id))
        return await self._wait(principal, task.id, trace_id, receive)

    @property
    def max_body(self) -> int:
        """The largest body this endpoint reads (the MCP endpoint reads its tools' too)."""
        return max(self.kind.max_body_bytes, self.ctx.settings.max_body_bytes)

    async def submit(
        self, principal: Principal, body: bytes, trace_id: str, key: str | None = None
    ) -> tuple[Task, TaskParams]:
        """Validate ``body`` and store its task: the one create path (the MCP tools too)."""
        raw, params = _decode(body, self.kind)
        params = await resolve_owned(self.ctx.store, principal.user_id, params)
        await self._check_callback(params)
        return await self._create(principal, raw, params, trace_id, key), params

    async def _check_callback(self, params: TaskParams) -> None:
        if params.callback_url is None:
            return
        try:
            await check_callback_url(params.callback_url, self.ctx.settings.callback_allow_private)
        except UnsafeTarget as exc:
            raise BadRequest(f"field `callback_url`: {exc}") from exc

    async def _create(
        self,
        principal: Principal,
        raw: dict[str, Any],
        params: TaskParams,
        trace_id: str,
        key: str | None,
    ) -> Task:
        """Store the task (before anyone learns its id), then wake the worker."""
        store, now = self.ctx.store, time.time()
        task = Task(
            id=new_task_id(),
            object_id=new_object_id(now),
            user_id=principal.user_id,
            application_id=principal.application_id,
            credential_id=principal.credential_id,
            trace_id=trace_id,
            request=stored_request(raw, self._known_fields),
            params=params,
            created_at=now,
            type=self.kind.task_type,
        )
        try:
            task.usage = price(self.ctx.settings.price_table, task.type, params)
        except PriceError as exc:
            raise BadRequest(f"field `mode`: {exc}") from exc
        try:
            stored = await store.insert_task(
                task,
                next_check_at=now,
                deadline_at=now + self.ctx.settings.task_deadline_seconds,
                idempotency_key=key,
                request_hash=_request_hash(params) if key else None,
                charge_quota=True,
            )
        except IdempotencyConflict as exc:
            raise BadRequest(f"header `Idempotency-Key`: {exc}") from exc
        except QuotaUsedUp as exc:
            raise UsedUp(f"the application's credits are used up: {exc}") from exc
        except TooManyInFlight as exc:
            raise TooManyRequests(IN_FLIGHT_RETRY_AFTER, str(exc)) from exc
        task_created(stored, fresh=stored is task)
        await self.ctx.events.publish(WORKER_WAKEUP)
        return stored

    async def _wait(
        self, principal: Principal, task_id: str, trace_id: str, receive: Receive
    ) -> Reply:
        # The task lives on whatever happens to this request: a client that disconnects (the
        # wait ends at once), a shutdown (503) or a wait that runs out leave it to the worker.
        ctx = self.ctx
        record = await ctx.waiters.hold(
            receive,
            wait_until_finished(
                ctx.store,
                ctx.events,
                principal.user_id,
                task_id,
                ctx.settings.blocking_wait_seconds,
            ),
        )
        if record is None or not is_finished(record):
            raise GatewayTimeout(
                f"task {task_id} is not finished yet; it goes on, retrieve it later"
            )
        doc = msgspec.json.decode(ctx.links.resolve(record))
        response: dict[str, Any] = doc["response"]
        code = response.get("error", {}).get("code", "")
        answer = {**response, "trace_id": trace_id}
        if "usage" in doc:
            answer["usage"] = doc["usage"]
        return _json(_failure_status(code), answer)


def async_answer(task: Task, trace_id: str) -> dict[str, Any]:
    """The answer to an asynchronous create (docs/contract.md §2): REST's and MCP's."""
    answer: dict[str, Any] = {"task_id": task.id, "trace_id": trace_id}
    if task.usage is not None:
        answer["usage"] = task.usage.as_json()
    return answer


def _decode(body: bytes, kind: TaskKind) -> tuple[dict[str, Any], TaskParams]:
    """The body parsed once: as sent (for the record) and validated (for everything else)."""
    try:
        raw = decode_body(body, dict[str, Any])
    except BadRequest:
        # An untyped parse cannot name the field of an error (a number out of range is "at
        # `$[...]`"): the typed parse of the refused body says which field it is.
        decode_body(body, kind.body)
        raise
    try:
        typed = msgspec.convert(raw, kind.body)
    except msgspec.ValidationError as exc:
        raise BadRequest(describe_validation_error(exc)) from exc
    return raw, kind.validate(typed)


def idempotency_key(scope: Scope) -> str | None:
    key = header(scope, b"idempotency-key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise BadRequest(f"header `Idempotency-Key` must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    return key


def _request_hash(params: TaskParams) -> str:
    # The validated request, defaults applied: two bodies asking for the same video match.
    return hashlib.sha256(hash_input(params)).hexdigest()


def _json(status: int, body: dict[str, Any]) -> Reply:
    return Reply(status, msgspec.json.encode(body))
