"""(R): the reference for the tasks API, a raw ASGI callable with no framework and no auth.

It does what ``POST /kling/tasks`` must do with the store, and nothing else: read the body,
decode it, run the same SQL as the SQLite store on the same file, return the stored bytes.
Single retrieves query on the event-loop thread (as ``SQLiteStore.get_task_record`` does);
batches run on a 2-thread reader pool with a connection per thread, spliced into
``{"items":[...],"count":N}`` (as ``SQLiteStore.get_task_records`` and the endpoint do).

Run it as the gateway runs: ``uvicorn bench.reference_app:app --loop uvloop --http httptools
--no-access-log`` (one process). Settings come from BENCH_DB and BENCH_USER_ID.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

# The very connection settings of the store (WAL, page cache size, ...): the comparison is of
# what sits above SQLite, not of SQLite.
from kling_gateway.storage.sqlite import _connect

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

GET_ONE = "SELECT record FROM task_records WHERE id = ? AND user_id = ?"
# The store's batch query (SQLStore.get_task_records with the SQLite dialect), verbatim.
GET_MANY = (
    "SELECT id, record FROM task_records WHERE id IN (SELECT value FROM json_each(?)) "
    "AND user_id = ?"
)
HEADERS = [(b"content-type", b"application/json")]


class ReferenceApp:
    def __init__(self, db_path: str, user_id: str) -> None:
        self.db_path = db_path
        self.user_id = user_id
        self.conn: sqlite3.Connection | None = None
        self.readers = ThreadPoolExecutor(2, thread_name_prefix="sqlite-reader")
        self.local = threading.local()

    def _pool_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = _connect(self.db_path)
        return conn

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        request = msgspec.json.decode(b"".join(chunks))
        if request.get("action") == "retrieve_batch":
            body = await self._batch(list(dict.fromkeys(request["ids"])))
        else:
            assert self.conn is not None
            row = self.conn.execute(GET_ONE, (request["id"], self.user_id)).fetchone()
            body = b"{}" if row is None else bytes(row[0])
        headers = [*HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _batch(self, ids: list[str]) -> bytes:
        ids_json = msgspec.json.encode(ids).decode()

        def query(conn: sqlite3.Connection) -> dict[str, bytes]:
            rows = conn.execute(GET_MANY, (ids_json, self.user_id)).fetchall()
            return {row[0]: bytes(row[1]) for row in rows}

        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(self.readers, lambda: query(self._pool_conn()))
        items = [found[i] for i in ids if i in found]
        return b'{"items":[' + b",".join(items) + b'],"count":' + str(len(items)).encode() + b"}"

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.conn = _connect(self.db_path)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.readers.shutdown(wait=True)
                if self.conn is not None:
                    self.conn.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


app = ReferenceApp(os.environ.get("BENCH_DB", ""), os.environ.get("BENCH_USER_ID", ""))
