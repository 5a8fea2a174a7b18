"""Everything the sync and async clients share: requests, parsing, retries, batching, paging, waits.

The logic is written once, as *flows*: generators that yield ``Send`` (an ``httpx.Request`` to
send) and ``Sleep`` (seconds to pause) and get back the reply (an ``httpx.Response``, or the
``httpx.TransportError`` that sending raised). ``Client`` and ``AsyncClient`` only drive flows:
they do the I/O each action names, blocking or awaiting.

Long poll (``tasks.wait``): the first retrieve carries ``wait``; a server that honoured it answers
with the header ``x-kling-gateway-long-poll: 1``, and the client keeps long-polling without
pausing between calls. Without that header (the hosted service ignores the field) the client
stops sending ``wait`` and polls with backoff and jitter. A ``Retry-After`` header on a successful
retrieve is taken as the server's hint for the next poll.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import httpx

from kling_gateway import __version__
from kling_gateway.client.errors import (
    KlingError,
    TaskNotFoundError,
    TransportError,
    UnknownError,
    WaitTimeoutError,
    error_for,
)
from kling_gateway.client.types import FAILURE_STATES, SUCCESS_STATES, OnUpdate, Outcome, Record
from kling_gateway.protocol.enums import AspectRatio, ShotType, VideoAction, VideoMode, VideoModel
from kling_gateway.protocol.retry_after import parse_retry_after

DEFAULT_BASE_URL = "https://api.acedata.cloud"
# Blocking /kling/videos calls last minutes (the seed's task took 317 s): a long read timeout.
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
DEFAULT_MAX_RETRIES = 2
DEFAULT_MAX_BATCH_SIZE = 1000
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
TASKS_PATH = "/kling/tasks"
VIDEOS_PATH = "/kling/videos"
LONG_POLL_HEADER = "x-kling-gateway-long-poll"
LONG_POLL_WINDOW = 30.0  # seconds asked per long-poll call (the server accepts up to 60)
LONG_POLL_READ_MARGIN = 15.0  # read timeout of a long-poll call: window + margin at least
MAX_POLL_INTERVAL = 30.0
POLL_BACKOFF = 1.5

T = TypeVar("T")
R_co = TypeVar("R_co", covariant=True)
It_co = TypeVar("It_co", covariant=True)


@dataclass(frozen=True, slots=True)
class Send:
    request: httpx.Request


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


Action = Send | Sleep
Reply = httpx.Response | httpx.TransportError | None
Flow = Generator[Action, Reply, T]


# -- responses and errors ----------------------------------------------------------------------


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def error_from_response(response: httpx.Response) -> KlingError:
    """The typed error of an error response; a non-JSON body is typed by the HTTP status."""
    body = _json_or_none(response)
    error = body.get("error") if isinstance(body, dict) else None
    code: str | None = None
    message = response.reason_phrase or f"HTTP {response.status_code}"
    if isinstance(error, dict):
        code = error.get("code") if isinstance(error.get("code"), str) else None
        message = str(error.get("message") or message)
    elif isinstance(error, str):
        message = error
    elif body is None and response.text.strip():
        message = response.text.strip()[:500]
    trace_id = body.get("trace_id") if isinstance(body, dict) else None
    return error_for(
        response.status_code,
        code,
        message,
        trace_id=str(trace_id) if trace_id else response.headers.get("x-trace-id"),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        body=body if body is not None else response.text,
    )


def decode(response: httpx.Response) -> Record:
    """The JSON object of a successful response, or the typed error of a failed one."""
    if not response.is_success:
        raise error_from_response(response)
    body = _json_or_none(response)
    if not isinstance(body, dict):
        raise UnknownError(
            "the response is not a JSON object",
            code="invalid_response",
            status=response.status_code,
            trace_id=response.headers.get("x-trace-id"),
            body=response.text[:500],
        )
    return body


# -- retries -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry 408/409/429/5xx gateways and transport errors: ``min(2**attempt, 8)`` s plus jitter,
    or exactly what ``Retry-After`` asks."""

    max_retries: int = DEFAULT_MAX_RETRIES
    jitter: Callable[[], float] = random.random

    def backoff(self, attempt: int) -> float:
        base = min(2.0**attempt, 8.0)
        return base + base * 0.25 * self.jitter()

    def delay_after(
        self, reply: httpx.Response | httpx.TransportError, attempt: int
    ) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to give up (or to accept)."""
        if attempt >= self.max_retries:
            return None
        if isinstance(reply, httpx.TransportError):
            return self.backoff(attempt)
        if reply.status_code not in RETRY_STATUSES:
            return None
        retry_after = parse_retry_after(reply.headers.get("retry-after"))
        return self.backoff(attempt) if retry_after is None else retry_after


# -- task outcome ------------------------------------------------------------------------------


def _response_body(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """The task's response body: ``record["response"]`` of a record, else the body itself."""
    inner = record.get("response")
    return inner if isinstance(inner, Mapping) else record


def task_state(record: Mapping[str, Any]) -> str | None:
    state = _response_body(record).get("state")
    return state.lower() if isinstance(state, str) else None


def _has_url(body: Mapping[str, Any]) -> bool:
    return any(
        (key == "url" or key.endswith("_url")) and isinstance(value, str) and bool(value)
        for key, value in body.items()
    )


def task_outcome(record: Mapping[str, Any]) -> Outcome:
    """Succeeded, failed or still running, as the hosted service's clients decide it
    (docs/contract.md §5)."""
    body = _response_body(record)
    state = task_state(record)
    if state in SUCCESS_STATES:
        return "succeeded"
    if state in FAILURE_STATES:
        return "failed"
    if body.get("success") is True and _has_url(body):
        return "succeeded"
    if body.get("success") is False and body.get("error"):
        return "failed"
    return "running"


# -- paging and polling ------------------------------------------------------------------------


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    return (items[start : start + size] for start in range(0, len(items), size))


class Pager:
    """Pages of ``retrieve_batch`` with filters, newest first; a task seen once is not repeated
    (new tasks shift the pages while we read them)."""

    def __init__(self, core: Core, filters: Record, page_size: int) -> None:
        if not 1 <= page_size <= 100:
            raise ValueError("page_size must be between 1 and 100")
        self._core = core
        self._filters = filters
        self._page_size = page_size
        self._offset = 0
        self._seen: set[Any] = set()
        self._done = False

    def next_page(self) -> Flow[list[Record]] | None:
        """The flow that fetches the next page and returns its new items; ``None`` at the end."""
        return None if self._done else self._fetch()

    def _fetch(self) -> Flow[list[Record]]:
        body = {**self._filters, "limit": self._page_size, "offset": self._offset}
        page = yield from self._core.call(TASKS_PATH, {"action": "retrieve_batch", **body})
        items = [item for item in page.get("items") or [] if isinstance(item, dict)]
        self._offset += len(items)
        count = page.get("count")
        self._done = not items or (isinstance(count, int) and self._offset >= count)
        fresh = [item for item in items if item.get("id") not in self._seen]
        self._seen.update(item.get("id") for item in fresh)
        return fresh


class PollSchedule:
    """When to retrieve a task next while waiting for it, and whether to long-poll."""

    def __init__(self, core: Core, timeout: float, poll_interval: float) -> None:
        self._core = core
        self._deadline = core.clock() + timeout
        self._poll_interval = poll_interval
        self._interval = poll_interval
        self.long_poll: bool | None = None  # None: not known yet

    def remaining(self) -> float:
        return self._deadline - self._core.clock()

    def window(self) -> float | None:
        """The ``wait`` to send with the next retrieve; ``None`` once long poll is known absent."""
        if self.long_poll is False:
            return None
        return round(max(0.0, min(LONG_POLL_WINDOW, self.remaining())), 3)

    def next_delay(
        self, response: httpx.Response, window: float | None, changed: bool, took: float
    ) -> float | None:
        """Seconds to pause before the next retrieve, or ``None`` when the time is up."""
        if window is not None:
            self.long_poll = response.headers.get(LONG_POLL_HEADER, "").strip() == "1"
        remaining = self.remaining()
        if remaining <= 0:
            return None
        # A long poll that came back with news, or after holding the request, goes on at once;
        # one that came back early with nothing new (a server that misbehaves) falls to backoff.
        if self.long_poll and window is not None and (changed or took >= window / 2):
            return 0.0
        self._interval = (
            self._poll_interval
            if changed
            else min(self._interval * POLL_BACKOFF, MAX_POLL_INTERVAL)
        )
        hint = parse_retry_after(response.headers.get("retry-after"))
        delay = hint if hint is not None else self._interval * (1 + 0.2 * self._core.retry.jitter())
        return min(delay, remaining)


# -- the core: configuration, request building and the flows of every operation ---------------


class Core:
    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        timeout: float | httpx.Timeout,
        max_retries: int,
        max_batch_size: int,
        clock: Callable[[], float] | None,
    ) -> None:
        if not token:
            raise ValueError("a token is required")
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.retry = RetryPolicy(max_retries=max_retries)
        self.max_batch_size = max_batch_size
        self.clock = clock or time.monotonic
        self.headers = {
            "authorization": f"Bearer {token}",
            "accept": "application/json",
            "user-agent": f"kling-gateway-python/{__version__}",
        }

    def build(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        min_read_timeout: float | None = None,
    ) -> httpx.Request:
        timeout = self.timeout.as_dict()
        if min_read_timeout is not None and timeout["read"] is not None:
            timeout["read"] = max(timeout["read"], min_read_timeout)
        return httpx.Request(
            "POST",
            self.base_url + path,
            json=dict(body),
            headers={**self.headers, **(headers or {})},
            extensions={"timeout": timeout},
        )

    def exchange(self, request: httpx.Request) -> Flow[httpx.Response]:
        """Send with retries; the final response (any status) or ``TransportError``."""
        attempt = 0
        while True:
            reply = yield Send(request)
            if reply is None:
                raise RuntimeError("a Send action must be answered with a reply")
            delay = self.retry.delay_after(reply, attempt)
            if delay is None:
                if isinstance(reply, httpx.TransportError):
                    raise TransportError(f"{type(reply).__name__}: {reply}") from reply
                return reply
            attempt += 1
            yield Sleep(delay)

    def call(self, path: str, body: Mapping[str, Any]) -> Flow[Record]:
        return decode((yield from self.exchange(self.build(path, body))))

    # -- operations --

    def create_video(
        self, fields: Mapping[str, Any], extra: Mapping[str, Any], idempotency_key: str | None
    ) -> Flow[Record]:
        return self.create(VIDEOS_PATH, fields, extra, idempotency_key)

    def create(
        self,
        path: str,
        fields: Mapping[str, Any],
        extra: Mapping[str, Any],
        idempotency_key: str | None,
    ) -> Flow[Record]:
        """A create call (``/kling/videos`` and the §7 endpoints): ``None`` fields left out,
        one ``Idempotency-Key`` across its retries."""
        body = {key: value for key, value in fields.items() if value is not None} | dict(extra)
        key = idempotency_key or str(uuid.uuid4())
        request = self.build(path, body, headers={"idempotency-key": key})
        return decode((yield from self.exchange(request)))

    def retrieve(self, task_id: str, wait: float | None) -> Flow[Record]:
        return decode((yield from self.exchange(self._retrieve_request(task_id, wait))))

    def _retrieve_request(self, task_id: str, wait: float | None) -> httpx.Request:
        body: Record = {"action": "retrieve", "id": task_id}
        if wait is None:
            return self.build(TASKS_PATH, body)
        return self.build(
            TASKS_PATH, body | {"wait": wait}, min_read_timeout=wait + LONG_POLL_READ_MARGIN
        )

    def retrieve_batch(self, ids: Iterable[str]) -> Flow[Record]:
        if isinstance(ids, str):
            raise TypeError("ids must be a collection of task ids, not a string")
        wanted = list(dict.fromkeys(ids))
        found: dict[str, Record] = {}
        for chunk in _chunks(wanted, self.max_batch_size):
            page = yield from self.call(TASKS_PATH, {"action": "retrieve_batch", "ids": chunk})
            for item in page.get("items") or []:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    found.setdefault(item["id"], item)
        items = [found[task_id] for task_id in wanted if task_id in found]
        return {"items": items, "count": len(items)}

    def delete(self, task_id: str) -> Flow[Record]:
        return (yield from self.call(TASKS_PATH, {"action": "delete", "id": task_id}))

    def wait(
        self, task_id: str, timeout: float, poll_interval: float, on_update: OnUpdate | None
    ) -> Flow[Record]:
        schedule = PollSchedule(self, timeout, poll_interval)
        record: Record = {}
        last_state: object = object()  # unlike any state: the first record is an update
        while True:
            window = schedule.window()
            started = self.clock()
            response = yield from self.exchange(self._retrieve_request(task_id, window))
            record = decode(response)
            if not record:  # the server answers {} for an id it does not know for this token
                raise TaskNotFoundError(task_id)
            state = task_state(record)
            changed = state != last_state
            last_state = state
            if changed and on_update is not None:
                on_update(record)
            if task_outcome(record) != "running":
                return record
            delay = schedule.next_delay(response, window, changed, self.clock() - started)
            if delay is None:
                raise WaitTimeoutError(
                    f"task {task_id} did not finish within {timeout} s", record=record
                )
            if delay > 0:
                yield Sleep(delay)


# -- the resources, written once for both clients ---------------------------------------------


class Runner(Protocol[R_co, It_co]):
    """What a client does with flows: ``_run`` one to its result, ``_paginate`` a ``Pager``."""

    def _run(self, flow: Flow[Record]) -> R_co: ...

    def _paginate(self, pages: Pager) -> It_co: ...


class Videos(Generic[R_co, It_co]):
    def __init__(self, core: Core, runner: Runner[R_co, It_co]) -> None:
        self._core = core
        self._runner = runner

    def create(
        self,
        prompt: str | None = None,
        *,
        action: VideoAction = "text2video",
        model: VideoModel | str | None = None,
        mode: VideoMode | None = None,
        duration: float | None = None,
        aspect_ratio: AspectRatio | None = None,
        negative_prompt: str | None = None,
        cfg_scale: float | None = None,
        camera_control: Mapping[str, Any] | None = None,
        generate_audio: bool | None = None,
        start_image_url: str | None = None,
        end_image_url: str | None = None,
        video_id: str | None = None,
        callback_url: str | None = None,
        async_: bool | None = None,
        idempotency_key: str | None = None,
        image_list: Sequence[Mapping[str, Any]] | None = None,
        video_list: Sequence[Mapping[str, Any]] | None = None,
        multi_shot: bool | None = None,
        shot_type: ShotType | None = None,
        multi_prompt: Sequence[Mapping[str, Any]] | None = None,
        element_list: Sequence[Mapping[str, Any]] | None = None,
        voice_list: Sequence[Mapping[str, Any]] | None = None,
        **extra: Any,
    ) -> R_co:
        """Create a video task (``POST /kling/videos``); fields left ``None`` are not sent.

        Blocking unless ``callback_url`` is given or ``async_`` is true; the result is then
        ``{"task_id", "trace_id"}``. ``extra`` fields are sent as given. The ``Idempotency-Key``
        header (a new uuid4 unless given) stays the same across the retries of this call.
        ``image_list`` ... ``voice_list`` are the §6 shapes (docs/contract.md §6): Omni
        references, storyboards, and your own elements and voices.
        """
        fields = {
            "action": action,
            "model": model,
            "prompt": prompt,
            "negative_prompt": negative_prompt,
            "mode": mode,
            "duration": duration,
            "aspect_ratio": aspect_ratio,
            "cfg_scale": cfg_scale,
            "camera_control": dict(camera_control) if camera_control is not None else None,
            "generate_audio": generate_audio,
            "start_image_url": start_image_url,
            "end_image_url": end_image_url,
            "video_id": video_id,
            "callback_url": callback_url,
            "async": async_,
            "image_list": _items(image_list),
            "video_list": _items(video_list),
            "multi_shot": multi_shot,
            "shot_type": shot_type,
            "multi_prompt": _items(multi_prompt),
            "element_list": _items(element_list),
            "voice_list": _items(voice_list),
        }
        return self._runner._run(self._core.create_video(fields, extra, idempotency_key))


def _items(items: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]] | None:
    return None if items is None else [dict(item) for item in items]


class Tasks(Generic[R_co, It_co]):
    def __init__(self, core: Core, runner: Runner[R_co, It_co]) -> None:
        self._core = core
        self._runner = runner

    def retrieve(self, id: str, wait: float | None = None) -> R_co:
        """The task record, or ``{}`` when the id is unknown. ``wait`` (seconds, a server
        extension) is sent only when given."""
        return self._runner._run(self._core.retrieve(id, wait))

    def retrieve_batch(self, ids: Iterable[str]) -> R_co:
        """``{"items", "count"}`` in the order asked, duplicates once, unknown ids left out;
        sent in chunks of at most ``max_batch_size`` ids."""
        return self._runner._run(self._core.retrieve_batch(ids))

    def delete(self, id: str) -> R_co:
        return self._runner._run(self._core.delete(id))

    def wait(
        self,
        id: str,
        timeout: float = 600,
        poll_interval: float = 3,
        on_update: OnUpdate | None = None,
    ) -> R_co:
        """Wait until the task succeeds or fails and return its final record (either way).

        Long-polls where the server supports it, else polls from ``poll_interval`` seconds up
        with backoff and jitter. ``on_update(record)`` runs whenever the state changes.
        Raises ``WaitTimeoutError`` after ``timeout`` seconds, and ``TaskNotFoundError`` at
        once when the server does not know the id (missing, deleted or another user's).
        """
        return self._runner._run(self._core.wait(id, timeout, poll_interval, on_update))

    def list(
        self,
        type: str | None = None,
        created_at_min: float | None = None,
        created_at_max: float | None = None,
        page_size: int = 100,
    ) -> It_co:
        """Every matching task record, newest first, fetched ``page_size`` at a time."""
        filters = {"type": type, "created_at_min": created_at_min, "created_at_max": created_at_max}
        present = {key: value for key, value in filters.items() if value is not None}
        return self._runner._paginate(Pager(self._core, present, page_size))
