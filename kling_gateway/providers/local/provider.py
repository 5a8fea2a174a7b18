"""The ``local`` provider, the default: renders each task into a real MP4 on this machine.

No upstream and no cost: ``submit`` only plans the job (when it becomes ready, and the video id
it will produce: random, since the id is the public file name and must not follow from the task
id; the plan is kept on the task, so a resubmission is the same job). The first check reports
``processing`` at once (so ``callback_events: ["processing"]`` fires offline too), and the
first check after that and after ``ready_at`` renders the video with ``render.render_video``.
The ``delay`` stands in for the time a real generation takes. With ``render=False`` no file is
written at all; that mode exists to bench the task machinery, not to serve videos.

Motion, lip-sync and talking-photo tasks (docs/contract.md §7) render through ``kinds.py``
with the same plan, pool and publishing; a talking photo's plan holds a second video id, that
of its silent animation (``source_video_url``), published before the video itself.

Renders run in a bounded thread pool of their own (``render_threads``, default the CPU count),
never in the loop's default executor: that one also runs ``getaddrinfo``, and a burst of
renders there would hold every DNS lookup (the SSRF check of a create) behind them.

A task deleted while its video renders gets no file: the render looks the task up after its
file landed and removes the file when the task is gone (the delete removes the file it knows).

Renders are single-flight per video id: the worker runs each check under a deadline, and a
4K or long render can outlive it. The render is an asyncio task of its own, shielded from the
caller's cancellation, so the thread keeps going and the next check awaits that same render
instead of starting a second one (two workers rendering one video each write a part file of
their own, so a lost lease cannot publish a corrupt MP4).

Images are fetched through the egress guard (``infra.egress.GuardedTransport``): unless
``allow_private``, a URL whose host resolves to a loopback, private or link-local address is
refused, on the address actually connected to (so DNS rebinding cannot get around it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar, cast

import httpx

from kling_gateway.domain.outcomes import ProviderError, Status, Submission, VideoResult
from kling_gateway.domain.params import PARAMS_BY_TYPE, TalkingPhotoParams, TaskParams, VideoParams
from kling_gateway.domain.task import Task, params_as
from kling_gateway.domain.videos import params_of
from kling_gateway.infra.egress import GuardedTransport
from kling_gateway.infra.fetch import FetchError, fetch_bytes
from kling_gateway.infra.files import VideoFiles
from kling_gateway.infra.objects import ObjectNotFound, ObjectStoreError
from kling_gateway.protocol.task import TaskState, format_seconds
from kling_gateway.providers.base import require_own_video
from kling_gateway.providers.local.kinds import KindRenderer
from kling_gateway.providers.local.references import OmniInputs, fetch_omni, shots_of
from kling_gateway.providers.local.render import (
    AspectRatio,
    Mode,
    RenderedVideo,
    RenderError,
    RenderSpec,
    probe_video,
    render_video,
)
from kling_gateway.storage.base import Store

_P = ParamSpec("_P")
_R = TypeVar("_R")

# Fixed forever: job ids of existing tasks are derived from it.
NAMESPACE = uuid.UUID("6f0f4a0e-2c55-5a43-9a35-7d1c0e5b8f21")
JOB_PREFIX = "local-"


def job_id_for(task_id: str) -> str:
    return JOB_PREFIX + str(uuid.uuid5(NAMESPACE, f"job:{task_id}"))


def new_video_id() -> str:
    """A fresh, unguessable video id (it names the public file /files/videos/<id>.mp4)."""
    return str(uuid.uuid4())


class LocalProvider:
    """The Provider that renders videos itself (see the module docstring)."""

    name = "local"

    def __init__(
        self,
        *,
        files: VideoFiles,
        store: Store,
        delay: float,
        render: bool = True,
        max_side: int | None = None,
        fps: int = 24,
        image_max_bytes: int = 20_000_000,
        fetch_timeout: float = 10.0,
        http: httpx.AsyncClient | None = None,
        allow_private: bool = False,
        render_threads: int = 0,
        renderer: Callable[[Path, RenderSpec], RenderedVideo] = render_video,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``allow_private`` lets image URLs reach loopback/private addresses (it only shapes
        the client built here, not a given ``http``); ``render_threads`` bounds the renders
        run at once (0: the CPU count); ``renderer`` replaces render_video (tests)."""
        if not (math.isfinite(delay) and delay >= 0):
            raise ValueError(f"delay must be a non-negative number of seconds, not {delay}")
        if image_max_bytes < 1 or not fetch_timeout > 0:
            raise ValueError("image_max_bytes and fetch_timeout must be positive")
        if render_threads < 0:
            raise ValueError(
                f"render_threads must be 0 (the CPU count) or more, not {render_threads}"
            )
        self._files = files
        self._store = store
        self._delay = delay
        self._render = render
        self._max_side = max_side
        self._fps = fps
        self._image_max_bytes = image_max_bytes
        self._fetch_timeout = fetch_timeout
        self._renderer = renderer
        self._clock = clock
        # The renders in progress, by video id (see the module docstring).
        self._renders: dict[str, asyncio.Task[float]] = {}
        self._pool = ThreadPoolExecutor(
            render_threads or os.cpu_count() or 1, thread_name_prefix="local-render"
        )
        self._owns_http = http is None
        # trust_env=False: settings come from the caller, never from proxy variables.
        self._http = http or httpx.AsyncClient(
            transport=GuardedTransport(allow_private), follow_redirects=False, trust_env=False
        )
        # Motion, lip-sync and talking-photo (docs/contract.md §7).
        self._kinds = KindRenderer(
            http=self._http, image_max_bytes=image_max_bytes, timeout=fetch_timeout,
            run=self._run, load_source=self._source, fps=fps, max_side=max_side,
        )  # fmt: skip

    async def aclose(self) -> None:
        # A render's thread cannot be stopped (it finishes its file in the background); its
        # task can, so none is left pending.
        renders = list(self._renders.values())
        for render in renders:
            render.cancel()
        await asyncio.gather(*renders, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._owns_http:
            await self._http.aclose()

    # --- submit --------------------------------------------------------------------------

    async def submit(self, task: Task) -> Submission:
        try:
            return self._submit(task)
        except ProviderError:
            raise
        except Exception as exc:
            raise _unexpected("planning", exc) from exc

    def _submit(self, task: Task) -> Submission:
        params = _params(task)
        # A resubmission of a job whose plan was kept keeps its ready time and video id.
        ready_at = _ready_at(task)
        if ready_at is None:
            ready_at = self._clock() + self._delay
        data = _plan(task, params, ready_at)
        # The first check comes at once, not after the worker's usual interval: it reports
        # `processing` and asks for the next one when the video is due.
        return Submission(job_id=job_id_for(task.id), provider_data=data, next_check_in=0.0)

    # --- check ---------------------------------------------------------------------------

    async def check(self, task: Task) -> Status:
        try:
            return await self._check(task)
        except ProviderError:
            raise
        except Exception as exc:
            # A bug or a passing fault (disk full, store down): worth another try later.
            raise _unexpected("rendering", exc) from exc

    async def _check(self, task: Task) -> Status:
        params = _params(task)
        now = self._clock()
        ready_at, video_id = _ready_at(task), _video_id(task)
        if ready_at is None or video_id is None:
            # No plan (a task submitted elsewhere, or its scratch data lost): one now, ready now.
            plan = _plan(task, params, now)
            return Status(TaskState.PROCESSING, next_check_in=0.0, provider_data=plan)
        # `processing` is reported before anything else happens, and stays until the video is
        # there: through the simulated delay and the render.
        if task.state is TaskState.PENDING or now < ready_at:
            return Status(TaskState.PROCESSING, next_check_in=max(0.0, ready_at - now))
        if not self._render:
            return self._succeeded(task, video_id, _nominal_seconds(params))
        seconds = await self._produce(task, params, video_id)
        return self._succeeded(task, video_id, seconds)

    def _succeeded(self, task: Task, video_id: str, seconds: float) -> Status:
        url = self._files.url_for(video_id)
        silent = _source_video_id(task)
        video = VideoResult(
            video_id=video_id, video_url=url, duration=format_seconds(seconds),
            source_video_id=silent,
            source_video_url=None if silent is None else self._files.url_for(silent),
        )  # fmt: skip
        return Status(TaskState.SUCCEED, video=video)

    async def _produce(self, task: Task, params: TaskParams, video_id: str) -> float:
        """The measured seconds of the video of ``task``, rendered by the one render of it.

        Joins the render already in progress for ``video_id`` or starts it. Cancelling the
        caller (its deadline) leaves the render running for the next check to await.
        """
        render = self._renders.get(video_id)
        if render is None:
            render = asyncio.create_task(
                self._render_once(task, params, video_id), name=f"render-{video_id}"
            )
            self._renders[video_id] = render
            render.add_done_callback(lambda done: self._render_done(video_id, done))
        return await asyncio.shield(render)

    def running_job(self, task: Task) -> asyncio.Future[Any] | None:
        """The render still running for ``task`` (``providers.base.RunsJobs``): the worker keeps
        the task's lease while it is alive, so no other worker starts it again."""
        video_id = _video_id(task)
        return None if video_id is None else self._renders.get(video_id)

    def _render_done(self, video_id: str, render: asyncio.Task[float]) -> None:
        if self._renders.get(video_id) is render:
            del self._renders[video_id]
        # Mark the outcome seen: when every caller was cancelled nobody awaits it, and the
        # next check finds the file (or renders again after a failure).
        if not render.cancelled():
            render.exception()

    async def _render_once(self, task: Task, params: TaskParams, video_id: str) -> float:
        """Render the video of ``task`` (or find it rendered already); its measured seconds.

        The render goes to a scratch file of this process and is published to the object
        store when complete; a store that cannot be reached is a retryable failure. A talking
        photo's silent animation is published first, so a published video means both are.
        """
        silent_id = _source_video_id(task)
        try:
            existing = await self._published(video_id)
            if existing is not None:
                return existing
            path = self._files.scratch_path(video_id)
            silent = self._files.scratch_path(silent_id or video_id, ".silent.mp4")
            try:
                if isinstance(params, VideoParams):
                    result = await self._render_video(task, params, path)
                else:
                    result = await self._kinds.render(task.user_id, params, path, silent)
                if silent_id is not None:
                    await self._files.publish(silent_id, silent)
                await self._files.publish(video_id, path)
            finally:
                await asyncio.to_thread(_unlink_quietly, path)
                await asyncio.to_thread(_unlink_quietly, silent)
        except RenderError as exc:
            raise ProviderError(str(exc), code="render_failed") from exc
        except ObjectStoreError as exc:
            raise _storage_error(exc) from exc
        if await self._store.load_task(task.id) is None:
            # Deleted while rendering: its delete found no file to remove, so remove it here.
            for stale in (video_id, silent_id):
                if stale is not None:
                    await self._files.remove(stale)
            raise ProviderError("the task was deleted while its video rendered", code="deleted")
        return result.duration

    async def _render_video(self, task: Task, params: VideoParams, path: Path) -> RenderedVideo:
        """A /kling/videos render (docs/contract.md §2, §6) of ``task`` at ``path``."""
        omni = await fetch_omni(
            self._http, params, image_max_bytes=self._image_max_bytes, timeout=self._fetch_timeout
        )
        source: Path | None = None
        try:
            spec = await self._spec(task, params, omni)
            source = spec.source_video
            return await self._in_pool(self._renderer, path, spec)
        finally:
            await asyncio.to_thread(omni.cleanup)
            if source is not None:
                await asyncio.to_thread(_unlink_quietly, source)

    async def _published(self, video_id: str) -> float | None:
        """Seconds of an already published video (a re-check after a crash), None when there
        is none. Objects only appear complete, so an unreadable one is damage after the fact:
        render it again (the publish replaces it)."""
        if await self._files.stat(video_id) is None:
            return None
        path = self._files.scratch_path(video_id)
        try:
            await self._files.fetch(video_id, path)
            return (await self._in_pool(probe_video, path)).duration
        except (RenderError, ObjectNotFound):
            return None
        finally:
            await asyncio.to_thread(_unlink_quietly, path)

    async def _in_pool(self, fn: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        """Run ``fn`` in the render pool (see the module docstring)."""
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def _run(self, fn: Callable[[], _R]) -> _R:
        return await self._in_pool(fn)

    async def _spec(self, task: Task, params: VideoParams, omni: OmniInputs) -> RenderSpec:
        source: Path | None = None
        # Omni first and end frames are the video's first and last frame (docs/contract.md §6).
        start: bytes | None = omni.first
        end: bytes | None = omni.end
        # Images only drive image2video: text2video and extend ignore them, as Kling does.
        if params.action == "image2video":
            start = await self._image("start", params.start_image_url) or start
            end = await self._image("end", params.end_image_url) or end
        elif params.action == "extend":
            source = await self._source(task.user_id, params.video_id or "")
        return RenderSpec(
            prompt=params.prompt,
            duration=float(params.duration),
            # Literals are not checked statically here; RenderSpec checks them at runtime.
            aspect_ratio=cast(AspectRatio, params.aspect_ratio),
            mode=cast(Mode, params.mode),
            start_image=start,
            end_image=end,
            source_video=source,
            fps=self._fps,
            max_side=self._max_side,
            shots=shots_of(params),
            references=tuple(omni.references),
            reference_video=omni.video,
            reference_role=_role(params),
            audio=params.generate_audio,
            keep_original_sound=any(v.keep_original_sound for v in params.video_list),
        )

    async def _image(self, which: str, url: str | None) -> bytes | None:
        if url is None:
            return None
        try:
            return await fetch_bytes(
                self._http, url, max_bytes=self._image_max_bytes, timeout=self._fetch_timeout
            )
        except FetchError as exc:
            raise ProviderError(
                f"could not fetch the {which} image (`{which}_image_url`): {exc}",
                code="image_fetch_failed",
            ) from exc

    async def _source(self, user_id: str, video_id: str) -> Path:
        """A local copy of the user's earlier video ``video_id`` (the source of an extend),
        read back from the object store: any worker can extend any worker's video."""
        await require_own_video(self._store, user_id, video_id)
        try:
            path = self._files.scratch_path(video_id, ".source.mp4")
        except ValueError as exc:
            raise _video_not_found(f"video_id {video_id!r} cannot name a stored video") from exc
        try:
            await self._files.fetch(video_id, path)
        except ObjectNotFound as exc:
            raise _video_not_found(f"the file of video {video_id!r} is no longer stored") from exc
        return path


def _role(params: VideoParams) -> Literal["base", "feature"]:
    refer = params.video_list[0].refer_type if params.video_list else "base"
    return "feature" if refer == "feature" else "base"


def _params(task: Task) -> TaskParams:
    """The task's params, of the struct its ``type`` names (docs/contract.md §7)."""
    kind = PARAMS_BY_TYPE.get(task.type)
    return params_of(task) if kind in (None, VideoParams) else params_as(task, kind)


def _plan(task: Task, params: TaskParams, ready_at: float) -> dict[str, Any]:
    """When the job is due and the ids of its files, keeping any the task has already."""
    plan: dict[str, Any] = {"ready_at": ready_at, "video_id": _video_id(task) or new_video_id()}
    if isinstance(params, TalkingPhotoParams):
        plan["source_video_id"] = _source_video_id(task) or new_video_id()
    return plan


def _nominal_seconds(params: TaskParams) -> float:
    """A video's length when nothing is rendered (``render=False``)."""
    return float(params.duration) if isinstance(params, VideoParams | TalkingPhotoParams) else 5.0


def _video_id(task: Task) -> str | None:
    return _plan_id(task, "video_id")


def _source_video_id(task: Task) -> str | None:
    """A talking photo's silent animation (its ``source_video_url``)."""
    return _plan_id(task, "source_video_id")


def _plan_id(task: Task, key: str) -> str | None:
    value: Any = task.provider_data.get(key)
    return value if isinstance(value, str) and value else None


def _ready_at(task: Task) -> float | None:
    value: Any = task.provider_data.get("ready_at")
    # bool is an int; a stray True must not pass for a time.
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _storage_error(exc: ObjectStoreError) -> ProviderError:
    # Unreachable or refusing storage is retried with backoff until the task's deadline: the
    # video is not lost, only not yet stored.
    return ProviderError(
        f"could not store or read the video: {exc}", code="storage_error", retryable=True
    )


def _video_not_found(message: str) -> ProviderError:
    return ProviderError(message, code="video_not_found")


def _unexpected(doing: str, exc: Exception) -> ProviderError:
    return ProviderError(
        f"unexpected error while {doing} the video: {type(exc).__name__}: {exc}",
        code="render_failed",
        retryable=True,
    )
