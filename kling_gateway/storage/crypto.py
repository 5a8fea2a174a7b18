"""Secrets at rest: AES-256-GCM under the server key, and where that key comes from.

A sealed value is ``v1:`` + URL-safe base64 of (12-byte random nonce, ciphertext, 16-byte tag).
Each value is bound to its context (for a webhook secret, its user's id) as associated data,
so a sealed value copied onto another row does not open. The key comes from
``--secret-key`` / ``KLING_GATEWAY_SECRET_KEY`` (32 bytes, URL-safe base64), or, when unset,
from ``DATA_DIR/secret.key``, generated on first start (mode 0600).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kling_gateway.storage.base import StoreError

log = logging.getLogger("kling_gateway")

KEY_BYTES = 32
NONCE_BYTES = 12
SEALED_PREFIX = "v1:"
KEY_FILE = "secret.key"


class SecretKeyError(StoreError):
    """The server key is malformed, missing where it must be given, or not the key the stored
    secrets were sealed with (the message says which, in one line)."""


def generate_key() -> str:
    """A new server key, as the text ``--secret-key`` takes."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def parse_key(text: str) -> bytes:
    """The 32 key bytes of ``text`` (URL-safe base64, padding optional)."""
    stripped = text.strip()
    try:
        raw = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError) as exc:
        raise SecretKeyError("not URL-safe base64") from exc
    if len(raw) != KEY_BYTES:
        raise SecretKeyError(f"must be {KEY_BYTES} bytes in URL-safe base64, not {len(raw)}")
    return raw


class SecretBox:
    """Seals and opens short secrets under one key."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @staticmethod
    def is_sealed(value: str) -> bool:
        return value.startswith(SEALED_PREFIX)

    def seal(self, plaintext: str, context: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, value: str, context: str) -> str:
        """The plaintext of a sealed ``value``; a value stored before secrets were sealed is
        returned as it is (sealing existing rows runs at start, see ``seal_existing``)."""
        if not self.is_sealed(value):
            return value
        try:
            raw = base64.urlsafe_b64decode(value.removeprefix(SEALED_PREFIX))
            opened = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise SecretKeyError(
                "a stored secret does not open with this server key: every process must run "
                "with the same --secret-key (KLING_GATEWAY_SECRET_KEY)"
            ) from exc
        return opened.decode()


def load_server_key(configured: str, data_dir: str | Path) -> SecretBox:
    """The box of the configured key, else of ``DATA_DIR/secret.key`` (made when missing)."""
    if configured:
        return SecretBox(parse_key(configured))
    path = Path(data_dir) / KEY_FILE
    if not path.exists():
        _create_key_file(path)
    try:
        return SecretBox(parse_key(path.read_text()))
    except SecretKeyError as exc:
        raise SecretKeyError(f"{path}: {exc}") from exc


def _create_key_file(path: Path) -> None:
    """Write a new key whole, then link it into place: a process starting at the same moment
    either wins the link or reads the winner's complete file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (generate_key() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(staging, path)
    except FileExistsError:
        return
    finally:
        staging.unlink()
    log.warning(
        "generated the server key into %s (mode 0600): it encrypts the webhook signing "
        "secrets; back it up with the database, or set --secret-key / "
        "KLING_GATEWAY_SECRET_KEY",
        path,
    )
