"""The ``backend`` fixture: each store contract test runs on memory, on a
SQLite file and on PostgreSQL (see backends.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from backends import Backend, MemoryBackend, PostgresBackend, SQLiteBackend, postgres_reachable


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    chosen: Backend
    if request.param == "memory":
        chosen = MemoryBackend()
    elif request.param == "sqlite":
        chosen = SQLiteBackend(tmp_path)
    else:
        problem = postgres_reachable()
        if problem is not None:
            if os.environ.get("DATN_REQUIRE_POSTGRES") == "1":
                pytest.fail(problem)
            pytest.skip(problem)
        chosen = PostgresBackend()
    try:
        yield chosen
    finally:
        chosen.cleanup()
