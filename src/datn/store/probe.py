"""What ``datn node check`` finds where a storage URL points, without
writing anything or taking the store's lock, so that an operator learns of
a database that cannot be reached, a wrong password, a folder that cannot
be written or a file that is not a node's store before the node is started
on it, and can run the check beside a running node.

:func:`probe_store` answers with one line that says what is there, or
raises :class:`~datn.store.base.StoreError` saying what is wrong.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any

from datn.store import storage_kind
from datn.store.base import SCHEMA_VERSION, StoreError

_META = "SELECT key, value FROM {}datn_meta WHERE key IN ('schema_version', 'last_position')"
"""The rows of a store's ``datn_meta`` table a check reads ({}: the schema
with its dot, or nothing)."""


def probe_store(url: str, timeout_s: float = 5.0) -> str:
    """One line on what ``url`` holds: a node's store (its layout checked,
    and its journal's last position), or room for a new one. Raises a
    StoreError (``bad_url``, ``unavailable``, ``corrupt``) when a node
    could not start on it."""
    kind, where = storage_kind(url)
    if kind == "sqlite":
        if "\x00" in where:
            raise StoreError("unavailable", f"{where!r}: a file name cannot hold a NUL byte")
        try:
            return _probe_sqlite(Path(where), timeout_s)
        except (OSError, ValueError) as error:  # a name too long, a NUL byte in it
            raise StoreError("unavailable", f"{where}: {error}") from None
    if kind == "postgresql":
        return _probe_postgres(where, timeout_s)
    return "in memory: nothing is kept when the node stops"


def _layout(rows: list[Any], where: str) -> int:
    """The journal's last position from a store's ``datn_meta`` rows, once
    its layout is one this code reads."""
    meta = {str(key): int(value) for key, value in rows}
    layout = meta.get("schema_version")
    if layout is None:
        raise StoreError("corrupt", f"{where}: its tables hold no layout version")
    if layout != SCHEMA_VERSION:
        raise StoreError(
            "corrupt",
            f"{where}: the store's tables are of layout {layout}; this datn reads "
            f"layout {SCHEMA_VERSION}",
        )
    return meta.get("last_position", 0)


def _probe_sqlite(path: Path, timeout_s: float) -> str:
    if not path.exists():
        folder = path.parent
        if not folder.is_dir():
            raise StoreError("unavailable", f"{path}: its folder {folder} does not exist")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise StoreError("unavailable", f"{path}: its folder {folder} cannot be written")
        return f"SQLite file {path}: none yet; the node creates it at its first start"
    if not path.is_file():
        raise StoreError("unavailable", f"{path} is not a file")
    # Read-only, and never creating: a check must leave the files as they
    # were. With no write-ahead log beside it (the node is stopped) the
    # file is read as immutable, so SQLite makes no log or index of its
    # own either; with one, a node may be writing, and the reader shares
    # the node's.
    wal = path.with_name(path.name + "-wal")
    mode = "mode=ro" if wal.exists() else "immutable=1"
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True, timeout=timeout_s)
        ) as connection:
            tables = connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'datn_meta'"
            ).fetchall()
            if not tables:
                raise StoreError("corrupt", f"{path} is an SQLite database but not a node's store")
            position = _layout(connection.execute(_META.format("")).fetchall(), str(path))
    except sqlite3.Error as error:
        raise StoreError(
            "corrupt", f"{path}: the file cannot be read as an SQLite database ({error})"
        ) from None
    if not os.access(path, os.W_OK):
        raise StoreError("unavailable", f"{path} cannot be written")
    return f"SQLite file {path}: a node's store, its journal at position {position}"


def _probe_postgres(url: str, timeout_s: float) -> str:
    import psycopg  # noqa: PLC0415 - only for a PostgreSQL URL
    from psycopg import sql  # noqa: PLC0415

    from datn.store.postgres import split_url, store_error  # noqa: PLC0415

    conninfo, schema, where = split_url(url)
    try:
        with psycopg.connect(
            conninfo, autocommit=True, connect_timeout=max(1, round(timeout_s))
        ) as connection:
            version = connection.execute("SHOW server_version").fetchone()
            server = f"PostgreSQL {version[0] if version else '?'}"
            found = connection.execute(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema,)
            ).fetchone()
            if found is None:
                allowed = connection.execute(
                    "SELECT has_database_privilege(current_user, current_database(), 'CREATE')"
                ).fetchone()
                if not allowed or not allowed[0]:
                    raise StoreError(
                        "unavailable",
                        f"{where}: the schema does not exist and this role may not create it"
                        " (grant it CREATE on the database, or create the schema for it)",
                    )
                return f"{where} ({server}): no store yet; the node creates it at its first start"
            table = connection.execute(
                "SELECT 1 FROM information_schema.tables"
                " WHERE table_schema = %s AND table_name = 'datn_meta'",
                (schema,),
            ).fetchone()
            if table is None:
                return f"{where} ({server}): the schema is empty; the node creates its tables"
            query = sql.SQL(_META.format("{}.")).format(sql.Identifier(schema))
            rows = connection.execute(query).fetchall()
            position = _layout(rows, where)
    except psycopg.Error as error:
        raise store_error(error, where) from None
    return f"{where} ({server}): a node's store, its journal at position {position}"
