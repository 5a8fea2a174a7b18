"""The fake's in-memory world: tasks per account, counters and the fault dice."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from kling_gateway.fake_upstream.accounts import (
    ACCOUNT_ERRORS,
    OVER_LIMIT,
    FakeAccount,
    index_by_access_key,
)
from kling_gateway.fake_upstream.config import (
    FAILURE_MESSAGE,
    SAFETY_MESSAGE,
    FakeUpstreamConfig,
    FaultRule,
)
from kling_gateway.fake_upstream.lip_sync import LipSyncWorld
from kling_gateway.fake_upstream.validation import CreateRequest, FakeApiError

EXTEND_SECONDS = 4.0
TRIGGER_FAIL = "[fake:fail]"
TRIGGER_UNSAFE = "[fake:unsafe]"
TRIGGER_UNSAFE_LATER = "[fake:unsafe-later]"


@dataclass(slots=True)
class FakeTask:
    task_id: str
    kind: str
    account: str
    request: CreateRequest
    media_base: str
    created_at: int
    updated_at: int
    finish_in: float
    outcome_message: str | None = None  # None: the task will succeed
    status: str = "submitted"
    video_id: str | None = None
    duration: str = "5.1"
    parent_video: dict[str, Any] | None = None
    # Epoch seconds of the move to succeed/failed (admin only: benches measure lag from it).
    finished_at: float | None = None

    def media_url(self) -> str:
        return f"{self.media_base.rstrip('/')}/fake-media/{self.task_id}.mp4"

    def video(self) -> dict[str, Any]:
        url = self.media_url()
        return {"id": self.video_id, "url": url, "watermark_url": url, "duration": self.duration}

    def to_json(self) -> dict[str, Any]:
        info: dict[str, Any] = {}
        if self.request.external_task_id is not None:
            info["external_task_id"] = self.request.external_task_id
        if self.parent_video is not None:
            info["parent_video"] = self.parent_video
        doc: dict[str, Any] = {
            "task_id": self.task_id,
            "task_status": self.status,
            "task_status_msg": self.outcome_message if self.status == "failed" else "",
            "task_info": info,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if self.status == "succeed":
            doc["task_result"] = {"videos": [self.video()]}
            doc["final_unit_deduction"] = "1"
        return doc


@dataclass(slots=True)
class Counters:
    requests_by_route: Counter[str] = field(default_factory=Counter)
    creates_by_external_id: Counter[str] = field(default_factory=Counter)
    creates: int = 0
    callbacks_sent: int = 0
    callbacks_failed: int = 0
    faults_injected: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests_by_route": dict(self.requests_by_route),
            "creates_by_external_id": dict(self.creates_by_external_id),
            "creates": self.creates,
            "callbacks_sent": self.callbacks_sent,
            "callbacks_failed": self.callbacks_failed,
            "faults_injected": dict(self.faults_injected),
        }


class FakeState:
    """All tasks of all accounts, the counters and the current faults of one app instance."""

    def __init__(self, config: FakeUpstreamConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        # Copies: a rule's remaining ``count`` belongs to this instance.
        self.faults: dict[str, FaultRule] = {k: replace(v) for k, v in config.faults.items()}
        self.counters = Counters()
        self.tasks: dict[str, FakeTask] = {}
        self._by_external: dict[tuple[str, str], str] = {}
        self._next_id = 800_000_000_000_000_000 + self.rng.randrange(10**15)
        default = FakeAccount(config.access_key, config.access_key, config.secret_key)
        self.accounts = index_by_access_key(config.accounts or [default])
        self.in_flight: Counter[str] = Counter()
        self.lip_sync = LipSyncWorld()

    # --- accounts ------------------------------------------------------------------------

    def account_by_key(self, access_key: str) -> FakeAccount | None:
        return self.accounts.get(access_key)

    def account_named(self, name: str) -> FakeAccount | None:
        return next((a for a in self.accounts.values() if a.name == name), None)

    def check_account(self, account: FakeAccount) -> None:
        """An account-level error (1100-1103) if a test put one on the account."""
        if account.error_code is not None:
            status, message = ACCOUNT_ERRORS[account.error_code]
            raise FakeApiError(status, account.error_code, message)

    def take_slot(self, account: FakeAccount) -> None:
        """Count a new task against the account's concurrency, or answer 1303/1102."""
        if not account.usable_packs():
            raise FakeApiError(429, 1102, "resource pack used up")
        limit = account.max_concurrency
        if limit is not None and self.in_flight[account.name] >= limit:
            account.rejected_over_limit += 1
            raise FakeApiError(429, 1303, OVER_LIMIT)
        self.in_flight[account.name] += 1
        account.peak_in_flight = max(account.peak_in_flight, self.in_flight[account.name])

    # --- faults --------------------------------------------------------------------------

    def fault(self, kind: str, route: str, *, after: bool | None = None) -> FaultRule | None:
        """The rule of ``kind`` if it fires for this request on ``route``.

        ``after``: only a rule for that phase (before/after the request took effect) fires.
        """
        rule = self.faults.get(kind)
        if rule is None or not rule.matches(route) or (after is not None and rule.after != after):
            return None
        if not rule.fire(self.rng):
            return None
        self.counters.faults_injected[kind] += 1
        return rule

    # --- tasks ---------------------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self.config.clock() * 1000)

    def find(self, account: str, kind: str, ident: str) -> FakeTask | None:
        """A task of ``account`` by task id, else by external_task_id."""
        task = self.tasks.get(ident)
        if task is None:
            found = self._by_external.get((account, ident))
            task = self.tasks.get(found) if found is not None else None
        if task is None or task.account != account or task.kind != kind:
            return None
        return task

    def page(self, account: str, kind: str, page_num: int, page_size: int) -> list[FakeTask]:
        mine = [t for t in self.tasks.values() if t.account == account and t.kind == kind]
        mine.reverse()  # newest first (dicts keep insertion order)
        start = (page_num - 1) * page_size
        return mine[start : start + page_size]

    def finished_since(self, since: float) -> list[dict[str, Any]]:
        """Tasks that finished after ``since`` (epoch seconds), oldest first."""
        done = [t for t in self.tasks.values() if (t.finished_at or 0.0) > since]
        done.sort(key=lambda t: t.finished_at or 0.0)
        return [
            {
                "task_id": t.task_id,
                "external_task_id": t.request.external_task_id,
                "task_status": t.status,
                "created_at": t.created_at / 1000,
                "finished_at": t.finished_at,
            }
            for t in done
        ]

    def video_of_account(self, account: str, video_id: str) -> FakeTask | None:
        for task in self.tasks.values():
            if task.account == account and task.video_id == video_id:
                return task if task.status == "succeed" else None
        return None

    def _outcome(self, request: CreateRequest) -> str | None:
        prompt = request.prompt or ""
        if TRIGGER_UNSAFE_LATER in prompt:
            return SAFETY_MESSAGE
        if TRIGGER_FAIL in prompt:
            return FAILURE_MESSAGE
        if (rule := self.fault("task_safety", "create")) is not None:
            return rule.message or SAFETY_MESSAGE
        if (rule := self.fault("task_failure", "create")) is not None:
            return rule.message or FAILURE_MESSAGE
        return None

    def reject_unsafe(self, request: CreateRequest) -> None:
        """The create-time content safety check (code 1301)."""
        rule = self.fault("create_safety", "create")
        if rule is not None or TRIGGER_UNSAFE in (request.prompt or ""):
            message = rule.message if rule is not None and rule.message else SAFETY_MESSAGE
            raise FakeApiError(400, 1301, message)

    def create(self, account: str, request: CreateRequest, media_base: str) -> FakeTask:
        external = request.external_task_id
        if external is not None and (account, external) in self._by_external:
            raise FakeApiError(400, 1201, f"external_task_id {external} already exists")
        parent = None
        if request.video_id is not None:
            parent = self.video_of_account(account, request.video_id)
            if parent is None:
                raise FakeApiError(400, 1201, f"video_id {request.video_id} does not exist")
        self.reject_unsafe(request)
        holder = self.account_named(account)
        if holder is not None:
            self.take_slot(holder)
        low, high = self.config.finish_after
        self._next_id += 1 + self.rng.randrange(1000)
        now = self.now_ms()
        task = FakeTask(
            task_id=str(self._next_id),
            kind=request.kind,
            account=account,
            request=request,
            media_base=media_base,
            created_at=now,
            updated_at=now,
            finish_in=self.rng.uniform(low, high),
            outcome_message=self._outcome(request),
        )
        self._set_duration(task, parent)
        self.tasks[task.task_id] = task
        if external is not None:
            self._by_external[(account, external)] = task.task_id
            self.counters.creates_by_external_id[external] += 1
        self.counters.creates += 1
        return task

    def _set_duration(self, task: FakeTask, parent: FakeTask | None) -> None:
        if task.request.result_seconds is not None:
            task.duration = f"{task.request.result_seconds:.1f}"
            return
        if parent is None:
            task.duration = f"{int(task.request.duration)}.1"
            return
        task.parent_video = parent.video()
        task.duration = f"{float(parent.duration) + EXTEND_SECONDS:.1f}"

    def advance(self, task: FakeTask, status: str) -> None:
        task.status = status
        task.updated_at = self.now_ms()
        if status in ("succeed", "failed") and task.finished_at is None:
            task.finished_at = self.config.clock()
            self.in_flight[task.account] -= 1  # the slot is held until the task ends
        if status == "succeed":
            task.video_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
