"""/ui/ serves the dashboard's committed files (no browser needed): types, the content
security policy that keeps it to its own scripts, and the error shape for anything else."""

from __future__ import annotations

import re

from tests.api.test_tasks import assert_error
from tests.harness import AppHarness


async def test_index_and_its_files_are_served_offline(gateway: AppHarness) -> None:
    index = await gateway.client.get("/ui/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in index.headers["content-security-policy"]
    assert index.headers["x-trace-id"]
    referenced = re.findall(r'(?:src|href)="([^"#]+)"', index.text)
    assert referenced and all("//" not in ref for ref in referenced)  # nothing from elsewhere
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        response = await gateway.client.get(f"/ui/{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
    imports = re.findall(r'from "\./([^"]+)"', (await gateway.client.get("/ui/app.js")).text)
    for name in imports:
        assert (await gateway.client.get(f"/ui/{name}")).status_code == 200, name


async def test_ui_without_slash_redirects_and_unknown_files_are_404(gateway: AppHarness) -> None:
    moved = await gateway.client.get("/ui")
    assert moved.status_code == 308 and moved.headers["location"] == "/ui/"
    assert_error(await gateway.client.get("/ui/nothing.js"), 404, "no_api")
    assert_error(await gateway.client.get("/ui/../openapi.json.js"), 404, "no_api")
