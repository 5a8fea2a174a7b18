"""The official MCP client (the ``mcp`` SDK's streamable HTTP transport) on a live gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client


@asynccontextmanager
async def mcp_session(url: str, token: str) -> AsyncIterator[ClientSession]:
    headers = {"authorization": f"Bearer {token}"}
    timeout = httpx.Timeout(30.0, read=120.0)
    async with (
        httpx.AsyncClient(headers=headers, timeout=timeout) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def structured(result: types.CallToolResult) -> dict[str, Any]:
    """A successful call's structured result (asserting it succeeded)."""
    assert not result.isError, result.content
    assert result.structuredContent is not None
    return result.structuredContent


def tool_error(result: types.CallToolResult) -> dict[str, Any]:
    """A failed call's error body (``{"code", "message"}``)."""
    assert result.isError, result
    assert result.structuredContent is not None
    error: dict[str, Any] = result.structuredContent["error"]
    return error
