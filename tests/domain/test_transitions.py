"""``transition``: every outcome a task can meet, and what it changes (pure: no store, no clock)."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
import pytest

from kling_gateway.domain.outcomes import ProviderError, Status, Step, Submission, VideoResult
from kling_gateway.domain.task import Task
from kling_gateway.domain.transitions import (
    LAST_ERROR,
    RESULT_READY_AT,
    RESULT_RETRY_SECONDS,
    SUBMIT_STARTED_AT,
    SUBMIT_TRIES,
    Change,
    Deadline,
    Policy,
    ResultPending,
    Schedule,
    TaskOutcome,
    callbacks_for,
    deadline_of,
    earlier_submit_at,
    is_overdue,
    mark_submit,
    transition,
)
from kling_gateway.domain.videos import params_from_stored
from kling_gateway.protocol.task import TaskState, progress_response, success_response
from tests.harness import make_task

NOW = 1_750_000_000.0
DEADLINE = NOW + 3600
POLICY = Policy(check_interval=5.0, check_max_interval=60.0, deadline_seconds=3600.0)
VIDEO = VideoResult(video_id="vid-1", video_url="https://cdn.example/vid-1.mp4", duration="5.1")
HOOK = "https://hook.example/cb"
UNAVAILABLE = ProviderError(
    "HTTP 503 code 5001: the upstream failed", code="upstream_unavailable", retryable=True
)


def new_task(**request: Any) -> Task:
    return make_task("user-1", created_at=NOW - 10, **request)


def submitted(state: TaskState = TaskState.PENDING, **request: Any) -> Task:
    task = new_task(**request)
    task.job_id = "job-1"
    task.started_at = NOW - 9
    task.state = state
    task.response = progress_response(task.id, state)
    return task


def apply(
    task: Task,
    outcome: TaskOutcome,
    attempts: int = 0,
    *,
    now: float = NOW,
    deadline: float = DEADLINE,
    policy: Policy = POLICY,
) -> Change:
    return transition(task, outcome, Schedule(attempts, deadline), now, policy)


def backoff_bounds(attempts: int) -> tuple[float, float]:
    base = min(POLICY.check_max_interval, POLICY.check_interval * 2**attempts)
    return NOW + base * 0.8, NOW + min(base * 1.2, POLICY.check_max_interval)


def test_the_input_task_is_left_as_it_was() -> None:
    task = submitted(TaskState.PROCESSING)
    task.provider_data = {"a": 1}
    before = task.record(), dict(task.provider_data)
    change = apply(task, Status(TaskState.SUCCEED, video=VIDEO, provider_data={"b": 2}))
    assert (task.record(), task.provider_data) == before
    assert change.task is not task and change.task.state is TaskState.SUCCEED


# -- submit ---------------------------------------------------------------------------------------


def test_submit_records_the_job_and_a_pending_response() -> None:
    change = apply(new_task(), Submission("job-42", provider_data={"plan": 1}), 3)
    task = change.task
    assert task.job_id == "job-42"
    assert task.started_at == NOW
    assert task.state is TaskState.PENDING
    assert task.response == {"task_id": task.id, "state": "pending"}
    assert task.provider_data == {"plan": 1}
    assert task.finished_at is None
    assert (change.changed, change.attempts) == (True, 0)
    assert change.next_check_at == NOW + POLICY.check_interval


def test_submit_uses_the_providers_first_check_time() -> None:
    assert apply(new_task(), Submission("j", next_check_in=0.5)).next_check_at == NOW + 0.5


def test_a_resubmission_keeps_the_first_start_time() -> None:
    task = new_task()
    task.started_at = NOW - 100
    assert apply(task, Submission("j")).task.started_at == NOW - 100


# -- check ----------------------------------------------------------------------------------------


def test_processing_with_the_providers_next_check() -> None:
    change = apply(submitted(), Status(TaskState.PROCESSING, next_check_in=7.0), 2)
    task = change.task
    assert task.state is TaskState.PROCESSING
    assert task.response == {"task_id": task.id, "state": "processing"}
    assert task.finished_at is None
    assert (change.changed, change.attempts, change.next_check_at) == (True, 3, NOW + 7.0)


@pytest.mark.parametrize("attempts", [0, 1, 2, 3, 10])
def test_processing_without_a_next_check_backs_off(attempts: int) -> None:
    change = apply(submitted(TaskState.PROCESSING), Status(TaskState.PROCESSING), attempts)
    low, high = backoff_bounds(attempts)
    assert change.next_check_at is not None and low <= change.next_check_at <= high
    assert change.attempts == attempts + 1
    assert change.changed is False  # processing -> processing is no change


def test_backoff_is_capped_by_the_longest_interval() -> None:
    change = apply(submitted(TaskState.PROCESSING), Status(TaskState.PROCESSING), 50)
    assert change.next_check_at is not None
    assert change.next_check_at <= NOW + POLICY.check_max_interval


def test_status_provider_data_is_kept() -> None:
    task = submitted()
    task.provider_data = {"a": 1}
    status = Status(TaskState.PROCESSING, provider_data={"b": 2}, next_check_in=1)
    assert apply(task, status).task.provider_data == {"a": 1, "b": 2}


def test_succeed_writes_the_success_body() -> None:
    change = apply(submitted(TaskState.PROCESSING), Status(TaskState.SUCCEED, video=VIDEO), 4)
    task = change.task
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
    assert change.changed and change.finished and change.next_check_at is None


def test_succeed_without_a_video_fails_the_task() -> None:
    task = apply(submitted(TaskState.PROCESSING), Status(TaskState.SUCCEED)).task
    assert task.state is TaskState.FAILED
    assert task.response is not None and task.response["error"]["code"] == "generation_failed"
    assert task.finished_at == NOW


def test_failed_writes_the_providers_code_and_message() -> None:
    status = Status(TaskState.FAILED, error_code="content_policy", error_message="refused: nsfw")
    change = apply(submitted(TaskState.PROCESSING), status, 1)
    assert change.task.response == {
        "success": False,
        "task_id": change.task.id,
        "state": "failed",
        "error": {"code": "content_policy", "message": "refused: nsfw"},
    }
    assert change.task.finished_at == NOW and change.changed


def test_failed_without_details_gets_a_generic_error() -> None:
    response = apply(submitted(TaskState.PROCESSING), Status(TaskState.FAILED), 1).task.response
    assert response is not None
    assert response["error"]["code"] == "generation_failed" and response["error"]["message"]


# -- provider errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("has_job", [False, True])
def test_a_non_retryable_error_fails_the_task(has_job: bool) -> None:
    task = submitted() if has_job else new_task()
    error = ProviderError("image could not be fetched", code="bad_image", retryable=False)
    change = apply(task, error, 2)
    assert change.task.response == {
        "success": False,
        "task_id": task.id,
        "state": "failed",
        "error": {"code": "bad_image", "message": "image could not be fetched"},
    }
    assert change.task.finished_at == NOW
    assert change.changed and change.next_check_at is None


@pytest.mark.parametrize("has_job", [False, True])
def test_a_retryable_error_leaves_the_task_and_counts_an_attempt(has_job: bool) -> None:
    task = submitted(TaskState.PROCESSING) if has_job else new_task()
    before = task.record()
    change = apply(task, ProviderError("upstream busy", code="bad_gateway", retryable=True), 2)
    assert change.task.record() == before
    assert change.task.finished_at is None
    assert (change.changed, change.attempts) == (False, 3)
    low, high = backoff_bounds(2)
    assert change.next_check_at is not None and low <= change.next_check_at <= high
    # The reason is kept for the end (see the deadline tests).
    assert change.task.provider_data[LAST_ERROR] == {
        "code": "bad_gateway",
        "message": "upstream busy",
    }


def test_a_longer_retry_after_is_honoured_up_to_the_longest_interval() -> None:
    task = submitted(TaskState.PROCESSING)
    change = apply(task, ProviderError("slow down", retryable=True, retry_after=40.0))
    assert (change.next_check_at, change.attempts) == (NOW + 40.0, 1)
    assert change.task.state is TaskState.PROCESSING


@pytest.mark.parametrize("retry_after", [120.0, 3600.0, 100_000_000.0, float("inf")])
def test_a_huge_retry_after_is_capped_by_the_longest_interval(retry_after: float) -> None:
    error = ProviderError("slow down", retryable=True, retry_after=retry_after)
    change = apply(submitted(TaskState.PROCESSING), error)
    assert change.next_check_at == NOW + POLICY.check_max_interval


def test_every_wait_is_capped_by_the_remaining_deadline() -> None:
    task = submitted(TaskState.PROCESSING)
    close = NOW + 12.0
    error = ProviderError("slow down", retryable=True, retry_after=100_000_000.0)
    for outcome in (error, Status(TaskState.PROCESSING, next_check_in=50.0)):
        assert apply(task, outcome, 3, deadline=close).next_check_at == close
    assert (
        apply(new_task(), Submission("j", next_check_in=500.0), deadline=close).next_check_at
        == close
    )


def test_a_shorter_retry_after_does_not_shorten_the_backoff() -> None:
    change = apply(
        submitted(TaskState.PROCESSING), ProviderError("s", retryable=True, retry_after=0.1), 3
    )
    low, high = backoff_bounds(3)
    assert change.next_check_at is not None and low <= change.next_check_at <= high


def test_a_success_clears_the_last_error() -> None:
    failing = apply(submitted(TaskState.PROCESSING), UNAVAILABLE).task
    assert LAST_ERROR in failing.provider_data
    assert LAST_ERROR not in apply(failing, Status(TaskState.PROCESSING)).task.provider_data


# -- the deadline ---------------------------------------------------------------------------------


@pytest.mark.parametrize("has_job", [False, True])
def test_at_the_deadline_a_task_nothing_went_wrong_with_fails_with_timeout(has_job: bool) -> None:
    task = submitted(TaskState.PROCESSING) if has_job else new_task()
    change = apply(task, Deadline(), 5)
    assert change.task.state is TaskState.FAILED
    response = change.task.response
    assert response is not None and response["success"] is False
    assert response["error"]["code"] == "timeout"
    assert "3600" in response["error"]["message"]
    assert change.task.finished_at == NOW and change.changed


def test_at_the_deadline_the_last_real_reason_is_the_error() -> None:
    failing = apply(submitted(TaskState.PROCESSING), UNAVAILABLE, 4).task
    response = apply(failing, Deadline(), 5).task.response
    assert response is not None
    assert response["error"]["code"] == "upstream_unavailable"
    assert response["error"]["message"].startswith("HTTP 503 code 5001: the upstream failed")


@pytest.mark.parametrize("now", [DEADLINE, DEADLINE + 1])
def test_overdue_from_the_deadline_on(now: float) -> None:
    task = submitted(TaskState.PROCESSING)
    assert is_overdue(task, Schedule(0, DEADLINE), now, POLICY)
    assert not is_overdue(task, Schedule(0, DEADLINE), DEADLINE - 0.001, POLICY)


# -- a result that exists upstream ----------------------------------------------------------------


def test_a_failed_copy_of_a_produced_video_is_retried_past_the_deadline() -> None:
    task = submitted(TaskState.PROCESSING)
    error = ProviderError("download failed: HTTP 502", code="download_failed", retryable=True)
    near = DEADLINE - 1
    change = apply(task, ResultPending(Status(TaskState.SUCCEED, video=VIDEO), error), now=near)
    pending = change.task
    assert pending.state is TaskState.PROCESSING and pending.provider_data[RESULT_READY_AT] == near
    # Its deadline is now the result's: the deadline passing does not end it ...
    schedule = Schedule(change.attempts, DEADLINE)
    assert deadline_of(pending, schedule, POLICY) == near + RESULT_RETRY_SECONDS
    assert not is_overdue(pending, schedule, DEADLINE + 600, POLICY)
    assert change.next_check_at is not None and change.next_check_at > DEADLINE
    # ... though it is bounded, and then ends with the copy's own reason.
    assert is_overdue(pending, schedule, near + RESULT_RETRY_SECONDS, POLICY)
    response = apply(pending, Deadline(), now=near + RESULT_RETRY_SECONDS).task.response
    assert response is not None and response["error"]["code"] == "download_failed"


def test_the_first_report_of_a_produced_video_is_kept() -> None:
    status = Status(TaskState.SUCCEED, video=VIDEO)
    error = ProviderError("disk full", code="storage_full", retryable=True)
    first = apply(submitted(TaskState.PROCESSING), ResultPending(status, error)).task
    again = apply(first, ResultPending(status, error), now=NOW + 100).task
    assert again.provider_data[RESULT_READY_AT] == NOW


def test_a_refused_copy_fails_the_task() -> None:
    error = ProviderError("private address", code="download_refused", retryable=False)
    change = apply(submitted(TaskState.PROCESSING), ResultPending(Status(TaskState.SUCCEED), error))
    assert change.finished and change.task.response is not None
    assert change.task.response["error"]["code"] == "download_refused"


def test_a_result_still_to_copy_makes_the_task_due_for_a_worker() -> None:
    change = apply(submitted(TaskState.PROCESSING), ResultPending(Status(TaskState.SUCCEED)), 2)
    assert (change.next_check_at, change.attempts, change.wake_worker) == (NOW, 2, True)
    assert not change.finished and not change.callbacks


# -- a whole run ----------------------------------------------------------------------------------


def test_a_whole_run_submit_process_succeed() -> None:
    task, attempts, now, states = new_task(), 0, NOW, []
    outcomes: list[TaskOutcome] = [
        Submission("job-9"),
        ProviderError("busy", retryable=True),
        Status(TaskState.PROCESSING),
        Status(TaskState.SUCCEED, video=VIDEO),
    ]
    for outcome in outcomes:
        change = apply(task, outcome, attempts, now=now)
        task, attempts = change.task, change.attempts
        now = change.next_check_at or now
        states.append(task.state)
    assert states == [TaskState.PENDING, TaskState.PENDING, TaskState.PROCESSING, TaskState.SUCCEED]
    assert task.record()["job_id"] == "job-9"
    assert task.record()["duration"] == pytest.approx(now - (NOW - 10))


# -- callbacks ------------------------------------------------------------------------------------


def with_request(task: Task, **request: Any) -> Task:
    task.request.update(request)
    task.params = params_from_stored(task.request)
    return task


def finished(state: TaskState, **request: Any) -> Task:
    task = with_request(submitted(TaskState.PROCESSING), **request)
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
    assert (url, event) == (HOOK, state.value)
    assert body == msgspec.json.encode(task.response)


def test_a_finishing_transition_carries_its_callback() -> None:
    task = with_request(submitted(TaskState.PROCESSING), callback_url=HOOK)
    change = apply(task, Status(TaskState.SUCCEED, video=VIDEO))
    assert [d[:2] for d in change.callbacks] == [(HOOK, "succeed")]
    assert change.wakes_deliverer


def test_terminal_callbacks_need_no_callback_events() -> None:
    task = finished(TaskState.SUCCEED, callback_url=HOOK, callback_events=["processing"])
    assert [d[1] for d in callbacks_for(task, TaskState.PROCESSING)] == ["succeed"]


def test_processing_owes_a_callback_only_when_asked() -> None:
    task = with_request(submitted(TaskState.PROCESSING), callback_url=HOOK)
    assert callbacks_for(task, TaskState.PENDING) == ()
    with_request(task, callback_events=["succeed", "failed"])
    assert callbacks_for(task, TaskState.PENDING) == ()
    with_request(task, callback_events=["processing"])
    deliveries = callbacks_for(task, TaskState.PENDING)
    assert deliveries == ((HOOK, "processing", msgspec.json.encode(task.response)),)


def test_no_callback_without_a_state_change() -> None:
    task = with_request(
        submitted(TaskState.PROCESSING), callback_url=HOOK, callback_events=["processing"]
    )
    assert callbacks_for(task, TaskState.PROCESSING) == ()
    assert callbacks_for(finished(TaskState.SUCCEED, callback_url=HOOK), TaskState.SUCCEED) == ()


@pytest.mark.parametrize("state", [TaskState.SUCCEED, TaskState.FAILED])
def test_no_callback_without_a_callback_url(state: TaskState) -> None:
    assert callbacks_for(finished(state), TaskState.PROCESSING) == ()
    task = with_request(submitted(TaskState.PROCESSING), callback_events=["processing"])
    assert callbacks_for(task, TaskState.PENDING) == ()


def test_no_callback_for_pending() -> None:
    task = new_task(callback_url=HOOK, callback_events=["processing", "succeed", "failed"])
    task.response = progress_response(task.id, TaskState.PENDING)
    assert callbacks_for(task, TaskState.PROCESSING) == ()


def test_callbacks_come_from_the_typed_request_not_the_raw_one() -> None:
    task = finished(TaskState.SUCCEED, callback_url=HOOK)
    task.request["callback_url"] = "https://elsewhere.example/cb"  # the raw dict: never read
    assert callbacks_for(task, TaskState.PROCESSING)[0][0] == HOOK
    assert callbacks_for(dataclasses.replace(task, params=None), TaskState.PROCESSING) == ()


# -- the submit marker ----------------------------------------------------------------------------


def test_the_marker_keeps_the_first_start_and_counts_the_tries() -> None:
    task = new_task(action="extend", video_id="v")
    assert earlier_submit_at(task) is None
    mark_submit(task, NOW)
    assert earlier_submit_at(task) is None  # the first try: nothing to look for yet
    mark_submit(task, NOW + 30)
    assert earlier_submit_at(task) == NOW
    assert task.provider_data == {SUBMIT_STARTED_AT: NOW, SUBMIT_TRIES: 2}


# -- a step of a multi-step job (docs/contract.md §7) ------------------------------------------


def test_a_step_before_any_job_keeps_its_findings_and_comes_back_at_once() -> None:
    task = new_task()
    task.provider_data[LAST_ERROR] = {"code": "upstream_unavailable", "message": "x"}
    change = apply(task, Step({"lip_sync_session": {"session_id": "s"}}), attempts=3)
    assert change.task.job_id is None and change.task.state is TaskState.PROCESSING
    assert change.task.provider_data == {"lip_sync_session": {"session_id": "s"}}
    assert (change.next_check_at, change.attempts, change.changed) == (NOW, 0, True)
    assert change.task.started_at == NOW


def test_a_step_to_the_next_job_switches_the_job_and_waits_a_check_interval() -> None:
    task = submitted(TaskState.PROCESSING)
    change = apply(task, Step({"kind": "advanced-lip-sync"}, job_id="job-2", next_check_in=None))
    assert change.task.job_id == "job-2" and change.changed
    assert change.next_check_at == NOW + POLICY.check_interval
    again = apply(change.task, Step({"other": 1}))
    assert not again.changed  # same job, same state: nothing a client sees changed


def test_a_talking_photo_success_names_its_source_video() -> None:
    video = dataclasses.replace(VIDEO, source_video_url="https://cdn.example/silent.mp4")
    change = apply(submitted(TaskState.PROCESSING), Status(TaskState.SUCCEED, video=video))
    assert change.task.response is not None
    assert change.task.response["source_video_url"] == "https://cdn.example/silent.mp4"
    assert (
        "source_video_url"
        not in apply(
            submitted(TaskState.PROCESSING), Status(TaskState.SUCCEED, video=VIDEO)
        ).task.response
    )  # type: ignore[operator]
