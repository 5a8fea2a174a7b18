"""The video object store from settings, and its startup check (exit 2 on a bad one)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from kling_gateway.infra.files import VideoFiles
from kling_gateway.infra.objects import StorageConfigError, check_object_store, open_object_store
from kling_gateway.runtime.settings import Settings, SettingsError


def build_video_files(settings: Settings, environ: Mapping[str, str] | None = None) -> VideoFiles:
    """The videos as every process sees them: ``--storage-url``'s store (S3 credentials from
    the standard AWS_* variables of ``environ``, default the process environment), links
    from ``--files-public-url`` or the API's ``--public-url``, scratch files in DATA_DIR."""
    env = os.environ if environ is None else environ
    try:
        objects = open_object_store(
            settings.storage_url,
            default_dir=settings.videos_dir,
            s3_endpoint_url=settings.s3_endpoint_url,
            environ=env,
        )
    except StorageConfigError as exc:
        raise SettingsError(str(exc)) from exc
    return VideoFiles(
        root=settings.videos_dir,
        public_url=settings.resolved_files_url,
        objects=objects,
        scratch=settings.videos_dir.parent / "scratch",
    )


async def check_video_storage(files: VideoFiles) -> None:
    """Stop at startup (SettingsError: one line naming --storage-url, exit 2) when the store
    does not answer, refuses the credentials, or its bucket does not exist."""
    try:
        await check_object_store(files.objects)
    except StorageConfigError as exc:
        raise SettingsError(str(exc)) from exc
