"""What ``datn node check`` finds where a storage URL points: a node's
store, room for a new one, or what keeps a node from starting there, found
without writing anything, also while a node holds the store."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest
from backends import POSTGRES_URL, Backend, PostgresBackend, SQLiteBackend

from datn.store import StoreError
from datn.store.probe import probe_store


def url_of(backend: Backend) -> str:
    if isinstance(backend, SQLiteBackend):
        return f"sqlite:///{backend.path}"
    if isinstance(backend, PostgresBackend):
        return backend.url
    return "memory:"


def schema_exists(backend: PostgresBackend) -> bool:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        found = connection.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
            (backend.schema,),
        ).fetchone()
    return found is not None


def test_a_new_store_is_room_for_one_and_a_made_one_is_a_store_even_while_held(
    backend: Backend,
) -> None:
    url = url_of(backend)
    first = probe_store(url)
    if backend.name == "memory":
        assert "nothing is kept" in first
        return
    assert "creates it at its first start" in first
    # Looking created nothing.
    if isinstance(backend, SQLiteBackend):
        assert not backend.path.exists()
    if isinstance(backend, PostgresBackend):
        assert not schema_exists(backend)
    store = backend.open()
    try:
        # The node holds the store (and its lock): the check still reads it.
        assert "a node's store, its journal at position 0" in probe_store(url)
    finally:
        store.close()
    assert "a node's store, its journal at position 0" in probe_store(url)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_a_store_of_another_layout_is_named_so(backend: Backend) -> None:
    backend.open().close()
    backend.run_raw("UPDATE datn_meta SET value = 99 WHERE key = 'schema_version'")
    with pytest.raises(StoreError) as refused:
        probe_store(url_of(backend))
    assert refused.value.code == "corrupt" and "layout 99" in refused.value.message


def test_an_sqlite_file_the_node_could_not_start_on_is_named_with_why(tmp_path: Path) -> None:
    cases: dict[str, str] = {}
    missing = tmp_path / "nowhere" / "node.sqlite3"
    not_a_database = tmp_path / "text.sqlite3"
    not_a_database.write_text("an operator's notes, not a database\n" * 200)
    other_database = tmp_path / "other.sqlite3"
    with sqlite3.connect(other_database) as connection:
        connection.execute("CREATE TABLE things (x)")
    for path in (missing, not_a_database, other_database, tmp_path):
        with pytest.raises(StoreError) as refused:
            probe_store(f"sqlite:///{path}")
        cases[path.name] = f"{refused.value.code}: {refused.value.message}"
    assert "unavailable" in cases["node.sqlite3"] and "does not exist" in cases["node.sqlite3"]
    assert cases["text.sqlite3"].startswith("corrupt") and "SQLite" in cases["text.sqlite3"]
    assert "not a node's store" in cases["other.sqlite3"]
    assert "is not a file" in cases[tmp_path.name]
    # A name the system refuses, and one with a NUL byte in it.
    for name in ("a" * 5_000, "a\x00b"):
        with pytest.raises(StoreError) as refused:
            probe_store(f"sqlite:///{tmp_path / name}")
        assert refused.value.code == "unavailable"
    # Nothing was written to any of them.
    assert not missing.parent.exists()
    assert not_a_database.read_text().startswith("an operator's notes")


def test_a_store_the_check_reads_is_left_byte_for_byte(tmp_path: Path) -> None:
    """Stopped (no write-ahead log beside the file) or running (the node's
    log and index there), the files are as they were after the check."""
    backend = SQLiteBackend(tmp_path)
    backend.open().close()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert "a node's store" in probe_store(url_of(backend))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    store = backend.open()
    try:
        before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
        assert "-wal" in " ".join(before)
        assert "a node's store" in probe_store(url_of(backend))
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    finally:
        store.close()


def test_a_postgresql_server_that_does_not_answer_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StoreError) as refused:
        probe_store(f"postgresql://postgres@127.0.0.1:{port}/test?schema=datn", timeout_s=2)
    assert refused.value.code == "unavailable"
    assert f"127.0.0.1:{port}" in refused.value.message


def test_a_bad_url_is_named() -> None:
    for url in (
        "sqlite:///",
        "mysql://x",
        "postgresql://postgres@127.0.0.1/test?schema=Bad-Name",
        "postgresql://postgres@127.0.0.1:99999/test",
        "postgresql://postgres@[::1/test",
    ):
        with pytest.raises(StoreError) as refused:
            probe_store(url)
        assert refused.value.code == "bad_url", url
