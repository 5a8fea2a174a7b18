"""Numbered SQL migrations, one folder per backend, applied in order and recorded."""

from __future__ import annotations

from importlib import resources


def migration_scripts(backend: str) -> list[tuple[str, str]]:
    """(name, SQL) of every migration of ``backend``, in order."""
    folder = resources.files("kling_gateway.storage.migrations").joinpath(backend)
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name, folder.joinpath(name).read_text(encoding="utf-8")) for name in names]
