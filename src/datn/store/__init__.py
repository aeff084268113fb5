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


def storage_kind(url: str) -> tuple[str, str]:
    """What a storage URL names: ``("memory", "")``, ``("sqlite", PATH)``
    for ``sqlite:///path/to/file`` (a relative path after ``sqlite:///`` is
    relative to the working folder; ``sqlite:////abs/path`` is absolute), or
    ``("postgresql", URL)`` for ``postgresql://user@host:port/db`` with an
    optional ``?schema=name``. Anything else is a ``bad_url``."""
    if url == "memory:":
        return "memory", ""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if not path:
            raise StoreError("bad_url", f"{url!r} names no file")
        return "sqlite", path
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql", url
    raise StoreError(
        "bad_url",
        f"{url!r}: a storage URL is memory:, sqlite:///FILE or postgresql://USER@HOST:PORT/DB",
    )


def open_store(url: str) -> Store:
    """The store a storage URL names (see :func:`storage_kind`)."""
    kind, where = storage_kind(url)
    if kind == "sqlite":
        from datn.store.sqlite import SQLiteStore  # noqa: PLC0415 - only when asked for

        return SQLiteStore(where)
    if kind == "postgresql":
        from datn.store.postgres import PostgresStore  # noqa: PLC0415 - only when asked for

        return PostgresStore(where)
    return MemoryStore()


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
    "storage_kind",
]
