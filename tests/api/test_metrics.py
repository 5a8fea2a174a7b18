"""/metrics after a run of tasks, parsed with prometheus_client's own parser: the counts match
what was done (as differences: the in-process counters are shared by every test here)."""

from __future__ import annotations

import asyncio
import time

from prometheus_client.parser import text_string_to_metric_families

from kling_gateway.storage.sqlite import SQLiteStore
from tests.api.test_failures import PROMPT, fill_up
from tests.api.test_videos import TEXT2VIDEO, wait_finished
from tests.harness import AppHarness, make_task
from tests.seaweed import free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(gateway: AppHarness) -> Samples:
    response = await gateway.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_metrics_count_a_run_of_tasks(gateway_with_worker: AppHarness) -> None:
    gateway = gateway_with_worker
    before = await scrape(gateway)
    closed = f"http://127.0.0.1:{free_port()}"
    good = [
        (await gateway.videos({**TEXT2VIDEO, "async": True})).json()["task_id"] for _ in range(3)
    ]
    failing = {
        "action": "image2video",
        "prompt": "a mug",
        "start_image_url": f"{closed}/start.png",
        "callback_url": f"{closed}/hook",
        "async": True,
    }
    bad = (await gateway.videos(failing)).json()["task_id"]
    records = [await wait_finished(gateway, task_id) for task_id in [*good, bad]]
    assert [r["response"]["state"] for r in records] == ["succeed"] * 3 + ["failed"]
    assert records[-1]["response"]["error"]["code"] == "image_fetch_failed"

    after = await scrape(gateway)
    for _ in range(100):  # the failing task's callback: its first attempt fails at once
        if delta(before, after, "kling_gateway_callback_attempts_total", outcome="retrying"):
            break
        await asyncio.sleep(0.1)
        after = await scrape(gateway)
    kind = "videos"
    assert delta(before, after, "kling_gateway_tasks_created_total", kind=kind) == 4
    assert (
        delta(before, after, "kling_gateway_tasks_finished_total", kind=kind, state="succeed") == 3
    )
    assert (
        delta(before, after, "kling_gateway_tasks_finished_total", kind=kind, state="failed") == 1
    )
    assert delta(before, after, "kling_gateway_queue_wait_seconds_count", kind=kind) == 4
    assert (
        delta(
            before, after, "kling_gateway_provider_errors_total",
            provider="local", code="image_fetch_failed",
        )
        == 1
    )  # fmt: skip
    assert delta(before, after, "kling_gateway_callback_attempts_total", outcome="retrying") == 1
    videos = {"route": "/kling/videos", "status": "200"}
    assert delta(before, after, "kling_gateway_http_requests_total", **videos) == 4
    retrieves = {"route": "/kling/tasks", "status": "200"}
    assert delta(before, after, "kling_gateway_http_requests_total", **retrieves) >= 4
    latency = "kling_gateway_http_request_duration_seconds_count"
    assert delta(before, after, latency, route="/kling/videos") == 4
    # The scrapes themselves are counted under their route's template.
    assert delta(before, after, "kling_gateway_http_requests_total", route="/metrics", status="200")
    # Read from the store at scrape time: nothing is left unfinished, one callback retries.
    assert value(after, "kling_gateway_store_up") == 1
    assert total(after, "kling_gateway_tasks") == 0
    assert value(after, "kling_gateway_queue_depth") == 0
    assert value(after, "kling_gateway_callbacks_retrying") == 1
    assert value(after, "kling_gateway_worker_slots", slots="total") == (
        gateway.settings.worker_concurrency
    )
    assert value(after, "kling_gateway_worker_slots", slots="busy") == 0


async def test_store_gauges_show_the_queue_as_it_is(gateway: AppHarness) -> None:
    user = gateway.user_ids["alice"]
    now = time.time()
    for age in (30, 20, 10):
        task = make_task(user, created_at=now - age)
        await gateway.store.insert_task(task, next_check_at=now, deadline_at=now + 3600)
    samples = await scrape(gateway)
    assert value(samples, "kling_gateway_tasks", kind="videos", state="pending") == 3
    assert value(samples, "kling_gateway_queue_depth") == 3
    assert 30 <= value(samples, "kling_gateway_queue_oldest_wait_seconds") < 300
    assert value(samples, "kling_gateway_tasks_leased") == 0


async def test_a_404_is_one_route_label_whatever_the_path(gateway: AppHarness) -> None:
    before = await scrape(gateway)
    for path in ("/nope", "/wp-admin", "/a/b/c"):
        assert (await gateway.client.get(path)).status_code == 404
    after = await scrape(gateway)
    assert (
        delta(before, after, "kling_gateway_http_requests_total", route="other", status="404") == 3
    )


async def test_a_full_store_is_counted_as_a_storage_error(gateway: AppHarness) -> None:
    assert isinstance(gateway.store, SQLiteStore)
    before = await scrape(gateway)
    await fill_up(gateway.store)
    big = {**PROMPT, "prompt": "x" * 2500, "padding": "y" * 200_000}
    assert (await gateway.videos(big)).status_code == 507
    after = await scrape(gateway)
    assert delta(before, after, "kling_gateway_storage_errors_total", where="api", kind="full") == 1
    full = {"route": "/kling/videos", "status": "507"}
    assert delta(before, after, "kling_gateway_http_requests_total", **full) == 1
