"""Callback signatures against the Standard Webhooks reference library."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from kling_gateway.callbacks.signing import (
    InvalidSecret,
    new_secret,
    secret_key,
    sign,
    signature,
    verify,
    webhook_headers,
)

# The example of the Standard Webhooks specification.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def reference(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    return Webhook(secret).sign(msg_id, when, body.decode())


def test_the_specification_example() -> None:
    assert signature(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    assert reference(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_matches_the_reference_library_for_a_callback_body() -> None:
    secret = new_secret()
    body = b'{"success":true,"task_id":"t-1","video_url":"https://x/v.mp4","state":"succeed"}'
    assert sign(secret, "d-1", 1_700_000_000, body) == reference(secret, "d-1", 1_700_000_000, body)


def test_new_secrets_are_whsec_and_24_or_more_random_bytes() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"))) >= 24
    assert secret_key(first) == base64.b64decode(first.removeprefix("whsec_"))


def test_headers_verify_with_the_reference_library() -> None:
    secret, body, now = new_secret(), b'{"state":"failed"}', int(time.time())
    headers = webhook_headers(secret, "d-2", now, body)
    assert headers["webhook-id"] == "d-2"
    assert headers["webhook-timestamp"] == str(now)
    assert Webhook(secret).verify(body, headers) == {"state": "failed"}


def test_two_secrets_give_two_signatures_each_verifying_alone() -> None:
    old, new, body, now = new_secret(), new_secret(), b"{}", int(time.time())
    headers = webhook_headers([new, old], "d-3", now, body)
    parts = headers["webhook-signature"].split(" ")
    assert len(parts) == 2 and all(p.startswith("v1,") for p in parts)
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)
    assert verify(old, "d-3", now, body, headers["webhook-signature"])
    assert not verify(new_secret(), "d-3", now, body, headers["webhook-signature"])


def test_a_changed_body_id_or_timestamp_does_not_verify() -> None:
    secret = new_secret()
    header = sign(secret, "d-4", 100, b"{}")
    assert verify(secret, "d-4", 100, b"{}", header)
    assert not verify(secret, "d-4", 100, b"{ }", header)
    assert not verify(secret, "d-5", 100, b"{}", header)
    assert not verify(secret, "d-4", 101, b"{}", header)


@pytest.mark.parametrize("bad", ["whsec_", "whsec_not base64!", "whsec_abc"])
def test_malformed_secrets_are_refused(bad: str) -> None:
    with pytest.raises(InvalidSecret):
        secret_key(bad)


def test_signing_needs_a_secret() -> None:
    with pytest.raises(InvalidSecret):
        sign([], "d", 1, b"{}")
