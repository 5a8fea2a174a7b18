"""Pure translations between this project's requests and the official Kling API.

* ``build_create`` turns a validated request (``VideoParams``, docs/contract.md §2) into the
  upstream path segment and JSON body of a create call.
* ``status_from_task`` turns an upstream task object into a worker ``Status``.
* ``error_from_response`` turns an upstream error (HTTP status, ``code``, ``message``) into a
  ``ProviderError`` following the error table of the upstream spec page.

Upstream words that end up in records (error messages, ``task_status_msg``) go through
``clean_message``: markup stripped and at most ``MAX_MESSAGE_CHARS`` characters, since an
upstream (or a proxy before it) may answer with a whole HTML page.
"""

from __future__ import annotations

import html
import math
import re
from typing import Any, Final

from kling_gateway.domain.outcomes import ProviderError, Status, VideoResult
from kling_gateway.domain.params import VideoParams
from kling_gateway.protocol.enums import AUDIO_MODELS, CAMERA_AXES
from kling_gateway.protocol.retry_after import parse_retry_after
from kling_gateway.protocol.task import TaskState
from kling_gateway.providers.kling.mapping_v3 import (
    KIND_OMNI_VIDEO,
    add_v3_fields,
    is_omni,
    omni_body,
)

KIND_TEXT2VIDEO: Final = "text2video"
KIND_IMAGE2VIDEO: Final = "image2video"
KIND_VIDEO_EXTEND: Final = "video-extend"
# The §7 kinds' jobs (docs/contract.md §7; ``mapping_kinds``) are polled like the others.
KINDS: Final = frozenset(
    {
        KIND_TEXT2VIDEO,
        KIND_IMAGE2VIDEO,
        KIND_VIDEO_EXTEND,
        KIND_OMNI_VIDEO,
        "motion-control",
        "advanced-lip-sync",
    }
)

_KIND_BY_ACTION: Final = {
    "text2video": KIND_TEXT2VIDEO,
    "image2video": KIND_IMAGE2VIDEO,
    "extend": KIND_VIDEO_EXTEND,
}

ERROR_GENERATION_FAILED: Final = "generation_failed"
ERROR_PROTOCOL: Final = "upstream_protocol_error"

MAX_MESSAGE_CHARS: Final = 500
# Markup is stripped from a bounded prefix only, so a huge message costs bounded work.
_MESSAGE_SCAN: Final = 16 * MAX_MESSAGE_CHARS
_HIDDEN: Final = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG: Final = re.compile(r"<!--.*?-->|<[A-Za-z/!?][^<>]*>", re.DOTALL)
_SPACE: Final = re.compile(r"\s+")


def clean_message(text: str) -> str:
    """``text`` as plain words for a record: tags, scripts and styles removed, entities
    decoded, white space collapsed, cut to ``MAX_MESSAGE_CHARS`` (ending in "…" when cut)."""
    scanned = text[:_MESSAGE_SCAN]
    plain = _TAG.sub(" ", _HIDDEN.sub(" ", scanned))
    plain = "".join(c if c.isprintable() else " " for c in html.unescape(plain))
    plain = _SPACE.sub(" ", plain).strip()
    cut = len(text) > _MESSAGE_SCAN or len(plain) > MAX_MESSAGE_CHARS
    return plain[: MAX_MESSAGE_CHARS - 1].rstrip() + "…" if cut else plain


# --- request -> upstream create ------------------------------------------------------------


def kind_for(params: VideoParams) -> str:
    """The upstream path segment for a request's ``action``."""
    kind = _KIND_BY_ACTION.get(params.action)
    if kind is None:
        raise ProviderError(f"kling cannot run action {params.action!r}", code="unsupported_action")
    if kind != KIND_VIDEO_EXTEND and is_omni(params):
        return KIND_OMNI_VIDEO
    return kind


def is_v2_model(model: str) -> bool:
    return model.startswith("kling-v2")


def duration_string(value: Any) -> str:
    """A whole number of seconds as the upstream's string (``5`` or ``5.0`` -> ``"5"``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProviderError(f"duration must be a number, got {value!r}", code="invalid_request")
    if not math.isfinite(value) or value != int(value):
        raise ProviderError(
            f"duration must be a whole number of seconds, got {value!r}", code="invalid_request"
        )
    return str(int(value))


def _scaled(value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProviderError(
            f"camera_control value {value!r} is not a number", code="invalid_request"
        )
    scaled = round(float(value) * 10, 6)
    return int(scaled) if scaled.is_integer() else scaled


def camera_control_upstream(control: dict[str, Any]) -> dict[str, Any]:
    """Our ``camera_control`` (config in [-1, 1]) as upstream's (config in [-10, 10])."""
    out: dict[str, Any] = {"type": control.get("type")}
    config = control.get("config")
    if out["type"] == "simple" or (out["type"] is None and config is not None):
        given = config if isinstance(config, dict) else {}
        out["config"] = {axis: _scaled(given.get(axis, 0)) for axis in CAMERA_AXES}
    return out


def _common_fields(params: VideoParams) -> dict[str, Any]:
    model = params.model
    body: dict[str, Any] = {"model_name": model, "prompt": params.prompt}
    if params.negative_prompt is not None:
        body["negative_prompt"] = params.negative_prompt
    body["mode"] = params.mode
    body["aspect_ratio"] = params.aspect_ratio
    body["duration"] = duration_string(params.duration)
    if params.camera_control is not None:
        body["camera_control"] = camera_control_upstream(params.camera_control)
    # Sent when the model supports it; an unsupported "on" is sent anyway so the upstream
    # refuses it loudly rather than the gateway silently dropping audio.
    if model in AUDIO_MODELS or params.generate_audio:
        body["sound"] = "on" if params.generate_audio else "off"
    return body


def _cfg_scale(params: VideoParams, body: dict[str, Any]) -> None:
    if params.cfg_scale is not None and not is_v2_model(params.model):
        body["cfg_scale"] = params.cfg_scale


def _extend_body(params: VideoParams) -> dict[str, Any]:
    body: dict[str, Any] = {"video_id": params.video_id}
    if params.prompt:
        body["prompt"] = params.prompt
    if params.negative_prompt is not None:
        body["negative_prompt"] = params.negative_prompt
    _cfg_scale(params, body)
    return body


def build_create(
    params: VideoParams, *, task_id: str, callback_url: str | None = None
) -> tuple[str, dict[str, Any]]:
    """``(kind, body)`` of the upstream create call for a validated request.

    ``task_id`` (our id) becomes ``external_task_id``; ``callback_url`` is the gateway's own
    Kling-callback endpoint, never the client's. video-extend takes neither ``model_name``,
    ``duration`` nor ``external_task_id`` upstream, so none of them is sent.
    """
    kind = kind_for(params)
    if kind == KIND_OMNI_VIDEO:
        body = omni_body(params, task_id)
    elif kind == KIND_VIDEO_EXTEND:
        body = _extend_body(params)
    else:
        body = _common_fields(params)
        _cfg_scale(params, body)
        body["external_task_id"] = task_id
        add_v3_fields(params, body)
    if kind == KIND_IMAGE2VIDEO:
        if params.start_image_url is not None:
            body["image"] = params.start_image_url
        if params.end_image_url is not None:
            body["image_tail"] = params.end_image_url
    if callback_url is not None:
        body["callback_url"] = callback_url
    return kind, body


# --- upstream task -> Status ---------------------------------------------------------------


def external_id_of(task: dict[str, Any]) -> str | None:
    info = task.get("task_info")
    value = info.get("external_task_id") if isinstance(info, dict) else None
    return value if isinstance(value, str) and value else None


def parent_video_id(task: dict[str, Any]) -> str | None:
    """The source video id of a video-extend task (``task_info.parent_video.id``)."""
    info = task.get("task_info")
    parent = info.get("parent_video") if isinstance(info, dict) else None
    value = parent.get("id") if isinstance(parent, dict) else None
    return str(value) if isinstance(value, str | int) and value != "" else None


def created_at_ms(task: dict[str, Any]) -> float | None:
    """When the upstream created ``task``, in epoch milliseconds."""
    value = task.get("created_at")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def job_id_of(task: dict[str, Any]) -> str:
    value = task.get("task_id")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise ProviderError("upstream task has no task_id", code=ERROR_PROTOCOL, retryable=True)
    return value


def video_of(task: dict[str, Any]) -> VideoResult:
    result = task.get("task_result")
    videos = result.get("videos") if isinstance(result, dict) else None
    first = videos[0] if isinstance(videos, list) and videos else None
    if not isinstance(first, dict):
        raise ProviderError("upstream task succeeded without a video", code=ERROR_PROTOCOL)
    video_id, url = first.get("id"), first.get("url")
    if not isinstance(url, str) or not url or video_id in (None, ""):
        raise ProviderError("upstream video has no id or url", code=ERROR_PROTOCOL)
    duration = first.get("duration")
    return VideoResult(
        video_id=str(video_id), video_url=url, duration="" if duration is None else str(duration)
    )


def _provider_data(task: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {"upstream_status": task.get("task_status")}
    if task.get("final_unit_deduction") is not None:
        data["final_unit_deduction"] = task["final_unit_deduction"]
    return data


def status_from_task(task: dict[str, Any]) -> Status:
    """Map an upstream task object to a ``Status``.

    An unknown ``task_status`` is a ``ProviderError`` (not retryable): a status word the gateway
    does not know must fail loudly, never leave a finished task looking stuck.
    """
    word = task.get("task_status")
    extra = _provider_data(task)
    if word in ("submitted", "processing"):
        return Status(state=TaskState.PROCESSING, provider_data=extra)
    if word == "succeed":
        return Status(state=TaskState.SUCCEED, video=video_of(task), provider_data=extra)
    if word == "failed":
        message = clean_message(str(task.get("task_status_msg") or ""))
        return Status(
            state=TaskState.FAILED,
            error_code=ERROR_GENERATION_FAILED,
            error_message=message or "the upstream generation failed",
            provider_data=extra,
        )
    raise ProviderError(f"unknown upstream task_status {word!r}", code=ERROR_PROTOCOL)


# --- upstream errors -> ProviderError ------------------------------------------------------

# (first code, last code, our code, retryable, description)
_ERROR_TABLE: Final[tuple[tuple[int, int, str, bool, str], ...]] = (
    (1000, 1004, "upstream_auth_failed", False, "authentication with the upstream failed"),
    (1100, 1102, "upstream_account_error", False, "the upstream account cannot be charged"),
    (1103, 1103, "upstream_forbidden", False, "no access to this upstream API or model"),
    (1200, 1201, "invalid_request", False, "the upstream rejected the parameters"),
    (1202, 1203, "upstream_not_found", False, "the upstream method or resource does not exist"),
    (1300, 1301, "content_policy_violation", False, "the upstream content safety check failed"),
    (1302, 1303, "upstream_rate_limited", True, "the upstream rate limit was exceeded"),
    (1304, 1304, "upstream_ip_not_allowed", False, "the upstream IP allow-list refused us"),
    (5000, 5002, "upstream_unavailable", True, "the upstream failed or is unavailable"),
)


def _fallback(http_status: int) -> tuple[str, bool, str]:
    if http_status in (408, 429) or http_status >= 500:
        return "upstream_unavailable", True, f"the upstream answered HTTP {http_status}"
    return "upstream_error", False, f"the upstream answered HTTP {http_status}"


def _classify(http_status: int, code: int | None) -> tuple[str, bool, str]:
    for first, last, ours, retryable, description in _ERROR_TABLE:
        if code is not None and first <= code <= last:
            return ours, retryable, description
    return _fallback(http_status)


class KlingApiError(ProviderError):
    """An error answer of the upstream, with its Kling code and HTTP status: what says
    something about the account (1100-1103, 1302/1303, 401) rather than the task."""

    def __init__(
        self, message: str, *, kling_code: int | None, http_status: int, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.kling_code = kling_code
        self.http_status = http_status


def error_from_response(
    http_status: int,
    code: int | None,
    message: str | None,
    *,
    retry_after: str | None = None,
) -> ProviderError:
    """The ``ProviderError`` for an upstream error answer, per the spec's error table."""
    ours, retryable, description = _classify(http_status, code)
    text = clean_message(message) if isinstance(message, str) else ""
    text = text or description
    if code is not None and ours not in ("invalid_request", "content_policy_violation"):
        text = f"{text} (kling code {code})"
    return KlingApiError(
        text,
        kling_code=code,
        http_status=http_status,
        code=ours,
        retryable=retryable,
        retry_after=parse_retry_after(retry_after) if retryable else None,
    )


def is_auth_error(code: int | None) -> bool:
    return code is not None and 1000 <= code <= 1004


def is_not_found(http_status: int, code: int | None) -> bool:
    """Whether an error answer means "no such task" (a lookup miss, not a failure)."""
    return code == 1203 or (http_status == 404 and code is None)
