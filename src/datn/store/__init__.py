"""Where a node keeps what it must not lose: its journal, its snapshots and
the history its traders and operator query, behind one interface
(:class:`Store`) with three backends: memory (tests), SQLite (the embedded
default, one file per node) and PostgreSQL (psycopg 3). See
:mod:`datn.store.base` for the contract every backend keeps.
"""

from __future__ import annotations

from datn.store.base import (
    SCHEMA_VERSION,
    Commit,
    Credential,
    EvidenceRecord,
    ExecutionRecord,
    InboundWindow,
    JournalSource,
    LedgerRecord,
    LinkRecord,
    OrderRecord,
    OutboxFrame,
    Page,
    Store,
    Stored,
    StoreError,
)
from datn.store.memory import MemoryStore


def open_store(url: str) -> Store:
    """The store a storage URL names: ``memory:``, ``sqlite:///path/to/file``
    (a relative path after ``sqlite:///`` is relative to the working folder;
    ``sqlite:////abs/path`` is absolute), or ``postgresql://user@host:port/db``
    with an optional ``?schema=name``."""
    if url == "memory:":
        return MemoryStore()
    if url.startswith("sqlite:///"):
        from datn.store.sqlite import SQLiteStore  # noqa: PLC0415 - only when asked for

        path = url.removeprefix("sqlite:///")
        if not path:
            raise StoreError("bad_url", f"{url!r} names no file")
        return SQLiteStore(path)
    if url.startswith(("postgresql://", "postgres://")):
        from datn.store.postgres import PostgresStore  # noqa: PLC0415 - only when asked for

        return PostgresStore(url)
    raise StoreError(
        "bad_url",
        f"{url!r}: a storage URL is memory:, sqlite:///FILE or postgresql://USER@HOST:PORT/DB",
    )


__all__ = [
    "SCHEMA_VERSION",
    "Commit",
    "Credential",
    "EvidenceRecord",
    "ExecutionRecord",
    "InboundWindow",
    "JournalSource",
    "LedgerRecord",
    "LinkRecord",
    "MemoryStore",
    "OrderRecord",
    "OutboxFrame",
    "Page",
    "Store",
    "StoreError",
    "Stored",
    "open_store",
]
