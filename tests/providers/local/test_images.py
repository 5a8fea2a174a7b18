"""image2video on the local provider, its images fetched from a real loopback HTTP server."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import av
import httpcore
import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from kling_gateway.domain.ids import new_object_id, new_task_id, new_trace_id
from kling_gateway.domain.outcomes import ProviderError, Status
from kling_gateway.domain.task import Task
from kling_gateway.domain.videos import params_from_stored
from kling_gateway.infra import egress as safety
from kling_gateway.infra.egress import GuardedTransport
from kling_gateway.infra.fetch import MAX_REDIRECTS, FetchError, fetch_bytes
from kling_gateway.infra.files import VideoFiles
from kling_gateway.protocol.task import TaskState
from kling_gateway.providers.local.provider import LocalProvider
from kling_gateway.providers.local.render import probe_video
from kling_gateway.storage.sqlite import SQLiteStore
from tests.servers import serve_asgi

CAP = 50_000  # image_max_bytes in these tests
FPS = 4
RED = (230, 20, 20)
BLUE = (20, 20, 230)


def png(colour: tuple[int, int, int], size: tuple[int, int] = (160, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


# --- the image server ------------------------------------------------------------------------


async def red(request: Request) -> Response:
    return Response(png(RED), media_type="image/png")


async def blue(request: Request) -> Response:
    return Response(png(BLUE), media_type="image/png")


async def big(request: Request) -> Response:
    # Honest Content-Length: refused before the body is read.
    return Response(b"\0" * (CAP + 1), media_type="image/png")


async def big_stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"\0" * 10_000

    # No Content-Length (chunked): only counting while reading can stop it.
    return StreamingResponse(chunks(), media_type="image/png")


async def corrupt(request: Request) -> Response:
    return Response(b"this is not a PNG at all", media_type="image/png")


async def slow(request: Request) -> Response:
    await asyncio.sleep(1.0)
    return Response(png(RED), media_type="image/png")


async def redirect(request: Request) -> RedirectResponse:
    return RedirectResponse("/red.png", status_code=302)


async def redirect_ftp(request: Request) -> RedirectResponse:
    return RedirectResponse("ftp://127.0.0.1/red.png", status_code=302)


async def redirect_loop(request: Request) -> RedirectResponse:
    return RedirectResponse("/loop", status_code=307)


async def redirect_loopback(request: Request) -> RedirectResponse:
    # Absolute, to a literal loopback address: a hop of its own for the guard to check.
    return RedirectResponse(f"http://127.0.0.1:{request.url.port}/red.png", status_code=302)


async def missing(request: Request) -> Response:
    return Response("no such image", status_code=404)


APP = Starlette(
    routes=[
        Route("/red.png", red),
        Route("/blue.png", blue),
        Route("/big.png", big),
        Route("/big-stream.png", big_stream),
        Route("/corrupt.png", corrupt),
        Route("/slow.png", slow),
        Route("/redirect", redirect),
        Route("/redirect-ftp", redirect_ftp),
        Route("/loop", redirect_loop),
        Route("/redirect-loopback", redirect_loopback),
        Route("/missing.png", missing),
    ]
)


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serve_asgi(APP) as url:
        yield url


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL nobody listens on (the port was just free)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/red.png"


# --- the provider ----------------------------------------------------------------------------


# Fetches from the loopback test servers may take this long: under a loaded CI machine a
# fetch, its server a thread of the test process, once outlasted a 0.3 s deadline. The test of
# the deadline itself sets a short one.
PATIENT_FETCH = 5.0
SHORT_FETCH = 0.3


def make_provider(
    store: SQLiteStore, tmp_path: Path, *, fetch_timeout: float = PATIENT_FETCH, **kwargs: Any
) -> LocalProvider:
    return LocalProvider(
        files=VideoFiles(root=tmp_path / "videos", public_url="http://gateway.test"),
        store=store,
        delay=0,
        max_side=64,
        fps=FPS,
        image_max_bytes=CAP,
        fetch_timeout=fetch_timeout,
        **kwargs,
    )


@pytest.fixture
async def provider(store: SQLiteStore, tmp_path: Path) -> AsyncIterator[LocalProvider]:
    """A provider that may fetch from loopback, where the test image server listens."""
    prov = make_provider(store, tmp_path, allow_private=True)
    yield prov
    await prov.aclose()


@pytest.fixture
async def guarded(store: SQLiteStore, tmp_path: Path) -> AsyncIterator[LocalProvider]:
    """A provider as deployed by default: no loopback/private image URLs."""
    prov = make_provider(store, tmp_path)
    yield prov
    await prov.aclose()


def image_task(start: str, end: str | None = None) -> Task:
    request: dict[str, Any] = {
        "action": "image2video",
        "prompt": "the colour changes",
        "start_image_url": start,
    }
    if end is not None:
        request["end_image_url"] = end
    return Task(
        id=new_task_id(),
        object_id=new_object_id(),
        user_id="user-1",
        application_id="app-1",
        credential_id="cred-1",
        trace_id=new_trace_id(),
        request=request,
        params=params_from_stored(request),
        created_at=0.0,
    )


async def run(prov: LocalProvider, task: Task) -> Status:
    """Submit and check as the worker does (the task stored first, `processing` recorded)."""
    await prov._store.insert_task(task, next_check_at=0.0, deadline_at=3600.0)
    submission = await prov.submit(task)
    task.job_id, task.provider_data = submission.job_id, submission.provider_data
    first = await prov.check(task)
    assert first.state is TaskState.PROCESSING
    task.state = TaskState.PROCESSING
    return await prov.check(task)


async def failure(prov: LocalProvider, task: Task) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await run(prov, task)
    return info.value


def first_and_last_colours(path: Path) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return frames[0].reshape(-1, 3).mean(axis=0), frames[-1].reshape(-1, 3).mean(axis=0)


async def test_image2video_goes_from_the_start_to_the_end_image(
    provider: LocalProvider, base: str, tmp_path: Path
) -> None:
    status = await run(provider, image_task(f"{base}/red.png", f"{base}/blue.png"))

    assert status.state is TaskState.SUCCEED
    assert status.video is not None
    assert status.video.duration == "5.0"
    path = tmp_path / "videos" / f"{status.video.video_id}.mp4"
    measured = probe_video(path)
    assert (measured.width, measured.height, measured.frames) == (64, 36, 5 * FPS)
    first, last = first_and_last_colours(path)
    np.testing.assert_allclose(first, RED, atol=12)
    np.testing.assert_allclose(last, BLUE, atol=12)


async def test_image2video_follows_an_http_redirect(provider: LocalProvider, base: str) -> None:
    status = await run(provider, image_task(f"{base}/redirect"))

    assert status.state is TaskState.SUCCEED


@pytest.mark.parametrize(
    ("start", "end", "which", "reason"),
    [
        ("/big.png", None, "start", f"over the limit of {CAP} bytes"),
        ("/big-stream.png", None, "start", f"over the limit of {CAP} bytes"),
        ("/red.png", "/missing.png", "end", "HTTP 404 Not Found"),
        ("/redirect-ftp", None, "start", "non-http(s) URL (scheme 'ftp')"),
        ("/loop", None, "start", f"more than {MAX_REDIRECTS} redirects"),
    ],
)
async def test_an_image_that_cannot_be_fetched_fails_the_task(
    provider: LocalProvider, base: str, start: str, end: str | None, which: str, reason: str
) -> None:
    error = await failure(provider, image_task(base + start, end and base + end))

    assert (error.code, error.retryable) == ("image_fetch_failed", False)
    assert f"the {which} image (`{which}_image_url`)" in error.message
    assert reason in error.message


async def test_an_image_slower_than_the_fetch_deadline_fails_the_task(
    store: SQLiteStore, tmp_path: Path, base: str
) -> None:
    prov = make_provider(store, tmp_path, allow_private=True, fetch_timeout=SHORT_FETCH)
    try:
        error = await failure(prov, image_task(f"{base}/slow.png"))
    finally:
        await prov.aclose()

    assert (error.code, error.retryable) == ("image_fetch_failed", False)
    assert f"timed out after {SHORT_FETCH:g} s" in error.message


async def test_an_unreachable_image_server_fails_the_task(
    provider: LocalProvider, closed_port_url: str
) -> None:
    error = await failure(provider, image_task(closed_port_url))

    assert (error.code, error.retryable) == ("image_fetch_failed", False)
    assert "ConnectError" in error.message


async def test_a_corrupt_image_fails_the_render(
    provider: LocalProvider, base: str, tmp_path: Path
) -> None:
    error = await failure(provider, image_task(f"{base}/corrupt.png"))

    assert (error.code, error.retryable) == ("render_failed", False)
    assert "start image could not be decoded" in error.message
    # Nothing half-written: no object, and no scratch file left behind either.
    assert list(tmp_path.glob("videos/*")) == []  # noqa: ASYNC240
    assert list(tmp_path.glob("scratch/*")) == []  # noqa: ASYNC240


# --- the SSRF guard ---------------------------------------------------------------------------


@pytest.fixture
def port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


class Internet(httpcore.AsyncNetworkBackend):
    """Stands in for the internet below the guarded transport: a connection to one of the
    ``public`` addresses reaches the loopback image server instead. Every connection asked
    for is recorded, so a test sees which addresses the guard let through."""

    def __init__(self, public: Iterable[str]) -> None:
        self.connects: list[str] = []
        self._public = set(public)
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append(host)
        target = "127.0.0.1" if host in self._public else host
        return await self._inner.connect_tcp(target, port, timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def fake_dns(monkeypatch: pytest.MonkeyPatch, names: dict[str, list[list[str]]]) -> list[str]:
    """Answer lookups of ``names`` from the given successive answers (others as usual);
    returns the list of names looked up."""
    real = safety.resolve
    answers = {name: iter(each) for name, each in names.items()}
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return next(answers[host]) if host in answers else await real(host, port)

    monkeypatch.setattr(safety, "resolve", resolve)
    return lookups


PUBLIC_IP = "93.184.216.34"


def guarded_client(internet: Internet) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=GuardedTransport(False, backend=internet), trust_env=False)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127.0.0.1:{port}/red.png", "127.0.0.1"),
        ("http://localhost:{port}/red.png", None),  # a name that resolves to loopback
        ("http://[::1]:{port}/red.png", "::1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://10.0.0.1:9/red.png", "10.0.0.1"),
    ],
)
async def test_private_image_urls_are_refused_by_default(
    guarded: LocalProvider, port: int, tmp_path: Path, url: str, address: str | None
) -> None:
    error = await failure(guarded, image_task(url.format(port=port)))

    assert (error.code, error.retryable) == ("image_fetch_failed", False)
    assert "could not fetch the start image (`start_image_url`): refused: address " in (
        error.message
    )
    assert error.message.endswith(" is not public")
    if address is not None:
        assert f"address {address} is not public" in error.message
    videos = tmp_path / "videos"
    assert not videos.exists() or list(videos.iterdir()) == []


async def test_allow_private_lets_loopback_image_urls_through(
    store: SQLiteStore, tmp_path: Path, port: int
) -> None:
    prov = make_provider(store, tmp_path, allow_private=True)
    status = await run(prov, image_task(f"http://127.0.0.1:{port}/red.png"))
    await prov.aclose()

    assert status.state is TaskState.SUCCEED


async def test_a_private_end_image_is_refused_too(
    store: SQLiteStore, tmp_path: Path, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"public.test": [[PUBLIC_IP]]})
    internet = Internet([PUBLIC_IP])
    async with guarded_client(internet) as client:
        prov = make_provider(store, tmp_path, http=client)
        task = image_task(f"http://public.test:{port}/red.png", "http://10.1.2.3/blue.png")
        error = await failure(prov, task)
        await prov.aclose()

    assert error.code == "image_fetch_failed"
    assert error.message == (
        "could not fetch the end image (`end_image_url`): refused: address 10.1.2.3 is not public"
    )
    assert internet.connects == [PUBLIC_IP]  # the start image was fetched, nothing else


async def test_every_redirect_hop_is_checked(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A public image URL redirecting to loopback: the first hop is fetched, the second is
    refused on its address."""
    fake_dns(monkeypatch, {"public.test": [[PUBLIC_IP], [PUBLIC_IP]]})
    internet = Internet([PUBLIC_IP])
    async with guarded_client(internet) as client:
        with pytest.raises(FetchError, match=r"^refused: address 127\.0\.0\.1 is not public$"):
            await fetch_bytes(
                client, f"http://public.test:{port}/redirect-loopback", max_bytes=CAP, timeout=5
            )

    assert internet.connects == [PUBLIC_IP]  # never 127.0.0.1


async def test_the_checked_address_is_the_one_connected_to(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name is resolved once, and a later, private answer is never used."""
    lookups = fake_dns(monkeypatch, {"rebind.test": [[PUBLIC_IP], ["127.0.0.1"]]})
    internet = Internet([PUBLIC_IP])
    async with guarded_client(internet) as client:
        body = await fetch_bytes(
            client, f"http://rebind.test:{port}/red.png", max_bytes=CAP, timeout=5
        )

    assert body == png(RED)
    assert lookups == ["rebind.test"]
    assert internet.connects == [PUBLIC_IP]


# --- fetch_bytes on its own ------------------------------------------------------------------


async def test_fetch_bytes_reads_a_body_within_the_cap(base: str) -> None:
    async with httpx.AsyncClient() as client:
        body = await fetch_bytes(client, f"{base}/red.png", max_bytes=CAP, timeout=5)

    assert body == png(RED)


async def test_fetch_bytes_never_follows_by_itself_even_on_a_following_client(base: str) -> None:
    # The client would follow to ftp:// on its own; fetch_bytes checks the hop instead.
    async with httpx.AsyncClient(follow_redirects=True) as client:
        with pytest.raises(FetchError, match="scheme 'ftp'"):
            await fetch_bytes(client, f"{base}/redirect-ftp", max_bytes=CAP, timeout=5)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("ftp://127.0.0.1/red.png", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("not a url", "scheme 'missing'"),
    ],
)
async def test_fetch_bytes_refuses_non_http_urls(url: str, match: str) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(FetchError, match=match):
            await fetch_bytes(client, url, max_bytes=CAP, timeout=5)
