"""The ``audio_file`` of a lip-sync request (docs/contract.md §7): base64 (a ``data:`` URL
prefix allowed), at most 5 MB decoded, mp3, wav, m4a or aac. The format is recognised from the
bytes themselves (their magic numbers), never from what the client claims."""

from __future__ import annotations

import base64
import binascii

from kling_gateway.protocol.enums import AUDIO_FORMATS, MAX_AUDIO_FILE_BYTES
from kling_gateway.protocol.errors import BadRequest

FIELD = "audio_file"


def strip_data_url(value: str) -> str:
    """The base64 of ``value`` without a ``data:<type>;base64,`` prefix or white space."""
    text = value.strip()
    if text.startswith("data:"):
        head, sep, rest = text.partition(",")
        if not sep or not head.endswith(";base64"):
            raise BadRequest(f"field `{FIELD}` must be base64 (a data: URL must be ;base64)")
        text = rest
    return "".join(text.split())


def decode_audio_file(value: str) -> tuple[str, bytes, str]:
    """``(base64, bytes, format)`` of an ``audio_file``; a 400 naming the field otherwise."""
    text = strip_data_url(value)
    # 4 base64 characters per 3 bytes: refuse an oversized file before decoding it.
    if len(text) > (MAX_AUDIO_FILE_BYTES + 2) // 3 * 4:
        raise _too_large()
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"field `{FIELD}` is not valid base64") from exc
    if not data:
        raise BadRequest(f"field `{FIELD}` is empty")
    if len(data) > MAX_AUDIO_FILE_BYTES:
        raise _too_large()
    kind = sniff_audio(data)
    if kind is None:
        raise BadRequest(f"field `{FIELD}` must be {', '.join(AUDIO_FORMATS)} audio")
    return text, data, kind


def sniff_audio(data: bytes) -> str | None:
    """The format of ``data`` by its magic number: mp3, wav, m4a, aac, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[4:8] == b"ftyp":
        return "m4a"
    if data[:3] == b"ID3":
        return "mp3"
    if len(data) >= 2 and data[0] == 0xFF:
        # ADTS (AAC): sync 0xFFF and layer 00; MPEG audio (mp3): sync 0xFFE, layer != 00.
        if data[1] & 0xF6 == 0xF0:
            return "aac"
        if data[1] & 0xE0 == 0xE0 and data[1] & 0x06 != 0:
            return "mp3"
    return None


def _too_large() -> BadRequest:
    mb = MAX_AUDIO_FILE_BYTES // (1024 * 1024)
    return BadRequest(f"field `{FIELD}` is larger than {mb} MB")
