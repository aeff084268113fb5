"""Stopping and upgrading a node: a clean stop leaves a snapshot of the final
state, so the next start replays nothing; and a node refuses to replay a
journal tail written under core logic it does not replay as it ran (which
could rebuild a state other than the one its peers and traders were told
of), unless the operator asks for it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

import pytest
from msgspec import msgpack
from test_runtime import GENESIS, crash, run, trade
from test_snapshots import whole_journal

from datn.domain import USD
from datn.protocol.effects import CORE_LOGIC_VERSION, DepositInput, RestartInput
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


def with_logic_version(entry: bytes, version: int | None) -> bytes:
    """A genesis or restart entry as the code of core logic ``version``
    wrote it (None: a version that kept none, so the array ends before it)."""
    journal_version, body = msgpack.decode(entry)
    assert journal_version == JOURNAL_VERSION
    body = body[:-1] if version is None else [*body[:-1], version]
    return msgpack.encode([journal_version, body])


def journal_written_by(tmp_path: Path, version: int | None) -> tuple[Path, list[bytes]]:
    """A node's store as the code of core logic ``version`` left it when it
    was killed: its entries after its genesis, and no snapshot."""
    written = tmp_path / "written.sqlite3"

    async def crashed() -> None:
        runtime = await NodeRuntime.open(SQLiteStore(written), GENESIS, snapshot_every=1_000_000)
        await trade(runtime, 20)
        crash(runtime)

    run(crashed)
    journal = whole_journal(written)
    journal[0] = with_logic_version(journal[0], version)
    assert decode_entry(journal[0]).input.logic_version == (version or 1)  # type: ignore[union-attr]
    path = tmp_path / "node.sqlite3"
    with SQLiteStore(path) as store:
        store.commit(Commit(entries=journal))
    return path, journal


NEWER = CORE_LOGIC_VERSION + 1


def test_a_journal_written_before_logic_versions_were_kept_replays_as_it_ran(
    tmp_path: Path,
) -> None:
    """Version 1's logic is still in the core, applied where the journal
    says version 1 ran (:mod:`test_crossed` shows the routing), so a node
    that version left behind, even killed, starts without a flag; from its
    restart entry on, it runs this version."""
    path, journal = journal_written_by(tmp_path, None)
    versions: list[int] = []

    async def upgraded() -> None:
        runtime = await NodeRuntime.open(SQLiteStore(path), GENESIS)
        versions.append(await runtime.read(lambda core: core.context.logic_version))
        crash(runtime)

    run(upgraded)
    assert versions == [CORE_LOGIC_VERSION]
    after = whole_journal(path)
    assert after[: len(journal)] == journal
    restart = decode_entry(after[len(journal)]).input
    assert isinstance(restart, RestartInput) and restart.logic_version == CORE_LOGIC_VERSION


def test_a_tail_written_under_newer_core_logic_is_refused_and_left_as_it_was(
    tmp_path: Path,
) -> None:
    """Started back on an older version after a newer one ran and was
    killed: the older code cannot replay the newer logic's entries as they
    ran, so it refuses, says how to go on, and writes nothing."""
    path, journal = journal_written_by(tmp_path, NEWER)

    async def refused() -> None:
        with SQLiteStore(path) as store, pytest.raises(StoreError) as caught:
            await NodeRuntime.open(store, GENESIS)
        assert caught.value.code == "logic_version"
        message = caught.value.message
        assert f"{len(journal)} entries after the snapshot at 0" in message
        assert f"core logic version {NEWER}, newer than this code's version" in message
        assert "--replay-other-logic" in message

    run(refused)
    assert whole_journal(path) == journal  # no restart entry, nothing else


def test_the_operator_may_replay_a_tail_anyway_and_the_restart_records_this_version(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, journal = journal_written_by(tmp_path, NEWER)

    async def anyway() -> None:
        runtime = await NodeRuntime.open(SQLiteStore(path), GENESIS, replay_other_logic=True)
        crash(runtime)

    async def plain() -> None:
        # Its tail now starts with a restart entry of this version: no flag needed.
        runtime = await NodeRuntime.open(SQLiteStore(path), GENESIS)
        await runtime.close()

    with caplog.at_level(logging.WARNING, logger="datn.runtime.node"):
        run(anyway)
    assert (
        f"written under core logic version {NEWER} with version {CORE_LOGIC_VERSION}" in caplog.text
    )
    after = whole_journal(path)
    assert after[: len(journal)] == journal
    restart = decode_entry(after[len(journal)]).input
    assert restart.logic_version == CORE_LOGIC_VERSION  # type: ignore[union-attr]
    run(plain)


def test_a_node_stopped_cleanly_starts_whatever_logic_wrote_its_journal(
    tmp_path: Path,
) -> None:
    """A clean stop left a snapshot at the journal's end: nothing is
    replayed, so no version is refused."""
    path, journal = journal_written_by(tmp_path, NEWER)
    state = recover_node(None, journal)
    with SQLiteStore(path) as store:
        store.save_snapshot(len(journal), encode_snapshot(state.snapshot()))

    async def started() -> None:
        runtime = await NodeRuntime.open(SQLiteStore(path), GENESIS)
        assert runtime.stats.position >= len(journal) + 1
        await runtime.close()

    run(started)


class SlowDisk(SQLiteStore):
    """Every group commits on the writer thread, slowly once ``slow``."""

    slow = False

    def commit_if_free(self, commit: Commit) -> int | None:
        return None

    def commit(self, commit: Commit) -> int:
        if self.slow:
            time.sleep(0.3)
        return super().commit(commit)


def test_a_close_cancelled_while_a_group_commits_takes_no_snapshot_ahead_of_the_journal(
    tmp_path: Path,
) -> None:
    """A close given up on (a timeout around it) while a group is being
    written: the core already holds inputs the journal may not, so no stop
    snapshot is taken, and the next start rebuilds from the journal alone."""
    path = tmp_path / "node.sqlite3"

    async def test() -> None:
        store = SlowDisk(path)
        runtime = await NodeRuntime.open(store, GENESIS, snapshot_every=1_000_000)
        await runtime.submit(DepositInput("alice", USD.code, 100))
        store.slow = True
        deposits = [
            asyncio.ensure_future(runtime.submit(DepositInput("alice", USD.code, 1_000)))
            for _ in range(3)
        ]
        await asyncio.sleep(0.05)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runtime.close(), timeout=0.01)
        await asyncio.gather(*deposits, return_exceptions=True)

    run(test)
    with SQLiteStore(path) as store:
        stored = store.load()
    journal = whole_journal(path)
    assert stored.snapshot is None or stored.snapshot_position == len(journal)
    assert (
        recover_node(stored.snapshot, stored.entries).state_hash()
        == recover_node(None, journal).state_hash()
    )
