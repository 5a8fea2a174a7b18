"""``client.elements`` and ``client.voices`` (docs/contract.md §6.1): a user's elements and
voices, for ``videos.create(element_list=..., voice_list=...)``. Written once for both clients,
as the other resources are (see ``_base``)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Generic, Literal

import httpx

from kling_gateway.client._base import Core, Flow, It_co, R_co, Runner, decode
from kling_gateway.client.types import Record

ELEMENTS_PATH = "/kling/elements"
VOICES_PATH = "/kling/voices"


def _decoded(exchange: Flow[httpx.Response]) -> Flow[Record]:
    return decode((yield from exchange))


def _body(action: str, fields: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    sent = {key: value for key, value in fields.items() if value is not None}
    return {"action": action, **sent, **extra}


class _Assets(Generic[R_co, It_co]):
    path: str
    id_field: str

    def __init__(self, core: Core, runner: Runner[R_co, It_co]) -> None:
        self._core = core
        self._runner = runner

    def _call(self, action: str, fields: Mapping[str, Any], extra: Mapping[str, Any]) -> R_co:
        return self._runner._run(self._core.call(self.path, _body(action, fields, extra)))

    def _create(self, fields: Mapping[str, Any], extra: Mapping[str, Any], key: str | None) -> R_co:
        # One Idempotency-Key across the retries of this call: a retried create makes no second.
        headers = {"idempotency-key": key or str(uuid.uuid4())}
        request = self._core.build(self.path, _body("create", fields, extra), headers=headers)
        return self._runner._run(_decoded(self._core.exchange(request)))

    def retrieve(self, id: str) -> R_co:
        """The asset, or ``{}`` when the id is not one of yours."""
        return self._call("retrieve", {self.id_field: id}, {})

    def list(self, limit: int | None = None, offset: int | None = None) -> R_co:
        """One page of your assets, newest first: ``{"items", "count"}`` (``count``: all)."""
        return self._call("list", {"limit": limit, "offset": offset}, {})

    def delete(self, id: str) -> R_co:
        """``{"<kind>_id", "deleted"}``; ``deleted`` is false for an id not yours."""
        return self._call("delete", {self.id_field: id}, {})


class Elements(_Assets[R_co, It_co]):
    path, id_field = ELEMENTS_PATH, "element_id"

    def create(
        self,
        element_name: str,
        element_description: str,
        *,
        frontal_image: str | None = None,
        refer_images: Sequence[str] | None = None,
        video_url: str | None = None,
        reference_type: Literal["image_refer", "video_refer"] | None = None,
        element_voice_id: str | None = None,
        tag_ids: Sequence[str] | None = None,
        async_: bool | None = None,
        idempotency_key: str | None = None,
        **extra: Any,
    ) -> R_co:
        """Create an element: from images (``frontal_image`` and 1..3 ``refer_images``), or
        with ``video_url`` from a video (``reference_type`` is then ``video_refer``). Blocks
        until it is ready unless ``async_``; the answer's ``status`` says where it stands. The
        ``Idempotency-Key`` header (a new uuid4 unless given) stays the same across retries."""
        if video_url is not None and reference_type is None:
            reference_type = "video_refer"
        images = None
        if frontal_image is not None or refer_images is not None:
            images = {
                "frontal_image": frontal_image,
                "refer_images": [{"image_url": url} for url in refer_images or []],
            }
        fields = {
            "element_name": element_name,
            "element_description": element_description,
            "reference_type": reference_type,
            "element_image_list": images,
            "element_video_list": (
                None if video_url is None else {"refer_videos": [{"video_url": video_url}]}
            ),
            "element_voice_id": element_voice_id,
            "tag_list": None if tag_ids is None else [{"tag_id": tag} for tag in tag_ids],
            "async": async_,
        }
        return self._create(fields, extra, idempotency_key)


class Voices(_Assets[R_co, It_co]):
    path, id_field = VOICES_PATH, "voice_id"

    def create(
        self,
        voice_name: str,
        *,
        voice_url: str | None = None,
        video_id: str | None = None,
        async_: bool | None = None,
        idempotency_key: str | None = None,
        **extra: Any,
    ) -> R_co:
        """Create a voice from a recording (``voice_url``) or from one of your videos
        (``video_id``); exactly one of the two."""
        fields = {
            "voice_name": voice_name,
            "voice_url": voice_url,
            "video_id": video_id,
            "async": async_,
        }
        return self._create(fields, extra, idempotency_key)
