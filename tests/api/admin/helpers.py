"""The admin API in-process: an admin token beside alice's, and requests with it."""

from __future__ import annotations

from typing import Any

import httpx

from kling_gateway.storage.tokens import ALL_APIS, with_admin
from tests.harness import AppHarness

ADMIN = "root"


async def add_admin(gateway: AppHarness) -> None:
    await gateway.add_user(ADMIN, apis=with_admin(ALL_APIS, True))


async def admin(
    gateway: AppHarness, method: str, path: str, user: str = ADMIN, **kw: Any
) -> httpx.Response:
    headers = {"authorization": f"Bearer {gateway.tokens[user]}"}
    return await gateway.client.request(method, "/admin/v1" + path, headers=headers, **kw)
