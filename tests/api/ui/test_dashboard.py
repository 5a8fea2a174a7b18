"""The dashboard at /ui/ in headless Chromium against a real gateway with its worker: sign in,
create a video from the form and watch it reach `succeed` without a reload, play it, filter
the list; the operator's pages with an admin token. Every page is screenshotted (browser.py).
Skipped without Debian's chromium, failed instead under KLING_GATEWAY_TEST_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kling_gateway.protocol.task import TaskState
from kling_gateway.storage.tokens import ALL_APIS, with_admin
from tests.api.ui.browser import chromium, screenshot, sign_in
from tests.harness import insert_finished, make_settings, make_task
from tests.real_gateway import RealGateway, real_gateway
from tests.services import require_chromium

TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealGateway]:
    data = tmp_path_factory.mktemp("ui")
    # A render delay long enough that the task page opens while the task still runs, even on
    # a busy machine: the test watches it succeed from there.
    settings_for = lambda port: make_settings(  # noqa: E731
        Path(data), port=port, local_delay=5.0, local_max_side=160
    )
    with real_gateway(settings_for) as gateway:
        gateway.add_user("alice")
        gateway.add_user("root", apis=with_admin(ALL_APIS, True))
        yield gateway


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium(require_chromium()) as launched:
        yield launched


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert not errors, f"the page raised: {errors}"


def test_sign_in_refuses_a_bad_token_then_keeps_a_good_one_in_the_tab(
    gw: RealGateway, page: Any
) -> None:
    page.goto(f"{gw.url}/ui/")
    screenshot(page, "01-sign-in")
    page.fill("#signin input[name=token]", "kg-not-a-token")
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#signin .error")
    assert "invalid_token" in page.inner_text("#signin .error")
    sign_in(page, gw.url, gw.tokens["alice"])
    assert page.evaluate("sessionStorage.getItem('kling-gateway.token')") == gw.tokens["alice"]
    assert page.evaluate("document.cookie") == ""
    assert "Users" not in page.inner_text("#nav")  # a user's token: no operator's pages


def test_create_from_the_form_watch_it_succeed_live_and_play_it(gw: RealGateway, page: Any) -> None:
    sign_in(page, gw.url, gw.tokens["alice"])
    page.click("#nav a[href='#/create']")
    page.wait_for_selector("#create")
    # The form has a control for every field of POST /kling/videos.
    fields = httpx.get(f"{gw.url}/openapi.json").json()["components"]["schemas"]["VideosRequest"]
    missing = page.evaluate(
        "(names) => names.filter((n) => !document.querySelector(`[data-field='${n}']`))",
        list(fields["properties"]),
    )
    assert missing == []
    page.fill("#create textarea[name=prompt]", "A red kite over a green hill at dawn")
    page.select_option("#create select[name=aspect_ratio]", "1:1")
    screenshot(page, "02-create")
    page.click("#create-submit")
    page.wait_for_selector("#record")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    assert page.inner_text("#live") == "● live"
    screenshot(page, "03-task-running")
    page.wait_for_selector(".facts [data-state=succeed]")
    assert page.evaluate("window.__sameDocument") is True
    page.wait_for_function(
        "() => { const v = document.getElementById('player'); return v && v.duration > 0; }"
    )
    duration = page.evaluate("document.getElementById('player').duration")
    assert duration == pytest.approx(5.0, abs=0.5)
    assert '"aspect_ratio": "1:1"' in page.inner_text("#record")
    screenshot(page, "03-task-succeeded-and-played")


def _stored(gw: RealGateway, state: TaskState, prompt: str, created_at: float) -> str:
    task = make_task(gw.user_ids["alice"], created_at=created_at, prompt=prompt)
    if state is TaskState.SUCCEED:
        gw.submit(insert_finished(gw.app.ctx.store, task, video_id=f"v-{task.id}")).result(10)
    else:
        # Due far in the future: the worker leaves it waiting.
        insert = gw.app.ctx.store.insert_task(task, next_check_at=9e9, deadline_at=9e9)
        gw.submit(insert).result(10)
    return task.id


def test_filter_the_list_by_state_and_time(gw: RealGateway, page: Any) -> None:
    day = 86400.0
    old = _stored(gw, TaskState.SUCCEED, "an old lighthouse", time.time() - 3 * day)
    waiting = _stored(gw, TaskState.PENDING, "a waiting harbour", time.time() - day)
    sign_in(page, gw.url, gw.tokens["alice"])
    page.wait_for_selector(f"#task-list a[href='#/task/{waiting}']")
    page.select_option("#filters select[name=state]", "pending")
    page.click("#filters button[type=submit]")
    page.wait_for_function("location.hash.includes('state=pending')")
    page.wait_for_selector("#task-list tbody")
    rows = page.locator("#task-list tbody tr")
    assert rows.count() == 1 and "a waiting harbour" in rows.inner_text()
    screenshot(page, "04-tasks-filtered")
    page.select_option("#filters select[name=state]", "")
    two_days_ago = time.strftime("%Y-%m-%dT%H:%M", time.localtime(time.time() - 2 * day))
    page.fill("#filters input[name=to]", two_days_ago)
    page.click("#filters button[type=submit]")
    page.wait_for_function("location.hash.includes('to=')")
    page.wait_for_selector(f"#task-list a[href='#/task/{old}']")
    assert page.locator("#task-list tbody tr").count() == 1


def _hold_slots(gw: RealGateway, count: int) -> None:
    """``count`` waiting tasks handed slots on the upstream accounts, as the kling provider's
    worker hands them out; due only in the far future, so the local worker never runs them."""
    store = gw.app.ctx.store
    for i in range(count):
        task = make_task(gw.user_ids["alice"], prompt=f"queued {i}")
        gw.submit(store.insert_task(task, next_check_at=9e9, deadline_at=9e9)).result(10)
    assert len(gw.submit(store.claim_for_slots("ui-test", 9e9 + 1, count, 60)).result(10)) == count


def test_operator_pages(gw: RealGateway, page: Any) -> None:
    headers = {"authorization": f"Bearer {gw.tokens['root']}"}
    for name, slots in (("main", 4), ("spare", 2)):
        account = {
            "name": name,
            "access_key": "AK" + name,
            "secret_key": "sk",
            "max_concurrency": slots,
        }
        response = httpx.post(f"{gw.url}/admin/v1/accounts", json=account, headers=headers)
        assert response.status_code == 201
    httpx.patch(f"{gw.url}/admin/v1/accounts/spare", json={"state": "disabled"}, headers=headers)
    _hold_slots(gw, 3)
    sign_in(page, gw.url, gw.tokens["root"])
    assert "Users" in page.inner_text("#nav")

    page.click("#nav a[href='#/admin/users']")
    page.wait_for_selector("#users button[data-user=alice]")
    page.click("#users button[data-user=alice]")  # disable alice's application
    page.wait_for_selector("#users button[data-user=alice]:text('Enable')")
    screenshot(page, "05-admin-users")
    users = httpx.get(f"{gw.url}/admin/v1/users", headers=headers).json()["items"]
    assert next(u for u in users if u["name"] == "alice")["application"]["disabled"] is True
    page.click("#users button[data-user=alice]")
    page.wait_for_selector("#users button[data-user=alice]:text('Disable')")
    page.click("#users tr:has-text('alice') button:text('Secret')")
    assert page.inner_text("#secret code").startswith("whsec_")

    page.click("#nav a[href='#/admin/tokens']")
    page.fill("#new-token input[name=user]", "carol")
    page.click("#new-token button[type=submit]")
    token = page.inner_text("#issued code")
    assert token.startswith("kg-")
    page.wait_for_selector("#tokens td:text('carol')")
    screenshot(page, "06-admin-tokens")

    page.click("#nav a[href='#/admin/accounts']")
    page.wait_for_selector("#slots [data-account=main]")
    assert page.get_attribute("#slots [data-account=main]", "data-used") == "3"
    screenshot(page, "07-admin-accounts")

    page.click("#nav a[href='#/admin/tasks']")
    page.wait_for_selector("#task-list tbody tr")
    screenshot(page, "08-admin-tasks")
    page.click("#task-list tbody tr:first-child a")
    page.wait_for_selector("#record")
    screenshot(page, "09-admin-task")

    page.click("#nav a[href='#/admin/callbacks']")
    page.wait_for_selector("#callbacks")
    screenshot(page, "10-admin-callbacks")


SCHEMA_DOC = {
    "paths": {
        "/kling/motion": {"post": {"summary": "Motion", "requestBody": {"content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Motion"}}}}}},
        "/kling/tasks": {"post": {"requestBody": {"content": {
            "application/json": {"schema": {}}}}}},
    },
    "components": {"schemas": {"Motion": {
        "type": "object",
        "required": ["image_url"],
        "properties": {
            "image_url": {"type": "string", "description": "The `photo`."},
            "mode": {"type": "string", "enum": ["std", "pro"]},
            "keep": {"type": "boolean"},
            "speed": {"type": ["number", "null"], "minimum": 0.8},
            "events": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
            "watermark": {"type": "object"},
        },
    }}},
}  # fmt: skip


def test_the_form_of_another_kind_is_drawn_from_its_schema(gw: RealGateway, page: Any) -> None:
    """schemaform.js: the form the create page draws for every POST /kling/... kind the OpenAPI
    document lists besides /kling/videos (the §7 kinds), on a document of its own."""
    page.goto(f"{gw.url}/ui/")
    result = page.evaluate(
        """async (doc) => {
            const m = await import('/ui/schemaform.js');
            const kinds = m.otherKinds(doc);
            const form = document.createElement('form');
            form.append(...m.schemaFields(doc, kinds[0].schema));
            document.body.append(form);
            form.elements.image_url.value = 'https://x/p.png';
            form.elements.mode.value = 'pro';
            form.elements.keep.value = 'false';
            form.elements.speed.value = '1.5';
            form.querySelector('input[name=events][value=b]').checked = true;
            form.elements.watermark.value = '{"enabled": true}';
            const fields = [...form.querySelectorAll('[data-field]')].map((e) => e.dataset.field);
            const body = m.schemaBody(doc, kinds[0].schema, form);
            return {paths: kinds.map((k) => k.path), fields, body};
        }""",
        SCHEMA_DOC,
    )
    assert result["paths"] == ["/kling/motion"]
    assert result["fields"] == ["image_url", "mode", "keep", "speed", "events", "watermark"]
    assert result["body"] == {
        "image_url": "https://x/p.png", "mode": "pro", "keep": False, "speed": 1.5,
        "events": ["b"], "watermark": {"enabled": True},
    }  # fmt: skip


def test_the_list_pages_twenty_at_a_time(gw: RealGateway, page: Any) -> None:
    token = gw.add_user("pager")
    store = gw.app.ctx.store
    for i in range(22):
        task = make_task(gw.user_ids["pager"], created_at=time.time() - i, prompt=f"clip {i}")
        gw.submit(store.insert_task(task, next_check_at=9e9, deadline_at=9e9)).result(10)
    sign_in(page, gw.url, token)
    assert page.locator("#task-list tbody tr").count() == 20
    assert "1\u201320 of 22" in page.inner_text("#task-list .pager")
    assert "clip 0" in page.locator("#task-list tbody tr").first.inner_text()  # newest first
    page.click("#task-list .pager button:text('Older')")
    page.wait_for_selector("#task-list .pager:has-text('21\u201322 of 22')")
    assert page.locator("#task-list tbody tr").count() == 2
    assert "clip 21" in page.locator("#task-list tbody tr").last.inner_text()


def test_an_operator_grants_credits_and_the_balance_changes(gw: RealGateway, page: Any) -> None:
    root = {"authorization": f"Bearer {gw.tokens['root']}"}
    sign_in(page, gw.url, gw.tokens["root"])
    page.click("#nav a[href='#/admin/users']")
    balance = "#users .balance[data-user=alice]"
    page.wait_for_selector(balance)
    before = page.inner_text(balance)
    page.fill("#users form.grant[data-user=alice] input[name=credits]", "500")
    page.click("#users form.grant[data-user=alice] button")
    page.wait_for_function(
        "([sel, before]) => document.querySelector(sel).innerText !== before", arg=[balance, before]
    )
    assert page.inner_text(balance).startswith("500")
    screenshot(page, "11-admin-users-granted")

    # A task of alice's is charged from the balance: her usage page and the operator's show it.
    headers = {"authorization": f"Bearer {gw.tokens['alice']}"}
    body = {"action": "text2video", "prompt": "a paid kite", "async": True, "duration": 10}
    task_id = httpx.post(f"{gw.url}/kling/videos", json=body, headers=headers).json()["task_id"]
    done = httpx.post(
        f"{gw.url}/kling/tasks", json={"id": task_id, "wait": 30}, headers=headers, timeout=60
    )
    charged = done.json()["usage"]["credits"]
    assert done.json()["response"]["state"] == "succeed" and charged > 0

    sign_in(page, gw.url, gw.tokens["alice"])
    page.click("#nav a[href='#/usage']")
    page.wait_for_selector("#usage-chart")
    assert page.inner_text("#balance [data-fact=Balance]") == str(500 - charged)
    assert "kling-v1" in page.inner_text("#usage-by-model")
    screenshot(page, "12-usage")

    sign_in(page, gw.url, gw.tokens["root"])
    page.goto(f"{gw.url}/ui/#/admin/usage?days=7")
    page.wait_for_selector("#usage-chart")
    report = httpx.get(f"{gw.url}/admin/v1/usage", params={"by": "model"}, headers=root).json()
    total = page.locator("#usage-by-model tbody tr").last.inner_text().split("\t")
    assert total[2:4] == [str(report["total"]["tasks"]), str(report["total"]["credits"])]
    screenshot(page, "13-admin-usage")
