"""Usage reports over HTTP: the ledger through ``domain.billing.usage_report`` (so the totals
are the ledger's, as `kling-gateway usage` prints them), for the caller (GET /kling/usage) or
for any user (GET /admin/v1/usage)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kling_gateway.api.query import query_number, query_text
from kling_gateway.domain.billing import GROUPINGS, usage_report
from kling_gateway.protocol.errors import BadRequest
from kling_gateway.storage.base import Store


async def usage_doc(
    store: Store,
    request: Request,
    user_name: str | None,
    application_id: str | None = None,
) -> dict[str, Any]:
    """The report the query asks for: ``since`` (epoch seconds), ``by`` (day or model) and
    ``model`` (only that model's tasks, e.g. a chart's series by day); of one user's
    applications, or of one application (a token's)."""
    since = query_number(request, "since")
    by = query_text(request, "by")
    if by is not None and by not in GROUPINGS:
        raise BadRequest(f"query parameter `by` must be one of {', '.join(GROUPINGS)}")
    model = query_text(request, "model")
    entries = await store.ledger_entries(
        user_name=user_name, application_id=application_id, since=since
    )
    if model is not None:
        entries = [e for e in entries if (e.model or "-") == model]
    return usage_report(entries, by=by, since=since).as_json()
