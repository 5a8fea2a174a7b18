from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt
import pytest

from kling_gateway.fake_upstream.tokens import JwtError, verify_jwt
from kling_gateway.providers.kling.auth import KlingTokenSource, encode_jwt, make_kling_jwt

AK, SK = "access-key-1", "secret-key-0123456789abcdef0123456789"
NOW = 1_700_000_000.0


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_token_layout_and_claims() -> None:
    token = make_kling_jwt(AK, SK, NOW)
    header, claims, _ = token.split(".")
    assert json.loads(_unb64(header)) == {"alg": "HS256", "typ": "JWT"}
    assert json.loads(_unb64(claims)) == {"iss": AK, "exp": int(NOW) + 1800, "nbf": int(NOW) - 5}


def test_signature_rederived_with_hmac() -> None:
    token = make_kling_jwt(AK, SK, NOW)
    signing_input, _, signature = token.rpartition(".")
    expected = hmac.new(SK.encode(), signing_input.encode(), hashlib.sha256).digest()
    assert signature == _b64(expected)


def test_cross_check_with_pyjwt() -> None:
    jwt = pytest.importorskip("jwt")
    token = make_kling_jwt(AK, SK, NOW)
    claims = jwt.decode(
        token, SK, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False}
    )
    assert claims["iss"] == AK
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    # and the other way round: a PyJWT token verifies here
    theirs = jwt.encode({"iss": AK, "exp": int(NOW) + 60, "nbf": int(NOW) - 5}, SK, "HS256")
    assert verify_jwt(theirs, SK, NOW)["iss"] == AK


def test_verify_accepts_own_token() -> None:
    assert verify_jwt(make_kling_jwt(AK, SK, NOW), SK, NOW + 10)["iss"] == AK


@pytest.mark.parametrize(
    ("token", "now", "code"),
    [
        ("", NOW, 1001),
        ("a.b", NOW, 1002),
        ("!!.??.**", NOW, 1002),
        (make_kling_jwt(AK, "other-secret", NOW), NOW, 1002),
        (make_kling_jwt(AK, SK, NOW), NOW + 1800, 1004),
        (make_kling_jwt(AK, SK, NOW), NOW - 6, 1003),
        (encode_jwt({"iss": AK}, SK), NOW, 1002),
    ],
)
def test_verify_rejects(token: str, now: float, code: int) -> None:
    with pytest.raises(JwtError) as info:
        verify_jwt(token, SK, now)
    assert info.value.code == code


def test_verify_rejects_other_algorithm() -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    claims = _b64(json.dumps({"iss": AK, "exp": NOW + 100}).encode())
    with pytest.raises(JwtError):
        verify_jwt(f"{header}.{claims}.", SK, NOW)


def test_token_source_reuses_until_margin() -> None:
    now = [NOW]
    source = KlingTokenSource(AK, SK, clock=lambda: now[0], refresh_margin=60)
    first = source.token()
    now[0] = NOW + 1700
    assert source.token() == first
    now[0] = NOW + 1741
    second = source.token()
    assert second != first
    assert verify_jwt(second, SK, now[0])["iss"] == AK
    assert source.authorization() == f"Bearer {second}"


def test_token_source_invalidate_mints_new() -> None:
    now = [NOW]
    source = KlingTokenSource(AK, SK, clock=lambda: now[0])
    first = source.token()
    now[0] += 3
    source.invalidate()
    assert source.token() != first


def test_tokens_decode_with_an_independent_jwt_library() -> None:
    """The signer and the fake's check are separate code; PyJWT agrees with both."""
    token = make_kling_jwt(AK, SK, NOW)
    claims = jwt.decode(token, SK, algorithms=["HS256"], options={"verify_exp": False})
    assert claims["iss"] == AK and claims["exp"] == int(NOW) + 1800
    theirs = jwt.encode({"iss": AK, "exp": int(NOW) + 60}, SK, algorithm="HS256")
    assert verify_jwt(theirs, SK, NOW)["iss"] == AK
    with pytest.raises(JwtError):
        verify_jwt(
            jwt.encode(
                {"iss": AK, "exp": int(NOW) + 60}, "another-secret-key-0123456789abcdef", "HS256"
            ),
            SK,
            NOW,
        )
