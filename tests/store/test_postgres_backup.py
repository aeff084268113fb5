"""What the README tells an operator about backups on PostgreSQL: ``pg_dump
--schema`` of a running node's store is a consistent copy, and a store
restored from it opens with exactly what had been committed when the dump
began."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from backends import POSTGRES_URL, PostgresBackend, postgres_reachable

from datn.store import Commit


@pytest.fixture
def restored_database() -> Iterator[str]:
    problem = postgres_reachable()
    if problem is None and not (shutil.which("pg_dump") and shutil.which("psql")):
        problem = "pg_dump and psql are not installed"
    if problem is not None:
        if os.environ.get("DATN_REQUIRE_POSTGRES") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    import psycopg  # noqa: PLC0415

    name = f"datn_restore_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name}")


def test_a_dump_of_a_running_store_restores_to_what_was_committed(
    restored_database: str,
) -> None:
    backend = PostgresBackend()
    store = backend.open()
    try:
        for n in range(1, 6):
            store.commit(Commit(entries=[f"entry {n}".encode()]))
        store.save_snapshot(3, b"state after 3")
        dump = subprocess.run(
            ["pg_dump", "--dbname", POSTGRES_URL, "--schema", backend.schema],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        store.commit(Commit(entries=[b"entry 6, after the dump"]))
    finally:
        store.close()
    parts = urlsplit(POSTGRES_URL)
    target = urlunsplit(parts._replace(path=f"/{restored_database}"))
    try:
        subprocess.run(
            ["psql", "--quiet", "--set", "ON_ERROR_STOP=1", "--dbname", target],
            input=dump,
            capture_output=True,
            check=True,
            timeout=60,
        )
        restored = PostgresBackend()
        restored.schema = backend.schema
        restored.url = f"{target}?schema={backend.schema}"
        with restored.open() as copy:
            stored = copy.load()
        assert stored.snapshot == b"state after 3" and stored.snapshot_position == 3
        assert stored.entries == [b"entry 4", b"entry 5"]
        assert stored.position == 5
    finally:
        backend.cleanup()
