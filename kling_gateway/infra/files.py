"""Where finished videos live: under the data directory, served by the gateway at /files/."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kling_gateway.domain.task import Task

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

    def remove(self, video_id: str) -> bool:
        """Delete the file of ``video_id``; whether there was one (blocking: run in a thread)."""
        try:
            self.path_for(video_id).unlink()
        except (ValueError, FileNotFoundError):
            return False
        return True

    def remove_task_videos(self, task: Task) -> list[str]:
        """Delete the files of ``task``'s video (a deleted task's video must not stay public);
        the ids whose file was removed. Blocking: run it in a thread."""
        return [video_id for video_id in videos_of(task) if self.remove(video_id)]


def videos_of(task: Task) -> list[str]:
    """The video ids a task may have a file under: the one its result names, and the one its
    local render plan holds (a render still in progress)."""
    ids: list[str] = []
    for value in (
        (task.response or {}).get("video_id"),
        task.provider_data.get("video_id"),
    ):
        if isinstance(value, str) and value and value not in ids:
            ids.append(value)
    return ids
