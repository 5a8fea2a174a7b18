"""/metrics of the account pool against the fake upstream (issue 14): an account disabled by
an account-level error and one full after 1303 show as signals and states, the Kling API
calls by code, the slots per account."""

from __future__ import annotations

import httpx

from kling_gateway.runtime.settings import Settings
from tests.api.test_metrics import delta, scrape, total, value
from tests.harness import AppHarness
from tests.providers.kling.test_gateway import create, settled, states
from tests.providers.kling.test_pool import (  # noqa: F401 - fixtures
    ACCOUNTS,
    fake_app,
    settings,
    stored_accounts,
)

SIGNALS = "kling_gateway_upstream_account_signals_total"
CALLS = "kling_gateway_upstream_calls_total"


async def test_a_disabled_account_shows_in_the_metrics(
    settings: Settings,  # noqa: F811 - the fixture
    admin: httpx.AsyncClient,
) -> None:
    await admin.post("/fake-admin/accounts/c", json={"error_code": 1101})
    await stored_accounts(settings)
    async with AppHarness.start(settings) as h:
        before = await scrape(h)
        ids = await create(h, 20)
        assert states(await settled(h.client, h.headers(), ids, timeout=60)) == {"succeed": 20}
        after = await scrape(h)
    assert delta(before, after, SIGNALS, account="c", signal="disabled") == 1
    assert value(after, "kling_gateway_upstream_account_state", account="c", state="disabled") == 1
    for name, (_, _, limit) in ACCOUNTS.items():
        assert value(after, "kling_gateway_upstream_account_slots", account=name) == limit
        assert value(after, "kling_gateway_upstream_account_slots_in_use", account=name) == 0
    assert value(after, "kling_gateway_upstream_account_state", account="b", state="enabled") == 1
    # Its first call (a lookup by external id before a create, or the create) answered 1101.
    assert total(after, CALLS, code="1101") - total(before, CALLS, code="1101") >= 1
    assert delta(before, after, CALLS, call="create", code="0") == 20


async def test_1303_marks_the_account_full_in_the_metrics(
    settings: Settings,  # noqa: F811 - the fixture
    admin: httpx.AsyncClient,
) -> None:
    await stored_accounts(settings, b=4)  # the upstream allows b 2
    async with AppHarness.start(settings) as h:
        before = await scrape(h)
        ids = await create(h, 40)
        assert states(await settled(h.client, h.headers(), ids, timeout=60)) == {"succeed": 40}
        after = await scrape(h)
    refused = (await admin.get("/fake-admin/accounts")).json()
    over = next(a["rejected_over_limit"] for a in refused if a["name"] == "b")
    assert over > 0
    assert delta(before, after, CALLS, call="create", code="1303") == over
    assert delta(before, after, SIGNALS, account="b", signal="full") >= 1
