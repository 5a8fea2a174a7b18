"""The fake's custom elements and voices (the official ``/v1/general`` endpoints).

* ``POST /v1/general/advanced-custom-elements`` and ``POST /v1/general/custom-voices``: create
  a creation task (``external_task_id`` unique per account), answered at once.
* ``GET /v1/general/{resource}/{id}``: the task by task id or ``external_task_id``;
  ``GET /v1/general/{resource}?pageNum=&pageSize=``: a page, newest first.
* ``POST /v1/general/delete-elements`` ``{element_id}`` / ``delete-voices`` ``{voice_id}``.

A task is ``submitted``, then ``processing`` after ``processing_after`` seconds and finished
after ``finish_after[0]``: ``succeed`` with ``task_result.elements`` (or ``voices``), or
``failed`` when the name holds ``[fake:fail]``. Ids belong to the account that made them: a
video create naming another account's element or voice is refused (1201), as upstream.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from kling_gateway.fake_upstream.config import FakeUpstreamConfig
from kling_gateway.fake_upstream.validation_base import FakeApiError, http_url, invalid

ELEMENTS, VOICES = "advanced-custom-elements", "custom-voices"
RESOURCES = (ELEMENTS, VOICES)
TRIGGER_FAIL = "[fake:fail]"
FAIL_MESSAGE = "the reference could not be recognised"
TAGS = frozenset(f"o_{n}" for n in range(101, 109))
ELEMENT_FIELDS = frozenset(
    {"element_name", "element_description", "reference_type", "element_image_list"}
    | {"element_video_list", "element_voice_id", "tag_list", "callback_url", "external_task_id"}
)
VOICE_FIELDS = frozenset({"voice_name", "voice_url", "video_id", "callback_url"})
VOICE_FIELDS |= {"external_task_id"}


@dataclass(slots=True)
class GeneralTask:
    task_id: str
    resource: str
    account: str
    body: dict[str, Any]
    created: float
    made_id: str  # the element_id / voice_id it makes
    fails: bool

    def status(self, config: FakeUpstreamConfig) -> str:
        age = config.clock() - self.created
        if age < config.processing_after:
            return "submitted"
        if age < config.finish_after[0]:
            return "processing"
        return "failed" if self.fails else "succeed"

    def to_json(self, config: FakeUpstreamConfig) -> dict[str, Any]:
        status = self.status(config)
        created_ms = int(self.created * 1000)
        doc: dict[str, Any] = {
            "task_id": self.task_id,
            "task_status": status,
            "task_status_msg": FAIL_MESSAGE if status == "failed" else "",
            "task_info": {"external_task_id": self.body.get("external_task_id")},
            "created_at": created_ms,
            "updated_at": created_ms,
        }
        if status == "succeed":
            doc["task_result"] = self._result()
        return doc

    def _result(self) -> dict[str, Any]:
        if self.resource == VOICES:
            trial = f"https://fake-kling.example/voices/{self.made_id}.mp3"
            voice = {"voice_id": self.made_id, "voice_name": self.body["voice_name"]}
            return {"voices": [{**voice, "trial_url": trial, "owned_by": "user"}]}
        element = {k: v for k, v in self.body.items() if k.startswith(("element_", "tag_"))}
        return {
            "elements": [
                {**element, "element_id": self.made_id, "status": "succeed"},
            ]
        }


@dataclass(slots=True)
class FakeGeneral:
    """The elements and voices of every account."""

    config: FakeUpstreamConfig
    tasks: dict[str, GeneralTask] = field(default_factory=dict)
    by_external: dict[tuple[str, str, str], str] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    creates: int = 0

    def made(self, account: str, resource: str) -> set[str]:
        """The ids ``account`` has made (and not deleted) with ``resource``."""
        return {
            t.made_id
            for t in self.tasks.values()
            if t.account == account
            and t.resource == resource
            and t.status(self.config) == "succeed"
            and t.made_id not in self.deleted
        }

    def seed(self, account: str, resource: str, made_id: str) -> None:
        """A ready element or voice ``made_id`` of ``account``, as if made long ago (tests that
        use upstream ids without making them first)."""
        name = {"element_name": "seeded"} if resource == ELEMENTS else {"voice_name": "seeded"}
        self.tasks[f"seed-{made_id}"] = GeneralTask(
            task_id=f"seed-{made_id}",
            resource=resource,
            account=account,
            body=name,
            created=self.config.clock() - 86_400.0,
            made_id=made_id,
            fails=False,
        )

    def create(self, account: str, resource: str, body: Any, has_video: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise FakeApiError(400, 1200, "the request body must be a JSON object")
        if resource == ELEMENTS:
            self._check_element(account, body)
        else:
            self._check_voice(body, has_video)
        external = body.get("external_task_id")
        key = (account, resource, str(external))
        if external is not None and key in self.by_external:
            raise invalid(f"external_task_id {external} already exists")
        name = str(body.get("element_name") or body.get("voice_name"))
        task = GeneralTask(
            task_id=str(uuid.uuid4().int)[:18],
            resource=resource,
            account=account,
            body=body,
            created=self.config.clock(),
            made_id=str(uuid.uuid4().int)[:18],
            fails=TRIGGER_FAIL in name,
        )
        self.tasks[task.task_id] = task
        if external is not None:
            self.by_external[key] = task.task_id
        self.creates += 1
        full = task.to_json(self.config)
        return {k: full[k] for k in ("task_id", "task_status", "task_info", "created_at")}

    def find(self, account: str, resource: str, ident: str) -> dict[str, Any]:
        task = self.tasks.get(ident)
        if task is None:
            found = self.by_external.get((account, resource, ident))
            task = self.tasks.get(found) if found is not None else None
        if task is None or task.account != account or task.resource != resource:
            raise FakeApiError(404, 1203, f"task {ident} does not exist")
        return task.to_json(self.config)

    def page(self, account: str, resource: str, page_num: int, page_size: int) -> list[Any]:
        mine = [t for t in self.tasks.values() if (t.account, t.resource) == (account, resource)]
        mine.reverse()
        start = (page_num - 1) * page_size
        return [t.to_json(self.config) for t in mine[start : start + page_size]]

    def delete(self, account: str, resource: str, body: Any) -> dict[str, Any]:
        key = "element_id" if resource == ELEMENTS else "voice_id"
        ident = body.get(key) if isinstance(body, dict) else None
        if not isinstance(ident, str) or not ident:
            raise invalid(f"{key} is required")
        if ident not in self.made(account, resource):
            raise FakeApiError(404, 1203, f"{key} {ident} does not exist")
        self.deleted.add(ident)
        return {}

    def check_references(self, account: str, body: Any) -> None:
        """A video create may name only this account's elements and voices."""
        if not isinstance(body, dict):
            return
        for name, key, resource in (
            ("element_list", "element_id", ELEMENTS),
            ("voice_list", "voice_id", VOICES),
        ):
            items = body.get(name)
            if not isinstance(items, list):
                continue
            mine = self.made(account, resource)
            for item in items:
                ident = item.get(key) if isinstance(item, dict) else None
                if ident not in mine:
                    raise invalid(f"{key} {ident} does not exist")

    # --- validation, as the reference states it --------------------------------------

    def _check_element(self, account: str, body: dict[str, Any]) -> None:
        _known(body, ELEMENT_FIELDS)
        _text(body, "element_name", 20)
        _text(body, "element_description", 100)
        kind = body.get("reference_type")
        if kind == "image_refer":
            _images(body.get("element_image_list"))
        elif kind == "video_refer":
            _videos(body.get("element_video_list"))
        else:
            raise invalid("reference_type must be image_refer or video_refer")
        voice = body.get("element_voice_id")
        if voice is not None and voice not in self.made(account, VOICES):
            raise invalid(f"element_voice_id {voice} does not exist")
        tags = body.get("tag_list")
        if tags is not None and (
            not isinstance(tags, list)
            or not all(isinstance(t, dict) and t.get("tag_id") in TAGS for t in tags)
        ):
            raise invalid("tag_list must be a list of {tag_id} with known tags")

    @staticmethod
    def _check_voice(body: dict[str, Any], has_video: Any) -> None:
        _known(body, VOICE_FIELDS)
        _text(body, "voice_name", 20)
        url, video = body.get("voice_url"), body.get("video_id")
        if (url is None) == (video is None):
            raise invalid("exactly one of voice_url and video_id is required")
        if url is not None and not (isinstance(url, str) and http_url(url)):
            raise invalid("voice_url must be an http(s) URL")
        if video is not None and not has_video(video):
            raise invalid(f"video_id {video} does not exist")


def _known(body: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = set(body) - allowed
    if unknown:
        raise invalid(f"unknown fields: {sorted(unknown)}")


def _text(body: dict[str, Any], name: str, limit: int) -> None:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise invalid(f"{name} is required, at most {limit} characters")


def _images(value: Any) -> None:
    if not isinstance(value, dict) or not _url(value.get("frontal_image")):
        raise invalid("element_image_list.frontal_image is required")
    refers = value.get("refer_images")
    if not isinstance(refers, list) or not 1 <= len(refers) <= 3:
        raise invalid("element_image_list.refer_images must hold 1 to 3 images")
    if not all(isinstance(r, dict) and _url(r.get("image_url")) for r in refers):
        raise invalid("every refer_images item needs an image_url")


def _videos(value: Any) -> None:
    videos = value.get("refer_videos") if isinstance(value, dict) else None
    if not isinstance(videos, list) or len(videos) != 1:
        raise invalid("element_video_list.refer_videos must hold one video")
    if not isinstance(videos[0], dict) or not _url(videos[0].get("video_url")):
        raise invalid("refer_videos[0].video_url is required")


def _url(value: Any) -> bool:
    return isinstance(value, str) and http_url(value)
