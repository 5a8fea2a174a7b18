"""The shipped OpenAPI document: valid OpenAPI 3.1, complete, and its examples match its schemas."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from typing import Any, get_args

import jsonschema
import pytest
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from kling_gateway.client import errors as client_errors
from kling_gateway.client import types
from kling_gateway.protocol import errors as wire_errors

DOC_URI = "urn:kling-gateway:openapi"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    text = resources.files("kling_gateway").joinpath("api", "openapi.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    resource = Resource.from_contents(doc, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(DOC_URI, resource)
    rebased = json.loads(json.dumps(schema).replace('"#/', f'"{DOC_URI}#/'))
    return jsonschema.Draft202012Validator(rebased, registry=registry)


def _media(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (where, media object) of request bodies and responses, refs to responses resolved."""
    for path, item in doc["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody", {}).get("content", {})
            for mime, media in body.items():
                yield f"{method} {path} request {mime}", media
            for status, response in op["responses"].items():
                if "$ref" in response:
                    response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
                for mime, media in response.get("content", {}).items():
                    yield f"{method} {path} {status} {mime}", media


def test_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_error_code_appears(doc: dict[str, Any]) -> None:
    documented = set(doc["components"]["schemas"]["ErrorCode"]["enum"])
    assert set(wire_errors.ERRORS_BY_CODE) == documented
    assert set(client_errors.ERRORS_BY_CODE) == documented
    for code, cls in wire_errors.ERRORS_BY_CODE.items():
        response = _error_response(doc, cls.status)
        assert code in response["content"]["application/json"]["examples"]


def _error_response(doc: dict[str, Any], status: int) -> dict[str, Any]:
    for response in doc["components"]["responses"].values():
        schema = response["content"]["application/json"]["schema"]
        codes = schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]
        if all(wire_errors.ERRORS_BY_CODE[c].status == status for c in codes):
            found: dict[str, Any] = response
            return found
    raise AssertionError(f"no error response for HTTP {status}")


def test_every_response_has_trace_id_and_429_and_503_have_retry_after(doc: dict[str, Any]) -> None:
    for item in doc["paths"].values():
        for op in item.values():
            for status, response in op["responses"].items():
                if "$ref" in response:
                    response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
                assert "x-trace-id" in response["headers"], status
                assert ("Retry-After" in response["headers"]) == (status in ("429", "503"))


def test_bearer_auth_is_required_everywhere(doc: dict[str, Any]) -> None:
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"bearerAuth": []}]


def test_examples_match_their_schemas(doc: dict[str, Any]) -> None:
    checked = 0
    for where, media in _media(doc):
        if "application/json" not in where:
            continue
        validator = _validator(doc, media["schema"])
        for name, example in media.get("examples", {}).items():
            errors = [e.message for e in validator.iter_errors(example["value"])]
            assert not errors, f"{where} example {name}: {errors}"
            checked += 1
    assert checked >= 20


def test_component_examples_match(doc: dict[str, Any]) -> None:
    for name, schema in doc["components"]["schemas"].items():
        if "example" in schema:
            validator = _validator(doc, {"$ref": f"#/components/schemas/{name}"})
            assert not list(validator.iter_errors(schema["example"])), name


@pytest.mark.parametrize(
    ("schema", "body", "valid"),
    [
        ("RetrieveResult", {}, True),
        ("RetrieveResult", {"foo": 1}, False),
        ("TasksRequest", {"id": "x"}, True),
        ("TasksRequest", {"id": "x", "wait": 61}, False),
        ("TasksRequest", {"id": "x", "client_extra": True}, True),
        ("TasksRequest", {"action": "retrieve_batch", "ids": ["a"] * 1001}, False),
        ("TasksRequest", {"action": "retrieve_batch", "limit": 0}, False),
        ("TasksRequest", {"action": "retrieve_batch", "limit": 100, "offset": 5}, True),
        ("VideosRequest", {"action": "text2video", "prompt": "a", "duration": 5.0}, True),
        ("VideosRequest", {"action": "text2video", "prompt": "a", "duration": 7}, False),
        (
            "VideosRequest",
            {"action": "text2video", "prompt": "a", "model": "kling-v3", "duration": 7},
            True,
        ),
        ("VideosRequest", {"action": "text2video", "prompt": "a", "mode": "4k"}, False),
        ("VideosRequest", {"action": "text2video"}, False),
        ("VideosRequest", {"action": "image2video", "prompt": "a"}, False),
        ("VideosRequest", {"action": "extend"}, False),
        ("VideosRequest", {"action": "text2video", "prompt": "a", "timeout": 30}, True),
        (
            "VideosRequest",
            {"action": "text2video", "prompt": "a", "end_image_url": "https://e/x"},
            False,
        ),
        ("TaskRecord", {"_id": "67C5163F550A4144A5B68698"}, False),
        # docs/contract.md §7
        (
            "MotionRequest",
            {
                "image_url": "https://e/a.png",
                "video_url": "https://e/v.mp4",
                "character_orientation": "image",
                "mode": "std",
            },
            True,
        ),
        (
            "MotionRequest",
            {
                "image_url": "https://e/a.png",
                "video_url": "https://e/v.mp4",
                "character_orientation": "image",
            },
            False,
        ),
        (
            "LipSyncRequest",
            {"mode": "audio2video", "video_id": "v", "audio_url": "https://e/a"},
            True,
        ),
        (
            "LipSyncRequest",
            {
                "mode": "audio2video",
                "video_id": "v",
                "video_url": "https://e/v",
                "audio_url": "https://e/a",
            },
            False,
        ),
        ("LipSyncRequest", {"mode": "audio2video", "video_id": "v"}, False),
        (
            "LipSyncRequest",
            {
                "mode": "audio2video",
                "video_id": "v",
                "audio_url": "https://e/a",
                "audio_file": "UklGRg==",
            },
            False,
        ),
        (
            "LipSyncRequest",
            {
                "mode": "audio2video",
                "video_id": "v",
                "audio_type": "file",
                "audio_file": "UklGRg==",
            },
            True,
        ),
        ("LipSyncRequest", {"mode": "text2video", "video_id": "v", "text": "hi"}, False),
        (
            "LipSyncRequest",
            {"mode": "text2video", "video_id": "v", "text": "hi", "voice_id": "x"},
            True,
        ),
        ("TalkingPhotoRequest", {"image_url": "https://e/a.png", "audio_url": "https://e/a"}, True),
        (
            "TalkingPhotoRequest",
            {"image_url": "https://e/a.png", "audio_url": "https://e/a", "duration": 7},
            False,
        ),
    ],
)
def test_schema_decisions(doc: dict[str, Any], schema: str, body: Any, valid: bool) -> None:
    validator = _validator(doc, {"$ref": f"#/components/schemas/{schema}"})
    assert validator.is_valid(body) is valid


def test_sdk_literals_match_the_document(doc: dict[str, Any]) -> None:
    fields = doc["components"]["schemas"]["VideosRequest"]["properties"]
    camera = doc["components"]["schemas"]["CameraControl"]["properties"]
    assert list(get_args(types.VideoAction)) == fields["action"]["enum"]
    assert list(get_args(types.VideoModel)) == fields["model"]["enum"]
    assert list(get_args(types.VideoMode)) == fields["mode"]["enum"]
    assert list(get_args(types.AspectRatio)) == fields["aspect_ratio"]["enum"]
    assert list(get_args(types.CameraType)) == camera["type"]["enum"]
