"""The ``kling`` provider: runs tasks on the official Kling API.

``submit`` first looks the task up by ``external_task_id`` (our task id), so a resubmission
after a crash or a lost create answer finds the earlier job instead of paying for a second one.
video-extend has no ``external_task_id`` upstream: after an interrupted earlier submit (the
worker's submit marker, ``steps.MarksSubmits``) its job is looked for in the list by source
video and creation time instead. ``check`` maps the upstream task to a ``Status``; concurrent
checks are coalesced by a ``CheckBatcher``: many waiting at once are answered from the list
endpoint. ``materialize`` copies a finished MP4 into ``VideoFiles`` (upstream result URLs are
deleted after 30 days); the worker runs it outside the per-call deadline.

Result URLs come from the upstream, and the copy lands in public ``/files``: downloads go
through the egress guard, so a result URL on a loopback or private address is refused (its
content would otherwise be published). The origin of ``--kling-base-url`` is trusted (a
loopback fake upstream serves its own results), and ``download_allow_private`` (the operator's
``--callback-allow-private``) lets private addresses through.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from kling_gateway.domain.outcomes import ProviderError, Status, Step, Submission, VideoResult
from kling_gateway.domain.task import Task
from kling_gateway.domain.transitions import earlier_submit_at
from kling_gateway.domain.videos import params_of
from kling_gateway.infra.egress import GuardedTransport, UnsafeTarget, origin_of
from kling_gateway.infra.files import VideoFiles
from kling_gateway.infra.objects import ObjectStoreError
from kling_gateway.protocol.task import TASK_TYPE_VIDEOS, TaskState
from kling_gateway.providers.base import require_own_video
from kling_gateway.providers.kling.batch import BatchConfig, CheckBatcher
from kling_gateway.providers.kling.callbacks import status_from_callback
from kling_gateway.providers.kling.client import (
    MAX_PAGE_NUM,
    MAX_PAGE_SIZE,
    KlingClient,
    KlingClientConfig,
)
from kling_gateway.providers.kling.kind_steps import KindSteps
from kling_gateway.providers.kling.mapping import (
    KIND_VIDEO_EXTEND,
    KINDS,
    build_create,
    created_at_ms,
    job_id_of,
    kind_for,
    parent_video_id,
    status_from_task,
)
from kling_gateway.storage.base import Store

_LOOKUP_AFTER_CREATE_ERROR = frozenset({"invalid_request"})
# How far Kling's clock (created_at) may lag ours when an interrupted video-extend's job is
# looked for: a job created up to this long before the submit marker still counts.
EXTEND_CLOCK_SKEW = 30.0


@dataclass(frozen=True, slots=True)
class KlingProviderConfig:
    client: KlingClientConfig
    # The gateway's own endpoint for Kling's callbacks (never a client's callback_url).
    callback_url: str | None = None
    download_results: bool = True
    max_download_bytes: int = 512 * 1024 * 1024
    # Seconds one result copy may take in all (the worker holds the task's lease for it).
    download_timeout: float = 300.0
    # Let result downloads reach loopback/private addresses other than the API's own.
    download_allow_private: bool = False
    # ``Status.next_check_in`` for tasks still in progress (None: the worker's own backoff).
    poll_interval: float | None = None
    # How concurrent checks are coalesced (its ``max_pages`` caps the batched sweeps).
    batch: BatchConfig = field(default_factory=BatchConfig)


class KlingProvider:
    """The Provider of the official Kling API."""

    name = "kling"

    def __init__(
        self,
        config: KlingProviderConfig,
        *,
        store: Store,
        files: VideoFiles | None = None,
        client: KlingClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if config.download_results and files is None:
            raise ValueError("download_results needs a VideoFiles")
        self._config = config
        self._store = store
        self._files = files
        self._client = client if client is not None else KlingClient(config.client, clock=clock)
        self._batcher = CheckBatcher(self._get_status, self._list_statuses, config.batch)
        self._kinds = KindSteps(
            create_once=self._job_once,
            status_of=self._job_status,
            call=self._client.call,
            own_video=self._own_video,
            callback_url=config.callback_url,
            clock=clock,
        )
        guard = GuardedTransport(
            config.download_allow_private,
            trusted=[origin_of(config.client.base_url)],
            max_connections=config.client.max_connections,
        )
        # No redirects followed: a hop could lead anywhere (each one would be checked, but a
        # result URL that redirects is not what the upstream sends).
        self._downloads = httpx.AsyncClient(
            transport=guard, follow_redirects=False, trust_env=False
        )

    @property
    def client(self) -> KlingClient:
        return self._client

    @property
    def batcher(self) -> CheckBatcher:
        return self._batcher

    async def aclose(self) -> None:
        await self._batcher.aclose()
        await self._client.aclose()
        await self._downloads.aclose()

    # --- submit --------------------------------------------------------------------------

    async def submit(self, task: Task) -> Submission | Step:
        if task.type != TASK_TYPE_VIDEOS:
            return await self._kinds.submit(task)
        kind, body = build_create(
            params_of(task), task_id=task.id, callback_url=self._config.callback_url
        )
        if kind == KIND_VIDEO_EXTEND:
            return await self._submit_extend(task, body)
        job_id, reused = await self._create_once(kind, task.id, body)
        data: dict[str, Any] = {"kind": kind, "reused": True} if reused else {"kind": kind}
        return Submission(job_id=job_id, provider_data=data)

    async def _create_once(
        self, kind: str, external_id: str, body: dict[str, Any]
    ) -> tuple[str, bool]:
        """``(job id, found)`` of the one job ``external_id`` names: looked up first (a create
        whose answer was lost), created only when there is none."""
        if (found := await self._lookup(kind, external_id)) is not None:
            return found.job_id, True
        try:
            created = await self._client.create(kind, body)
        except ProviderError as exc:
            # A concurrent submit may have won the race for this external_task_id.
            if exc.code in _LOOKUP_AFTER_CREATE_ERROR:
                found = await self._lookup(kind, external_id)
                if found is not None:
                    return found.job_id, True
            raise
        return job_id_of(created), False

    async def _job_once(self, kind: str, external_id: str, body: dict[str, Any]) -> str:
        return (await self._create_once(kind, external_id, body))[0]

    async def _own_video(self, user_id: str, video_id: str) -> str:
        return await require_own_video(self._store, user_id, video_id)

    def needs_submit_marker(self, task: Task) -> bool:
        """video-extend only: the other kinds are found again by ``external_task_id``."""
        if task.type != TASK_TYPE_VIDEOS:
            return False
        try:
            return kind_for(params_of(task)) == KIND_VIDEO_EXTEND
        except ProviderError:
            return False  # the submit itself reports the bad request

    async def _submit_extend(self, task: Task, body: dict[str, Any]) -> Submission:
        video_id = str(body.get("video_id") or "")
        # Only the caller's own video, and checked before anything is sent (or paid for).
        await require_own_video(self._store, task.user_id, video_id)
        since = earlier_submit_at(task)
        if since is not None and (found := await self._find_extend(video_id, since)):
            return found
        created = await self._client.create(KIND_VIDEO_EXTEND, body)
        return Submission(job_id=job_id_of(created), provider_data={"kind": KIND_VIDEO_EXTEND})

    async def _find_extend(self, video_id: str, since: float) -> Submission | None:
        """The job an interrupted earlier submit of an extend of ``video_id`` created, if any.

        Recognised by its source video and creation time: the first extend of that video
        created since the first submit began; failing that (Kling's clock behind ours), the
        last one created within ``EXTEND_CLOCK_SKEW`` before it.
        """
        since_ms = since * 1000
        recent = self._recent_extends(since_ms - EXTEND_CLOCK_SKEW * 1000)
        seen = [
            (created, item) async for created, item in recent if parent_video_id(item) == video_id
        ]
        return _reused(KIND_VIDEO_EXTEND, _pick_extend(seen, since_ms))

    async def _recent_extends(
        self, cutoff_ms: float
    ) -> AsyncIterator[tuple[float, dict[str, Any]]]:
        """``(created_at, task)`` of the video-extend tasks created since ``cutoff_ms``. Pages
        are newest first, so reading stops at the first older task (or the page cap)."""
        for page in range(1, min(self._config.batch.max_pages, MAX_PAGE_NUM) + 1):
            items = await self._client.list(KIND_VIDEO_EXTEND, page, MAX_PAGE_SIZE)
            for item in items:
                created = created_at_ms(item)
                if created is None:
                    continue
                if created < cutoff_ms:
                    return
                yield created, item
            if len(items) < MAX_PAGE_SIZE:
                return

    async def _lookup(self, kind: str, task_id: str) -> Submission | None:
        try:
            existing = await self._client.get_by_external_id(kind, task_id)
        except ValueError as exc:
            raise ProviderError(str(exc), code="invalid_task_id") from exc
        return _reused(kind, existing)

    # --- check ---------------------------------------------------------------------------

    async def check(self, task: Task) -> Status | Step:
        if not task.job_id:
            raise ProviderError("the task has no upstream job id", code="no_job_id")
        if task.type != TASK_TYPE_VIDEOS:
            return await self._kinds.check(task, task.job_id)
        return await self._job_status(_kind_of(task), task.job_id)

    async def _job_status(self, kind: str, job_id: str) -> Status:
        return self._paced(await self._batcher.status(kind, job_id))

    async def _get_status(self, kind: str, job_id: str) -> Status:
        try:
            data = await self._client.get(kind, job_id)
        except ValueError as exc:
            raise ProviderError(str(exc), code="invalid_job_id") from exc
        return status_from_task(data)

    def _paced(self, status: Status) -> Status:
        if status.state is TaskState.PROCESSING and self._config.poll_interval is not None:
            status.next_check_in = self._config.poll_interval
        return status

    async def _list_statuses(
        self, kind: str, wanted: set[str], max_pages: int
    ) -> tuple[dict[str, Status], int]:
        """The statuses of ``wanted`` jobs seen in the first pages; and how many pages read."""
        if kind not in KINDS:
            raise ProviderError(f"unknown kling kind {kind!r}", code="unsupported_action")
        found: dict[str, Status] = {}
        pages = 0
        while pages < min(max_pages, MAX_PAGE_NUM) and len(found) < len(wanted):
            pages += 1
            items = await self._client.list(kind, pages, MAX_PAGE_SIZE)
            for item in items:
                _collect(item, wanted, found)
            if len(items) < MAX_PAGE_SIZE:
                break
        return found, pages

    def status_from_callback(self, payload: Any) -> tuple[str | None, str, Status]:
        """``(external_task_id, job_id, status)`` of a callback Kling POSTed to the gateway
        (see ``callbacks.status_from_callback``). No download happens here."""
        external_id, job_id, status = status_from_callback(payload)
        return external_id, job_id, self._paced(status)

    # --- results -------------------------------------------------------------------------

    @property
    def fetch_timeout(self) -> float | None:
        """How long ``materialize`` may take (None: results are not copied)."""
        return self._config.download_timeout if self._config.download_results else None

    async def materialize(self, status: Status) -> Status:
        """Copy a SUCCEED status's video into ``VideoFiles`` when configured to.

        Returns the status with our own URL; leaves other statuses (and videos whose id cannot
        name a file) unchanged.
        """
        video = status.video
        if status.state is not TaskState.SUCCEED or video is None:
            return status
        if not self._config.download_results or self._files is None:
            return status
        try:
            self._files.key_for(video.video_id)
        except ValueError:
            return status
        try:
            await self._copy_once(video.video_url, video.video_id)
            source_url = await self._copy_source(video)
        except ObjectStoreError as exc:
            # Unreachable storage: retried with backoff; Kling keeps the result for 30 days.
            raise ProviderError(
                f"could not store the result video: {exc}", code="storage_error", retryable=True
            ) from exc
        extra = dict(status.provider_data or {})
        extra["upstream_url"] = video.video_url
        ours = replace(
            video, video_url=self._files.url_for(video.video_id), source_video_url=source_url
        )
        return replace(status, video=ours, provider_data=extra)

    async def _copy_once(self, url: str, video_id: str) -> None:
        assert self._files is not None  # materialize copies only with a VideoFiles
        stored = await self._files.stat(video_id)
        if stored is None or stored.size == 0:
            await self._download(url, video_id)

    async def _copy_source(self, video: VideoResult) -> str | None:
        """A talking photo's silent animation, copied like the video (§7); its URL here."""
        assert self._files is not None
        if video.source_video_id is None or video.source_video_url is None:
            return video.source_video_url
        try:
            self._files.key_for(video.source_video_id)
        except ValueError:
            return video.source_video_url
        await self._copy_once(video.source_video_url, video.source_video_id)
        return self._files.url_for(video.source_video_id)

    async def _download(self, url: str, video_id: str) -> None:
        """Stream the result into a scratch file, then publish it to the object store."""
        assert self._files is not None  # materialize only downloads with a VideoFiles
        part = self._files.scratch_path(video_id, ".part")
        try:
            await self._stream_to(url, part)
            await self._files.publish(video_id, part)
        except OSError as exc:
            raise ProviderError(
                f"could not store the result video: {exc}", code="storage_error", retryable=True
            ) from exc
        finally:
            await asyncio.to_thread(_unlink_quietly, part)

    async def _stream_to(self, url: str, part: Path) -> None:
        timeout = httpx.Timeout(self._config.download_timeout, connect=10.0)
        try:
            async with self._downloads.stream("GET", url, timeout=timeout) as response:
                _check_download(response, self._config.max_download_bytes)
                await asyncio.to_thread(part.parent.mkdir, parents=True, exist_ok=True)
                sink = await asyncio.to_thread(_open_binary, part)
                try:
                    await self._copy(response, sink)
                finally:
                    await asyncio.to_thread(sink.close)
        except UnsafeTarget as exc:
            # The guard's words are about callbacks; the address they name is what matters.
            where = str(exc).removeprefix("callback ")
            raise ProviderError(
                f"the result video URL was refused: {where}", code="download_refused"
            ) from exc
        except httpx.TimeoutException as exc:
            raise ProviderError(
                "downloading the result video timed out", code="download_timeout", retryable=True
            ) from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ProviderError(
                f"downloading the result video failed: {type(exc).__name__}",
                code="download_failed",
                retryable=True,
            ) from exc

    async def _copy(self, response: httpx.Response, sink: BinaryIO) -> None:
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._config.max_download_bytes:
                raise _too_large(self._config.max_download_bytes)
            await asyncio.to_thread(sink.write, chunk)


def _pick_extend(
    seen: list[tuple[float, dict[str, Any]]], since_ms: float
) -> dict[str, Any] | None:
    """The first candidate created at or after ``since_ms``, else the last one before it."""
    after = [c for c in seen if c[0] >= since_ms]
    if after:
        return min(after, key=lambda c: c[0])[1]
    return max(seen, key=lambda c: c[0])[1] if seen else None


def _reused(kind: str, task: dict[str, Any] | None) -> Submission | None:
    """The submission of a job an earlier submit created (None: there is none)."""
    if task is None:
        return None
    return Submission(job_id=job_id_of(task), provider_data={"kind": kind, "reused": True})


def _kind_of(task: Task) -> str:
    kind = task.provider_data.get("kind")
    if isinstance(kind, str) and kind in KINDS:
        return kind
    return kind_for(params_of(task))


def _collect(item: dict[str, Any], wanted: set[str], found: dict[str, Status]) -> None:
    try:
        job_id = job_id_of(item)
        if job_id in wanted and job_id not in found:
            found[job_id] = status_from_task(item)
    except ProviderError:
        return


def _too_large(limit: int) -> ProviderError:
    return ProviderError(f"the result video is larger than {limit} bytes", code="result_too_large")


def _check_download(response: httpx.Response, limit: int) -> None:
    status = response.status_code
    if status in (403, 404, 410):
        raise ProviderError(
            f"the result video is no longer available upstream (HTTP {status})",
            code="result_unavailable",
        )
    if status != 200:
        raise ProviderError(
            f"downloading the result video answered HTTP {status}",
            code="download_failed",
            retryable=True,
        )
    length = response.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _too_large(limit)


def _open_binary(path: Path) -> BinaryIO:
    return path.open("wb")


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
