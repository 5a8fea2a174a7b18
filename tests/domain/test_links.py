"""Stored links in records: made absolute by a byte splice, never by decoding, and only where
the gateway wrote a link of its own."""

from __future__ import annotations

import msgspec

from kling_gateway.domain.links import Links, video_link
from kling_gateway.protocol.task import success_response


def test_a_stored_link_is_made_absolute_with_the_senders_url() -> None:
    response = success_response("t1", video_id="v1", video_url=video_link("v1"), duration="5.1")
    record = msgspec.json.encode({"id": "t1", "response": response})
    resolved = msgspec.json.decode(Links("https://kling.example/").resolve(record))
    assert resolved["response"]["video_url"] == "https://kling.example/files/videos/v1.mp4"
    cdn = msgspec.json.decode(Links("https://cdn.example/kg").resolve(record))
    assert cdn["response"]["video_url"] == "https://cdn.example/kg/files/videos/v1.mp4"


def test_records_without_stored_links_pass_as_they_are() -> None:
    absolute = success_response(
        "t1", video_id="v", video_url="https://old.example/v.mp4", duration="5"
    )
    record = msgspec.json.encode({"response": absolute})
    assert Links("https://kling.example").resolve(record) is record  # not even copied


def test_text_sent_by_a_client_is_never_taken_for_a_link() -> None:
    forged = '"video_url":"/files/videos/x.mp4"'
    unknown = {"video_url": "/files/videos/x.mp4"}  # kept as sent (an unknown field)
    response = success_response("t1", video_id="v1", video_url=video_link("v1"), duration="5")
    doc = {"request": {"prompt": forged, "extra": unknown}, "response": response}
    resolved = msgspec.json.decode(Links("https://k.example").resolve(msgspec.json.encode(doc)))
    assert resolved["request"] == doc["request"]
    assert resolved["response"]["video_url"] == "https://k.example/files/videos/v1.mp4"


def test_a_callback_body_is_resolved_whole() -> None:
    response = success_response("t1", video_id="v1", video_url=video_link("v1"), duration="5")
    body = Links("https://k.example").resolve_body(msgspec.json.encode(response))
    assert msgspec.json.decode(body)["video_url"] == "https://k.example/files/videos/v1.mp4"
