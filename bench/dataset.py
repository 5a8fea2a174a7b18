"""Bench databases: the real schema (migrated by the real store), a bench user with a token,
and N finished tasks whose records are rendered by the real ``Task.record_json()``.

Rows are bulk-inserted with ``executemany`` in one transaction, with the same columns as the
engine's insert (``storage/engine.py``: the task row, and its record in ``task_records``).
A database is kept under ``bench/work/NAME/`` and reused; it is made again only when its
``dataset.json`` (written last) is missing or names an older table layout.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kling_gateway.domain.ids import new_object_id
from kling_gateway.domain.task import Task
from kling_gateway.protocol.task import TaskState, failure_response, success_response
from kling_gateway.storage.rows import TASK_COLUMNS, task_values
from kling_gateway.storage.sqlite import SQLiteStore
from kling_gateway.storage.tokens import IssuedToken, issue_token

WORK = Path(__file__).resolve().parent / "work"
DB_NAME = "kling-gateway.db"  # what `serve --data-dir DIR` opens
BENCH_USER = "bench"
CHUNK = 20_000

INSERT_SQL = (
    f"INSERT INTO tasks ({TASK_COLUMNS}, idempotency_key, request_hash) "
    f"VALUES ({', '.join(['?'] * (len(TASK_COLUMNS.split(',')) + 2))})"
)
RECORD_SQL = "INSERT INTO task_records (id, user_id, record) VALUES (?, ?, ?)"
# The table layout a kept dataset was built for: 2 since records live in task_records.
LAYOUT = 3

_SUBJECTS = [
    "a red fox trotting through fresh snow at dawn",
    "an old fisherman mending nets on a wooden pier",
    "a ceramic mug of coffee steaming on a rainy windowsill",
    "a neon-lit street market in the rain at night",
    "a hummingbird hovering beside a bright orange flower",
    "a vintage convertible driving along a coastal cliff road",
    "a paper boat drifting down a gutter stream after a storm",
    "a ballerina spinning on an empty stage under a single spotlight",
]
_DETAILS = [
    "cinematic lighting, shallow depth of field, 35mm film grain",
    "the camera slowly pushes in while the background falls out of focus",
    "soft golden-hour light with long shadows and warm highlights",
    "ultra detailed textures, natural colours, gentle motion blur",
    "handheld documentary style with subtle camera shake",
    "wide establishing shot that settles into a close-up of the subject",
    "volumetric fog drifting through beams of light, quiet atmosphere",
    "reflections shimmer on wet surfaces as people pass in the distance",
    "the scene is calm and realistic, with physically plausible movement",
    "colour graded in teal and orange, anamorphic lens flares",
]
_NEGATIVE = "blurry, low quality, distorted faces, extra limbs, watermark, text, logo, jitter"


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    size: int
    data_dir: str
    token: str
    user_id: str
    ids_file: str
    mean_record_bytes: float
    seconds_to_build: float
    layout: int = 1

    @property
    def db_path(self) -> Path:
        return Path(self.data_dir) / DB_NAME


def ensure_dataset(name: str, size: int) -> tuple[Dataset, bool]:
    """The dataset NAME of SIZE tasks, built when missing; also whether it was built now."""
    data_dir = WORK / name
    meta = data_dir / "dataset.json"
    if meta.exists():
        dataset = Dataset(**json.loads(meta.read_text()))
        kept = dataset.db_path.exists() and Path(dataset.ids_file).exists()
        if dataset.size == size and dataset.layout == LAYOUT and kept:
            return dataset, False
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    print(f"[bench] building dataset {name}: {size:,} finished tasks (once; kept in {data_dir})")
    started = time.perf_counter()
    issued = asyncio.run(create_schema_and_token(data_dir / DB_NAME))
    ids_file = data_dir / "ids.txt"
    mean = _bulk_insert(data_dir / DB_NAME, issued, size, ids_file)
    dataset = Dataset(
        name=name,
        size=size,
        data_dir=str(data_dir),
        token=issued.token,
        user_id=issued.user_id,
        ids_file=str(ids_file),
        mean_record_bytes=mean,
        seconds_to_build=round(time.perf_counter() - started, 1),
        layout=LAYOUT,
    )
    meta.write_text(json.dumps(asdict(dataset), indent=2))
    print(f"[bench] dataset {name} built in {dataset.seconds_to_build:.0f} s")
    return dataset, True


async def create_schema_and_token(db_path: Path) -> IssuedToken:
    store = SQLiteStore(f"sqlite:///{db_path}")
    await store.open()
    try:
        await store.migrate()
        return await issue_token(store, BENCH_USER)
    finally:
        await store.close()


def finished_task(
    rng: random.Random, user_id: str, application_id: str, credential_id: str, created_at: float
) -> Task:
    """A realistic finished task (about 1.5 KB of record): mostly succeeded, some failed."""
    task_id = str(uuid.uuid4())
    prompt = rng.choice(_SUBJECTS) + ", " + ", ".join(rng.sample(_DETAILS, rng.randint(3, 7)))
    request: dict[str, Any] = {
        "action": "text2video",
        "model": rng.choice(["kling-v2-1-master", "kling-v2-5-turbo", "kling-v2-6", "kling-v3"]),
        "prompt": prompt,
        "negative_prompt": _NEGATIVE,
        "mode": rng.choice(["std", "pro"]),
        "duration": rng.choice([5, 10]),
        "aspect_ratio": rng.choice(["16:9", "9:16", "1:1"]),
        "cfg_scale": 0.5,
        "async": True,
    }
    if rng.random() < 0.3:
        request["callback_url"] = f"https://hooks.example.com/kling/{uuid.uuid4().hex[:12]}"
    task = Task(
        id=task_id,
        object_id=new_object_id(created_at),
        user_id=user_id,
        application_id=application_id,
        credential_id=credential_id,
        trace_id=str(uuid.uuid4()),
        request=request,
        created_at=created_at,
        job_id="local-" + str(uuid.uuid4()),
        started_at=created_at + rng.uniform(0.05, 2.0),
        version=2,
    )
    task.finished_at = task.created_at + rng.uniform(30.0, 400.0)
    if rng.random() < 0.95:
        video_id = str(uuid.uuid4())
        task.state = TaskState.SUCCEED
        task.response = success_response(
            task_id,
            video_id=video_id,
            video_url=f"https://gateway.example.com/files/videos/{video_id}.mp4",
            duration=f"{request['duration']:.1f}",
        )
    else:
        task.state = TaskState.FAILED
        task.response = failure_response(
            task_id, code="generation_failed", message="the provider reported no video"
        )
    if "callback_url" in request:
        task.callback = {
            "url": request["callback_url"],
            "state": "delivered",
            "attempts": 1,
            "last_status": 200,
            "last_error": None,
            "next_attempt_at": None,
            "delivered_at": round(task.finished_at + 0.2, 3),
        }
    return task


def _rows(
    size: int, user_id: str, application_id: str, credential_id: str, ids: list[str]
) -> Iterator[tuple[list[tuple[object, ...]], list[tuple[object, ...]]]]:
    """Chunks of (task rows, their task_records rows)."""
    rng = random.Random(20240601)
    start = time.time() - 30 * 86400  # a month of history, oldest first
    step = 30 * 86400 / size
    chunk: list[tuple[object, ...]] = []
    records: list[tuple[object, ...]] = []
    for n in range(size):
        task = finished_task(rng, user_id, application_id, credential_id, start + n * step)
        ids.append(task.id)
        # The columns and order of the engine's insert; then a finished task's scheduling
        # columns as save_task leaves them (attempts, next_check_at NULL, deadline, no lease).
        # attempts, next check, deadline, lease, upstream account, usage, idempotency key, hash
        finished = (1, None, task.created_at + 3600, None, None, None, None, None)
        chunk.append((*task_values(task), *finished))
        records.append((task.id, task.user_id, task.record_json()))
        if len(chunk) == CHUNK:
            yield chunk, records
            chunk, records = [], []
    if chunk:
        yield chunk, records


def _bulk_insert(db_path: Path, issued: IssuedToken, size: int, ids_file: Path) -> float:
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        # Out of WAL for the bulk load (no 1.5 GB WAL to checkpoint), back into it after.
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-1000000")
        ids: list[str] = []
        total_bytes = 0
        conn.execute("BEGIN")
        for chunk, records in _rows(
            size, issued.user_id, issued.application_id, issued.credential_id, ids
        ):
            conn.executemany(INSERT_SQL, chunk)
            conn.executemany(RECORD_SQL, records)
            total_bytes += sum(len(row[2]) for row in records)  # type: ignore[arg-type]
            if len(ids) % 200_000 == 0:
                print(f"[bench]   {len(ids):,} / {size:,} tasks", flush=True)
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    ids_file.write_text("\n".join(ids) + "\n")
    return round(total_bytes / size, 1)
