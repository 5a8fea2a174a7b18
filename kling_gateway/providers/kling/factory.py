"""Building the ``kling`` provider from settings (what ``runtime.worker.build_provider`` calls).

The settings are any object with the values read here (``KlingSettings``; the runtime's
``Settings`` is one): providers sit below ``runtime`` and do not import it.
"""

from __future__ import annotations

from typing import Protocol

from kling_gateway.infra.files import VideoFiles
from kling_gateway.providers.kling.batch import BatchConfig
from kling_gateway.providers.kling.client import KlingClientConfig
from kling_gateway.providers.kling.pool import KlingPool
from kling_gateway.providers.kling.provider import KlingProvider, KlingProviderConfig
from kling_gateway.storage.base import Store
from kling_gateway.storage.upstream_keys import Sealer

CALLBACK_PATH = "/kling/upstream-callback"
# A sweep reads at most this many list pages of 500 tasks (10,000 jobs in flight per kind).
LIST_MAX_PAGES = 20


class KlingSettings(Protocol):
    """The settings the ``kling`` provider is built from (see ``runtime.settings``)."""

    @property
    def kling_access_key(self) -> str: ...
    @property
    def kling_secret_key(self) -> str: ...
    @property
    def kling_base_url(self) -> str: ...
    @property
    def kling_callback_secret(self) -> str: ...
    @property
    def kling_download_results(self) -> bool: ...
    @property
    def kling_download_timeout(self) -> float: ...
    @property
    def callback_allow_private(self) -> bool: ...
    @property
    def provider_timeout(self) -> float: ...
    @property
    def check_interval(self) -> float: ...
    @property
    def resolved_public_url(self) -> str: ...


def callback_url(settings: KlingSettings) -> str | None:
    """The gateway's own URL for Kling's status callbacks; None when callbacks are off."""
    if not settings.kling_callback_secret:
        return None
    return f"{settings.resolved_public_url}{CALLBACK_PATH}/{settings.kling_callback_secret}"


def client_config(settings: KlingSettings) -> KlingClientConfig:
    """Every upstream call ends within ``provider_timeout`` (connect and pool in less)."""
    timeout = settings.provider_timeout
    return KlingClientConfig(
        access_key=settings.kling_access_key,
        secret_key=settings.kling_secret_key,
        base_url=settings.kling_base_url,
        connect_timeout=min(5.0, timeout),
        read_timeout=timeout,
        write_timeout=timeout,
        pool_timeout=min(5.0, timeout),
    )


def batch_window(settings: KlingSettings) -> float:
    """How long checks are collected before a sweep: a small part of the check interval."""
    return min(0.25, max(0.01, 0.05 * settings.check_interval))


def provider_config(settings: KlingSettings) -> KlingProviderConfig:
    return KlingProviderConfig(
        client=client_config(settings),
        callback_url=callback_url(settings),
        download_results=settings.kling_download_results,
        download_timeout=settings.kling_download_timeout,
        download_allow_private=settings.callback_allow_private,
        batch=BatchConfig(window=batch_window(settings), max_pages=LIST_MAX_PAGES),
    )


def kling_provider(settings: KlingSettings, files: VideoFiles, store: Store) -> KlingProvider:
    config = provider_config(settings)
    files_if_kept = files if settings.kling_download_results else None
    return KlingProvider(config, store=store, files=files_if_kept)


def kling_pool(
    settings: KlingSettings, files: VideoFiles, store: Store, sealer: Sealer
) -> KlingPool:
    """The provider over every stored account (the old single key pair is one of them)."""
    files_if_kept = files if settings.kling_download_results else None
    return KlingPool(provider_config(settings), store=store, sealer=sealer, files=files_if_kept)
