"""What only one backend can show: a full disk, a file that is not a
database, URLs, a server that does not answer."""

from __future__ import annotations

import pickle
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from datn.store import (
    Commit,
    ExecutionRecord,
    LedgerRecord,
    MemoryStore,
    OrderRecord,
    StoreError,
    open_store,
)
from datn.store.postgres import PostgresStore, split_url
from datn.store.sql import Dialect, Executor
from datn.store.sqlite import SQLiteStore


@pytest.mark.parametrize("method", ["commit", "commit_if_free"])
def test_a_full_disk_refuses_the_commit_and_loses_nothing_acknowledged(
    tmp_path: Path, method: str
) -> None:
    # SQLite's max_page_count stands in for a full disk: 48 pages of 4 KiB.
    # A commit on the writer thread and one on the calling thread fail alike.
    path = tmp_path / "node.sqlite3"
    acknowledged: list[bytes] = []
    with SQLiteStore(path, max_page_count=48) as store:
        for n in range(1_000):
            batch = [bytes([n % 251]) * 3_000 + n.to_bytes(4, "big") for _ in range(5)]
            try:
                position = getattr(store, method)(Commit(entries=batch))
            except StoreError as error:
                assert error.code == "full"
                assert "full" in error.message and str(path) in error.message
                break
            acknowledged.extend(batch)
            assert position == len(acknowledged)
        else:
            pytest.fail("the capped file never filled")
        # The refused commit left nothing behind, and the store still reads.
        assert store.position() == len(acknowledged)
        assert store.load().entries == acknowledged
    with SQLiteStore(path) as store:  # the disk has room again
        assert store.load().entries == acknowledged
        assert store.commit(Commit(entries=[b"after"])) == len(acknowledged) + 1


def test_a_commit_on_the_calling_thread_waits_for_no_other_write(tmp_path: Path) -> None:
    # The runtime commits a lone input on its loop's thread only if that
    # cannot block it: while another thread writes (a snapshot being
    # saved), the store answers None at once and writes nothing.
    with SQLiteStore(tmp_path / "node.sqlite3") as store:
        writing, release = threading.Event(), threading.Event()

        def slow_snapshot(tx: Executor) -> int:
            writing.set()
            release.wait(10)
            return 0

        other = threading.Thread(target=store._transaction, args=(slow_snapshot,))
        other.start()
        try:
            assert writing.wait(10)
            assert store.commit_if_free(Commit(entries=[b"lone"])) is None
        finally:
            release.set()
            other.join(10)
        assert store.position() == 0
        assert store.commit_if_free(Commit(entries=[b"lone"])) == 1
        assert store.load().entries == [b"lone"]


def test_the_log_is_copied_into_the_database_file_in_the_background(tmp_path: Path) -> None:
    # No commit copies the log itself (that would stall the input waiting
    # on it): a thread of the store's does, shortly after writes. The
    # database file comes to hold what was written without a close, and
    # the log starts again from its beginning instead of growing.
    path, log = tmp_path / "node.sqlite3", tmp_path / "node.sqlite3-wal"
    written = [bytes([n]) * 4_000 for n in range(200)]
    with SQLiteStore(path) as store:
        for n in range(0, 200, 10):
            store.commit(Commit(entries=written[n : n + 10]))
        deadline = time.monotonic() + 10
        restarted = False
        while not restarted and time.monotonic() < deadline:
            time.sleep(0.05)
            before = log.stat().st_size
            store.commit(Commit(entries=[b"after"]))
            written.append(b"after")
            restarted = log.stat().st_size <= before
        assert restarted
        assert path.stat().st_size >= 800_000
    with SQLiteStore(path) as store:
        assert store.load().entries == written


def test_a_read_only_view_of_a_store_file_sees_its_commits_and_writes_nothing(
    tmp_path: Path,
) -> None:
    # What a node's snapshot worker opens from its own process: no lock
    # taken, the owner's commits seen as they land, every write refused.
    with SQLiteStore(tmp_path / "node.sqlite3") as store:
        store.commit(Commit(entries=[b"one", b"two"]))
        store.save_snapshot(1, b"state after one")
        source = store.journal_source()
        assert pickle.loads(pickle.dumps(source)) == source
        view = source.open()
        try:
            stored = view.load()
            assert (stored.snapshot_position, stored.snapshot) == (1, b"state after one")
            assert stored.entries == [b"two"]
            store.commit(Commit(entries=[b"three"]))
            assert view.entries(0, 10) == [(1, b"one"), (2, b"two"), (3, b"three")]
            with pytest.raises(StoreError) as refused:
                view.commit(Commit(entries=[b"four"]))
            assert refused.value.code == "unavailable" and "readonly" in refused.value.message
        finally:
            view.close()
        assert store.commit(Commit(entries=[b"four"])) == 4


def test_a_file_that_is_not_a_database_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    path.write_bytes(b"this is not a SQLite database, just some bytes " * 100)
    with pytest.raises(StoreError) as caught:
        SQLiteStore(path)
    assert caught.value.code == "corrupt" and str(path) in caught.value.message


def test_a_store_of_another_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    SQLiteStore(path).close()
    import sqlite3  # noqa: PLC0415

    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE datn_meta SET value = 99 WHERE key = 'schema_version'")
    with pytest.raises(StoreError) as caught:
        SQLiteStore(path)
    assert caught.value.code == "corrupt" and "layout 99" in caught.value.message


def test_a_sqlite_store_made_before_its_keys_were_row_ids_reads_and_writes_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stores made by earlier versions have BIGINT keys and row ids beside
    text keys; a node opening one goes on reading and writing it."""
    path = tmp_path / "node.sqlite3"
    create = SQLiteStore._create
    with monkeypatch.context() as patch:
        patch.setattr(
            SQLiteStore,
            "_create",
            lambda self, _dialect: create(self, Dialect("BLOB", "BIGINT PRIMARY KEY")),
        )
        with SQLiteStore(path) as store:
            store.commit(
                Commit(
                    entries=[b"one"],
                    orders=[OrderRecord(1, "trader:t", "c1", "XYZ", "new", True, 1, 1, b"o")],
                    executions=[ExecutionRecord("x1", 1, "trader:t", "XYZ", 2, b"e")],
                    ledger=[LedgerRecord("e1", 2, b"l")],
                )
            )
    with sqlite3.connect(path) as connection:
        tables = [row[0] for row in connection.execute("SELECT sql FROM sqlite_master")]
    assert any("journal (position BIGINT PRIMARY KEY" in str(sql) for sql in tables)
    with SQLiteStore(path) as store:
        assert store.commit(Commit(entries=[b"two"], ledger=[LedgerRecord("e2", 3, b"m")])) == 2
        assert store.load().entries == [b"one", b"two"]
        assert store.ledger_entry("e1") == LedgerRecord("e1", 2, b"l")
        assert [o.order_id for o in store.orders("trader:t")] == [1]
        assert [e.execution_id for e in store.executions("trader:t")] == ["x1"]


def test_whether_a_trader_exists_is_read_from_an_index_also_in_an_older_store(
    tmp_path: Path,
) -> None:
    """An operator's deposit asks whether its trader exists: the store finds
    the trader's keys by index, not by reading every key, and a store made
    before the index gets it when a node opens it."""
    path = tmp_path / "node.sqlite3"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute("DROP INDEX credentials_by_trader")  # as made before it
    with SQLiteStore(path):
        pass
    with sqlite3.connect(path) as connection:
        plan = connection.execute(
            "EXPLAIN QUERY PLAN SELECT 1 FROM credentials WHERE trader_id = ? LIMIT 1", ("t",)
        ).fetchall()
    assert any("USING COVERING INDEX credentials_by_trader" in row[-1] for row in plan), plan


def test_storage_urls(tmp_path: Path) -> None:
    assert isinstance(open_store("memory:"), MemoryStore)
    with open_store(f"sqlite:///{tmp_path}/a/node.sqlite3") as store:
        assert isinstance(store, SQLiteStore) and store.path == tmp_path / "a" / "node.sqlite3"
    for url in ("mysql://x", "sqlite:///", "", "sqlite://relative"):
        with pytest.raises(StoreError) as caught:
            open_store(url)
        assert caught.value.code == "bad_url"


def test_postgres_urls_name_a_schema_and_hide_the_password() -> None:
    conninfo, schema, where = split_url("postgresql://u:secret@db.example:6543/n?schema=node_a")
    assert schema == "node_a" and "schema" not in conninfo
    assert "secret" not in where and where == "postgresql://u@db.example:6543/n/node_a"
    assert split_url("postgres://u@h/db")[1] == "datn"
    for bad in ("postgresql://u@h/db?schema=Bad-Name", "postgresql://u@h/db?schema="):
        with pytest.raises(StoreError) as caught:
            split_url(bad)
        assert caught.value.code == "bad_url"


def test_a_postgres_server_that_does_not_answer_is_unavailable() -> None:
    with pytest.raises(StoreError) as caught:
        PostgresStore("postgresql://postgres@127.0.0.1:1/test", connect_timeout_s=2)
    assert caught.value.code == "unavailable"
    assert "127.0.0.1:1" in caught.value.message
