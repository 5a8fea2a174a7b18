"""What every endpoint shares: settings, the store, auth, limits and task notifications."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from kling_gateway.api.asgi import Receive, Scope, headers, read_body
from kling_gateway.api.auth import Authenticator
from kling_gateway.api.waiting import Waiters
from kling_gateway.domain.links import Links
from kling_gateway.domain.pricing import PriceTable
from kling_gateway.infra.files import VideoFiles
from kling_gateway.infra.log_context import note_user
from kling_gateway.infra.notify import TaskEvents
from kling_gateway.infra.ratelimit import RateLimiter
from kling_gateway.protocol.errors import TooManyRequests
from kling_gateway.providers.assets import AssetProvider, LocalAssets
from kling_gateway.storage.base import Principal, Store
from kling_gateway.storage.upstream_keys import Sealer

if TYPE_CHECKING:
    from kling_gateway.api.observe import Probe


class ApiSettings(Protocol):
    """The settings the HTTP layer reads (the runtime's ``Settings`` is one): the api sits
    below ``runtime`` and takes the values passed in, so it can be built without it."""

    @property
    def auth_cache_seconds(self) -> float: ...
    @property
    def rate_limit_per_minute(self) -> int: ...
    @property
    def max_body_bytes(self) -> int: ...
    @property
    def batch_max_ids(self) -> int: ...
    @property
    def blocking_wait_seconds(self) -> float: ...
    @property
    def task_deadline_seconds(self) -> float: ...
    @property
    def callback_allow_private(self) -> bool: ...
    @property
    def kling_callback_secret(self) -> str: ...
    @property
    def kling_download_results(self) -> bool: ...
    @property
    def check_interval(self) -> float: ...
    @property
    def check_max_interval(self) -> float: ...
    @property
    def videos_dir(self) -> Path: ...
    @property
    def resolved_public_url(self) -> str: ...
    @property
    def resolved_files_url(self) -> str: ...
    @property
    def storage_presign(self) -> bool: ...
    @property
    def price_table(self) -> PriceTable: ...
    @property
    def access_log(self) -> bool: ...
    @property
    def cors_origins(self) -> str: ...
    @property
    def default_credits_value(self) -> int | None: ...


# A user's callback signing secret and how many rotated-out ones still sign, rotating first
# (with that grace in seconds) when asked; None for an unknown user. The callbacks layer makes
# secrets, so the composition passes this in (`callbacks secret` over HTTP).
SigningSecrets = Callable[[str, bool, float], Awaitable[tuple[str, int] | None]]


@dataclass(slots=True)
class AppContext:
    settings: ApiSettings
    store: Store
    auth: Authenticator
    limiter: RateLimiter
    events: TaskEvents
    files: VideoFiles
    waiters: Waiters = field(default_factory=Waiters)
    # What /readyz checks beside the store and the object storage (Redis, when configured).
    probes: tuple[Probe, ...] = ()
    # Makes the stored links of records absolute with this API's files URL (domain/links.py).
    links: Links = field(init=False)
    # Creates elements and voices (docs/contract.md §6.1); the local provider's by default.
    assets: AssetProvider = field(default_factory=LocalAssets)
    # The server key's box, loaded once at app start (the admin API seals upstream accounts'
    # keys with it); None where no key could be loaded: those endpoints then answer 503.
    sealer: Sealer | None = None
    signing_secrets: SigningSecrets | None = None

    def __post_init__(self) -> None:
        self.links = Links(self.files.public_url)

    async def admit(
        self, scope: Scope, receive: Receive, api: str | None, *, max_body: int | None = None
    ) -> tuple[Principal, bytes]:
        """Authenticate, count against the rate limit, then read the body, capped at
        ``max_body`` (default: the server's ``max_body_bytes``)."""
        principal = await self.authorize(scope, api)
        body = await read_body(receive, max_body or self.settings.max_body_bytes)
        return principal, body

    async def authorize(self, scope: Scope, api: str | None) -> Principal:
        """Authenticate and count against the rate limit (for requests without a body); ``api``
        None leaves the grant to check to the caller (``auth.check_grant``)."""
        principal = await self.auth.authenticate(headers(scope, b"authorization"), api)
        note_user(principal.user_name)
        retry_after = await self.limiter.hit(principal.credential_id)
        if retry_after is not None:
            raise TooManyRequests(retry_after)
        return principal
