"""The fake's lip-sync and speech endpoints (upstream spec "More endpoints").

* ``POST /v1/videos/identify-face`` ``{video_id | video_url}`` answers at once (no task): a
  ``session_id`` valid for 24 hours (``SESSION_SECONDS``, on the fake's clock) and the faces.
  A ``video_id`` must be a finished video of the same account; a ``video_url`` containing
  ``[fake:noface]`` (or its URL-quoted form) has no face.
* ``POST /v1/audio/tts`` ``{text <= 1000, voice_id, voice_language, voice_speed}`` answers at
  once with an ``audio_id`` (usable in ``face_choose``), its URL and its duration: some 0.15 s
  per character at speed 1, so a very short text gives a clip under the 2 s minimum.
* ``POST /v1/videos/advanced-lip-sync`` ``{session_id, face_choose: [{face_id, sound_file |
  audio_id, ...}]}`` creates the task; an unknown or expired session, an unknown face or an
  audio clip shorter than 2,000 ms answer 400 code 1201. The result lasts as long as the
  audio, at most as long as the video.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass, field
from typing import Any, Final

import av

from kling_gateway.fake_upstream.validation_base import http_url, invalid, is_number

SESSION_SECONDS: Final = 24 * 3600.0
MIN_AUDIO_MS: Final = 2000
MAX_TTS_TEXT: Final = 1000
SECONDS_PER_CHAR: Final = 0.15
URL_VIDEO_SECONDS: Final = 5.1  # the fake cannot look inside a video URL: it assumes this
TRIGGER_NO_FACE: Final = ("[fake:noface]", "%5Bfake%3Anoface%5D", "fake-noface")
LIP_SYNC_FIELDS: Final = frozenset(
    {"session_id", "face_choose", "external_task_id", "callback_url"}
)
FACE_FIELDS: Final = frozenset(
    {
        "face_id",
        "sound_file",
        "audio_id",
        "sound_start_time",
        "sound_end_time",
        "sound_insert_time",
        "sound_volume",
        "original_audio_volume",
    }
)


@dataclass(slots=True)
class Session:
    session_id: str
    account: str
    created_at: float
    seconds: float  # of the video
    faces: list[dict[str, Any]]


@dataclass(slots=True)
class Speech:
    audio_id: str
    account: str
    seconds: float


@dataclass(slots=True)
class LipSyncWorld:
    """Sessions and synthesised speech of every account."""

    sessions: dict[str, Session] = field(default_factory=dict)
    speeches: dict[str, Speech] = field(default_factory=dict)

    def identify(
        self, account: str, body: Any, video_seconds: float | None, now: float, media_base: str
    ) -> dict[str, Any]:
        """The identify-face answer; ``video_seconds`` is None when ``video_id`` names no
        finished video of ``account``."""
        video_id, video_url = _identify_target(body)
        if video_id is not None and video_seconds is None:
            raise invalid(f"video_id {video_id} does not exist")
        seconds = video_seconds if video_seconds is not None else URL_VIDEO_SECONDS
        session_id = str(uuid.uuid4())
        faces: list[dict[str, Any]] = []
        if not any(t in (video_url or "") for t in TRIGGER_NO_FACE):
            image = f"{media_base.rstrip('/')}/fake-media/face-{session_id}.png"
            faces.append(
                {"face_id": "0", "face_image": image, "start_time": 0,
                 "end_time": int(seconds * 1000)}
            )  # fmt: skip
        self.sessions[session_id] = Session(session_id, account, now, seconds, faces)
        return {"session_id": session_id, "face_data": faces}

    def speak(self, account: str, body: Any, media_base: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise invalid("the request body must be a JSON object")
        text = body.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TTS_TEXT:
            raise invalid(f"text is required, at most {MAX_TTS_TEXT} characters")
        if not isinstance(body.get("voice_id"), str) or not body["voice_id"]:
            raise invalid("voice_id is required")
        if body.get("voice_language", "zh") not in ("zh", "en"):
            raise invalid("voice_language must be zh or en")
        speed = body.get("voice_speed", 1.0)
        if not is_number(speed) or not 0.8 <= speed <= 2.0:
            raise invalid("voice_speed must be a number within [0.8, 2.0]")
        seconds = round(len(text) * SECONDS_PER_CHAR / speed, 1)
        audio_id = str(uuid.uuid4())
        self.speeches[audio_id] = Speech(audio_id, account, seconds)
        url = f"{media_base.rstrip('/')}/fake-media/audio-{audio_id}.wav"
        return {"audio_id": audio_id, "audio_url": url, "duration": f"{seconds:.1f}"}

    def check_create(
        self, account: str, body: dict[str, Any], sound_seconds: list[float | None], now: float
    ) -> float:
        """Validate an advanced-lip-sync body; the seconds of its result. ``sound_seconds``:
        the measured length of each face's ``sound_file`` (None: undecodable or absent)."""
        session = self.sessions.get(str(body.get("session_id") or ""))
        if session is None or session.account != account:
            raise invalid("session_id does not exist")
        if now - session.created_at > SESSION_SECONDS:
            raise invalid("session_id has expired, identify the face again")
        faces = body.get("face_choose")
        if not isinstance(faces, list) or len(faces) != 1 or not isinstance(faces[0], dict):
            raise invalid("face_choose must hold exactly one face")
        choice = faces[0]
        unknown = set(choice) - FACE_FIELDS
        if unknown:
            raise invalid(f"unknown fields of face_choose: {sorted(unknown)}")
        if choice.get("face_id") not in {f["face_id"] for f in session.faces}:
            raise invalid("face_id is not a face of this session")
        seconds = self._audio_seconds(account, choice, sound_seconds[0] if sound_seconds else None)
        if seconds * 1000 < MIN_AUDIO_MS:
            raise invalid(f"the audio must be at least {MIN_AUDIO_MS} ms long")
        return min(seconds, session.seconds)

    def _audio_seconds(self, account: str, choice: dict[str, Any], measured: float | None) -> float:
        audio_id, sound = choice.get("audio_id"), choice.get("sound_file")
        if (audio_id is None) == (sound is None):
            raise invalid("exactly one of sound_file and audio_id is required")
        if audio_id is not None:
            speech = self.speeches.get(str(audio_id))
            if speech is None or speech.account != account:
                raise invalid("audio_id does not exist")
            return speech.seconds
        if measured is None:
            raise invalid("sound_file could not be decoded as audio")
        return measured


def _identify_target(body: Any) -> tuple[str | None, str | None]:
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    video_id, video_url = body.get("video_id"), body.get("video_url")
    if (video_id is None) == (video_url is None):
        raise invalid("exactly one of video_id and video_url is required")
    if video_id is not None and (not isinstance(video_id, str) or not video_id):
        raise invalid("video_id must be a string")
    if video_url is not None and (not isinstance(video_url, str) or not http_url(video_url)):
        raise invalid("video_url must be an http(s) URL")
    return video_id, video_url


def audio_seconds(data: bytes) -> float | None:
    """How long the audio in ``data`` lasts, decoded with PyAV; None when it is not audio."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                return None
            total = 0.0
            for frame in container.decode(audio=0):
                total += frame.samples / (frame.sample_rate or 1)
            return total or None
    except (av.FFmpegError, ValueError, OSError):
        return None
