"""The hosted service's own Python SDK (``acedatacloud``) against a live gateway: its
``kling.generate(...)`` with each §6 shape (docs/contract.md §6), as a new user would try it.
The gateway runs as ``serve`` composes it, with its worker and the local provider; reference
images and videos come from a loopback server (the gateway may fetch private addresses here)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from acedatacloud import AceDataCloud, ValidationError
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kling_gateway.client import Client
from kling_gateway.providers.local.render import RenderSpec, render_video
from tests.harness import make_settings
from tests.real_gateway import RealGateway, real_gateway
from tests.servers import serve_asgi


def _png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (96, 54), colour).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    clip = tmp_path_factory.mktemp("media") / "clip.mp4"
    render_video(clip, RenderSpec(prompt="a reference", duration=2, fps=8, max_side=64, audio=True))
    bodies = {"red.png": _png((220, 20, 20)), "blue.png": _png((20, 20, 220)),
              "clip.mp4": clip.read_bytes()}  # fmt: skip

    async def serve(request: Request) -> Response:
        return Response(bodies[request.path_params["name"]])

    with serve_asgi(Starlette(routes=[Route("/{name}", serve)])) as url:
        yield url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealGateway]:
    data = tmp_path_factory.mktemp("acedatacloud")
    settings_for = lambda port: make_settings(  # noqa: E731
        data, worker=True, local_delay=0.05, local_max_side=64, port=port,
        callback_allow_private=True,
    )  # fmt: skip
    with real_gateway(settings_for) as gw:
        gw.add_user("alice")
        yield gw


@pytest.fixture
def ace(server: RealGateway) -> Iterator[Any]:
    client = AceDataCloud(api_token=server.tokens["alice"], base_url=server.url, max_retries=0)
    yield client.kling


def _asset(server: RealGateway, kind: str) -> str:
    store = server.app.ctx.store
    coro = store.add_asset(
        user_id=server.user_ids["alice"], kind=kind, upstream_id=f"k-{kind}", now=time.time()
    )
    return server.submit(coro).result(10)


def _video(server: RealGateway, result: dict[str, Any]) -> Path:
    assert result.get("state") == "succeed", result
    return Path(server.settings.data_dir) / "videos" / f"{result['video_id']}.mp4"


def _streams(path: Path) -> list[str]:
    with av.open(str(path)) as container:
        return [s.type for s in container.streams]


def test_turbo_is_the_hosted_default_model_and_has_audio(server: RealGateway, ace: Any) -> None:
    result = ace.generate(action="text2video", model="kling-v3-turbo", prompt="a drum", duration=3)
    assert _streams(_video(server, result)) == ["video", "audio"]


def test_a_customised_storyboard(server: RealGateway, ace: Any) -> None:
    shots = [{"index": 1, "prompt": "a fox", "duration": 2},
             {"index": 2, "prompt": "a ship", "duration": 2}]  # fmt: skip
    result = ace.generate(action="text2video", model="kling-v3", duration=4, multi_shot=True,
                          shot_type="customize", multi_prompt=shots)  # fmt: skip
    assert float(result["duration"]) == pytest.approx(4.0, abs=0.2)
    assert _streams(_video(server, result)) == ["video"]


def test_an_intelligence_storyboard_with_audio(server: RealGateway, ace: Any) -> None:
    result = ace.generate(action="text2video", model="kling-v3-omni", duration=3,
                          prompt="A fox runs. A ship sails. A hill glows.", multi_shot=True,
                          shot_type="intelligence", generate_audio=True)  # fmt: skip
    assert _streams(_video(server, result)) == ["video", "audio"]


def test_omni_images_on_o1(server: RealGateway, ace: Any, media: str) -> None:
    images = [{"image_url": f"{media}/red.png", "type": "first_frame"},
              {"image_url": f"{media}/blue.png"}]  # fmt: skip
    result = ace.generate(action="text2video", model="kling-o1", duration=5,
                          prompt="<<<image_2>>> beside the mug", image_list=images)  # fmt: skip
    with av.open(str(_video(server, result))) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    h, w = first.shape[:2]
    assert first[h // 4 : h // 2, w // 4 : 3 * w // 4].reshape(-1, 3).mean(axis=0)[0] > 150


def test_a_base_video_reference_keeps_its_sound(server: RealGateway, ace: Any, media: str) -> None:
    video = [{"video_url": f"{media}/clip.mp4", "refer_type": "base", "keep_original_sound": "yes"}]
    result = ace.generate(action="text2video", model="kling-v3-omni", duration=3,
                          prompt="edit <<<video_1>>>", video_list=video)  # fmt: skip
    assert _streams(_video(server, result)) == ["video", "audio"]


def test_elements_and_voices_of_the_caller(server: RealGateway, ace: Any) -> None:
    element, voice = _asset(server, "element"), _asset(server, "voice")
    made = ace.generate(action="text2video", model="kling-v3", prompt="a mug", duration=3,
                        element_list=[{"element_id": element}])  # fmt: skip
    assert made["state"] == "succeed", made
    spoken = ace.generate(action="text2video", model="kling-v2-6", mode="pro",
                          generate_audio=True, prompt="<<<voice_1>>> says hello", duration=5,
                          voice_list=[{"voice_id": voice}])  # fmt: skip
    assert _streams(_video(server, spoken)) == ["video", "audio"]


def test_a_foreign_element_is_refused(server: RealGateway, ace: Any) -> None:
    server.add_user("bob")
    coro = server.app.ctx.store.add_asset(
        user_id=server.user_ids["bob"], kind="element", upstream_id="k-bob", now=time.time()
    )
    foreign = server.submit(coro).result(10)
    with pytest.raises(ValidationError) as info:  # the SDK's class for a 400 bad_request
        ace.generate(action="text2video", model="kling-v3", prompt="a mug", duration=3,
                     element_list=[{"element_id": foreign}])  # fmt: skip
    assert (info.value.status_code, info.value.code) == (400, "bad_request")
    assert "element_list[0].element_id" in info.value.message


def test_elements_and_voices_made_through_the_endpoints(server: RealGateway, ace: Any) -> None:
    # made with POST /kling/elements and /kling/voices (§6.1), used by the hosted SDK
    with Client(server.url, token=server.tokens["alice"]) as ours:
        voice = ours.voices.create("Narrator", voice_url="https://cdn.example/v.mp3")["voice_id"]
        element = ours.elements.create(
            "Tabby", "a cat", frontal_image="https://cdn.example/f.png",
            refer_images=["https://cdn.example/s.png"], element_voice_id=voice,
        )["element_id"]  # fmt: skip
    made = ace.generate(action="text2video", model="kling-v3", prompt="a cat", duration=3,
                        element_list=[{"element_id": element}])  # fmt: skip
    assert made["state"] == "succeed", made
    spoken = ace.generate(action="text2video", model="kling-v2-6", mode="pro",
                          generate_audio=True, prompt="<<<voice_1>>> says hello", duration=5,
                          voice_list=[{"voice_id": voice}])  # fmt: skip
    assert spoken["state"] == "succeed", spoken
