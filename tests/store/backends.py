"""Backends for the store contract suite: every test runs on memory, on a
SQLite file and on PostgreSQL (the fixture is in conftest.py).

PostgreSQL is the server at ``DATN_TEST_POSTGRES`` (default: the local
test database). Each test gets a schema of its own, dropped after. Where no
server answers, the PostgreSQL cases are skipped with the reason shown,
except under ``DATN_REQUIRE_POSTGRES=1`` (CI sets it), where they fail.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from datn.store import MemoryStore, Store
from datn.store.base import SNAPSHOT_PART_BYTES

POSTGRES_URL = os.environ.get("DATN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


class Backend:
    """One backend's stores for one test: open (again) on the same data, and
    reach into its rows as a damaged disk would."""

    name = ""

    def open(self, **options: Any) -> Store:
        raise NotImplementedError

    def run_raw(self, statement: str, *params: Any) -> None:
        raise NotImplementedError

    def flip_byte(self, position: int) -> None:
        """Change one byte of journal entry ``position`` behind the store's back."""
        self.run_raw(
            "UPDATE journal SET entry = ? WHERE position = ?",
            _flipped(self.raw_entry(position)),
            position,
        )

    def raw_entry(self, position: int) -> bytes:
        raise NotImplementedError

    def truncate(self, keep: int) -> None:
        """Lose every journal entry after ``keep``, as a cut file would."""
        self.run_raw("DELETE FROM journal WHERE position > ?", keep)

    def lose_snapshot_part(self, position: int, index: int) -> None:
        """Lose part ``index`` of the snapshot after ``position``."""
        self.run_raw("DELETE FROM snapshot_parts WHERE position = ? AND part = ?", position, index)

    def cleanup(self) -> None:
        pass


def _flipped(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]


class MemoryBackend(Backend):
    name = "memory"

    def __init__(self) -> None:
        self.store = MemoryStore()

    def open(self, **options: Any) -> Store:
        self.store._closed = False  # the same memory, as a reopened file is the same file
        return self.store

    def flip_byte(self, position: int) -> None:
        data, stored = self.store.journal[position]
        self.store.journal[position] = (_flipped(data), stored)

    def raw_entry(self, position: int) -> bytes:
        return self.store.journal[position][0]

    def truncate(self, keep: int) -> None:
        for position in [p for p in self.store.journal if p > keep]:
            del self.store.journal[position]

    def lose_snapshot_part(self, position: int, index: int) -> None:
        data, stored = self.store.snapshots[position]
        start, end = index * SNAPSHOT_PART_BYTES, (index + 1) * SNAPSHOT_PART_BYTES
        self.store.snapshots[position] = (data[:start] + data[end:], stored)


class SQLiteBackend(Backend):
    name = "sqlite"

    def __init__(self, folder: Path) -> None:
        self.path = folder / "node.sqlite3"

    def open(self, **options: Any) -> Store:
        from datn.store.sqlite import SQLiteStore  # noqa: PLC0415

        return SQLiteStore(self.path, **options)

    def run_raw(self, statement: str, *params: Any) -> None:
        with sqlite3.connect(self.path) as connection:
            connection.execute(statement, params)

    def raw_entry(self, position: int) -> bytes:
        with sqlite3.connect(self.path) as connection:
            row = connection.execute(
                "SELECT entry FROM journal WHERE position = ?", (position,)
            ).fetchone()
        return bytes(row[0])


class PostgresBackend(Backend):
    name = "postgres"

    def __init__(self) -> None:
        self.schema = f"test_{uuid.uuid4().hex[:16]}"
        self.url = f"{POSTGRES_URL}?schema={self.schema}"

    def open(self, **options: Any) -> Store:
        from datn.store.postgres import PostgresStore  # noqa: PLC0415

        return PostgresStore(self.url, **options)

    def _connect(self) -> Any:
        import psycopg  # noqa: PLC0415

        return psycopg.connect(POSTGRES_URL, autocommit=True)

    def run_raw(self, statement: str, *params: Any) -> None:
        with self._connect() as connection:
            connection.execute(f"SET search_path TO {self.schema}")
            connection.execute(statement.replace("?", "%s"), params)

    def raw_entry(self, position: int) -> bytes:
        with self._connect() as connection:
            connection.execute(f"SET search_path TO {self.schema}")
            row = connection.execute(
                "SELECT entry FROM journal WHERE position = %s", (position,)
            ).fetchone()
        return bytes(row[0])

    def cleanup(self) -> None:
        with self._connect() as connection:
            connection.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


def postgres_reachable() -> str | None:
    """None if the test server answers; otherwise why not."""
    try:
        import psycopg  # noqa: PLC0415

        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except Exception as error:
        return f"PostgreSQL at {POSTGRES_URL} is not reachable: {error}"
    return None
