"""``advance``: one look at one task, against a scripted provider; and ``callbacks_for``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
import pytest

from kling_gateway.domain.outcomes import ProviderError, Status, Submission, VideoResult
from kling_gateway.domain.task import Task
from kling_gateway.protocol.task import TaskState, progress_response, success_response
from kling_gateway.worker.loop import callbacks_for
from kling_gateway.worker.steps import (
    SUBMIT_STARTED_AT,
    SUBMIT_TRIES,
    StepPolicy,
    advance,
    earlier_submit_at,
    fetch_and_apply,
    mark_submit,
    needs_submit_marker,
)
from tests.harness import make_task

NOW = 1_750_000_000.0
DEADLINE = NOW + 3600
POLICY = StepPolicy(check_interval=5.0, check_max_interval=60.0, deadline_seconds=3600.0)
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


def submitted(state: TaskState = TaskState.PENDING) -> Task:
    task = new_task()
    task.job_id = "job-1"
    task.started_at = NOW - 9
    task.state = state
    task.response = progress_response(task.id, state)
    return task


def backoff_bounds(attempts: int) -> tuple[float, float]:
    base = min(POLICY.check_max_interval, POLICY.check_interval * 2**attempts)
    return NOW + base * 0.8, NOW + base * 1.2


# -- submit ---------------------------------------------------------------------------------------


async def test_submit_records_the_job_and_a_pending_response() -> None:
    task = new_task()
    provider = ScriptedProvider([Submission("job-42", provider_data={"plan": 1})])
    result = await advance(provider, task, 3, DEADLINE, NOW, POLICY)
    assert provider.calls == [("submit", task.id)]
    assert task.job_id == "job-42"
    assert task.started_at == NOW
    assert task.state is TaskState.PENDING
    assert task.response == {"task_id": task.id, "state": "pending"}
    assert task.provider_data == {"plan": 1}
    assert task.finished_at is None
    assert result.changed is True
    assert result.attempts == 0
    assert result.next_check_at == NOW + POLICY.check_interval


async def test_submit_uses_the_providers_first_check_time() -> None:
    task = new_task()
    result = await advance(
        ScriptedProvider([Submission("j", next_check_in=0.5)]), task, 0, DEADLINE, NOW, POLICY
    )
    assert result.next_check_at == NOW + 0.5


async def test_a_resubmission_keeps_the_first_start_time() -> None:
    task = new_task()
    task.started_at = NOW - 100
    await advance(ScriptedProvider([Submission("j")]), task, 0, DEADLINE, NOW, POLICY)
    assert task.started_at == NOW - 100


# -- check ----------------------------------------------------------------------------------------


async def test_processing_with_the_providers_next_check() -> None:
    task = submitted(TaskState.PENDING)
    provider = ScriptedProvider([Status(TaskState.PROCESSING, next_check_in=7.0)])
    result = await advance(provider, task, 2, DEADLINE, NOW, POLICY)
    assert provider.calls == [("check", "job-1")]
    assert task.state is TaskState.PROCESSING
    assert task.response == {"task_id": task.id, "state": "processing"}
    assert "success" not in task.response
    assert task.finished_at is None
    assert result.changed is True
    assert result.attempts == 3
    assert result.next_check_at == NOW + 7.0


@pytest.mark.parametrize("attempts", [0, 1, 2, 3, 10])
async def test_processing_without_a_next_check_backs_off(attempts: int) -> None:
    task = submitted(TaskState.PROCESSING)
    provider = ScriptedProvider([Status(TaskState.PROCESSING)])
    result = await advance(provider, task, attempts, DEADLINE, NOW, POLICY)
    low, high = backoff_bounds(attempts)
    assert low <= result.next_check_at <= high
    assert result.attempts == attempts + 1
    assert result.changed is False  # processing -> processing is no change


async def test_backoff_is_capped() -> None:
    task = submitted(TaskState.PROCESSING)
    result = await advance(
        ScriptedProvider([Status(TaskState.PROCESSING)]), task, 50, DEADLINE, NOW, POLICY
    )
    assert result.next_check_at <= NOW + POLICY.check_max_interval * 1.2


async def test_status_provider_data_is_kept() -> None:
    task = submitted()
    task.provider_data = {"a": 1}
    status = Status(TaskState.PROCESSING, provider_data={"b": 2}, next_check_in=1)
    await advance(ScriptedProvider([status]), task, 0, DEADLINE, NOW, POLICY)
    assert task.provider_data == {"a": 1, "b": 2}


async def test_succeed_writes_the_success_body() -> None:
    task = submitted(TaskState.PROCESSING)
    provider = ScriptedProvider([Status(TaskState.SUCCEED, video=VIDEO)])
    result = await advance(provider, task, 4, DEADLINE, NOW, POLICY)
    assert task.state is TaskState.SUCCEED
    assert task.response == {
        "success": True,
        "video_id": "vid-1",
        "video_url": "https://cdn.example/vid-1.mp4",
        "duration": "5.1",
        "state": "succeed",
        "task_id": task.id,
    }
    assert task.finished_at == NOW
    assert task.record()["finished_at"] == round(NOW, 3)
    assert result.changed is True
    assert result.next_check_at == NOW


async def test_succeed_without_a_video_fails_the_task() -> None:
    task = submitted(TaskState.PROCESSING)
    await advance(ScriptedProvider([Status(TaskState.SUCCEED)]), task, 0, DEADLINE, NOW, POLICY)
    assert task.state is TaskState.FAILED
    assert task.response is not None
    assert task.response["error"]["code"] == "generation_failed"
    assert task.finished_at == NOW


async def test_failed_writes_the_providers_code_and_message() -> None:
    task = submitted(TaskState.PROCESSING)
    status = Status(TaskState.FAILED, error_code="content_policy", error_message="refused: nsfw")
    result = await advance(ScriptedProvider([status]), task, 1, DEADLINE, NOW, POLICY)
    assert task.state is TaskState.FAILED
    assert task.response == {
        "success": False,
        "task_id": task.id,
        "state": "failed",
        "error": {"code": "content_policy", "message": "refused: nsfw"},
    }
    assert task.finished_at == NOW
    assert result.changed is True


async def test_failed_without_details_gets_a_generic_error() -> None:
    task = submitted(TaskState.PROCESSING)
    await advance(ScriptedProvider([Status(TaskState.FAILED)]), task, 1, DEADLINE, NOW, POLICY)
    assert task.response is not None
    assert task.response["error"]["code"] == "generation_failed"
    assert task.response["error"]["message"]


# -- provider errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("has_job", [False, True])
async def test_a_non_retryable_error_fails_the_task(has_job: bool) -> None:
    task = submitted() if has_job else new_task()
    error = ProviderError("image could not be fetched", code="bad_image", retryable=False)
    result = await advance(ScriptedProvider([error]), task, 2, DEADLINE, NOW, POLICY)
    assert task.state is TaskState.FAILED
    assert task.response == {
        "success": False,
        "task_id": task.id,
        "state": "failed",
        "error": {"code": "bad_image", "message": "image could not be fetched"},
    }
    assert task.finished_at == NOW
    assert result.changed is True
    assert result.next_check_at == NOW


@pytest.mark.parametrize("has_job", [False, True])
async def test_a_retryable_error_leaves_the_task_and_counts_an_attempt(has_job: bool) -> None:
    task = submitted(TaskState.PROCESSING) if has_job else new_task()
    before = task.record()
    error = ProviderError("upstream busy", code="bad_gateway", retryable=True)
    result = await advance(ScriptedProvider([error]), task, 2, DEADLINE, NOW, POLICY)
    assert task.record() == before
    assert task.finished_at is None
    assert result.changed is False
    assert result.attempts == 3
    low, high = backoff_bounds(2)
    assert low <= result.next_check_at <= high


async def test_a_longer_retry_after_is_honoured() -> None:
    task = submitted(TaskState.PROCESSING)
    error = ProviderError("slow down", retryable=True, retry_after=120.0)
    result = await advance(ScriptedProvider([error]), task, 0, DEADLINE, NOW, POLICY)
    assert result.next_check_at == NOW + 120.0
    assert result.attempts == 1
    assert task.state is TaskState.PROCESSING


async def test_a_shorter_retry_after_does_not_shorten_the_backoff() -> None:
    task = submitted(TaskState.PROCESSING)
    error = ProviderError("slow down", retryable=True, retry_after=0.1)
    result = await advance(ScriptedProvider([error]), task, 3, DEADLINE, NOW, POLICY)
    low, high = backoff_bounds(3)
    assert low <= result.next_check_at <= high


# -- the deadline ---------------------------------------------------------------------------------


@pytest.mark.parametrize("deadline", [NOW, NOW - 1])
@pytest.mark.parametrize("has_job", [False, True])
async def test_past_the_deadline_the_task_fails_with_timeout(
    deadline: float, has_job: bool
) -> None:
    task = submitted(TaskState.PROCESSING) if has_job else new_task()
    provider = ScriptedProvider([])
    result = await advance(provider, task, 5, deadline, NOW, POLICY)
    assert provider.calls == []  # no provider call once the time is up
    assert task.state is TaskState.FAILED
    assert task.response is not None
    assert task.response["success"] is False
    assert task.response["error"]["code"] == "timeout"
    assert "3600" in task.response["error"]["message"]
    assert task.finished_at == NOW
    assert result.changed is True


async def test_just_before_the_deadline_the_provider_is_asked() -> None:
    task = submitted(TaskState.PROCESSING)
    provider = ScriptedProvider([Status(TaskState.SUCCEED, video=VIDEO)])
    await advance(provider, task, 0, NOW + 0.001, NOW, POLICY)
    assert task.state is TaskState.SUCCEED


async def test_a_whole_run_submit_process_succeed() -> None:
    task = new_task()
    provider = ScriptedProvider(
        [
            Submission("job-9"),
            ProviderError("busy", retryable=True),
            Status(TaskState.PROCESSING),
            Status(TaskState.SUCCEED, video=VIDEO),
        ]
    )
    attempts, now, states = 0, NOW, []
    for _ in range(4):
        result = await advance(provider, task, attempts, DEADLINE, now, POLICY)
        attempts, now = result.attempts, result.next_check_at
        states.append(task.state)
    assert states == [
        TaskState.PENDING,
        TaskState.PENDING,
        TaskState.PROCESSING,
        TaskState.SUCCEED,
    ]
    assert [c[0] for c in provider.calls] == ["submit", "check", "check", "check"]
    assert task.record()["job_id"] == "job-9"
    assert task.record()["duration"] == pytest.approx(now - (NOW - 10))


# -- callbacks_for --------------------------------------------------------------------------------

HOOK = "https://hook.example/cb"


def finished(state: TaskState, **request: Any) -> Task:
    task = submitted(TaskState.PROCESSING)
    task.request.update(request)
    task.state = state
    if state is TaskState.SUCCEED:
        task.response = success_response(
            task.id, video_id="v", video_url="https://cdn.example/v.mp4", duration="5.1"
        )
    else:
        task.response = {
            "success": False,
            "task_id": task.id,
            "state": "failed",
            "error": {"code": "x", "message": "y"},
        }
    task.finished_at = NOW
    return task


@pytest.mark.parametrize("state", [TaskState.SUCCEED, TaskState.FAILED])
@pytest.mark.parametrize("before", [TaskState.PENDING, TaskState.PROCESSING])
def test_a_terminal_state_owes_one_callback_with_the_response(
    state: TaskState, before: TaskState
) -> None:
    task = finished(state, callback_url=HOOK)
    deliveries = callbacks_for(task, before)
    assert len(deliveries) == 1
    url, event, body = deliveries[0]
    assert url == HOOK
    assert event == state.value
    assert msgspec.json.decode(body) == task.response
    assert body == msgspec.json.encode(task.response)


def test_terminal_callbacks_need_no_callback_events() -> None:
    task = finished(TaskState.SUCCEED, callback_url=HOOK, callback_events=["processing"])
    assert [d[1] for d in callbacks_for(task, TaskState.PROCESSING)] == ["succeed"]


def test_processing_owes_a_callback_only_when_asked() -> None:
    task = submitted(TaskState.PROCESSING)
    task.request["callback_url"] = HOOK
    assert callbacks_for(task, TaskState.PENDING) == ()
    task.request["callback_events"] = ["succeed", "failed"]
    assert callbacks_for(task, TaskState.PENDING) == ()
    task.request["callback_events"] = ["processing"]
    deliveries = callbacks_for(task, TaskState.PENDING)
    assert deliveries == ((HOOK, "processing", msgspec.json.encode(task.response)),)
    assert msgspec.json.decode(deliveries[0][2]) == {"task_id": task.id, "state": "processing"}


def test_no_callback_without_a_state_change() -> None:
    task = submitted(TaskState.PROCESSING)
    task.request.update(callback_url=HOOK, callback_events=["processing"])
    assert callbacks_for(task, TaskState.PROCESSING) == ()
    done = finished(TaskState.SUCCEED, callback_url=HOOK)
    assert callbacks_for(done, TaskState.SUCCEED) == ()


@pytest.mark.parametrize("state", [TaskState.SUCCEED, TaskState.FAILED])
def test_no_callback_without_a_callback_url(state: TaskState) -> None:
    assert callbacks_for(finished(state), TaskState.PROCESSING) == ()
    assert callbacks_for(finished(state, callback_url=None), TaskState.PROCESSING) == ()
    task = submitted(TaskState.PROCESSING)
    task.request["callback_events"] = ["processing"]
    assert callbacks_for(task, TaskState.PENDING) == ()


def test_no_callback_for_pending() -> None:
    task = new_task(callback_url=HOOK, callback_events=["processing", "succeed", "failed"])
    task.response = progress_response(task.id, TaskState.PENDING)
    assert callbacks_for(task, TaskState.PROCESSING) == ()


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
    result = await advance(provider, task, 2, DEADLINE, NOW, POLICY)
    assert (result.fetch, result.changed, task.state) == (upstream, False, TaskState.PROCESSING)
    assert provider.fetched == []
    ours = VideoResult(video_id="vid-1", video_url="https://gw.example/vid-1.mp4", duration="5.1")
    provider.answers.append(Status(TaskState.SUCCEED, video=ours))
    done = await fetch_and_apply(provider, task, upstream, 2, lambda: NOW + 50, POLICY)
    assert provider.fetched == [upstream]
    assert task.state is TaskState.SUCCEED and task.finished_at == NOW + 50
    assert task.response is not None and task.response["video_url"] == ours.video_url
    assert done.changed is True


async def test_a_failed_fetch_is_a_provider_error_like_any_other() -> None:
    task = submitted(TaskState.PROCESSING)
    provider = FetchingProvider([ProviderError("slow", code="download_timeout", retryable=True)])
    result = await fetch_and_apply(
        provider, task, Status(TaskState.SUCCEED), 1, lambda: NOW, POLICY
    )
    assert task.state is TaskState.PROCESSING and result.attempts == 2


async def test_nothing_is_left_to_fetch_when_results_are_not_copied() -> None:
    provider = FetchingProvider([Status(TaskState.SUCCEED, video=VIDEO)])
    provider.fetch_timeout = None
    task = submitted(TaskState.PROCESSING)
    result = await advance(provider, task, 0, DEADLINE, NOW, POLICY)
    assert result.fetch is None and task.state is TaskState.SUCCEED


# -- the submit marker ----------------------------------------------------------------------------


class MarkingProvider(ScriptedProvider):
    def needs_submit_marker(self, task: Task) -> bool:
        return task.request.get("action") == "extend"


def test_the_marker_keeps_the_first_start_and_counts_the_tries() -> None:
    task = new_task(action="extend", video_id="v")
    assert earlier_submit_at(task) is None
    mark_submit(task, NOW)
    assert earlier_submit_at(task) is None  # the first try: nothing to look for yet
    mark_submit(task, NOW + 30)
    assert earlier_submit_at(task) == NOW
    assert task.provider_data == {SUBMIT_STARTED_AT: NOW, SUBMIT_TRIES: 2}


def test_only_tasks_without_a_job_that_the_provider_names_are_marked() -> None:
    provider = MarkingProvider([])
    assert needs_submit_marker(provider, new_task(action="extend", video_id="v"))
    assert not needs_submit_marker(provider, new_task())
    assert not needs_submit_marker(ScriptedProvider([]), new_task(action="extend", video_id="v"))
    done = submitted()
    done.request["action"] = "extend"
    assert not needs_submit_marker(provider, done)
