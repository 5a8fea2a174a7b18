"""POST /kling/tasks: retrieve, retrieve_batch and delete (docs/contract.md §1)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import msgspec

from kling_gateway.api.asgi import Receive, Reply, Scope
from kling_gateway.api.context import AppContext
from kling_gateway.api.requests import decode_body
from kling_gateway.api.waiting import OnRead, is_finished, wait_until_finished
from kling_gateway.domain.numbers import whole_or_default
from kling_gateway.domain.task import Task, is_blank
from kling_gateway.infra.files import VideoFiles
from kling_gateway.infra.log_context import note_task
from kling_gateway.infra.objects import ObjectStoreError
from kling_gateway.protocol.errors import ApiNotImplemented, BadRequest
from kling_gateway.protocol.task import API_TASKS, TaskState
from kling_gateway.storage.base import Principal, TaskFilter

log = logging.getLogger("kling_gateway.api")

MAX_WAIT_SECONDS = 60.0
# retrieve_batch reads (and holds) records this many ids at a time: a batch of up to
# FIRST_CHUNK ids is answered from one read; a longer one is streamed, from a first read of
# STREAM_FIRST ids (small whatever the records weigh, read before the answer starts so that
# its failure still gets an error answer), then chunks sized to hold about CHUNK_BUDGET_BYTES.
FIRST_CHUNK = 100
STREAM_FIRST = 16
MIN_CHUNK, MAX_CHUNK = 4, 500
CHUNK_BUDGET_BYTES = 4 * 1024 * 1024
SEND_BYTES = 512 * 1024
MAX_PAGE = 100
DEFAULT_PAGE = 20
EMPTY_RECORD = b"{}"
TASK_STATES = tuple(state.value for state in TaskState)
RETRY_HINT = (b"retry-after", b"3")
# Announces that the server honoured `wait` (the SDK's long-poll detection).
LONG_POLL = (b"x-kling-gateway-long-poll", b"1")


class TasksRequest(msgspec.Struct):
    """The body of POST /kling/tasks; unknown fields are ignored (docs/contract.md §5)."""

    action: str = "retrieve"
    id: str | None = None
    ids: list[str] | None = None
    type: str | None = None
    state: str | None = None
    created_at_min: float | None = None
    created_at_max: float | None = None
    limit: float | None = None
    offset: float | None = None
    wait: float | None = None


class TasksEndpoint:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, trace_id: str) -> Reply:
        principal, body = await self.ctx.admit(scope, receive, API_TASKS)
        request = decode_body(body, TasksRequest)
        if request.action == "retrieve":
            return await self.retrieve(principal, request, receive)
        if request.action == "retrieve_batch":
            return await self.retrieve_batch(principal, request)
        if request.action == "delete":
            return await self.delete(principal, request)
        raise ApiNotImplemented(f"action `{request.action}` is not implemented")

    async def retrieve(
        self,
        principal: Principal,
        request: TasksRequest,
        receive: Receive | None,
        *,
        max_wait: float = MAX_WAIT_SECONDS,
        on_read: OnRead | None = None,
    ) -> Reply:
        """``receive`` None and ``max_wait``, ``on_read``: the MCP wait, whose transport is the
        SDK's and which may wait longer, reporting progress (api/mcp/task_tools.py)."""
        task_id = _required_id(request.id)
        note_task(task_id)
        ctx = self.ctx
        if request.wait is None:
            record = await ctx.store.get_task_record(principal.user_id, task_id)
            return Reply(200, _linked(ctx, record), _retry_hint(record))
        wait = _bounded("wait", request.wait, 0, max_wait)
        # A missing or foreign task answers {} at once (its first read finds nothing).
        record = await ctx.waiters.hold(
            receive,
            wait_until_finished(ctx.store, ctx.events, principal.user_id, task_id, wait, on_read),
        )
        # The SDK decides from this header whether `wait` was honoured, so it goes with every
        # answer to a `wait`, also when the task finished during it (and has no retry hint).
        return Reply(200, _linked(ctx, record), [*_retry_hint(record), LONG_POLL])

    async def retrieve_batch(self, principal: Principal, request: TasksRequest) -> Reply:
        if request.ids is None:
            return await self._list(principal, request)
        ids = _unique_ids(request.ids, self.ctx.settings.batch_max_ids)
        if len(ids) <= FIRST_CHUNK:
            records = await self._records(principal, ids)
            return Reply(200, _batch_body(records, len(records)))
        first = await self._records(principal, ids[:STREAM_FIRST])
        # Too many for one answer in memory (records can be large): the same bytes, sent
        # chunk by chunk as the records are read.
        return Reply(200, b'{"items":[', stream=self._stream_batch(principal, ids, first))

    async def _records(self, principal: Principal, ids: list[str]) -> list[bytes]:
        found = await self.ctx.store.get_task_records(principal.user_id, ids)
        resolve = self.ctx.links.resolve
        return [resolve(found[i]) for i in ids if i in found]

    async def _stream_batch(
        self, principal: Principal, ids: list[str], first: list[bytes]
    ) -> AsyncIterator[bytes]:
        count, chunk, at = 0, first, STREAM_FIRST
        # Hold one chunk at a time: an argument lives as long as the generator, so without the
        # del the first records stayed for the whole answer (bench/batch_rss.py).
        del first
        while True:
            for group in _groups(chunk):  # a send per record costs more than its bytes
                yield (b"," if count else b"") + b",".join(group)
                count += len(group)
            if at >= len(ids):
                break
            size = _next_chunk_size(chunk)
            chunk = []  # released before the next read rather than after it
            chunk, at = await self._records(principal, ids[at : at + size]), at + size
        yield b'],"count":' + str(count).encode() + b"}"

    async def _list(self, principal: Principal, request: TasksRequest) -> Reply:
        _no_nul("type", request.type)
        flt = TaskFilter(
            type=request.type,
            state=task_state_filter(request.state),
            created_at_min=request.created_at_min,
            created_at_max=request.created_at_max,
            limit=_whole("limit", request.limit, 1, MAX_PAGE, DEFAULT_PAGE),
            offset=_whole("offset", request.offset, 0, 10**9, 0),
        )
        items, total = await self.ctx.store.list_task_records(principal.user_id, flt)
        resolve = self.ctx.links.resolve
        return Reply(200, _batch_body([resolve(item) for item in items], total))

    async def delete(self, principal: Principal, request: TasksRequest) -> Reply:
        task_id = _required_id(request.id)
        note_task(task_id)
        store = self.ctx.store
        # Read first: the row names the video file(s), which must not stay public after it.
        stored = await store.load_task(task_id)
        deleted = await store.delete_task(principal.user_id, task_id)
        if deleted and stored is not None:
            await _remove_videos(self.ctx.files, stored.task)
        return Reply(200, msgspec.json.encode({"id": task_id, "deleted": deleted}))


def task_state_filter(value: str | None) -> str | None:
    """The ``state`` filter of a listing (an extension, docs/contract.md §8): a task state."""
    if value is not None and value not in TASK_STATES:
        raise BadRequest(f"field `state` must be one of {', '.join(TASK_STATES)}")
    return value


def _groups(records: list[bytes]) -> Iterator[list[bytes]]:
    """``records`` in runs of about ``SEND_BYTES``: each is joined (copied) for one send."""
    group: list[bytes] = []
    size = 0
    for record in records:
        group.append(record)
        size += len(record)
        if size >= SEND_BYTES:
            yield group
            group, size = [], 0
    if group:
        yield group


def _next_chunk_size(records: list[bytes]) -> int:
    """As many ids as fit the memory budget at the size of the records just read."""
    if not records:
        return MAX_CHUNK
    average = sum(len(r) for r in records) / len(records)
    return max(MIN_CHUNK, min(MAX_CHUNK, int(CHUNK_BUDGET_BYTES / average)))


async def _remove_videos(files: VideoFiles, task: Task) -> None:
    try:
        await files.remove_task_videos(task)
    except ObjectStoreError as exc:
        # The task is gone and its video id, unguessable, is listed nowhere any more; the
        # object stays in the bucket (an orphan the sweep cannot see) rather than failing a
        # delete that happened. The log line names it for the operator.
        log.warning("deleted task %s but could not remove its video: %s", task.id, exc)


def _batch_body(items: list[bytes], count: int) -> bytes:
    # Splice the stored records: no decode and re-encode on the way out.
    return b'{"items":[' + b",".join(items) + b'],"count":' + str(count).encode() + b"}"


def _required_id(value: str | None) -> str:
    if value is None:
        raise BadRequest("field `id` is required")
    if is_blank(value):
        raise BadRequest("field `id` must be a non-empty string")
    if "\x00" in value:
        _no_nul("id", value)
    return value


def _no_nul(name: str, *values: str | None) -> None:
    # Ids and types are matched as text, and PostgreSQL text cannot hold NUL.
    if any(value and "\x00" in value for value in values):
        raise BadRequest(f"field `{name}` must not contain a NUL character")


def _unique_ids(ids: list[str], limit: int) -> list[str]:
    if not ids:
        raise BadRequest("field `ids` must list at least one task id")
    if len(ids) > limit:
        raise BadRequest(f"field `ids` lists {len(ids)} ids; at most {limit} are allowed")
    if any(is_blank(i) for i in ids):
        raise BadRequest("field `ids` must contain only non-empty strings")
    _no_nul("ids", *ids)
    return list(dict.fromkeys(ids))


def _bounded(name: str, value: float, low: float, high: float) -> float:
    if not low <= value <= high:
        raise BadRequest(f"field `{name}` must be between {low:g} and {high:g}")
    return value


def _whole(name: str, value: float | None, low: int, high: int, default: int) -> int:
    return whole_or_default(f"field `{name}`", value, low, high, default)


def _linked(ctx: AppContext, record: bytes | None) -> bytes:
    """The stored record as sent: its file links made absolute (domain/links.py)."""
    return EMPTY_RECORD if record is None else ctx.links.resolve(record)


def _retry_hint(record: bytes | None) -> tuple[tuple[bytes, bytes], ...]:
    """Unfinished tasks carry a hint of when to ask again."""
    if record is None or is_finished(record):
        return ()
    return (RETRY_HINT,)
