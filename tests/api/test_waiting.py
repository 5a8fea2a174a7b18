"""``is_finished`` on real stored records (the byte scan the blocking call relies on)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from kling_gateway.api.waiting import is_finished
from kling_gateway.domain.task import Task
from kling_gateway.protocol.task import (
    TaskState,
    failure_response,
    progress_response,
    success_response,
)
from kling_gateway.storage.rows import initial_callback_view
from tests.harness import make_task

CREATED = 1_740_969_535.333


def task(**request: Any) -> Task:
    return make_task("user-1", created_at=CREATED, **request)


def processing(t: Task) -> Task:
    t.job_id = "job-1"
    t.started_at = CREATED + 1
    t.state = TaskState.PROCESSING
    t.response = progress_response(t.id, TaskState.PROCESSING)
    return t


def succeeded(t: Task) -> Task:
    processing(t)
    t.state = TaskState.SUCCEED
    t.response = success_response(
        t.id, video_id="v", video_url="https://cdn.example/v.mp4", duration="5.1"
    )
    t.finished_at = CREATED + 300.25
    return t


def failed(t: Task) -> Task:
    processing(t)
    t.state = TaskState.FAILED
    t.response = failure_response(t.id, code="generation_failed", message="no")
    t.finished_at = CREATED + 12
    return t


def test_new_task_is_not_finished() -> None:
    assert not is_finished(task().record_json())


def test_submitted_and_processing_tasks_are_not_finished() -> None:
    t = task()
    t.job_id = "job-1"
    t.response = progress_response(t.id, TaskState.PENDING)
    assert not is_finished(t.record_json())
    assert not is_finished(processing(task()).record_json())


def test_succeeded_task_is_finished() -> None:
    assert is_finished(succeeded(task()).record_json())


def test_failed_task_is_finished() -> None:
    assert is_finished(failed(task()).record_json())


def test_finished_task_with_a_callback_is_finished() -> None:
    t = succeeded(task(callback_url="https://hook.example/cb"))
    t.callback = initial_callback_view("https://hook.example/cb", CREATED + 301)
    assert is_finished(t.record_json())
    t.callback = {**t.callback, "state": "failed", "attempts": 10, "last_error": "refused"}
    assert is_finished(t.record_json())


@pytest.mark.parametrize(
    "request_extra",
    [
        {"finished_at": 1.5},
        {"finished_at": 1740969852.463, "prompt": "a mug"},
        {"meta": {"finished_at": 1}},
        {"meta": {"a": 1, "finished_at": 2}},
        {"meta": [{"x": 0, "finished_at": 3}]},
        {"finished_at": {"nested": True}},
        {"finished_at": [1, 2]},
        {"finished_at": None},
        {"note": ',"finished_at":1}'},
    ],
)
def test_finished_at_inside_the_request_does_not_count(request_extra: dict[str, Any]) -> None:
    t = task(**request_extra)
    assert b"finished_at" in t.record_json()
    assert not is_finished(t.record_json())
    assert not is_finished(processing(t).record_json())
    # and it does not hide a real finish either
    assert is_finished(succeeded(t).record_json())


def test_a_failed_callback_state_on_an_unfinished_task_does_not_count() -> None:
    t = processing(task(callback_url="https://hook.example/cb", callback_events=["processing"]))
    t.callback = {
        "url": "https://hook.example/cb",
        "state": "failed",
        "attempts": 3,
        "last_status": 500,
        "last_error": "HTTP 500",
        "next_attempt_at": None,
        "delivered_at": None,
    }
    assert not is_finished(t.record_json())


def test_the_same_answer_as_decoding_the_record() -> None:
    for t in (task(), processing(task()), succeeded(task()), failed(task())):
        record = t.record_json()
        assert is_finished(record) is ("finished_at" in msgspec.json.decode(record))
