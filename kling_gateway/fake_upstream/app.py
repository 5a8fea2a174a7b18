"""A faithful fake of the official Kling API as a Starlette app.

API (authenticated with the HS256 JWT of the spec page):

* ``POST /v1/videos/{kind}``: create (``kind`` = text2video, image2video, video-extend).
* ``GET /v1/videos/{kind}/{id}``: one task; ``id`` is a task id or, failing that, an
  ``external_task_id`` of the same account (the path form of the reference).
* ``GET /v1/videos/{kind}?pageNum=&pageSize=``: one page of tasks, newest first.
* ``GET /account/costs?start_time=&end_time=``: the account's resource packs (QPS <= 1 per
  account: a second request within a second answers 1302).
* ``POST /v1/videos/motion-control``: a motion transfer task (like any create).
* ``POST /v1/videos/identify-face`` and ``POST /v1/audio/tts`` answer at once (no task);
  ``POST /v1/videos/advanced-lip-sync`` creates a lip-sync task on an identified face's
  session (see ``lip_sync.py``: 24-hour sessions, audio of at least 2 s).

Accounts (``FakeUpstreamConfig.accounts``): each key pair is one account with its own
concurrency limit (a create over it answers 429 1303), resource packs (all runOut or expired:
1102) and an optional account-level error (1100-1103) on every request.

Unauthenticated extras:

* ``GET /fake-media/{task_id}.mp4``: the result video (one tiny real MP4 for every task);
  faults whose ``routes`` name ``media`` delay, hang or fail it. ``audio-{audio_id}.wav``:
  the speech of a tts call, a real WAV of its duration.
* ``GET|POST|DELETE /fake-admin/faults``: read, replace or clear the injected faults (among
  them ``huge_body``: an API answer of ``size`` bytes, streamed without a Content-Length).
* ``GET|DELETE /fake-admin/counters``: read or reset the request and create counters.
* ``GET /fake-admin/tasks``: every task as the API would show it.
* ``GET /fake-admin/accounts``: every account with its in-flight count, peak and counters;
  ``POST /fake-admin/accounts/{name}`` changes ``max_concurrency``, ``error_code``, ``packs``.
* ``GET /fake-admin/finished?since=EPOCH``: tasks finished after ``since``, with the time they
  finished (``finished_at``, epoch seconds), oldest first.

Prompt triggers for deterministic tests: ``[fake:unsafe]`` (create answers 1301),
``[fake:unsafe-later]`` (the task fails with a safety message), ``[fake:fail]`` (the task fails).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from kling_gateway.fake_upstream.accounts import FakeAccount, update_account
from kling_gateway.fake_upstream.config import (
    FakeUpstreamConfig,
    FaultConfigError,
    faults_from_json,
)
from kling_gateway.fake_upstream.lip_sync import audio_seconds
from kling_gateway.fake_upstream.media import make_tiny_mp4, make_wav
from kling_gateway.fake_upstream.state import FakeState, FakeTask
from kling_gateway.fake_upstream.tokens import JwtError, verify_jwt
from kling_gateway.fake_upstream.validation import FIELDS_BY_KIND, FakeApiError, validate_create

Action = Callable[[Request, bytes, str], Awaitable[Any]]
MALFORMED_BODY = b'{"code": 0, "message": "SUCCEED", "data": {"task_id": '
HUGE_CHUNK = 64 * 1024


async def _huge_body(size: int) -> AsyncIterator[bytes]:
    """``size`` bytes of one endless JSON string, streamed without a Content-Length."""
    yield b'{"code": 0, "message": "'
    left = size
    while left > 0:
        chunk = min(left, HUGE_CHUNK)
        left -= chunk
        yield b"x" * chunk
    yield b'", "data": {}}'


def _envelope(data: Any, *, code: int = 0, message: str = "SUCCEED") -> dict[str, Any]:
    return {"code": code, "message": message, "request_id": str(uuid.uuid4()), "data": data}


def _error(exc: FakeApiError) -> Response:
    body = _envelope(None, code=exc.code, message=exc.message)
    return JSONResponse(body, status_code=exc.http_status, headers=exc.headers)


def _claimed_issuer(token: str) -> str | None:
    """The ``iss`` claim of a token, unverified: which account's secret to check it with."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else None


def _kind(request: Request) -> str:
    kind = str(request.path_params["kind"])
    if kind not in FIELDS_BY_KIND:
        raise FakeApiError(404, 1202, f"no such method: /v1/videos/{kind}")
    return kind


def _page_param(request: Request, name: str, default: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= high:
        raise FakeApiError(400, 1201, f"{name} must be an integer within [1, {high}]")
    return int(raw)


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise FakeApiError(400, 1200, "the request body is not valid JSON") from exc


async def _disconnected(request: Request) -> None:
    """Wait for the client to go away (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        continue


class FakeUpstream:
    """One fake upstream: its state, its background work and its routes."""

    def __init__(self, config: FakeUpstreamConfig) -> None:
        self.config = config
        self.state = FakeState(config)
        self.media = make_tiny_mp4()
        self._background: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

    # --- plumbing ------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        pending = list(self._background)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _authenticate(self, request: Request) -> FakeAccount:
        header = request.headers.get("authorization", "").strip()
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if not token:
            raise FakeApiError(401, 1001, "Authorization is empty")
        if scheme.lower() != "bearer":
            raise FakeApiError(401, 1002, "Authorization is invalid")
        issuer = _claimed_issuer(token)
        account = self.state.account_by_key(issuer) if issuer is not None else None
        secret = account.secret_key if account is not None else self.config.secret_key
        try:
            verify_jwt(token, secret, self.config.clock())
        except JwtError as exc:
            raise FakeApiError(401, exc.code, exc.message) from exc
        if account is None:
            raise FakeApiError(401, 1000, "Authentication failed: unknown access key")
        self.state.check_account(account)
        return account

    async def _hang(self, request: Request) -> None:
        """Answer only when the client gave up (or after ``hang_max`` seconds)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_disconnected(request), self.config.hang_max)
        raise FakeApiError(504, 5002, "internal timeout")

    async def _faults(self, request: Request, route: str, *, after: bool) -> None:
        state = self.state
        if state.fault("hang", route, after=after) is not None:
            await self._hang(request)
        if (slow := state.fault("slow", route, after=after)) is not None:
            await asyncio.sleep(slow.delay)
        if state.fault("server_error", route, after=after) is not None:
            raise FakeApiError(500, 5000, "internal server error")
        if not after and (limit := state.fault("rate_limit", route, after=False)) is not None:
            headers = {"Retry-After": f"{limit.retry_after:g}"}
            raise FakeApiError(429, 1302, "rate limit exceeded", headers)

    async def _api(self, request: Request, route: str, action: Action) -> Response:
        self.state.counters.requests_by_route[route] += 1
        body = await request.body()
        try:
            await self._faults(request, route, after=False)
            account = self._authenticate(request)
            data = await action(request, body, account.name)
            await self._faults(request, route, after=True)
        except FakeApiError as exc:
            return _error(exc)
        if self.state.fault("malformed_json", route) is not None:
            return Response(MALFORMED_BODY, media_type="application/json")
        if (huge := self.state.fault("huge_body", route)) is not None:
            return StreamingResponse(_huge_body(huge.size), media_type="application/json")
        return JSONResponse(_envelope(data))

    # --- task lifecycle and callbacks ----------------------------------------------------

    async def _drive(self, task: FakeTask) -> None:
        await asyncio.sleep(self.config.processing_after)
        self._transition(task, "processing")
        await asyncio.sleep(max(0.0, task.finish_in - self.config.processing_after))
        self._transition(task, "failed" if task.outcome_message else "succeed")

    def _transition(self, task: FakeTask, status: str) -> None:
        self.state.advance(task, status)
        self._notify(task)

    def _notify(self, task: FakeTask) -> None:
        url = task.request.callback_url
        if url is not None:
            self._spawn(self._send_callback(url, task.to_json()))

    async def _send_callback(self, url: str, payload: dict[str, Any]) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient()
        counters = self.state.counters
        try:
            response = await self._http.post(
                url, json=payload, timeout=self.config.callback_timeout
            )
        except httpx.HTTPError:
            counters.callbacks_failed += 1
            return
        if response.is_success:
            counters.callbacks_sent += 1
        else:
            counters.callbacks_failed += 1

    # --- API actions ---------------------------------------------------------------------

    async def _create(self, request: Request, body: bytes, account: str) -> Any:
        kind = _kind(request)
        doc = _json_body(body)
        create = validate_create(kind, doc, strict_fields=self.config.strict_fields)
        if kind == "advanced-lip-sync":
            sounds = [await self._sound_seconds(f) for f in doc.get("face_choose") or []]
            seconds = self.state.lip_sync.check_create(account, doc, sounds, self.config.clock())
            create = dataclasses.replace(create, result_seconds=seconds)
        media_base = self._media_base(request)
        task = self.state.create(account, create, media_base)
        self._notify(task)
        self._spawn(self._drive(task))
        full = task.to_json()
        return {
            key: full[key]
            for key in ("task_id", "task_status", "task_info", "created_at", "updated_at")
        }

    def _media_base(self, request: Request) -> str:
        return self.config.public_url or str(request.base_url)

    async def _sound_seconds(self, face: Any) -> float | None:
        """The length of a ``face_choose`` item's ``sound_file`` (a URL or base64)."""
        sound = face.get("sound_file") if isinstance(face, dict) else None
        if not isinstance(sound, str) or not sound:
            return None
        if sound.startswith(("http://", "https://")):
            if self._http is None:
                self._http = httpx.AsyncClient()
            try:
                response = await self._http.get(sound, timeout=self.config.callback_timeout)
            except httpx.HTTPError:
                return None
            return audio_seconds(response.content) if response.is_success else None
        try:
            return audio_seconds(base64.b64decode(sound, validate=True))
        except (binascii.Error, ValueError):
            return None

    async def _identify(self, request: Request, body: bytes, account: str) -> Any:
        doc = _json_body(body)
        video_id = doc.get("video_id") if isinstance(doc, dict) else None
        source = (
            self.state.video_of_account(account, video_id) if isinstance(video_id, str) else None
        )
        seconds = float(source.duration) if source is not None else None
        now = self.config.clock()
        return self.state.lip_sync.identify(account, doc, seconds, now, self._media_base(request))

    async def _tts(self, request: Request, body: bytes, account: str) -> Any:
        return self.state.lip_sync.speak(account, _json_body(body), self._media_base(request))

    async def _get(self, request: Request, _body: bytes, account: str) -> Any:
        ident = str(request.path_params["ident"])
        task = self.state.find(account, _kind(request), ident)
        if task is None:
            raise FakeApiError(404, 1203, f"task {ident} does not exist")
        return task.to_json()

    async def _list(self, request: Request, _body: bytes, account: str) -> Any:
        kind = _kind(request)
        page_num = _page_param(request, "pageNum", 1, 1000)
        page_size = _page_param(request, "pageSize", 30, 500)
        return [t.to_json() for t in self.state.page(account, kind, page_num, page_size)]

    async def _costs(self, _request: Request, _body: bytes, name: str) -> Any:
        account = self.state.account_named(name)
        assert account is not None  # _authenticate found it
        now = self.config.clock()
        account.costs_requests += 1
        if account.last_costs_at is not None and now - account.last_costs_at < 1.0:
            raise FakeApiError(429, 1302, "rate limit exceeded", {"Retry-After": "1"})
        account.last_costs_at = now
        now_ms = self.state.now_ms()
        packs = [pack.to_json(now_ms) for pack in account.packs]
        return {"code": 0, "msg": "", "resource_pack_subscribe_infos": packs}

    async def create(self, request: Request) -> Response:
        return await self._api(request, "create", self._create)

    async def get(self, request: Request) -> Response:
        return await self._api(request, "get", self._get)

    async def list_tasks(self, request: Request) -> Response:
        return await self._api(request, "list", self._list)

    async def costs(self, request: Request) -> Response:
        return await self._api(request, "costs", self._costs)

    async def identify(self, request: Request) -> Response:
        return await self._api(request, "identify", self._identify)

    async def tts(self, request: Request) -> Response:
        return await self._api(request, "tts", self._tts)

    # --- media and admin -----------------------------------------------------------------

    async def media_file(self, request: Request) -> Response:
        self.state.counters.requests_by_route["media"] += 1
        try:
            await self._faults(request, "media", after=False)
        except FakeApiError as exc:
            return _error(exc)
        name = str(request.path_params["name"])
        speech = self.state.lip_sync.speeches.get(name.removeprefix("audio-").removesuffix(".wav"))
        if name.startswith("audio-") and name.endswith(".wav") and speech is not None:
            return Response(make_wav(speech.seconds), media_type="audio/wav")
        task = self.state.tasks.get(name.removesuffix(".mp4"))
        if not name.endswith(".mp4") or task is None or task.status != "succeed":
            return Response(b"not found", status_code=404, media_type="text/plain")
        return Response(self.media, media_type="video/mp4")

    async def faults(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.state.faults = faults_from_json(json.loads(await request.body()))
            except (FaultConfigError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        elif request.method == "DELETE":
            self.state.faults = {}
        return JSONResponse({kind: rule.to_json() for kind, rule in self.state.faults.items()})

    async def counters(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.counters = type(self.state.counters)()
        return JSONResponse(self.state.counters.to_json())

    async def tasks(self, _request: Request) -> Response:
        return JSONResponse([task.to_json() for task in self.state.tasks.values()])

    async def finished(self, request: Request) -> Response:
        try:
            since = float(request.query_params.get("since", "0"))
        except ValueError:
            return JSONResponse({"error": "since must be epoch seconds"}, status_code=400)
        return JSONResponse(self.state.finished_since(since))

    async def accounts(self, _request: Request) -> Response:
        state = self.state
        docs = [a.to_json(state.in_flight[a.name]) for a in state.accounts.values()]
        return JSONResponse(docs)

    async def update_account(self, request: Request) -> Response:
        account = self.state.account_named(str(request.path_params["name"]))
        if account is None:
            return JSONResponse({"error": "no such account"}, status_code=404)
        try:
            update_account(account, json.loads(await request.body()))
        except (FaultConfigError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(account.to_json(self.state.in_flight[account.name]))

    def routes(self) -> list[Route]:
        return [
            Route("/v1/videos/identify-face", self.identify, methods=["POST"]),
            Route("/v1/audio/tts", self.tts, methods=["POST"]),
            Route("/v1/videos/{kind}", self.create, methods=["POST"]),
            Route("/v1/videos/{kind}", self.list_tasks, methods=["GET"]),
            Route("/v1/videos/{kind}/{ident}", self.get, methods=["GET"]),
            Route("/account/costs", self.costs, methods=["GET"]),
            Route("/fake-media/{name}", self.media_file, methods=["GET"]),
            Route("/fake-admin/accounts", self.accounts, methods=["GET"]),
            Route("/fake-admin/accounts/{name}", self.update_account, methods=["POST"]),
            Route("/fake-admin/faults", self.faults, methods=["GET", "POST", "DELETE"]),
            Route("/fake-admin/counters", self.counters, methods=["GET", "DELETE"]),
            Route("/fake-admin/tasks", self.tasks, methods=["GET"]),
            Route("/fake-admin/finished", self.finished, methods=["GET"]),
        ]


def create_fake_upstream(config: FakeUpstreamConfig | None = None) -> Starlette:
    """A new fake upstream app; its ``FakeUpstream`` is at ``app.state.fake``."""
    fake = FakeUpstream(config if config is not None else FakeUpstreamConfig())
    app = Starlette(routes=fake.routes(), lifespan=fake.lifespan)
    app.state.fake = fake
    return app


def run_fake_upstream(
    host: str = "127.0.0.1", port: int = 8900, config: FakeUpstreamConfig | None = None
) -> None:
    """Serve a fake upstream with uvicorn until interrupted (what the CLI calls)."""
    import uvicorn

    uvicorn.run(
        create_fake_upstream(config),
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=5,
    )
