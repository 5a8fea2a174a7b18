"""Where finished videos live: under the data directory, served by the gateway at /files/."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_VIDEO_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


@dataclass(frozen=True, slots=True)
class VideoFiles:
    """Maps a ``video_id`` to its MP4 on disk and to its absolute public URL."""

    root: Path
    public_url: str

    def path_for(self, video_id: str) -> Path:
        if not _VIDEO_ID.match(video_id):
            raise ValueError(f"not a valid video id: {video_id!r}")
        return self.root / f"{video_id}.mp4"

    def url_for(self, video_id: str) -> str:
        return f"{self.public_url.rstrip('/')}/files/videos/{video_id}.mp4"

    def ensure_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
