"""Webhook signing secrets sealed at rest: the database file never holds one in the clear,
rows stored in the clear before migration 0014 are sealed at start, and a wrong server key
stops the start with one line naming --secret-key."""

from __future__ import annotations

import base64
import sqlite3
import time
from pathlib import Path

import pytest

from kling_gateway.callbacks.secrets import SecretStore, seal_stored_secrets
from kling_gateway.callbacks.signing import new_secret
from kling_gateway.cli import main
from kling_gateway.runtime.settings import load_settings
from kling_gateway.runtime.startup import StartupError
from kling_gateway.runtime.worker import prepare_secrets
from kling_gateway.storage.crypto import SecretBox, generate_key, parse_key
from kling_gateway.storage.migrations import migration_scripts
from kling_gateway.storage.sqlite import SQLiteStore, _statements

KEY = generate_key()


def file_bytes(db: Path) -> bytes:
    """The database and whatever SQLite keeps beside it (WAL, shared memory)."""
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*") if p.is_file())


def clear_forms(secret: str) -> list[bytes]:
    """The secret as text and its key bytes (what an attacker would look for)."""
    raw = base64.b64decode(secret.removeprefix("whsec_"))
    return [secret.encode(), secret.removeprefix("whsec_").encode(), raw]


@pytest.fixture
async def store(tmp_path: Path) -> SQLiteStore:
    db = SQLiteStore(f"sqlite:///{tmp_path / 'kg.db'}")
    await db.open()
    await db.migrate()
    return db


async def test_the_database_never_holds_a_secret_in_the_clear(store: SQLiteStore) -> None:
    user_id, _ = await store.ensure_account("alice", time.time())
    secrets = SecretStore(store, SecretBox(parse_key(KEY)))
    first = await secrets.get_or_create_secret(user_id)
    assert await secrets.get_or_create_secret(user_id) == first
    second = await secrets.rotate_secret(user_id, 60.0)
    assert await secrets.active_secrets(user_id) == [second, first]
    stored = [value for _, _, value in await store.stored_secrets()]
    assert len(stored) == 2 and all(value.startswith("v1:") for value in stored)
    await store.close()
    on_disk = file_bytes(Path(store.path))
    for secret in (first, second):
        assert not any(form in on_disk for form in clear_forms(secret))


async def test_a_sealed_secret_copied_to_another_user_does_not_open(store: SQLiteStore) -> None:
    alice, _ = await store.ensure_account("alice", time.time())
    bob, _ = await store.ensure_account("bob", time.time())
    box = SecretBox(parse_key(KEY))
    await SecretStore(store, box).get_or_create_secret(alice)
    ((_, _, sealed),) = await store.stored_secrets()
    await store.put_first_secret(bob, sealed, time.time())  # a row copied by hand
    with pytest.raises(Exception, match="does not open"):
        await SecretStore(store, box).active_secrets(bob)
    await store.close()


def pre_0014_database(db: Path, user_id: str, secret: str) -> None:
    """A database as main wrote it before 0014, with a secret stored in the clear."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(
        "CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION)"
    )
    for name, sql in migration_scripts("sqlite"):
        if name.startswith("0014"):
            break
        for statement in _statements(sql):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, time.time()))
    conn.execute(
        "INSERT INTO webhook_secrets (secret, user_id, created_at) VALUES (?, ?, ?)",
        (secret, user_id, time.time()),
    )
    conn.close()


async def test_secrets_stored_in_the_clear_are_sealed_at_start(tmp_path: Path) -> None:
    db, secret = tmp_path / "kg.db", new_secret()
    pre_0014_database(db, "user-1", secret)
    assert any(form in file_bytes(db) for form in clear_forms(secret))
    store = SQLiteStore(f"sqlite:///{db}")
    await store.open()
    assert [name for name in await store.migrate() if name.startswith("0014")]
    box = SecretBox(parse_key(KEY))
    assert await seal_stored_secrets(store, box) == 1
    assert await seal_stored_secrets(store, box) == 0  # once
    assert await SecretStore(store, box).active_secrets("user-1") == [secret]
    await store.close()
    assert not any(form in file_bytes(db) for form in clear_forms(secret))


async def test_a_wrong_server_key_stops_the_start_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = load_settings({"data_dir": str(data), "secret_key": KEY}, environ={})
    store = SQLiteStore(settings.resolved_database_url)
    await store.open()
    await store.migrate()
    user_id, _ = await store.ensure_account("alice", time.time())
    await SecretStore(store, await prepare_secrets(settings, store)).get_or_create_secret(user_id)
    other = load_settings({"data_dir": str(data), "secret_key": generate_key()}, environ={})
    with pytest.raises(StartupError, match=r"^--secret-key: a stored secret does not open"):
        await prepare_secrets(other, store)
    await store.close()


@pytest.mark.usefixtures("embedded_env")
def test_serve_with_a_wrong_key_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    common = ["--data-dir", data]
    assert main(["tokens", "create", "--user", "alice", *common]) == 0
    assert main(["callbacks", "secret", "--user", "alice", "--secret-key", KEY, *common]) == 0
    capsys.readouterr()
    wrong = generate_key()
    assert main(["serve", "--secret-key", wrong, "--port", "1", *common]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kling-gateway: --secret-key: a stored secret does not open")
    assert len(err.splitlines()) == 1
    code = main(["callbacks", "secret", "--user", "alice", "--secret-key", wrong, *common])
    assert code == 2
    assert "--secret-key" in capsys.readouterr().err


def test_a_malformed_key_is_a_setting_error() -> None:
    with pytest.raises(ValueError, match=r"secret_key \(--secret-key\): must be 32 bytes"):
        load_settings({"secret_key": base64.urlsafe_b64encode(b"short").decode()}, environ={})


@pytest.mark.postgres
async def test_sealing_at_start_on_postgresql() -> None:
    from tests.services import fresh_postgres_database
    from tests.storage.helpers import migrated_store

    with fresh_postgres_database("kg_sealed") as url:
        store = await migrated_store(url)
        try:
            secret = new_secret()
            await store.put_first_secret("user-1", secret, time.time())  # as before 0014
            box = SecretBox(parse_key(KEY))
            assert await seal_stored_secrets(store, box) == 1
            ((_, _, stored),) = await store.stored_secrets()
            assert stored.startswith("v1:")
            assert await SecretStore(store, box).active_secrets("user-1") == [secret]
        finally:
            await store.close()
