"""The OpenAPI document against protocol/, both ways: one source for every enum and field.

openapi.json stays written by hand for its prose, examples and cross-field rules, but every enum
in it is one of protocol/'s (``DERIVED`` names where each one appears, and no enum of the
document is left out of ``DERIVED``), and every request schema has exactly the fields, JSON
types and defaults of its protocol struct. A model added to protocol/enums.py and not to the
document, or a field added to one side only, fails here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

import msgspec
import pytest

from kling_gateway.protocol import enums
from kling_gateway.protocol.errors import ERRORS_BY_CODE
from kling_gateway.protocol.requests import (
    CameraConfig,
    CameraControl,
    ElementRef,
    ImageRef,
    LipSyncRequestBody,
    MotionRequestBody,
    ShotPrompt,
    TalkingPhotoRequestBody,
    TasksRequestBody,
    VideoRef,
    VideoRequestBody,
    VoiceRef,
    WatermarkInfo,
)
from kling_gateway.protocol.task import TASK_TYPES, TaskState

S = "/components/schemas"
VIDEOS = f"{S}/VideosRequest"
MOTION, LIP, PHOTO = f"{S}/MotionRequest", f"{S}/LipSyncRequest", f"{S}/TalkingPhotoRequest"
TASK_REQUESTS = (
    "RetrieveRequest",
    "RetrieveBatchByIdsRequest",
    "RetrieveBatchByFilterRequest",
    "DeleteRequest",
)
# The one enum of the document that is no request value: a response header's constant.
NOT_FROM_PROTOCOL = frozenset({"/components/headers/LongPoll/schema/enum"})


def _in_order(models: frozenset[str]) -> list[str]:
    return [m for m in enums.MODELS if m in models]


def _action(name: str) -> str:
    assert name in enums.TASK_ACTIONS
    return name


def _codes(status: int) -> list[str]:
    return [code for code, cls in ERRORS_BY_CODE.items() if cls.status == status]


# The code enum of an error response (components/responses/*): the codes of the HTTP status it
# is used for, checked from the paths (test_error_responses_list_their_statuses_codes).
ERROR_CODE = "content/application~1json/schema/allOf/1/properties/error/properties/code/enum"
V3_DURATIONS = list(range(enums.V3_DURATION_RANGE[0], enums.V3_DURATION_RANGE[1] + 1))

# Where each protocol value appears in the document (JSON pointers), and the value it must have.
DERIVED: dict[str, Any] = {
    f"{S}/ErrorCode/enum": list(ERRORS_BY_CODE),
    f"{S}/TaskInProgress/properties/state/enum": [s.value for s in TaskState if not s.is_terminal],
    f"{S}/TaskSucceeded/properties/state/const": TaskState.SUCCEED.value,
    f"{S}/TaskFailed/properties/state/const": TaskState.FAILED.value,
    f"{S}/TaskRecord/properties/type/enum": list(TASK_TYPES),
    f"{S}/RetrieveRequest/properties/action/enum": [_action("retrieve")],
    f"{S}/RetrieveRequest/properties/action/default": _action("retrieve"),
    f"{S}/RetrieveRequest/properties/wait/maximum": enums.MAX_WAIT_SECONDS,
    f"{S}/RetrieveBatchByIdsRequest/properties/action/const": _action("retrieve_batch"),
    f"{S}/RetrieveBatchByFilterRequest/properties/action/const": _action("retrieve_batch"),
    f"{S}/RetrieveBatchByFilterRequest/properties/limit/default": enums.DEFAULT_PAGE_SIZE,
    f"{S}/RetrieveBatchByFilterRequest/properties/limit/maximum": enums.MAX_PAGE_SIZE,
    f"{S}/RetrieveBatchByFilterRequest/properties/offset/maximum": enums.MAX_OFFSET,
    f"{S}/DeleteRequest/properties/action/const": _action("delete"),
    f"{S}/CameraControl/properties/type/enum": list(enums.CAMERA_TYPES),
    **{
        f"{S}/CameraControl/properties/config/properties/{axis}/{bound}": value
        for axis in enums.CAMERA_AXES
        for bound, value in zip(("minimum", "maximum"), enums.CAMERA_RANGE, strict=True)
    },
    f"{VIDEOS}/properties/action/enum": list(enums.ACTIONS),
    f"{VIDEOS}/properties/model/enum": list(enums.MODELS),
    f"{VIDEOS}/properties/mode/enum": list(enums.MODES),
    f"{VIDEOS}/properties/aspect_ratio/enum": list(enums.ASPECT_RATIOS),
    f"{VIDEOS}/properties/callback_events/items/enum": list(enums.CALLBACK_EVENTS),
    f"{VIDEOS}/properties/prompt/maxLength": enums.MAX_PROMPT,
    f"{VIDEOS}/properties/negative_prompt/maxLength": enums.MAX_PROMPT,
    f"{VIDEOS}/properties/duration/minimum": min(V3_DURATIONS + list(enums.DURATIONS)),
    f"{VIDEOS}/properties/duration/maximum": max(V3_DURATIONS + list(enums.DURATIONS)),
    f"{VIDEOS}/properties/cfg_scale/minimum": enums.CFG_SCALE_RANGE[0],
    f"{VIDEOS}/properties/cfg_scale/maximum": enums.CFG_SCALE_RANGE[1],
    # The cross-field rules (allOf): 4k and 3-15 s only on v3 models, audio only on some.
    f"{VIDEOS}/allOf/0/if/properties/action/const": enums.ACTIONS[0],
    f"{VIDEOS}/allOf/1/if/properties/action/const": enums.ACTIONS[1],
    f"{VIDEOS}/allOf/2/if/properties/action/const": enums.ACTIONS[2],
    f"{VIDEOS}/allOf/2/then/properties/model/enum": _in_order(enums.EXTEND_MODELS),
    f"{VIDEOS}/allOf/3/then/properties/model/enum": _in_order(enums.FOUR_K_MODELS),
    f"{VIDEOS}/allOf/4/if/not/properties/model/enum": _in_order(enums.V3_MODELS),
    f"{VIDEOS}/allOf/4/then/properties/duration/enum": list(enums.DURATIONS),
    f"{VIDEOS}/allOf/5/then/properties/model/enum": _in_order(enums.AUDIO_MODELS),
    f"{VIDEOS}/allOf/6/if/properties/model/const": next(iter(enums.AUDIO_PRO_ONLY_MODELS)),
    f"{VIDEOS}/allOf/7/if/properties/model/const": "kling-o1",
    f"{VIDEOS}/allOf/8/if/properties/model/const": enums.TURBO_MODEL,
    f"{VIDEOS}/allOf/8/then/properties/action/enum": list(enums.TURBO_ACTIONS),
    # docs/contract.md §6
    f"{VIDEOS}/properties/shot_type/enum": list(enums.SHOT_TYPES),
    f"{VIDEOS}/properties/image_list/maxItems": enums.MAX_IMAGE_REFS,
    f"{VIDEOS}/properties/multi_prompt/maxItems": enums.MAX_SHOTS,
    f"{VIDEOS}/properties/element_list/maxItems": enums.MAX_ELEMENTS,
    f"{VIDEOS}/properties/voice_list/maxItems": enums.MAX_VOICES,
    f"{S}/ImageRef/properties/type/enum": list(enums.IMAGE_REF_TYPES),
    f"{S}/VideoRef/properties/refer_type/enum": list(enums.VIDEO_REFER_TYPES),
    f"{S}/VideoRef/properties/keep_original_sound/enum": list(enums.YES_NO),
    f"{S}/ShotPrompt/properties/prompt/maxLength": enums.MAX_SHOT_PROMPT,
    # docs/contract.md §7
    f"{MOTION}/properties/character_orientation/enum": list(enums.CHARACTER_ORIENTATIONS),
    f"{MOTION}/properties/mode/enum": list(enums.MOTION_MODES),
    f"{MOTION}/properties/model_name/enum": list(enums.MOTION_MODELS),
    f"{MOTION}/properties/keep_original_sound/enum": list(enums.YES_NO),
    f"{MOTION}/properties/prompt/maxLength": enums.MAX_PROMPT,
    f"{LIP}/properties/mode/enum": list(enums.LIP_SYNC_MODES),
    f"{LIP}/properties/audio_type/enum": list(enums.AUDIO_TYPES),
    f"{LIP}/properties/voice_language/enum": list(enums.VOICE_LANGUAGES),
    f"{LIP}/properties/voice_speed/minimum": enums.VOICE_SPEED_RANGE[0],
    f"{LIP}/properties/voice_speed/maximum": enums.VOICE_SPEED_RANGE[1],
    f"{LIP}/properties/text/maxLength": enums.MAX_LIP_SYNC_TEXT,
    f"{PHOTO}/properties/model/enum": list(enums.TALKING_PHOTO_MODELS),
    f"{PHOTO}/properties/duration/enum": list(enums.TALKING_PHOTO_DURATIONS),
    f"{PHOTO}/properties/mode/enum": list(enums.MOTION_MODES),
    f"{PHOTO}/properties/prompt/maxLength": enums.MAX_PROMPT,
    **{
        f"{schema}/properties/callback_events/items/enum": list(enums.CALLBACK_EVENTS)
        for schema in (MOTION, LIP, PHOTO)
    },
}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    text = resources.files("kling_gateway.api").joinpath("openapi.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _at(doc: Any, pointer: str) -> Any:
    for part in pointer.lstrip("/").split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        doc = doc[int(key)] if isinstance(doc, list) else doc[key]
    return doc


def _enums(node: Any, pointer: str = "") -> Iterator[str]:
    """The pointer of every ``enum`` in the document."""
    if not isinstance(node, (dict, list)):
        return
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        here = f"{pointer}/{str(key).replace('~', '~0').replace('/', '~1')}"
        if key == "enum" and isinstance(node, dict):
            yield here
        yield from _enums(value, here)


@pytest.mark.parametrize("pointer", sorted(DERIVED))
def test_the_document_has_protocols_value(doc: dict[str, Any], pointer: str) -> None:
    assert _at(doc, pointer) == DERIVED[pointer]


def _error_responses(doc: dict[str, Any]) -> dict[str, set[int]]:
    """Each error response component by name, with the HTTP statuses the paths use it for."""
    used: dict[str, set[int]] = {}
    for item in doc["paths"].values():
        for op in item.values():
            for status, response in op["responses"].items():
                name = response.get("$ref", "").rpartition("/components/responses/")[2]
                if name and int(status) >= 400:
                    used.setdefault(name, set()).add(int(status))
    return used


def test_error_responses_list_their_statuses_codes(doc: dict[str, Any]) -> None:
    responses = _error_responses(doc)
    assert responses  # the scan found them
    for name, statuses in responses.items():
        (status,) = statuses  # one status per response component
        assert _at(doc, f"/components/responses/{name}/{ERROR_CODE}") == _codes(status), name


def test_every_enum_of_the_document_comes_from_protocol(doc: dict[str, Any]) -> None:
    errors = {f"/components/responses/{name}/{ERROR_CODE}" for name in _error_responses(doc)}
    hand_kept = set(_enums(doc)) - set(DERIVED) - errors - NOT_FROM_PROTOCOL
    assert not hand_kept, f"enums in openapi.json that no protocol value checks: {hand_kept}"


def test_every_protocol_enum_is_in_the_document() -> None:
    values = [v for v in DERIVED.values() if isinstance(v, list)]
    for name in ("ACTIONS", "MODELS", "MODES", "ASPECT_RATIOS", "CAMERA_TYPES"):
        assert list(getattr(enums, name)) in values, name
    assert list(enums.CALLBACK_EVENTS) in values
    assert {v for v in DERIVED.values() if isinstance(v, str)} >= set(enums.TASK_ACTIONS)


# -- the fields of the request structs ---------------------------------------------------------


def _struct_fields(kind: type[msgspec.Struct]) -> dict[str, dict[str, Any]]:
    """Each field's JSON schema (by its wire name), ``null`` left out: absent is the same."""
    (schema,), defs = msgspec.json.schema_components([kind], ref_template="{name}")
    props: dict[str, dict[str, Any]] = defs[schema["$ref"]]["properties"]
    return {name: _without_null(prop) for name, prop in props.items()}


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    options = [o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"]
    (only,) = options
    rest = {k: v for k, v in prop.items() if k != "anyOf"}
    return {**rest, **only} if "anyOf" in prop else prop


def _documented(doc: dict[str, Any], *schemas: str) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for name in schemas:
        merged.update(_at(doc, f"{S}/{name}")["properties"])
    return merged


def _type_of(prop: dict[str, Any]) -> Any:
    """The JSON type a schema property stands for (a $ref by its schema's name)."""
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[1]
    if "const" in prop:
        return {str: "string", bool: "boolean"}.get(type(prop["const"]), "number")
    kind = prop.get("type")
    if kind == "array":
        return ["array", _type_of(prop["items"])]
    return "number" if kind == "integer" else kind


def _struct_type(prop: dict[str, Any]) -> Any:
    if "$ref" in prop:
        return prop["$ref"]
    if prop.get("type") == "array":
        return ["array", _struct_type(prop["items"])]
    return prop["type"]


CASES: dict[str, tuple[type[msgspec.Struct], tuple[str, ...]]] = {
    "VideosRequest": (VideoRequestBody, ("VideosRequest",)),
    "CameraControl": (CameraControl, ("CameraControl",)),
    "CameraControl.config": (CameraConfig, ()),
    "TasksRequest": (TasksRequestBody, TASK_REQUESTS),
    "MotionRequest": (MotionRequestBody, ("MotionRequest",)),
    "MotionRequest.watermark_info": (WatermarkInfo, ()),
    "LipSyncRequest": (LipSyncRequestBody, ("LipSyncRequest",)),
    "TalkingPhotoRequest": (TalkingPhotoRequestBody, ("TalkingPhotoRequest",)),
    **{
        kind.__name__: (kind, (kind.__name__,))
        for kind in (ImageRef, VideoRef, ShotPrompt, ElementRef, VoiceRef)
    },
}


NESTED = frozenset(kind.__name__ for kind, _ in CASES.values())


def _case(doc: dict[str, Any], case: str) -> tuple[dict[str, Any], dict[str, Any]]:
    kind, schemas = CASES[case]
    nested = {"CameraControl.config": f"{S}/CameraControl/properties/config",
              "MotionRequest.watermark_info": f"{MOTION}/properties/watermark_info"}  # fmt: skip
    documented = (
        _at(doc, nested[case])["properties"] if case in nested else _documented(doc, *schemas)
    )
    return _struct_fields(kind), documented


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_same_fields_on_both_sides(doc: dict[str, Any], case: str) -> None:
    struct, documented = _case(doc, case)
    assert set(struct) == set(documented)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_same_json_types(doc: dict[str, Any], case: str) -> None:
    struct, documented = _case(doc, case)
    for name, prop in struct.items():
        # Where the wire takes a string of a closed set, the struct takes any string (so that
        # validation can name the field); the type still agrees. A nested struct may be written
        # inline in the document (its fields are a case of their own).
        mine, theirs = _struct_type(prop), _type_of(documented[name])
        assert mine == theirs or (theirs == "object" and mine in NESTED), name


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_same_defaults(doc: dict[str, Any], case: str) -> None:
    struct, documented = _case(doc, case)
    struct_defaults = {n: p["default"] for n, p in struct.items() if p.get("default") is not None}
    # Each schema of a union on its own: a field's default is in the variant that has it.
    variants = [_documented(doc, name) for name in CASES[case][1]] or [documented]
    doc_defaults = {n: p["default"] for v in variants for n, p in v.items() if "default" in p}
    # The paging defaults are applied by the route, not the struct (None means "not sent").
    route_applied = {"limit", "offset"} if case == "TasksRequest" else set()
    assert struct_defaults == {n: v for n, v in doc_defaults.items() if n not in route_applied}
