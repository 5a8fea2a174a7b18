"""The task record builder, the response bodies, task states and ids (docs/contract.md §1, §3)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import msgspec
import pytest

from kling_gateway.domain import ids
from kling_gateway.domain.ids import is_uuid, new_object_id, new_task_id, new_trace_id
from kling_gateway.domain.task import Task, epoch
from kling_gateway.protocol.task import (
    ACTIVE_STATES,
    TASK_TYPE_VIDEOS,
    TERMINAL_STATES,
    VIDEOS_API_ID,
    TaskState,
    failure_response,
    format_seconds,
    progress_response,
    success_response,
)

CREATED = 1740969535.3334567
# The seed's example record, all optional fields present (callback sits before the timings).
FULL_ORDER = [
    "_id",
    "id",
    "api_id",
    "application_id",
    "created_at",
    "started_at",
    "credential_id",
    "request",
    "trace_id",
    "type",
    "user_id",
    "job_id",
    "response",
    "callback",
    "duration",
    "elapsed",
    "finished_at",
]
OPTIONAL = {"started_at", "job_id", "response", "callback", "duration", "elapsed", "finished_at"}


def make(**kw: Any) -> Task:
    task_id = new_task_id()
    values: dict[str, Any] = {
        "id": task_id,
        "object_id": new_object_id(CREATED),
        "user_id": "user-1",
        "application_id": "app-1",
        "credential_id": "cred-1",
        "trace_id": new_trace_id(),
        "request": {"action": "text2video", "model": "kling-v1", "prompt": "a mug"},
        "created_at": CREATED,
    }
    values.update(kw)
    return Task(**values)


def finish(task: Task) -> Task:
    task.started_at = CREATED + 1.23456
    task.job_id = "CjJzzGfBfqcAAAAAAKdVMQ"
    task.state = TaskState.SUCCEED
    task.response = success_response(
        task.id, video_id="vid", video_url="https://cdn.example/v.mp4", duration="5.1"
    )
    task.callback = {"url": "https://hook.example/x", "state": "pending"}
    task.finished_at = CREATED + 317.1300001
    return task


# -- the record --------------------------------------------------------------------------------


def test_new_record_has_only_the_mandatory_fields_in_seed_order() -> None:
    task = make()
    record = task.record()
    assert list(record) == [k for k in FULL_ORDER if k not in OPTIONAL]
    assert record["_id"] == task.object_id
    assert record["id"] == task.id
    assert record["api_id"] == VIDEOS_API_ID
    assert record["type"] == TASK_TYPE_VIDEOS == "videos"
    assert record["application_id"] == "app-1"
    assert record["credential_id"] == "cred-1"
    assert record["user_id"] == "user-1"
    assert record["trace_id"] == task.trace_id
    assert record["request"] == {"action": "text2video", "model": "kling-v1", "prompt": "a mug"}


def test_finished_record_has_every_field_in_seed_order() -> None:
    record = finish(make()).record()
    assert list(record) == FULL_ORDER


def test_finished_record_without_callback_keeps_the_order() -> None:
    task = finish(make())
    task.callback = None
    assert list(task.record()) == [k for k in FULL_ORDER if k != "callback"]


@pytest.mark.parametrize(
    ("attribute", "value", "key"),
    [
        ("started_at", CREATED + 2, "started_at"),
        ("job_id", "job-1", "job_id"),
        ("response", {"task_id": "t", "state": "pending"}, "response"),
        ("callback", {"url": "https://hook.example", "state": "pending"}, "callback"),
    ],
)
def test_each_optional_field_appears_only_once_set(attribute: str, value: Any, key: str) -> None:
    task = make()
    assert key not in task.record()
    setattr(task, attribute, value)
    record = task.record()
    assert key in record
    assert set(record) - OPTIONAL == {k for k in FULL_ORDER if k not in OPTIONAL}
    assert set(record) & OPTIONAL == {key}
    assert list(record) == [k for k in FULL_ORDER if k in record]


def test_timings_appear_together_only_once_finished() -> None:
    task = make(started_at=CREATED + 1)
    task.response = progress_response(task.id, TaskState.PROCESSING)
    record = task.record()
    assert not {"duration", "elapsed", "finished_at"} & set(record)
    task.finished_at = CREATED + 10
    record = task.record()
    assert {"duration", "elapsed", "finished_at"} <= set(record)
    assert list(record)[-3:] == ["duration", "elapsed", "finished_at"]


def test_duration_and_elapsed_are_finished_minus_created() -> None:
    task = finish(make())
    record = task.record()
    assert record["duration"] == record["elapsed"]
    assert record["duration"] == pytest.approx(task.finished_at - task.created_at)  # type: ignore[operator]
    assert record["duration"] == pytest.approx(317.1300001)


def test_epochs_are_rounded_to_milliseconds() -> None:
    task = finish(make())
    record = task.record()
    assert record["created_at"] == 1740969535.333
    assert record["started_at"] == 1740969536.568  # 1740969536.5680167
    assert record["finished_at"] == 1740969852.463  # 1740969852.4634568
    for key in ("created_at", "started_at", "finished_at"):
        assert record[key] == round(record[key], 3)
    assert epoch(1.23456) == 1.235
    assert epoch(1.2344) == 1.234
    assert epoch(7.0) == 7.0


def test_record_json_is_the_record() -> None:
    task = finish(make())
    assert msgspec.json.decode(task.record_json()) == task.record()
    assert task.record_json().startswith(b'{"_id":')


def test_provider_data_and_state_are_never_shown() -> None:
    task = finish(make(provider_data={"plan": "secret"}))
    encoded = task.record_json()
    assert b"provider_data" not in encoded
    assert b"secret" not in encoded
    assert "state" not in task.record()
    assert "version" not in task.record()
    assert "object_id" not in task.record()


# -- the response bodies of docs/contract.md §3 ------------------------------------------------


@pytest.mark.parametrize("state", [TaskState.PENDING, TaskState.PROCESSING])
def test_progress_response_has_no_success_key(state: TaskState) -> None:
    body = progress_response("t-1", state)
    assert body == {"task_id": "t-1", "state": state.value}
    assert "success" not in body
    assert isinstance(body["state"], str)
    assert type(body["state"]) is str


def test_success_response_keys_in_seed_order() -> None:
    body = success_response(
        "t-1", video_id="v-1", video_url="https://cdn.example/v.mp4", duration="5.1"
    )
    assert list(body) == ["success", "video_id", "video_url", "duration", "state", "task_id"]
    assert body == {
        "success": True,
        "video_id": "v-1",
        "video_url": "https://cdn.example/v.mp4",
        "duration": "5.1",
        "state": "succeed",
        "task_id": "t-1",
    }
    assert type(body["state"]) is str
    assert msgspec.json.encode(body).startswith(b'{"success":true,"video_id":"v-1"')


def test_failure_response_shape() -> None:
    body = failure_response("t-1", code="generation_failed", message="no video")
    assert body == {
        "success": False,
        "task_id": "t-1",
        "state": "failed",
        "error": {"code": "generation_failed", "message": "no video"},
    }
    assert type(body["state"]) is str


@pytest.mark.parametrize(
    ("seconds", "text"), [(5.1, "5.1"), (5.0, "5.0"), (10.04, "10.0"), (4.96, "5.0")]
)
def test_format_seconds_is_a_string_of_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


# -- states ---------------------------------------------------------------------------------------


def test_state_words_are_the_contract_words() -> None:
    assert [s.value for s in TaskState] == ["pending", "processing", "succeed", "failed"]


def test_terminal_states_are_exactly_succeed_and_failed() -> None:
    assert {TaskState.SUCCEED, TaskState.FAILED} == TERMINAL_STATES
    assert {TaskState.PENDING, TaskState.PROCESSING} == ACTIVE_STATES
    assert set(TaskState) == TERMINAL_STATES | ACTIVE_STATES
    assert [s for s in TaskState if s.is_terminal] == [TaskState.SUCCEED, TaskState.FAILED]


# -- ids ------------------------------------------------------------------------------------------

OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")


def test_object_id_is_24_lowercase_hex_with_a_timestamp_prefix() -> None:
    oid = new_object_id(1740969535.9)
    assert OBJECT_ID.match(oid)
    assert int(oid[:8], 16) == 1740969535
    # the seed's own _id decodes the same way, to a second of its created_at
    assert int("67c5163f550a4144a5b68698"[:8], 16) == int(1740969535.333)


def test_object_id_uses_the_clock_when_no_time_is_given() -> None:
    import time

    before = int(time.time())
    oid = new_object_id()
    after = int(time.time())
    assert OBJECT_ID.match(oid)
    assert before <= int(oid[:8], 16) <= after


def test_object_ids_increase(monkeypatch: pytest.MonkeyPatch) -> None:
    # The counter starts at a random value; pin it so a wrap-around cannot make this flaky.
    monkeypatch.setattr(ids, "_counter", 0)
    same_second = [new_object_id(1_700_000_000) for _ in range(50)]
    assert len(set(same_second)) == 50
    assert same_second == sorted(same_second)
    later = [new_object_id(t) for t in (1_700_000_000, 1_700_000_001, 1_800_000_000)]
    assert later == sorted(later)
    assert later[0] < later[1] < later[2]


def test_task_and_trace_ids_are_uuids() -> None:
    task_ids = {new_task_id() for _ in range(20)}
    assert len(task_ids) == 20
    trace_ids = {new_trace_id() for _ in range(2000)}
    assert len(trace_ids) == 2000
    for value in [*task_ids, *trace_ids]:
        parsed = uuid.UUID(value)
        assert str(parsed) == value
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert is_uuid(value)
    # Every hex digit outside the version and variant is drawn: each takes all 16 values.
    digits = [{t.replace("-", "")[i] for t in trace_ids} for i in range(32)]
    assert [len(d) for d in digits] == [16] * 12 + [1] + [16] * 3 + [4] + [16] * 15
    assert not is_uuid("not-a-uuid")
    assert not is_uuid("67c5163f550a4144a5b68698")


def test_trace_ids_are_random_version_4_uuids() -> None:
    import uuid

    seen = {new_trace_id() for _ in range(2000)}
    assert len(seen) == 2000
    for text in list(seen)[:200]:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
