"""POST /kling/upstream-callback/{secret}: Kling's own status callbacks, recorded at once.

Kling POSTs the task object whenever one of our jobs changes state (``callback_url`` of the
create call, see ``kling_factory.callback_url``). The secret in the path is compared in
constant time; a wrong one gets the same 404 ``no_api`` as a path that does not exist. The
route exists only when ``kling_callback_secret`` is set.

The payload is read by ``providers.kling.callbacks`` and decided by the one transition
function (``domain.transitions``) the worker uses too, under the same compare-and-set:
a finished task is never written again, so repeated and out-of-order callbacks are harmless,
and whichever of the callback and the worker's polling comes first, the record is the same.

A callback that names a job the task does not show yet (the create answer is still on its way,
or was lost in a crash) records that job: it is the one our ``external_task_id`` created.

A SUCCEED callback while results are downloaded finishes nothing here (no download inside an
HTTP request): the task is made due at once (the workers are woken), and the worker downloads
the video and finishes it with its next claim. A write that owes client callbacks wakes the
callback deliverer, as the worker's writes do.

While a worker holds the task's lease (it is submitting, checking or downloading right now),
only a callback that finishes the task is written: any other write would either hand the task
to a second worker while the first still drives it (making it due, or releasing the lease), or,
keeping the lease, refuse the holder's own result and leave the task until the lease runs out.
The holder's result is at least as fresh, and the callback's news reaches it with its next
check.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import time
from enum import StrEnum
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kling_gateway.api.asgi import read_body
from kling_gateway.api.context import AppContext
from kling_gateway.domain.outcomes import ProviderError, Status
from kling_gateway.domain.task import Task
from kling_gateway.domain.transitions import (
    RESULT_READY_AT,
    Change,
    Policy,
    ResultPending,
    Schedule,
    transition,
)
from kling_gateway.infra.announce import announce
from kling_gateway.protocol.errors import BadRequest, NoApi
from kling_gateway.protocol.task import TASK_TYPE_VIDEOS, TaskState
from kling_gateway.providers.kling.callbacks import UpstreamCallback, adoption, parse_callback
from kling_gateway.providers.kling.factory import CALLBACK_PATH
from kling_gateway.storage.base import Outcome, StoredTask

log = logging.getLogger("kling_gateway.kling_callbacks")


class Recorded(StrEnum):
    """What a callback did (the answer's ``result``; Kling only looks at the 200)."""

    RECORDED = "recorded"
    DUE = "check_due"
    UNCHANGED = "unchanged"
    FINISHED = "already_finished"
    IGNORED = "ignored"
    UNKNOWN = "unknown_task"
    CONFLICT = "conflict"
    HELD = "held_by_worker"


def kling_callback_routes(ctx: AppContext) -> list[BaseRoute]:
    """The callback route, or none when ``kling_callback_secret`` is not set."""
    secret = ctx.settings.kling_callback_secret
    if not secret:
        return []
    recorder = CallbackRecorder(ctx)

    async def upstream_callback(request: Request) -> Response:
        given = str(request.path_params["secret"])
        if not hmac.compare_digest(given.encode(), secret.encode()):
            raise NoApi(f"no API at {request.method} {request.url.path}")
        body = await read_body(request.receive, ctx.settings.max_body_bytes)
        try:
            payload = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise BadRequest("the callback body is not valid JSON") from exc
        return JSONResponse({"ok": True, "result": (await recorder.record(payload)).value})

    return [Route(CALLBACK_PATH + "/{secret}", upstream_callback, methods=["POST"])]


class CallbackRecorder:
    """Applies one upstream callback to its task (see the module docstring)."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        settings = ctx.settings
        self._policy = Policy(
            check_interval=settings.check_interval,
            check_max_interval=settings.check_max_interval,
            deadline_seconds=settings.task_deadline_seconds,
        )
        self._defer_success = settings.kling_download_results

    async def record(self, payload: Any) -> Recorded:
        try:
            callback = parse_callback(payload)
        except ProviderError as exc:
            log.warning("refused a Kling callback: %s", exc.message)
            raise BadRequest(f"not a Kling task: {exc.message}") from exc
        if callback.task_id is None:
            # No external_task_id (video-extend): the worker's polling records it.
            return Recorded.IGNORED
        outcome = Recorded.CONFLICT
        for _ in range(2):  # a lost compare-and-set is tried once more on a fresh read
            outcome = await self._try(callback.task_id, callback)
            if outcome is not Recorded.CONFLICT:
                break
        return outcome

    async def _try(self, task_id: str, callback: UpstreamCallback) -> Recorded:
        stored = await self._ctx.store.load_task(task_id)
        if stored is None:
            return Recorded.UNKNOWN
        task, now = stored.task, time.time()
        if task.state.is_terminal:
            return Recorded.FINISHED
        if _leased(stored, now) and not self._finishes(task, callback.status):
            return Recorded.HELD
        schedule = Schedule(stored.attempts, stored.deadline_at)
        adopted: Change | None = None
        if task.job_id is None:
            submission = adoption(task, callback.job_id)
            if submission is None:
                return Recorded.IGNORED
            adopted = transition(task, submission, schedule, now, self._policy)
            task = adopted.task
        if task.job_id != callback.job_id:
            return Recorded.IGNORED  # another job than ours: polling knows better
        if self._deferred(task, callback.status):
            return await self._make_due(stored, adopted, callback.status, now)
        change = transition(task, callback.status, schedule, now, self._policy)
        if adopted is None and not change.changed:
            return Recorded.UNCHANGED  # keep the task's own schedule
        if adopted is not None:
            change = dataclasses.replace(change, changed=True)
        return await self._write(stored, change, Recorded.RECORDED)

    def _deferred(self, task: Task, status: Status) -> bool:
        """A SUCCEED whose video a worker copies (not an HTTP request), or that ends a job of
        a §7 task: what it means for the task (another step, ``source_video_url``) is the
        worker's to find out with its next check."""
        if status.state is not TaskState.SUCCEED:
            return False
        return self._defer_success or task.type != TASK_TYPE_VIDEOS

    def _finishes(self, task: Task, status: Status) -> bool:
        """Whether recording ``status`` here finishes the task."""
        if status.state is TaskState.SUCCEED:
            return not self._deferred(task, status)
        return status.state is TaskState.FAILED

    async def _make_due(
        self, stored: StoredTask, adopted: Change | None, status: Status, now: float
    ) -> Recorded:
        task = stored.task if adopted is None else adopted.task
        known = RESULT_READY_AT in task.provider_data
        if adopted is None and known and stored.next_check_at <= now:
            return Recorded.DUE  # due already (no live lease: ``_try`` checked)
        schedule = Schedule(stored.attempts, stored.deadline_at)
        change = transition(task, ResultPending(status), schedule, now, self._policy)
        if adopted is not None:
            change = dataclasses.replace(change, changed=True)
        return await self._write(stored, change, Recorded.DUE)

    async def _write(self, stored: StoredTask, change: Change, done: Recorded) -> Recorded:
        # No lease to keep: none is live, or this write finishes the task (``_try``).
        outcome = Outcome(
            next_check_at=change.next_check_at,
            attempts=change.attempts,
            callbacks=change.callbacks,
        )
        saved = await self._ctx.store.save_task(
            change.task, expected_version=stored.task.version, worker_id=None, outcome=outcome
        )
        if not saved:
            return Recorded.CONFLICT
        await announce(self._ctx.events, change)
        return done


def _leased(stored: StoredTask, now: float) -> bool:
    """Whether a worker holds the task now (the lease is the next check time itself)."""
    return stored.lease_owner is not None and stored.next_check_at > now
