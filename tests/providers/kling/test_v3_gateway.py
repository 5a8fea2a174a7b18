# ruff: noqa: F811 - the imported fixtures are parameters by name
"""The §6 shapes over the whole gateway with the kling provider (docs/contract.md §6): an Omni
request with the caller's element is created on omni-video with the element's upstream id, and
its task succeeds (its checks and list refreshes reach the endpoint it was created on)."""

from __future__ import annotations

import time

from kling_gateway.fake_upstream import FakeUpstream
from kling_gateway.fake_upstream.general import ELEMENTS
from tests.harness import AppHarness
from tests.providers.kling.test_gateway import (  # noqa: F401 - fixtures, used by name
    fake_app,
    gateway,
    settled,
)


async def test_an_omni_request_runs_on_omni_video(gateway: AppHarness, fake: FakeUpstream) -> None:
    fake.general.seed(fake.config.access_key, ELEMENTS, "kling-el-9")  # made on this account
    element = await gateway.store.add_asset(
        user_id=gateway.user_ids["alice"], kind="element", upstream_id="kling-el-9", now=time.time()
    )
    body = {
        "action": "text2video",
        "model": "kling-o1",
        "prompt": "<<<image_1>>> on a table",
        "image_list": [{"image_url": "https://img.example/mug.png"}],
        "element_list": [{"element_id": element}],
        "async": True,
    }
    response = await gateway.videos(body)
    assert response.status_code == 200, response.text
    task_id = response.json()["task_id"]
    found = await settled(gateway.client, gateway.headers(), [task_id])
    assert found[task_id]["response"]["state"] == "succeed", found
    (job,) = fake.state.tasks.values()
    assert job.kind == "omni-video"
    assert job.request.body["model_name"] == "kling-video-o1"
    assert job.request.body["element_list"] == [{"element_id": "kling-el-9"}]
