"""The embedded default: one SQLite file per node.

The file runs in WAL mode with ``synchronous=FULL``, so a commit is on disk
when it returns, even through a power cut. One process owns a store at a
time: an exclusive lock on ``<file>.lock`` keeps a second node process (or a
second copy of the same one) from writing the same journal. Writes go
through one connection, reads through another, so history queries never wait
for a commit in flight (WAL readers see the last committed state).

Checkpoints (copying the log's pages into the database file, so that the
log can start again from its beginning) run on a thread of their own, with
a third connection, shortly after writes: left to SQLite, the commit that
fills the log past its threshold would copy and fsync a thousand pages
itself, and the input that waited on that commit would wait milliseconds
longer. A checkpoint of this kind (``PASSIVE``) never blocks the writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final
from urllib.parse import quote

from datn.store.base import StoreError
from datn.store.sql import Dialect, Executor, Row, SqlStore, T

log = logging.getLogger("datn.store")

CHECKPOINT_INTERVAL_S: Final = 0.25
"""The least time between two background checkpoints: under steady writes
the log holds about this long's worth of pages (at full intake, about the
thousand pages after which SQLite would checkpoint by itself). Shorter, a
page that every commit changes is copied to the database more often."""
JOURNAL_SIZE_LIMIT_BYTES: Final = 64 * 1024 * 1024
"""A log file that grew past this (a large snapshot) is cut back to it
once it starts again from its beginning."""

# SQLite's primary result codes for the errors that are not a caller's bug.
_FULL = {sqlite3.SQLITE_FULL}
_CORRUPT = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_CONFLICT = {sqlite3.SQLITE_CONSTRAINT}


def store_error(error: sqlite3.Error, path: Path) -> StoreError:
    """The StoreError a driver error means."""
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    if code in _FULL:
        return StoreError("full", f"{path}: the disk or the file's size limit is full ({error})")
    if code in _CORRUPT:
        return StoreError("corrupt", f"{path}: the file is not an intact SQLite database ({error})")
    if code in _CONFLICT or isinstance(error, sqlite3.IntegrityError):
        return StoreError("conflict", f"{path}: {error}")
    return StoreError("unavailable", f"{path}: {error}")


def _executor(connection: sqlite3.Connection) -> Executor:
    """Statements on ``connection``, for a transaction's work."""

    def run(sql: str, params: Sequence[Any]) -> list[Row]:
        return connection.execute(sql, params).fetchall()

    def run_many(sql: str, rows: Sequence[Sequence[Any]]) -> int:
        # The rows each execution changed, summed (sqlite3's rowcount).
        return connection.executemany(sql, rows).rowcount

    return Executor(run, run_many)


class SQLiteStore(SqlStore):
    """A node's store in the SQLite file at ``path`` (created if missing).

    ``max_page_count`` caps the file's size in pages, as a full disk would
    (tests use it); the default leaves it to the disk."""

    def __init__(self, path: str | os.PathLike[str], *, max_page_count: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self._lock_file: IO[bytes] | None = None
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._wrote = threading.Event()
        """Set by every write; the checkpointer waits on it."""
        self._closing = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._checkpoint_failed_at = 0.0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(f"{self.path}.lock", "wb")  # noqa: SIM115 - held until close
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(
                    "locked",
                    f"{self.path} is in use by another process (a node already runs on it)",
                ) from None
            self._writer = self._connect(max_page_count)
            self._writer.execute("PRAGMA wal_autocheckpoint=0")
            self._writer.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT_BYTES}")
            self._reader = self._connect(None)
            self._checkpointing = self._connect(None)
        except (OSError, ValueError) as error:  # ValueError: a NUL byte in the name
            self._release()
            raise StoreError("unavailable", f"{self.path}: {error}") from None
        except sqlite3.Error as error:
            self._release()
            raise store_error(error, self.path) from None
        except StoreError:
            self._release()
            raise
        try:
            self._create(Dialect("BLOB", "INTEGER PRIMARY KEY", " WITHOUT ROWID"))
        except StoreError:
            self.close()
            raise
        self._checkpointer = threading.Thread(
            target=self._checkpoint_after_writes, name="datn-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _connect(self, max_page_count: int | None) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        if max_page_count is not None:
            connection.execute(f"PRAGMA max_page_count={int(max_page_count)}")
        return connection

    def journal_source(self) -> SQLiteSource:
        return SQLiteSource(str(self.path))

    def _checkpoint_after_writes(self) -> None:
        """The checkpointer thread: a passive checkpoint after writes, at
        most one every :data:`CHECKPOINT_INTERVAL_S`, until the store closes."""
        while True:
            self._wrote.wait()
            if self._closing.is_set():
                return
            self._wrote.clear()
            self._checkpoint()
            if self._closing.wait(CHECKPOINT_INTERVAL_S):
                return

    def _checkpoint(self) -> None:
        """Copy what the log holds into the database file, as far as no
        reader still needs it, without blocking the writer. A failure is
        logged (at most once a minute) and left to the next checkpoint: the
        log still holds everything."""
        try:
            self._checkpointing.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as error:
            now = time.monotonic()
            if now - self._checkpoint_failed_at >= 60.0:
                self._checkpoint_failed_at = now
                log.warning("checkpoint of %s failed (tried again later): %s", self.path, error)

    def size_bytes(self) -> int:
        """The database file and its write-ahead log (the log's shared-memory
        index is not data)."""
        total = 0
        for path in (self.path, Path(f"{self.path}-wal")):
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                pass
            except OSError as error:
                raise StoreError("unavailable", f"{path}: {error}") from None
        return total

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._read_lock:
            try:
                return self._reader.execute(sql, params).fetchall()
            except sqlite3.Error as error:
                raise store_error(error, self.path) from None

    def _transaction(self, work: Callable[[Executor], T]) -> T:
        with self._write_lock:
            return self._locked_transaction(work)

    def _transaction_if_free(self, work: Callable[[Executor], int]) -> int | None:
        if not self._write_lock.acquire(blocking=False):
            return None
        try:
            return self._locked_transaction(work)
        finally:
            self._write_lock.release()

    def _locked_transaction(self, work: Callable[[Executor], T]) -> T:
        """:meth:`_transaction`, the write lock held."""
        connection = self._writer
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise store_error(error, self.path) from None
        try:
            result = work(_executor(connection))
            connection.execute("COMMIT")
            self._wrote.set()
        except BaseException as error:
            # The failed statement may have ended the transaction already.
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error):
                raise store_error(error, self.path) from None
            raise
        return result

    def _release(self) -> None:
        for name in ("_writer", "_reader", "_checkpointing"):
            connection = getattr(self, name, None)
            if connection is not None:
                connection.close()
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the lock
            self._lock_file = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        self._wrote.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        with self._write_lock, self._read_lock:
            self._release()


@dataclass(frozen=True)
class SQLiteSource:
    """A store file, for another process to read (see
    :meth:`datn.store.Store.journal_source`)."""

    path: str

    def open(self) -> SQLiteReader:
        return SQLiteReader(self.path)


class SQLiteReader(SqlStore):
    """A store file opened read-only, without its lock, beside the node
    process that owns it: WAL readers see its last commit and never hold
    up its writer. Each read is one read transaction; any write is refused."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        try:
            self._connection = sqlite3.connect(
                f"file:{quote(str(self.path))}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=10.0,
            )
        except sqlite3.Error as error:
            raise store_error(error, self.path) from None

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._transaction(lambda tx: tx.run(sql, params))

    def _transaction(self, work: Callable[[Executor], T]) -> T:
        connection = self._connection
        try:
            connection.execute("BEGIN")
            try:
                return work(_executor(connection))
            finally:
                connection.execute("COMMIT")
        except sqlite3.Error as error:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            raise store_error(error, self.path) from None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._connection.close()
