"""Where finished videos live: objects in the gateway's object store (``--storage-url``,
``infra/objects``), keyed ``<video_id>.mp4``, served by the gateway at /files/videos/.

``public_url`` is the base a record's ``video_url`` is built from: ``--files-public-url`` (a
CDN in front of the bucket) or else the API's ``--public-url``, never the worker's own address.
Producers render or download into ``scratch`` (a local directory of the process) and
``publish`` the finished file; reference media a provider needs again is ``fetch``-ed back.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kling_gateway.domain.links import video_link
from kling_gateway.domain.task import Task
from kling_gateway.infra.objects import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStream,
    download_to,
)
from kling_gateway.infra.objects.local import FileObjectStore

_VIDEO_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


@dataclass(frozen=True, slots=True)
class VideoFiles:
    """Maps a ``video_id`` to its object and to its absolute public URL.

    ``objects`` defaults to ``file://root`` (the layout before object storage); ``scratch``
    to ``root``'s sibling ``scratch``.
    """

    root: Path
    public_url: str
    objects: ObjectStore = field(default=None)  # type: ignore[assignment]
    scratch: Path = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.objects is None:
            object.__setattr__(self, "objects", FileObjectStore(self.root))
        if self.scratch is None:
            object.__setattr__(self, "scratch", self.root.parent / "scratch")

    def key_for(self, video_id: str) -> str:
        if not _VIDEO_ID.match(video_id):
            raise ValueError(f"not a valid video id: {video_id!r}")
        return f"{video_id}.mp4"

    def path_for(self, video_id: str) -> Path:
        """Where ``video_id``'s object is under the ``file://root`` layout (the default)."""
        return self.root / self.key_for(video_id)

    def ensure_root(self) -> None:
        """Create ``root`` (the ``file://root`` layout's directory)."""
        self.root.mkdir(parents=True, exist_ok=True)

    def link_for(self, video_id: str) -> str:
        """What a record stores: the stable path, resolved by whoever sends the record
        (``domain.links``), so no process's own address is written into it."""
        self.key_for(video_id)
        return video_link(video_id)

    def scratch_path(self, video_id: str, suffix: str = ".mp4") -> Path:
        """A fresh local path to produce a file of ``video_id`` in (unique per call: two
        workers producing one video never share one)."""
        self.key_for(video_id)
        self.scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.scratch / f"{video_id}.{uuid.uuid4().hex}{suffix}"

    async def publish(self, video_id: str, path: Path) -> ObjectInfo:
        """Store the finished file at ``path`` as ``video_id``'s object, then remove it."""
        info = await self.objects.put_file(self.key_for(video_id), path)
        await asyncio.to_thread(_unlink_quietly, path)
        return info

    async def stat(self, video_id: str) -> ObjectInfo | None:
        try:
            return await self.objects.stat(self.key_for(video_id))
        except ObjectNotFound:
            return None

    async def fetch(self, video_id: str, path: Path) -> None:
        """Copy ``video_id``'s object into the local file ``path`` (ObjectNotFound if none)."""
        try:
            await download_to(self.objects, self.key_for(video_id), path)
        except BaseException:
            await asyncio.to_thread(_unlink_quietly, path)
            raise

    async def open(
        self, video_id: str, start: int | None = None, end: int | None = None
    ) -> ObjectStream:
        return await self.objects.open(self.key_for(video_id), start, end)

    async def remove(self, video_id: str) -> bool:
        """Delete ``video_id``'s object; whether there was one."""
        try:
            key = self.key_for(video_id)
        except ValueError:
            return False
        try:
            await self.objects.stat(key)
        except ObjectNotFound:
            return False
        await self.objects.delete(key)
        return True

    async def remove_task_videos(self, task: Task) -> list[str]:
        """Delete the objects of ``task``'s video (a deleted task's video must not stay
        public); the ids whose object was removed."""
        return [video_id for video_id in videos_of(task) if await self.remove(video_id)]


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def videos_of(task: Task) -> list[str]:
    """The video ids a task may have a file under: the one its result names, the one its
    local render plan holds (a render still in progress), and a talking photo's silent
    animation (``source_video_id``, docs/contract.md §7)."""
    ids: list[str] = []
    for value in (
        (task.response or {}).get("video_id"),
        task.provider_data.get("video_id"),
        task.provider_data.get("source_video_id"),
    ):
        if isinstance(value, str) and value and value not in ids:
            ids.append(value)
    return ids
