"""Links to the gateway's own video files: stored as a stable path, resolved when sent.

A record (and a callback body) is written by whichever process finished the task, perhaps a
worker on another machine that knows nothing of the API's address, so it holds
``"video_url":"/files/videos/ID.mp4"``. Whoever sends it splices its files URL
(``--files-public-url``, else ``--public-url``) in front: a byte replace over the stored
JSON, no decoding (docs/contract.md §3; the retrieve path stays a copy of stored bytes).
Stored JSON is msgspec's, without spaces, and a ``"`` inside any string is escaped, so the
pattern ``"video_url":"/files/`` is JSON structure, never text; in a record it is looked for
only in its ``response`` (after the request, whose unknown fields a client writes as it
likes). Records written before links were stored this way hold absolute URLs and pass
unchanged.
"""

from __future__ import annotations

FILES_PATH = "/files/videos/"
# Matches both keys of a response that link to our files, `video_url` and (a talking photo's
# silent animation, docs/contract.md §7) `source_video_url`: the quotes make it structure.
_STORED = b'video_url":"/files/'
# The record's own response: the last key of that name, as it comes after the request.
_RESPONSE = b'"response":{'


def video_link(video_id: str) -> str:
    """The stable path of ``video_id``'s file, as records store it."""
    return f"{FILES_PATH}{video_id}.mp4"


class Links:
    """Resolves the stored links of records and callback bodies against one files URL."""

    __slots__ = ("_resolved",)

    def __init__(self, files_url: str) -> None:
        self._resolved = b'video_url":"' + files_url.rstrip("/").encode() + b"/files/"

    def resolve(self, record: bytes) -> bytes:
        """A stored record with the links of its response made absolute (the same object
        when it has none)."""
        at = record.rfind(_RESPONSE)
        if at == -1 or record.find(_STORED, at) == -1:
            return record
        # One copy of the (possibly large) head: into the result.
        return b"".join((memoryview(record)[:at], record[at:].replace(_STORED, self._resolved)))

    def resolve_body(self, body: bytes) -> bytes:
        """A callback body (a response object alone) with its links made absolute."""
        return body.replace(_STORED, self._resolved)
