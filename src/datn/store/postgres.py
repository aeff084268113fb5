"""The production backend: a node's store in PostgreSQL, through psycopg 3.

Every connection runs with ``synchronous_commit=on``, so a commit has reached
the server's write-ahead log on disk when it returns. A node's tables live in
their own schema (``datn`` unless the URL names another with
``?schema=...``), so one database can hold the stores of several nodes. One
process owns a store at a time: the writer connection holds a session-level
advisory lock on the schema's name for as long as the store is open. Reads
(history queries) take connections from a small pool and never wait for a
commit in flight.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from datn.store.base import StoreError
from datn.store.sql import Dialect, Executor, Row, SqlStore, T

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def store_error(error: Exception, where: str) -> StoreError:
    """The StoreError a driver error means."""
    if isinstance(error, psycopg.errors.DiskFull | psycopg.errors.ProgramLimitExceeded):
        return StoreError("full", f"{where}: the database refused more data ({error})")
    if isinstance(error, psycopg.errors.DataCorrupted | psycopg.errors.IndexCorrupted):
        return StoreError("corrupt", f"{where}: {error}")
    if isinstance(error, psycopg.errors.IntegrityError):
        return StoreError("conflict", f"{where}: {error}")
    if isinstance(error, psycopg.ProgrammingError | psycopg.DataError):
        return StoreError("misuse", f"{where}: {error}")
    return StoreError("unavailable", f"{where}: {error}")


def split_url(url: str) -> tuple[str, str, str]:
    """(connection string without our own parameters, schema, where to name
    in messages: the URL without its password)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port out of range
    except ValueError as error:
        raise StoreError("bad_url", f"the URL cannot be read: {error}") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise StoreError("bad_url", f"{url!r} is not a postgresql:// URL")
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = "datn"
    kept: list[tuple[str, str]] = []
    for key, value in query:
        if key == "schema":
            schema = value
        else:
            kept.append((key, value))
    if not _SCHEMA_NAME.fullmatch(schema):
        raise StoreError(
            "bad_url",
            f"schema {schema!r}: must be lower-case letters, digits and underscores, "
            "starting with a letter or underscore, at most 63 characters",
        )
    conninfo = urlunsplit(parts._replace(query=urlencode(kept)))
    host = parts.hostname or "localhost"
    where = f"postgresql://{parts.username or ''}@{host}:{port or 5432}{parts.path}/{schema}"
    return conninfo, schema, where


class PostgresStore(SqlStore):
    """A node's store in the PostgreSQL database ``url`` names."""

    def __init__(self, url: str, *, pool_size: int = 4, connect_timeout_s: float = 10.0) -> None:
        super().__init__()
        conninfo, self.schema, self.where = split_url(url)
        self._write_lock = threading.Lock()
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        options = "-c synchronous_commit=on"
        try:
            self._writer: psycopg.Connection[Any] = psycopg.connect(
                conninfo, autocommit=True, options=options, connect_timeout=int(connect_timeout_s)
            )
        except psycopg.Error as error:
            raise store_error(error, self.where) from None
        try:
            locked = self._writer.execute(
                "SELECT pg_try_advisory_lock(hashtext(%s))", (f"datn:{self.schema}",)
            ).fetchone()
            if not locked or not locked[0]:
                raise StoreError(
                    "locked",
                    f"{self.where} is in use by another process (a node already runs on it)",
                )
            self._writer.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
            )
            self._writer.execute(
                sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema))
            )
            schema = self.schema

            def configure(connection: psycopg.Connection[Any]) -> None:
                connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))

            self._pool = ConnectionPool(
                conninfo,
                min_size=1,
                max_size=pool_size,
                kwargs={"autocommit": True, "options": options},
                configure=configure,
                timeout=connect_timeout_s,
                open=False,
            )
            self._pool.open(wait=True, timeout=connect_timeout_s)
            self._create(Dialect("BYTEA", "BIGINT PRIMARY KEY"))
        except psycopg.Error as error:
            self._release()
            raise store_error(error, self.where) from None
        except (StoreError, PoolTimeout) as error:
            self._release()
            if isinstance(error, PoolTimeout):
                raise StoreError("unavailable", f"{self.where}: {error}") from None
            raise

    def _read(self, statement: str, params: Sequence[Any] = ()) -> list[Row]:
        if self._pool is None:
            raise StoreError("misuse", "the store is closed")
        try:
            with self._pool.connection() as connection:
                return connection.execute(_dialect(statement), params).fetchall()
        except psycopg.Error as error:
            raise store_error(error, self.where) from None
        except PoolTimeout as error:
            raise StoreError("unavailable", f"{self.where}: {error}") from None

    def size_bytes(self) -> int:
        """The schema's tables with their indexes and TOAST storage, as the
        server counts them (``pg_total_relation_size``); the server's own
        write-ahead log is shared by every database and not counted."""
        rows = self._read(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::BIGINT FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = ? AND c.relkind IN ('r', 'p', 'm')",
            (self.schema,),
        )
        return int(rows[0][0])

    def _transaction(self, work: Callable[[Executor], T]) -> T:
        connection = self._writer

        def run(statement: str, params: Sequence[Any]) -> list[Row]:
            cursor = connection.execute(_dialect(statement), params)
            return cursor.fetchall() if cursor.description is not None else []

        def run_many(statement: str, rows: Sequence[Sequence[Any]]) -> int:
            with connection.cursor() as cursor:
                cursor.executemany(_dialect(statement), rows)  # pipelined: one round trip
                return cursor.rowcount  # summed over the rows (psycopg 3.1 and later)

        with self._write_lock:
            try:
                with connection.transaction():
                    return work(Executor(run, run_many))
            except psycopg.Error as error:
                raise store_error(error, self.where) from None

    def _release(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        writer = getattr(self, "_writer", None)
        if writer is not None:
            # Closing the session ends the lock too, but the server notices
            # a closed connection a moment later; unlocking first makes the
            # store free the moment close() returns.
            with contextlib.suppress(psycopg.Error):
                writer.execute("SELECT pg_advisory_unlock_all()")
            writer.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._write_lock:
            self._release()

    def drop(self) -> None:
        """Delete this store's schema and everything in it (tests)."""
        self._writer.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
        )


def _dialect(statement: str) -> str:
    return statement.replace("?", "%s")
