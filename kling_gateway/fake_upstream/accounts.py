"""The fake's Kling accounts: key pairs, per-account concurrency and resource packs.

Kling counts concurrency per account: a task holds a slot from ``submitted`` until it ends,
failures included; over the limit a create answers 429 code 1303 (kling-upstream.md,
"Capacity"). An account can also be put in an account-level error (1100-1103) by a test.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kling_gateway.fake_upstream.config import FaultConfigError

PACK_STATUSES = ("toBeOnline", "online", "expired", "runOut")
# The account-level errors a test may put on an account: code -> (HTTP status, message).
ACCOUNT_ERRORS: dict[int, tuple[int, str]] = {
    1100: (429, "account exception"),
    1101: (429, "account in arrears"),
    1102: (429, "resource pack used up"),
    1103: (403, "no access to this API or model"),
}
OVER_LIMIT = "parallel task over resource pack limit"


@dataclass(slots=True)
class ResourcePack:
    """One resource pack as ``GET /account/costs`` shows it."""

    name: str = "video pack"
    pack_id: str = "pack-1"
    total_quantity: float = 1000.0
    remaining_quantity: float = 1000.0
    status: str = "online"
    pack_type: str = "decreasing_total"

    def to_json(self, now_ms: int) -> dict[str, Any]:
        return {
            "resource_pack_name": self.name,
            "resource_pack_id": self.pack_id,
            "resource_pack_type": self.pack_type,
            "total_quantity": self.total_quantity,
            "remaining_quantity": self.remaining_quantity,
            "purchase_time": now_ms - 86_400_000,
            "effective_time": now_ms - 86_400_000,
            "invalid_time": now_ms + 30 * 86_400_000,
            "status": self.status,
        }


@dataclass(slots=True)
class FakeAccount:
    """One Kling account with one key pair.

    ``max_concurrency`` None: no limit (the fake's historical behaviour). ``error_code``: an
    account-level error (one of ``ACCOUNT_ERRORS``) every authenticated request answers.
    """

    name: str
    access_key: str
    secret_key: str
    max_concurrency: int | None = None
    packs: list[ResourcePack] = field(default_factory=list)
    error_code: int | None = None
    # Counters a test reads: the highest number of tasks in flight at once, rejected creates.
    peak_in_flight: int = 0
    rejected_over_limit: int = 0
    costs_requests: int = 0
    last_costs_at: float | None = None

    def usable_packs(self) -> bool:
        """False when the account has packs and none can pay (all runOut or expired)."""
        if not self.packs:
            return True
        return any(pack.status in ("online", "toBeOnline") for pack in self.packs)

    def to_json(self, in_flight: int) -> dict[str, Any]:
        return {
            "name": self.name,
            "access_key": self.access_key,
            "max_concurrency": self.max_concurrency,
            "in_flight": in_flight,
            "peak_in_flight": self.peak_in_flight,
            "rejected_over_limit": self.rejected_over_limit,
            "costs_requests": self.costs_requests,
            "error_code": self.error_code,
            "packs": [pack.to_json(0) for pack in self.packs],
        }


def _pack_from_json(doc: Any) -> ResourcePack:
    if not isinstance(doc, dict):
        raise FaultConfigError("a resource pack must be an object")
    status = doc.get("status", "online")
    if status not in PACK_STATUSES:
        raise FaultConfigError(f"pack status must be one of {PACK_STATUSES}")
    remaining = doc.get("remaining_quantity", 1000.0)
    total = doc.get("total_quantity", max(1000.0, remaining) if _is_number(remaining) else 0)
    if not _is_number(remaining) or not _is_number(total):
        raise FaultConfigError("pack quantities must be numbers")
    return ResourcePack(
        name=str(doc.get("name", "video pack")),
        pack_id=str(doc.get("pack_id", "pack-1")),
        total_quantity=float(total),
        remaining_quantity=float(remaining),
        status=status,
    )


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def update_account(account: FakeAccount, doc: Any) -> None:
    """Apply ``{"max_concurrency", "error_code", "packs"}`` (any subset) from the admin API."""
    if not isinstance(doc, dict):
        raise FaultConfigError("an account update must be an object")
    unknown = set(doc) - {"max_concurrency", "error_code", "packs"}
    if unknown:
        raise FaultConfigError(f"unknown account fields {sorted(unknown)}")
    if "max_concurrency" in doc:
        limit = doc["max_concurrency"]
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise FaultConfigError("max_concurrency must be an integer or null")
        account.max_concurrency = limit
    if "error_code" in doc:
        code = doc["error_code"]
        if code is not None and code not in ACCOUNT_ERRORS:
            raise FaultConfigError(f"error_code must be one of {sorted(ACCOUNT_ERRORS)} or null")
        account.error_code = code
    if "packs" in doc:
        if not isinstance(doc["packs"], list):
            raise FaultConfigError("packs must be a list")
        account.packs = [_pack_from_json(pack) for pack in doc["packs"]]


def index_by_access_key(accounts: Iterable[FakeAccount]) -> dict[str, FakeAccount]:
    found: dict[str, FakeAccount] = {}
    for account in accounts:
        if account.access_key in found:
            raise ValueError(f"two fake accounts share the access key {account.access_key}")
        found[account.access_key] = account
    return found


def accounts_from_json(doc: Any) -> list[FakeAccount]:
    """``[{"name", "access_key", "secret_key", "max_concurrency"?, "packs"?}]`` (the CLI's)."""
    if not isinstance(doc, list):
        raise FaultConfigError("accounts must be a list")
    accounts = []
    for item in doc:
        if not isinstance(item, dict) or not all(
            isinstance(item.get(key), str) for key in ("name", "access_key", "secret_key")
        ):
            raise FaultConfigError("an account needs string name, access_key and secret_key")
        account = FakeAccount(item["name"], item["access_key"], item["secret_key"])
        update_account(
            account, {k: v for k, v in item.items() if k in ("max_concurrency", "packs")}
        )
        accounts.append(account)
    return accounts
