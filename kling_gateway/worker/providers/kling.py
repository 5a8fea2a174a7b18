"""The ``kling`` provider: runs tasks on the official Kling API.

``submit`` first looks the task up by ``external_task_id`` (our task id), so a resubmission
after a crash or a lost create answer finds the earlier job instead of paying for a second one.
``check`` maps the upstream task to a ``Status`` and, when configured, copies the finished MP4
into ``VideoFiles`` (upstream result URLs are deleted after 30 days). Concurrent checks are
coalesced by a ``CheckBatcher``: many waiting at once are answered from the list endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from kling_gateway.files import VideoFiles
from kling_gateway.models import Task, TaskState
from kling_gateway.worker.providers.base import ProviderError, Status, Submission, VideoResult
from kling_gateway.worker.providers.kling_batch import BatchConfig, CheckBatcher
from kling_gateway.worker.providers.kling_client import (
    MAX_PAGE_NUM,
    MAX_PAGE_SIZE,
    KlingClient,
    KlingClientConfig,
)
from kling_gateway.worker.providers.kling_mapping import (
    KIND_VIDEO_EXTEND,
    KINDS,
    build_create,
    job_id_of,
    kind_for_request,
    status_from_callback,
    status_from_task,
)

_LOOKUP_AFTER_CREATE_ERROR = frozenset({"invalid_request"})


@dataclass(frozen=True, slots=True)
class KlingProviderConfig:
    client: KlingClientConfig
    # The gateway's own endpoint for Kling's callbacks (never a client's callback_url).
    callback_url: str | None = None
    download_results: bool = True
    max_download_bytes: int = 512 * 1024 * 1024
    download_timeout: float = 120.0
    # How many list pages (of up to 500 tasks) ``refresh_many`` reads at most.
    list_max_pages: int = 4
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
        files: VideoFiles | None = None,
        client: KlingClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if config.download_results and files is None:
            raise ValueError("download_results needs a VideoFiles")
        self._config = config
        self._files = files
        self._client = client if client is not None else KlingClient(config.client, clock=clock)
        self._batcher = CheckBatcher(self._get_status, self._list_statuses, config.batch)

    @property
    def client(self) -> KlingClient:
        return self._client

    @property
    def batcher(self) -> CheckBatcher:
        return self._batcher

    async def aclose(self) -> None:
        await self._batcher.aclose()
        await self._client.aclose()

    # --- submit --------------------------------------------------------------------------

    async def submit(self, task: Task) -> Submission:
        kind, body = build_create(
            task.request, task_id=task.id, callback_url=self._config.callback_url
        )
        # video-extend has no external_task_id upstream: nothing to look up by.
        lookup = kind != KIND_VIDEO_EXTEND
        if lookup and (found := await self._lookup(kind, task.id)) is not None:
            return found
        try:
            created = await self._client.create(kind, body)
        except ProviderError as exc:
            # A concurrent submit may have won the race for this external_task_id.
            if lookup and exc.code in _LOOKUP_AFTER_CREATE_ERROR:
                found = await self._lookup(kind, task.id)
                if found is not None:
                    return found
            raise
        return Submission(job_id=job_id_of(created), provider_data={"kind": kind})

    async def _lookup(self, kind: str, task_id: str) -> Submission | None:
        try:
            existing = await self._client.get_by_external_id(kind, task_id)
        except ValueError as exc:
            raise ProviderError(str(exc), code="invalid_task_id") from exc
        if existing is None:
            return None
        return Submission(job_id=job_id_of(existing), provider_data={"kind": kind, "reused": True})

    # --- check ---------------------------------------------------------------------------

    async def check(self, task: Task) -> Status:
        if not task.job_id:
            raise ProviderError("the task has no upstream job id", code="no_job_id")
        status = await self._batcher.status(_kind_of(task), task.job_id)
        return await self.materialize(self._paced(status))

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

    async def refresh_many(self, kind: str, job_ids: Iterable[str]) -> dict[str, Status]:
        """Statuses of many jobs from the list endpoint (pages of 500, newest first).

        Jobs not found within ``list_max_pages`` pages, or whose entry cannot be mapped, are
        left out: check those one by one. Finished videos are not downloaded here; pass a
        SUCCEED status through ``materialize`` (or call ``check``) before storing it.
        """
        found, _ = await self._list_statuses(kind, set(job_ids), self._config.list_max_pages)
        for status in found.values():
            self._paced(status)
        return found

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
        (see ``kling_mapping.status_from_callback``). No download happens here."""
        external_id, job_id, status = status_from_callback(payload)
        return external_id, job_id, self._paced(status)

    # --- results -------------------------------------------------------------------------

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
            target = self._files.path_for(video.video_id)
        except ValueError:
            return status
        if not await asyncio.to_thread(_has_content, target):
            await self._download(video.video_url, target)
        extra = dict(status.provider_data or {})
        extra["upstream_url"] = video.video_url
        ours = VideoResult(
            video_id=video.video_id,
            video_url=self._files.url_for(video.video_id),
            duration=video.duration,
        )
        return replace(status, video=ours, provider_data=extra)

    async def _download(self, url: str, target: Path) -> None:
        part = target.with_name(f"{target.name}.{uuid.uuid4().hex}.part")
        try:
            await self._stream_to(url, part)
            await asyncio.to_thread(part.replace, target)
        except OSError as exc:
            raise ProviderError(
                f"could not store the result video: {exc}", code="storage_error", retryable=True
            ) from exc
        finally:
            await asyncio.to_thread(_unlink_quietly, part)

    async def _stream_to(self, url: str, part: Path) -> None:
        timeout = httpx.Timeout(self._config.download_timeout, connect=10.0)
        try:
            async with self._client.http.stream("GET", url, timeout=timeout) as response:
                _check_download(response, self._config.max_download_bytes)
                await asyncio.to_thread(part.parent.mkdir, parents=True, exist_ok=True)
                sink = await asyncio.to_thread(_open_binary, part)
                try:
                    await self._copy(response, sink)
                finally:
                    await asyncio.to_thread(sink.close)
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


def _kind_of(task: Task) -> str:
    kind = task.provider_data.get("kind")
    if isinstance(kind, str) and kind in KINDS:
        return kind
    return kind_for_request(task.request)


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


def _has_content(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _open_binary(path: Path) -> BinaryIO:
    return path.open("wb")


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
