"""Elements and voices (docs/contract.md §6.1): the asset a user owns, the validation of the
bodies of POST /kling/elements and POST /kling/voices, and the answer rendered from an asset.

An asset is created ``processing`` and ends ``succeed`` (with its upstream id) or ``failed``;
a finished asset never changes again. Ids are gateway ids (``el_...``, ``vo_...``): the
upstream id is per Kling account, never shown, and only its owner's requests may use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kling_gateway.domain.ids import new_asset_id
from kling_gateway.domain.numbers import whole_or_default
from kling_gateway.domain.rules import http_url as check_http_url
from kling_gateway.domain.task import is_blank
from kling_gateway.protocol.assets import (
    ASSET_ACTIONS,
    ASSET_FAILED,
    ASSET_PROCESSING,
    ASSET_SUCCEED,
    DEFAULT_ASSET_PAGE,
    ELEMENT_TAGS,
    MAX_ASSET_ID,
    MAX_ASSET_NAME,
    MAX_ASSET_PAGE,
    MAX_ELEMENT_DESCRIPTION,
    MAX_REFER_IMAGES,
    REFERENCE_TYPES,
    ElementImageList,
    ElementsRequestBody,
    ElementTag,
    ElementVideoList,
    VoicesRequestBody,
)
from kling_gateway.protocol.errors import ApiNotImplemented, BadRequest

ELEMENT, VOICE = "element", "voice"
MAX_NAME, MAX_DESCRIPTION, MAX_ID = MAX_ASSET_NAME, MAX_ELEMENT_DESCRIPTION, MAX_ASSET_ID
MAX_PAGE, DEFAULT_PAGE = MAX_ASSET_PAGE, DEFAULT_ASSET_PAGE
ID_FIELD = {ELEMENT: "element_id", VOICE: "voice_id"}


@dataclass(slots=True)
class Asset:
    """One element or voice of one user, as stored. ``spec``: the validated create fields in
    their wire shape (gateway ids, never upstream ones); ``result``: what the provider reported
    (the upstream's image URLs, a voice's trial URL); ``account``: the upstream account it
    lives on (None: registered by an operator, or local)."""

    id: str
    user_id: str
    kind: str
    created_at: float
    state: str = ASSET_PROCESSING
    spec: dict[str, Any] = field(default_factory=dict)
    upstream_id: str | None = None
    account: str | None = None
    job_id: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: dict[str, str] | None = None
    updated_at: float = 0.0
    version: int = 0

    @property
    def finished(self) -> bool:
        return self.state != ASSET_PROCESSING

    def succeed(self, upstream_id: str, result: dict[str, Any], now: float) -> None:
        self.state, self.upstream_id, self.updated_at = ASSET_SUCCEED, upstream_id, now
        self.result = result

    def fail(self, code: str, message: str, now: float) -> None:
        self.state, self.updated_at = ASSET_FAILED, now
        self.error = {"code": code, "message": message}

    def view(self) -> dict[str, Any]:
        """The answer of create and retrieve, and an item of list (§6.1)."""
        body: dict[str, Any] = {ID_FIELD[self.kind]: self.id, **self.spec, **self.result}
        body["status"] = self.state
        if self.error is not None:
            body["error"] = self.error
        body["created_at"] = self.created_at
        if self.updated_at:
            body["updated_at"] = self.updated_at
        return body


def new_asset(user_id: str, kind: str, spec: dict[str, Any], now: float) -> Asset:
    """A new ``processing`` asset of ``user_id`` with a fresh gateway id."""
    return Asset(id=new_asset_id(kind), user_id=user_id, kind=kind, created_at=now, spec=spec)


def registered(user_id: str, kind: str, upstream_id: str, now: float) -> Asset:
    """An upstream id an operator registers (``kling-gateway assets add``): ready at once, on
    no known account."""
    asset = new_asset(user_id, kind, {}, now)
    asset.succeed(upstream_id, {}, now)
    return asset


@dataclass(frozen=True, slots=True)
class AssetQuery:
    """A validated request of one of the four actions (``spec`` for create, ``id`` for
    retrieve and delete, ``limit``/``offset`` for list)."""

    action: str
    spec: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    asynchronous: bool = False
    limit: int = DEFAULT_PAGE
    offset: int = 0


def element_query(body: ElementsRequestBody) -> AssetQuery:
    action = _action(body.action)
    if action == "create":
        return AssetQuery(action, spec=element_spec(body), asynchronous=body.async_ is True)
    return _other(action, ELEMENT, body.element_id, body.limit, body.offset)


def voice_query(body: VoicesRequestBody) -> AssetQuery:
    action = _action(body.action)
    if action == "create":
        return AssetQuery(action, spec=voice_spec(body), asynchronous=body.async_ is True)
    return _other(action, VOICE, body.voice_id, body.limit, body.offset)


def element_spec(body: ElementsRequestBody) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "element_name": _name("element_name", body.element_name, MAX_NAME),
        "element_description": _name(
            "element_description", body.element_description, MAX_DESCRIPTION
        ),
    }
    kind = body.reference_type or "image_refer"
    if kind not in REFERENCE_TYPES:
        raise BadRequest(f"field `reference_type` must be one of {', '.join(REFERENCE_TYPES)}")
    spec["reference_type"] = kind
    if kind == "image_refer":
        _absent("element_video_list", body.element_video_list, "image_refer")
        spec["element_image_list"] = _images(body.element_image_list)
    else:
        _absent("element_image_list", body.element_image_list, "video_refer")
        spec["element_video_list"] = _videos(body.element_video_list)
    if body.element_voice_id is not None:
        spec["element_voice_id"] = _id("element_voice_id", body.element_voice_id)
    if body.tag_list is not None:
        spec["tag_list"] = _tags(body.tag_list)
    return spec


def voice_spec(body: VoicesRequestBody) -> dict[str, Any]:
    spec: dict[str, Any] = {"voice_name": _name("voice_name", body.voice_name, MAX_NAME)}
    if (body.voice_url is None) == (body.video_id is None):
        raise BadRequest("fields `voice_url` and `video_id`: send exactly one of them")
    if body.voice_url is not None:
        check_http_url("voice_url", body.voice_url)
        spec["voice_url"] = body.voice_url
    else:
        spec["video_id"] = _id("video_id", body.video_id)
    return spec


def _action(action: str | None) -> str:
    if action is None:
        raise BadRequest(f"field `action` is required: {', '.join(ASSET_ACTIONS)}")
    if action not in ASSET_ACTIONS:
        raise ApiNotImplemented(f"action `{action}` is not implemented")
    return action


def _other(
    action: str, kind: str, asset_id: str | None, limit: float | None, offset: float | None
) -> AssetQuery:
    if action == "list":
        return AssetQuery(
            action,
            limit=_whole("limit", limit, 1, MAX_PAGE, DEFAULT_PAGE),
            offset=_whole("offset", offset, 0, 10**9, 0),
        )
    name = ID_FIELD[kind]
    if asset_id is None:
        raise BadRequest(f"field `{name}` is required for {action}")
    return AssetQuery(action, id=_id(name, asset_id))


def _name(name: str, value: str | None, high: int) -> str:
    if value is None:
        raise BadRequest(f"field `{name}` is required for create")
    if is_blank(value) or len(value) > high or "\x00" in value:
        raise BadRequest(f"field `{name}` must be 1 to {high} characters (no NUL)")
    return value


def _id(name: str, value: str | None) -> str:
    if value is None or is_blank(value) or len(value) > MAX_ID or "\x00" in value:
        raise BadRequest(f"field `{name}` must be 1 to {MAX_ID} characters (no NUL)")
    return value


def _absent(name: str, value: object, kind: str) -> None:
    if value is not None:
        raise BadRequest(f"field `{name}` cannot be sent with reference_type {kind}")


def _images(images: ElementImageList | None) -> dict[str, Any]:
    where = "element_image_list"
    if images is None:
        raise BadRequest(f"field `{where}` is required for reference_type image_refer")
    if images.frontal_image is None:
        raise BadRequest(f"field `{where}.frontal_image` is required")
    check_http_url(f"{where}.frontal_image", images.frontal_image)
    refers = images.refer_images or []
    if not 1 <= len(refers) <= MAX_REFER_IMAGES:
        raise BadRequest(f"field `{where}.refer_images` must list 1 to {MAX_REFER_IMAGES} images")
    for i, item in enumerate(refers):
        check_http_url(f"{where}.refer_images[{i}].image_url", item.image_url)
    return {
        "frontal_image": images.frontal_image,
        "refer_images": [{"image_url": item.image_url} for item in refers],
    }


def _videos(videos: ElementVideoList | None) -> dict[str, Any]:
    where = "element_video_list"
    if videos is None:
        raise BadRequest(f"field `{where}` is required for reference_type video_refer")
    refers = videos.refer_videos or []
    if len(refers) != 1:
        raise BadRequest(f"field `{where}.refer_videos` must list exactly one video")
    check_http_url(f"{where}.refer_videos[0].video_url", refers[0].video_url)
    return {"refer_videos": [{"video_url": refers[0].video_url}]}


def _tags(tags: list[ElementTag]) -> list[dict[str, str]]:
    seen: list[str] = []
    for i, tag in enumerate(tags):
        if tag.tag_id not in ELEMENT_TAGS:
            allowed = ", ".join(ELEMENT_TAGS)
            raise BadRequest(f"field `tag_list[{i}].tag_id` must be one of {allowed}")
        if tag.tag_id in seen:
            raise BadRequest(f"field `tag_list[{i}].tag_id` repeats {tag.tag_id!r}")
        seen.append(tag.tag_id)
    return [{"tag_id": tag} for tag in seen]


def _whole(name: str, value: float | None, low: int, high: int, default: int) -> int:
    return whole_or_default(f"field `{name}`", value, low, high, default)
