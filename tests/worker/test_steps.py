"""``advance``: one look at one task, against a scripted provider (what the outcome does to the
task is ``transition``'s, tested in tests/domain/test_transitions.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from kling_gateway.domain.outcomes import ProviderError, Status, Submission, VideoResult
from kling_gateway.domain.task import Task
from kling_gateway.domain.transitions import RESULT_READY_AT, Change, Policy, Schedule
from kling_gateway.protocol.task import TaskState, progress_response
from kling_gateway.worker.steps import Fetch, advance, fetch_and_apply, needs_submit_marker
from tests.harness import make_task

NOW = 1_750_000_000.0
DEADLINE = NOW + 3600
POLICY = Policy(check_interval=5.0, check_max_interval=60.0, deadline_seconds=3600.0)
VIDEO = VideoResult(video_id="vid-1", video_url="https://cdn.example/vid-1.mp4", duration="5.1")


class ScriptedProvider:
    """A provider whose every answer (a Submission/Status, or a ProviderError) is scripted."""

    name = "scripted"

    def __init__(self, answers: Iterable[Submission | Status | ProviderError]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, str]] = []

    def _next(self) -> Any:
        answer = self.answers.pop(0)
        if isinstance(answer, ProviderError):
            raise answer
        return answer

    async def submit(self, task: Task) -> Submission:
        self.calls.append(("submit", task.id))
        answer = self._next()
        assert isinstance(answer, Submission)
        return answer

    async def check(self, task: Task) -> Status:
        self.calls.append(("check", task.job_id or ""))
        answer = self._next()
        assert isinstance(answer, Status)
        return answer

    async def aclose(self) -> None:
        return None


def new_task(**request: Any) -> Task:
    return make_task("user-1", created_at=NOW - 10, **request)


def submitted(state: TaskState = TaskState.PENDING, **request: Any) -> Task:
    task = new_task(**request)
    task.job_id = "job-1"
    task.started_at = NOW - 9
    task.state = state
    task.response = progress_response(task.id, state)
    return task


def schedule(attempts: int = 0, deadline: float = DEADLINE) -> Schedule:
    return Schedule(attempts, deadline)


async def look(
    provider: ScriptedProvider, task: Task, attempts: int = 0, deadline: float = DEADLINE
) -> Change:
    change = await advance(provider, task, schedule(attempts, deadline), NOW, POLICY)
    assert isinstance(change, Change)
    return change


# -- the provider calls ---------------------------------------------------------------------------


async def test_a_task_without_a_job_is_submitted() -> None:
    task = new_task()
    provider = ScriptedProvider([Submission("job-42", provider_data={"plan": 1})])
    change = await look(provider, task, 3)
    assert provider.calls == [("submit", task.id)]
    assert change.task.job_id == "job-42" and change.attempts == 0
    assert task.job_id is None  # the claimed task itself is left for the compare-and-set


async def test_a_task_with_a_job_is_checked() -> None:
    provider = ScriptedProvider([Status(TaskState.PROCESSING, next_check_in=7.0)])
    change = await look(provider, submitted(), 2)
    assert provider.calls == [("check", "job-1")]
    assert change.task.state is TaskState.PROCESSING and change.next_check_at == NOW + 7.0


@pytest.mark.parametrize("has_job", [False, True])
async def test_a_provider_error_is_an_outcome_not_an_exception(has_job: bool) -> None:
    task = submitted(TaskState.PROCESSING) if has_job else new_task()
    error = ProviderError("upstream busy", code="bad_gateway", retryable=True)
    change = await look(ScriptedProvider([error]), task, 2)
    assert (change.changed, change.attempts, change.task.finished_at) == (False, 3, None)
    fatal = ProviderError("image could not be fetched", code="bad_image")
    done = await look(ScriptedProvider([fatal]), task, 2)
    assert done.finished and done.task.response is not None
    assert done.task.response["error"] == {"code": "bad_image", "message": fatal.message}


@pytest.mark.parametrize("deadline", [NOW, NOW - 1])
@pytest.mark.parametrize("has_job", [False, True])
async def test_past_the_deadline_the_provider_is_not_asked(deadline: float, has_job: bool) -> None:
    task = submitted(TaskState.PROCESSING) if has_job else new_task()
    provider = ScriptedProvider([])
    change = await look(provider, task, 5, deadline)
    assert provider.calls == []  # no provider call once the time is up
    assert change.task.state is TaskState.FAILED
    assert change.task.response is not None
    assert change.task.response["error"]["code"] == "timeout"
    assert "3600" in change.task.response["error"]["message"]


async def test_just_before_the_deadline_the_provider_is_asked() -> None:
    provider = ScriptedProvider([Status(TaskState.SUCCEED, video=VIDEO)])
    change = await look(provider, submitted(TaskState.PROCESSING), 0, NOW + 0.001)
    assert change.task.state is TaskState.SUCCEED


# -- results fetched outside the per-call deadline -----------------------------------------------


class FetchingProvider(ScriptedProvider):
    """A scripted provider that copies finished videos (``steps.FetchesResults``)."""

    def __init__(self, answers: Iterable[Submission | Status | ProviderError]) -> None:
        super().__init__(answers)
        self.fetch_timeout: float | None = 300.0
        self.fetched: list[Status] = []

    async def materialize(self, status: Status) -> Status:
        self.fetched.append(status)
        answer = self._next()
        assert isinstance(answer, Status)
        return answer


async def test_a_video_to_fetch_is_left_for_the_fetch_step() -> None:
    task = submitted(TaskState.PROCESSING)
    upstream = Status(TaskState.SUCCEED, video=VIDEO)
    provider = FetchingProvider([upstream])
    result = await advance(provider, task, schedule(2), NOW, POLICY)
    assert result == Fetch(upstream) and task.state is TaskState.PROCESSING
    assert provider.fetched == []
    ours = VideoResult(video_id="vid-1", video_url="https://gw.example/vid-1.mp4", duration="5.1")
    provider.answers.append(Status(TaskState.SUCCEED, video=ours))
    done = await fetch_and_apply(provider, task, upstream, schedule(2), lambda: NOW + 50, POLICY)
    assert provider.fetched == [upstream]
    assert done.task.state is TaskState.SUCCEED and done.task.finished_at == NOW + 50
    assert done.task.response is not None and done.task.response["video_url"] == ours.video_url
    assert done.changed is True


async def test_a_failed_fetch_is_retried_as_a_produced_result() -> None:
    task = submitted(TaskState.PROCESSING)
    provider = FetchingProvider([ProviderError("slow", code="download_timeout", retryable=True)])
    result = await fetch_and_apply(
        provider, task, Status(TaskState.SUCCEED), schedule(1), lambda: NOW, POLICY
    )
    assert result.task.state is TaskState.PROCESSING and result.attempts == 2
    assert result.task.provider_data[RESULT_READY_AT] == NOW


async def test_nothing_is_left_to_fetch_when_results_are_not_copied() -> None:
    provider = FetchingProvider([Status(TaskState.SUCCEED, video=VIDEO)])
    provider.fetch_timeout = None
    task = submitted(TaskState.PROCESSING)
    result = await advance(provider, task, schedule(), NOW, POLICY)
    assert isinstance(result, Change) and result.task.state is TaskState.SUCCEED


# -- the submit marker ----------------------------------------------------------------------------


class MarkingProvider(ScriptedProvider):
    def needs_submit_marker(self, task: Task) -> bool:
        return task.params is not None and task.params.action == "extend"


def test_only_tasks_without_a_job_that_the_provider_names_are_marked() -> None:
    provider = MarkingProvider([])
    assert needs_submit_marker(provider, new_task(action="extend", video_id="v"))
    assert not needs_submit_marker(provider, new_task())
    assert not needs_submit_marker(ScriptedProvider([]), new_task(action="extend", video_id="v"))
    done = submitted(action="extend", video_id="v")
    assert not needs_submit_marker(provider, done)
