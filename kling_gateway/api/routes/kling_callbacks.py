"""POST /kling/upstream-callback/{secret}: Kling's own status callbacks, recorded at once.

Kling POSTs the task object whenever one of our jobs changes state (``callback_url`` of the
create call, see ``kling_factory.callback_url``). The secret in the path is compared in
constant time; a wrong one gets the same 404 ``no_api`` as a path that does not exist. The
route exists only when ``kling_callback_secret`` is set.

The payload is mapped by the Kling mapping and written with the worker's own rule
(``worker.steps.apply_status``, ``worker.loop.outcome_for``) under the same compare-and-set:
a finished task is never written again, so repeated and out-of-order callbacks are harmless,
and whichever of the callback and the worker's polling comes first, the record is the same.

A callback that names a job the task does not show yet (the create answer is still on its way,
or was lost in a crash) records that job: it is the one our ``external_task_id`` created.

A SUCCEED callback while results are downloaded finishes nothing here (no download inside an
HTTP request): the task is made due at once, and the worker downloads the video and finishes
it with its next claim.

While a worker holds the task's lease (it is submitting, checking or downloading right now),
only a callback that finishes the task is written: any other write would either hand the task
to a second worker while the first still drives it (making it due, or releasing the lease), or,
keeping the lease, refuse the holder's own result and leave the task until the lease runs out.
The holder's result is at least as fresh, and the callback's news reaches it with its next
check.
"""

from __future__ import annotations

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
from kling_gateway.domain.outcomes import ProviderError, Status, Submission
from kling_gateway.domain.task import Task
from kling_gateway.infra.notify import WORKER_WAKEUP
from kling_gateway.protocol.errors import BadRequest, NoApi
from kling_gateway.protocol.task import TaskState
from kling_gateway.providers.kling.factory import CALLBACK_PATH
from kling_gateway.providers.kling.mapping import kind_for_request, status_from_callback
from kling_gateway.storage.base import Outcome, StoredTask
from kling_gateway.worker.loop import outcome_for
from kling_gateway.worker.service import worker_config
from kling_gateway.worker.steps import StepPolicy, apply_status, record_submission

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
        self._policy: StepPolicy = worker_config(ctx.settings).policy
        self._defer_success = ctx.settings.kling_download_results

    async def record(self, payload: Any) -> Recorded:
        try:
            task_id, job_id, status = status_from_callback(payload)
        except ProviderError as exc:
            log.warning("refused a Kling callback: %s", exc.message)
            raise BadRequest(f"not a Kling task: {exc.message}") from exc
        if task_id is None:
            # No external_task_id (video-extend): the worker's polling records it.
            return Recorded.IGNORED
        outcome = Recorded.CONFLICT
        for _ in range(2):  # a lost compare-and-set is tried once more on a fresh read
            outcome = await self._try(task_id, job_id, status)
            if outcome is not Recorded.CONFLICT:
                break
        return outcome

    async def _try(self, task_id: str, job_id: str, status: Status) -> Recorded:
        stored = await self._ctx.store.load_task(task_id)
        if stored is None:
            return Recorded.UNKNOWN
        task = stored.task
        if task.state.is_terminal:
            return Recorded.FINISHED
        if _leased(stored, time.time()) and not self._finishes(status):
            return Recorded.HELD
        adopted = task.job_id is None
        if adopted and not _adopt(task, job_id):
            return Recorded.IGNORED
        if task.job_id != job_id:
            return Recorded.IGNORED  # another job than ours: polling knows better
        if status.state is TaskState.SUCCEED and self._defer_success:
            return await self._make_due(stored, adopted)
        return await self._apply(stored, status, adopted)

    def _finishes(self, status: Status) -> bool:
        """Whether recording ``status`` here finishes the task."""
        if status.state is TaskState.SUCCEED:
            return not self._defer_success
        return status.state is TaskState.FAILED

    async def _apply(self, stored: StoredTask, status: Status, adopted: bool) -> Recorded:
        task, before, now = stored.task, stored.task.state, time.time()
        version = task.version
        result = apply_status(task, status, stored.attempts, now, self._policy)
        if not (result.changed or adopted):
            return Recorded.UNCHANGED  # keep the task's own schedule
        if not await self._save(stored, version, outcome_for(task, before, result)):
            return Recorded.CONFLICT
        await self._ctx.events.publish(task.id)
        return Recorded.RECORDED

    async def _make_due(self, stored: StoredTask, adopted: bool) -> Recorded:
        now = time.time()
        if not adopted and stored.next_check_at <= now:
            return Recorded.DUE  # due already (no live lease: ``_try`` checked)
        if not await self._save(stored, stored.task.version, Outcome(next_check_at=now)):
            return Recorded.CONFLICT
        await self._ctx.events.publish(WORKER_WAKEUP)
        return Recorded.DUE

    async def _save(self, stored: StoredTask, version: int, outcome: Outcome) -> bool:
        # No lease to keep: none is live, or this write finishes the task (``_try``).
        return await self._ctx.store.save_task(
            stored.task, expected_version=version, worker_id=None, outcome=outcome
        )


def _leased(stored: StoredTask, now: float) -> bool:
    """Whether a worker holds the task now (the lease is the next check time itself)."""
    return stored.lease_owner is not None and stored.next_check_at > now


def _adopt(task: Task, job_id: str) -> bool:
    """Record the job a callback names when the worker has not stored it yet (its create answer
    is on the way, or was lost in a crash): the same job, so no second one is ever created."""
    try:
        kind = kind_for_request(task.request)
    except ProviderError:
        return False
    record_submission(task, Submission(job_id=job_id, provider_data={"kind": kind}), time.time())
    return True
