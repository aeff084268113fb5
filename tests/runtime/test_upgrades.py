"""Stopping and upgrading a node: a clean stop leaves a snapshot of the final
state, so the next start replays nothing; and a node refuses to replay a
journal tail written under other core logic, which could rebuild a state
other than the one its peers and traders were told of, unless the operator
asks for it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from msgspec import msgpack
from test_runtime import GENESIS, crash, run, trade
from test_snapshots import whole_journal

from datn.protocol.effects import CORE_LOGIC_VERSION, RestartInput
from datn.runtime import NodeRuntime
from datn.store import Commit, StoreError
from datn.store.sqlite import SQLiteStore
from datn.wire import decode_entry, encode_snapshot, recover_node
from datn.wire.journal import JOURNAL_VERSION


def test_a_clean_stop_leaves_a_snapshot_so_the_next_start_replays_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "node.sqlite3"
    hashes: list[str] = []

    async def first() -> None:
        # No background snapshot: the interval is never reached.
        runtime = await NodeRuntime.open(SQLiteStore(path), GENESIS, snapshot_every=1_000_000)
        await trade(runtime, 30)
        hashes.append(await runtime.read(lambda core: core.state_hash()))
        await runtime.close()
        assert runtime.stats.snapshot_position == runtime.stats.position

    async def second() -> None:
        runtime = await NodeRuntime.open(SQLiteStore(path), GENESIS, snapshot_every=1_000_000)
        await runtime.close()

    run(first)
    with SQLiteStore(path) as store:
        stored = store.load()
    assert stored.entries == [] and stored.snapshot_position == stored.position > 30
    assert recover_node(stored.snapshot, []).state_hash() == hashes[0]
    # The journal still holds everything, and gives the same state.
    journal = whole_journal(path)
    assert len(journal) == stored.position
    assert recover_node(None, journal).state_hash() == hashes[0]
    run(second)
    # The second life: its restart entry (and perhaps a timer's), then a
    # snapshot at its stop again.
    with SQLiteStore(path) as store:
        again = store.load()
    assert again.position > stored.position and again.entries == []
    restart = decode_entry(whole_journal(path)[stored.position]).input
    assert isinstance(restart, RestartInput)
    final = recover_node(None, whole_journal(path)).state_hash()
    assert recover_node(again.snapshot, []).state_hash() == final


def as_written_before_logic_versions(entry: bytes) -> bytes:
    """A genesis or restart entry as a version that kept no core logic
    version wrote it: the same array without its last element."""
    version, body = msgpack.decode(entry)
    assert version == JOURNAL_VERSION
    return msgpack.encode([version, body[:-1]])


def older_journal(tmp_path: Path) -> tuple[Path, list[bytes]]:
    """A node's store as the version before core logic versions left it
    when it was killed: its entries after its genesis (no snapshot)."""
    written = tmp_path / "written.sqlite3"

    async def crashed() -> None:
        runtime = await NodeRuntime.open(SQLiteStore(written), GENESIS, snapshot_every=1_000_000)
        await trade(runtime, 20)
        crash(runtime)

    run(crashed)
    journal = whole_journal(written)
    journal[0] = as_written_before_logic_versions(journal[0])
    assert decode_entry(journal[0]).input.logic_version == 1  # type: ignore[union-attr]
    path = tmp_path / "node.sqlite3"
    with SQLiteStore(path) as store:
        store.commit(Commit(entries=journal))
    return path, journal


def test_a_tail_written_under_other_core_logic_is_refused_and_left_as_it_was(
    tmp_path: Path,
) -> None:
    path, journal = older_journal(tmp_path)

    async def refused() -> None:
        with SQLiteStore(path) as store, pytest.raises(StoreError) as caught:
            await NodeRuntime.open(store, GENESIS)
        assert caught.value.code == "logic_version"
        message = caught.value.message
        assert f"{len(journal)} entries after the snapshot at 0" in message
        assert f"core logic version 1, and this code runs version {CORE_LOGIC_VERSION}" in message
        assert "--replay-other-logic" in message

    run(refused)
    assert whole_journal(path) == journal  # no restart entry, nothing else


def test_the_operator_may_replay_a_tail_of_other_logic_and_the_restart_records_this_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, journal = older_journal(tmp_path)
    hashes: list[str] = []

    async def anyway() -> None:
        runtime = await NodeRuntime.open(SQLiteStore(path), GENESIS, replay_other_logic=True)
        hashes.append(await runtime.read(lambda core: core.state_hash()))
        crash(runtime)

    async def plain() -> None:
        # Its tail now starts with a restart entry of this version: no flag needed.
        runtime = await NodeRuntime.open(SQLiteStore(path), GENESIS)
        await runtime.close()

    with caplog.at_level(logging.WARNING, logger="datn.runtime.node"):
        run(anyway)
    assert f"written under core logic version 1 with version {CORE_LOGIC_VERSION}" in caplog.text
    after = whole_journal(path)
    assert after[: len(journal)] == journal
    restart = decode_entry(after[len(journal)]).input
    assert restart.logic_version == CORE_LOGIC_VERSION  # type: ignore[union-attr]
    run(plain)


def test_a_node_stopped_cleanly_by_the_older_version_starts_without_the_flag(
    tmp_path: Path,
) -> None:
    """The upgrade the refusal points to: the older version's clean stop
    left a snapshot at the journal's end, so nothing is replayed."""
    path, journal = older_journal(tmp_path)
    state = recover_node(None, journal)
    with SQLiteStore(path) as store:
        store.save_snapshot(len(journal), encode_snapshot(state.snapshot()))

    async def upgraded() -> None:
        runtime = await NodeRuntime.open(SQLiteStore(path), GENESIS)
        assert runtime.stats.position >= len(journal) + 1
        await runtime.close()

    run(upgraded)
