"""The bodies of POST /kling/elements and POST /kling/voices (docs/contract.md §6.1): one body
per endpoint with every action's fields (``create | list | retrieve | delete``), as JSON types.
Validated by ``kling_gateway.domain.assets``; unknown fields are ignored (§5).

The create fields are the official Kling custom-element / custom-voice fields (what the hosted
service passes on), except that ``element_voice_id`` names a gateway voice id of the caller.
"""

from __future__ import annotations

import msgspec

ASSET_ACTIONS = ("create", "list", "retrieve", "delete")
# Asset states on the wire, in the task's words (docs/contract.md §3).
ASSET_PROCESSING, ASSET_SUCCEED, ASSET_FAILED = "processing", "succeed", "failed"
ELEMENT_TAGS = ("o_101", "o_102", "o_103", "o_104", "o_105", "o_106", "o_107", "o_108")
REFERENCE_TYPES = ("image_refer", "video_refer")
MAX_ASSET_NAME = 20
MAX_ELEMENT_DESCRIPTION = 100
MAX_REFER_IMAGES = 3
MAX_ASSET_ID = 128
MAX_ASSET_PAGE, DEFAULT_ASSET_PAGE = 100, 20


class ReferImage(msgspec.Struct):
    image_url: str


class ElementImageList(msgspec.Struct):
    frontal_image: str | None = None
    refer_images: list[ReferImage] | None = None


class ReferVideo(msgspec.Struct):
    video_url: str


class ElementVideoList(msgspec.Struct):
    refer_videos: list[ReferVideo] | None = None


class ElementTag(msgspec.Struct):
    tag_id: str


class ElementsRequestBody(msgspec.Struct, rename={"async_": "async"}):
    """``POST /kling/elements``. ``limit``/``offset`` are any number here: whole and in range
    is checked by the domain."""

    action: str | None = None
    element_id: str | None = None
    element_name: str | None = None
    element_description: str | None = None
    reference_type: str | None = None
    element_image_list: ElementImageList | None = None
    element_video_list: ElementVideoList | None = None
    element_voice_id: str | None = None
    tag_list: list[ElementTag] | None = None
    async_: bool | None = None
    limit: float | None = None
    offset: float | None = None


class VoicesRequestBody(msgspec.Struct, rename={"async_": "async"}):
    """``POST /kling/voices``: exactly one of ``voice_url`` and ``video_id`` for create."""

    action: str | None = None
    voice_id: str | None = None
    voice_name: str | None = None
    voice_url: str | None = None
    video_id: str | None = None
    async_: bool | None = None
    limit: float | None = None
    offset: float | None = None
