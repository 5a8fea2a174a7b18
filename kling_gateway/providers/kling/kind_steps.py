"""The §7 kinds on Kling (docs/contract.md §7): one gateway task, one or more upstream steps.

* motion: one ``motion-control`` job, like any video.
* lip-sync: ``identify-face`` (synchronous), for ``text2video`` then ``tts`` (synchronous),
  then the ``advanced-lip-sync`` job.
* talking-photo: an ``image2video`` job (the silent animation), then the lip-sync steps on
  its video with the request's audio; the success adds ``source_video_url``.

Each step's result is kept on the task (``provider_data``, through a ``Step`` outcome the
worker saves) before the next step sends anything, so a task interrupted anywhere resumes at
the step it reached. Each job-creating step is looked up by its ``external_task_id`` first
(the task id; a talking photo's animation: ``<task id>-animation``), so a create whose answer
was lost is found, never paid twice. The synchronous calls create no job: a crash between
one's answer and its save repeats only that call. A session is used for at most
``SESSION_USE_SECONDS`` after its identify-face (Kling keeps it 24 hours); an older one is
identified again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Final

from kling_gateway.domain.billing import UNITS_SPENT
from kling_gateway.domain.outcomes import Status, Step, Submission
from kling_gateway.domain.params import LipSyncParams, MotionParams, TalkingPhotoParams
from kling_gateway.domain.task import Task, params_as
from kling_gateway.protocol.task import TASK_TYPE_LIP_SYNC, TASK_TYPE_MOTION, TaskState
from kling_gateway.providers.kling.mapping import KIND_IMAGE2VIDEO
from kling_gateway.providers.kling.mapping_kinds import (
    KIND_LIP_SYNC,
    KIND_MOTION,
    animation_body,
    animation_id,
    audio_id_of,
    chosen_face,
    identify_target,
    lip_sync_body,
    lip_sync_sound,
    motion_body,
    tts_body,
)

IDENTIFY_PATH: Final = "/v1/videos/identify-face"
TTS_PATH: Final = "/v1/audio/tts"
# Kling keeps a session 24 hours; one is not used closer than an hour to its end.
SESSION_USE_SECONDS: Final = 23 * 3600.0

# provider_data keys of the steps (besides "kind", the upstream kind of the current job).
SESSION: Final = "lip_sync_session"  # {"session_id", "face_id", "identified_at"}
AUDIO_ID: Final = "tts_audio_id"
ANIMATION: Final = "animation"  # a talking photo's silent video: {"video_id", "video_url"}
# What only the account that made it can use (a session, a synthesised voice clip): dropped
# when a task leaves its account (``pool.KlingPool``), so the next account makes its own.
ACCOUNT_BOUND: Final = (SESSION, AUDIO_ID)

# (kind, external id, body) -> the job id of the one job that external id names.
CreateOnce = Callable[[str, str, dict[str, Any]], Awaitable[str]]
StatusOf = Callable[[str, str], Awaitable[Status]]
Call = Callable[[str, dict[str, Any]], Awaitable[Any]]
OwnVideo = Callable[[str, str], Awaitable[object]]


def first_kind(task: Task) -> str:
    """The upstream kind of the first job of a §7 task."""
    if task.type == TASK_TYPE_MOTION:
        return KIND_MOTION
    return KIND_LIP_SYNC if task.type == TASK_TYPE_LIP_SYNC else KIND_IMAGE2VIDEO


class KindSteps:
    """Submit and check of the §7 kinds for one Kling account (see the module docstring)."""

    def __init__(
        self,
        *,
        create_once: CreateOnce,
        status_of: StatusOf,
        call: Call,
        own_video: OwnVideo,
        callback_url: str | None,
        clock: Callable[[], float],
    ) -> None:
        self._create_once, self._status_of, self._call = create_once, status_of, call
        self._own_video = own_video
        self._callback_url, self._clock = callback_url, clock

    async def submit(self, task: Task) -> Submission | Step:
        if task.type == TASK_TYPE_MOTION:
            body = motion_body(params_as(task, MotionParams), task.id, self._callback_url)
            return _submitted(KIND_MOTION, await self._create_once(KIND_MOTION, task.id, body))
        if task.type == TASK_TYPE_LIP_SYNC:
            params = params_as(task, LipSyncParams)
            if params.video_id is not None and SESSION not in task.provider_data:
                # Only the caller's own video, checked again before anything is sent.
                await self._own_video(task.user_id, params.video_id)
            step = await self._lip_sync(task, identify_target(params), params)
            return step if isinstance(step, Step) else _submitted(KIND_LIP_SYNC, step)
        params_tp = params_as(task, TalkingPhotoParams)
        body = animation_body(params_tp, task.id)
        job = await self._create_once(KIND_IMAGE2VIDEO, animation_id(task.id), body)
        return _submitted(KIND_IMAGE2VIDEO, job)

    async def check(self, task: Task, job_id: str) -> Status | Step:
        kind = task.provider_data.get("kind")
        if kind != KIND_IMAGE2VIDEO:
            status = await self._status_of(str(kind or first_kind(task)), job_id)
            return _with_animation(status, task.provider_data.get(ANIMATION))
        # A talking photo's animation: finished, then its lip-sync steps.
        animation = task.provider_data.get(ANIMATION)
        if not isinstance(animation, dict):
            status = await self._status_of(KIND_IMAGE2VIDEO, job_id)
            if status.state is not TaskState.SUCCEED or status.video is None:
                return status
            video = status.video
            found = {"video_id": video.video_id, "video_url": video.video_url}
            # ``source_video_id``: the id its copy here has (deleted with the task); the
            # animation's units are kept so the settle charges both paid jobs.
            units = (status.provider_data or {}).get("final_unit_deduction")
            spent = [*_list(task.provider_data.get(UNITS_SPENT)), units]
            return Step({ANIMATION: found, "source_video_id": video.video_id, UNITS_SPENT: spent})
        params = params_as(task, TalkingPhotoParams)
        target = {"video_id": str(animation.get("video_id"))}
        step = await self._lip_sync(task, target, None, audio_url=params.audio_url)
        if isinstance(step, Step):
            return step
        return Step({"kind": KIND_LIP_SYNC}, job_id=step, next_check_in=None)

    async def _lip_sync(
        self,
        task: Task,
        target: dict[str, Any],
        params: LipSyncParams | None,
        *,
        audio_url: str | None = None,
    ) -> Step | str:
        """The next lip-sync step of ``task``: a ``Step`` (a face identified, speech made), or
        the job id of its advanced-lip-sync job."""
        session = self._session(task)
        if session is None:
            data = await self._call(IDENTIFY_PATH, target)
            session_id, face_id = chosen_face(data)
            found = {"session_id": session_id, "face_id": face_id, "identified_at": self._clock()}
            return Step({SESSION: found})
        audio_id = task.provider_data.get(AUDIO_ID)
        if params is not None and params.mode == "text2video" and not isinstance(audio_id, str):
            return Step({AUDIO_ID: audio_id_of(await self._call(TTS_PATH, tts_body(params)))})
        if params is not None:
            sound = lip_sync_sound(params, audio_id if isinstance(audio_id, str) else None)
        else:
            sound = {"sound_file": audio_url}
        body = lip_sync_body(session[0], session[1], sound, task.id, self._callback_url)
        return await self._create_once(KIND_LIP_SYNC, task.id, body)

    def _session(self, task: Task) -> tuple[str, str] | None:
        """The identified session and face of ``task``, while still usable."""
        value = task.provider_data.get(SESSION)
        if not isinstance(value, dict):
            return None
        at, session_id, face_id = (value.get(k) for k in ("identified_at", "session_id", "face_id"))
        if not isinstance(at, int | float) or not isinstance(session_id, str):
            return None
        if self._clock() - at > SESSION_USE_SECONDS:
            return None
        return session_id, str(face_id)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _submitted(kind: str, job_id: str) -> Submission:
    return Submission(job_id=job_id, provider_data={"kind": kind})


def _with_animation(status: Status, animation: Any) -> Status:
    """A talking photo's success names its silent animation as well (§7)."""
    if status.video is None or not isinstance(animation, dict):
        return status
    video = replace(
        status.video,
        source_video_id=str(animation.get("video_id")),
        source_video_url=str(animation.get("video_url")),
    )
    return replace(status, video=video)
