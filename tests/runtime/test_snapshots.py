"""Snapshots built in the background: in a worker process, from the previous
snapshot and the journal, never from the live core. What the worker builds is
the live node's state at the snapshot's position; a restart from it is the
node the whole journal gives; intake goes on while it is built; a worker that
crashes costs a snapshot, not the node; closing or stopping the runtime stops
the worker, and a node killed outright leaves no worker behind.

The worker's builds that a test controls (a gate, a crash) are in
``snapshot_builds``, which the worker imports by name."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from multiprocessing.connection import wait
from pathlib import Path

import pytest
from msgspec import structs
from snapshot_builds import build_at_gate, crash_once
from test_runtime import GENESIS, funded, order, run

from datn.domain import Side
from datn.runtime import NodeRuntime, NodeStoppedError
from datn.runtime.snapshots import WORKER_NICENESS, SnapshotWorker
from datn.store import Commit, MemoryStore, StoreError
from datn.store import base as store_base
from datn.store.sqlite import SQLiteStore
from datn.wire import recover_node

QUIET = structs.replace(GENESIS, config=replace(GENESIS.config, heartbeat_ms=3_600_000))
"""A node whose timers do not fire during a test: every journal entry is
one of the test's inputs, so the live state after each is known."""

EVERY = 30
"""Journal entries between snapshots."""

Hashes = dict[int, str]
"""Journal position -> the live node's state hash after it."""


async def place(runtime: NodeRuntime, hashes: Hashes, until: int) -> None:
    """Place orders one at a time (one entry each) until the journal reaches
    ``until``, noting the live state after each."""
    n = runtime.stats.position
    while runtime.stats.position < until:
        n += 1
        await runtime.submit(order(n, Side.BUY if n % 2 else Side.SELL, 4_990 + n % 20))
        hashes[runtime.stats.position] = runtime.core.state_hash()


def stored_snapshot(path: Path) -> tuple[int, bytes | None]:
    with SQLiteStore(path) as store:
        stored = store.load()
    return stored.snapshot_position, stored.snapshot


def whole_journal(path: Path) -> list[bytes]:
    with SQLiteStore(path) as store:
        return [data for _, data in store.entries(0, store.position())]


class Gate:
    """A FIFO the worker's build waits at until the test opens it. The test
    holds its write end from the start, so the worker's open never waits,
    and the word to go is never lost."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self._fd = os.open(path, os.O_RDWR)  # on Linux, opening both ends does not block

    def worker(self) -> SnapshotWorker:
        return SnapshotWorker(partial(build_at_gate, str(self.path)))

    def open(self) -> None:
        os.write(self._fd, b"go\n")

    def close(self) -> None:
        os.close(self._fd)


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    gate = Gate(tmp_path / "gate")
    yield gate
    gate.close()


def test_a_snapshot_built_in_the_background_is_the_live_state_at_its_position(
    tmp_path: Path,
) -> None:
    path = tmp_path / "node.sqlite3"
    hashes: Hashes = {}
    snapshots: list[tuple[int, bytes | None]] = []

    async def test() -> None:
        runtime = await NodeRuntime.open(SQLiteStore(path), QUIET, snapshot_every=EVERY)
        await funded(runtime)
        # The first from the genesis on, the second from the first.
        for position in (EVERY, 2 * EVERY):
            await place(runtime, hashes, position)
            assert runtime.snapshot_in_flight
            await runtime.wait_for_snapshot()
            assert runtime.stats.snapshots == position // EVERY
            stored = await asyncio.to_thread(runtime.store.load)
            snapshots.append((stored.snapshot_position, stored.snapshot))
        await place(runtime, hashes, 2 * EVERY + 10)
        await runtime.close()

    run(test)
    assert [position for position, _ in snapshots] == [EVERY, 2 * EVERY]
    for position, data in snapshots:
        assert recover_node(data, []).state_hash() == hashes[position]


class CountingSQLiteStore(SQLiteStore):
    reads = 0

    def entries(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        self.reads += 1
        return super().entries(after, limit)


class CountingMemoryStore(MemoryStore):
    reads = 0

    def entries(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        self.reads += 1
        return super().entries(after, limit)


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_the_worker_reads_a_store_file_itself_and_is_sent_the_journal_of_another(
    tmp_path: Path, kind: str
) -> None:
    # An SQLite file the worker opens read-only: the node process reads
    # nothing for the build, so its commits do not share the interpreter's
    # lock with the reading. A memory store only the node can read.
    hashes: Hashes = {}
    store: CountingSQLiteStore | CountingMemoryStore = CountingMemoryStore()
    if kind == "sqlite":
        store = CountingSQLiteStore(tmp_path / "node.sqlite3")
    built: list[tuple[int, bytes | None, int]] = []

    async def test() -> None:
        runtime = await NodeRuntime.open(store, QUIET, snapshot_every=EVERY)
        await funded(runtime)
        for position in (EVERY, 2 * EVERY):
            await place(runtime, hashes, position)
            await runtime.wait_for_snapshot()
            stored = await asyncio.to_thread(runtime.store.load)
            built.append((stored.snapshot_position, stored.snapshot, store.reads))
        await runtime.close()

    run(test)
    assert [position for position, _, _ in built] == [EVERY, 2 * EVERY]
    for position, data, _ in built:
        assert recover_node(data, []).state_hash() == hashes[position]
    reads = [count for _, _, count in built]
    if kind == "sqlite":
        assert reads == [0, 0]
    else:
        assert 0 < reads[0] < reads[1]


def test_a_restart_from_a_background_snapshot_is_the_node_of_the_whole_journal(
    tmp_path: Path,
) -> None:
    path = tmp_path / "node.sqlite3"
    hashes: Hashes = {}
    restarted: list[tuple[int, str]] = []

    async def first() -> None:
        runtime = await NodeRuntime.open(SQLiteStore(path), QUIET, snapshot_every=EVERY)
        await funded(runtime)
        await place(runtime, hashes, EVERY)
        await runtime.wait_for_snapshot()
        await place(runtime, hashes, EVERY + 15)
        await runtime.close(snapshot=False)  # as a crash leaves it

    async def second() -> None:
        # An interval for which 15 entries are under a quarter: the start
        # replays them onto the background snapshot and takes none itself.
        runtime = await NodeRuntime.open(SQLiteStore(path), QUIET, snapshot_every=4 * EVERY)
        # Read at once: a timer the restart set may tick right after.
        restarted.append((runtime.stats.position, runtime.core.state_hash()))
        assert runtime.stats.snapshot_position == EVERY
        await runtime.close(snapshot=False)

    run(first)
    run(second)
    journal = whole_journal(path)
    restart_position, restarted_hash = restarted[0]
    assert restart_position == EVERY + 16  # the restart entry follows the first run's
    # Everything before the restart entry is the state the first process left.
    assert recover_node(None, journal[: EVERY + 15]).state_hash() == hashes[EVERY + 15]
    assert recover_node(None, journal[:restart_position]).state_hash() == restarted_hash
    position, snapshot = stored_snapshot(path)
    assert position == EVERY
    tail = journal[EVERY:restart_position]
    assert recover_node(snapshot, tail).state_hash() == restarted_hash


def test_intake_goes_on_while_a_snapshot_is_built(tmp_path: Path, gate: Gate) -> None:
    path = tmp_path / "node.sqlite3"
    hashes: Hashes = {}

    async def test() -> None:
        runtime = await NodeRuntime.open(
            SQLiteStore(path), QUIET, snapshot_every=EVERY, snapshot_worker=gate.worker()
        )
        await funded(runtime)
        await place(runtime, hashes, EVERY)
        assert runtime.snapshot_in_flight
        # The worker waits at the gate: the snapshot cannot end before it
        # opens, and every input meanwhile is taken in and answered.
        await place(runtime, hashes, EVERY + 40)
        answers = await asyncio.gather(
            *(runtime.submit(order(1_000 + n, Side.BUY, 4_000)) for n in range(20))
        )
        assert len(answers) == 20 and runtime.stats.position == EVERY + 60
        assert runtime.snapshot_in_flight and runtime.stats.snapshots == 0
        gate.open()
        await runtime.wait_for_snapshot()
        assert runtime.stats.snapshots == 1 and runtime.stats.snapshot_position == EVERY
        await runtime.close(snapshot=False)

    run(test)
    position, snapshot = stored_snapshot(path)
    assert position == EVERY
    assert recover_node(snapshot, []).state_hash() == hashes[EVERY]


def test_commits_go_between_the_parts_of_a_snapshot_being_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_base, "SNAPSHOT_PART_BYTES", 512)
    writes: list[str] = []

    class Watched(SQLiteStore):
        def save_snapshot_part(self, position: int, index: int, data: bytes) -> None:
            writes.append("part")
            time.sleep(0.005)  # a slow disk: commits queue up meanwhile
            super().save_snapshot_part(position, index, data)

        def complete_snapshot(self, position: int, parts: int, checksum: int) -> None:
            writes.append("complete")
            super().complete_snapshot(position, parts, checksum)

        def commit(self, commit: Commit) -> int:
            writes.append("commit")
            return super().commit(commit)

    hashes: Hashes = {}

    async def test() -> None:
        runtime = await NodeRuntime.open(
            Watched(tmp_path / "node.sqlite3"), QUIET, snapshot_every=EVERY
        )
        await funded(runtime)
        await place(runtime, hashes, EVERY)
        # Groups of several inputs, which commit on the writer thread.
        n = 1_000
        while runtime.stats.snapshots == 0:
            await asyncio.gather(*(runtime.submit(order(n + i)) for i in range(4)))
            n += 4
        await runtime.close(snapshot=False)

    run(test)
    first, last = writes.index("part"), writes.index("complete")
    assert writes[first:last].count("part") > 1
    assert "commit" in writes[first:last]
    position, data = stored_snapshot(tmp_path / "node.sqlite3")
    assert position == EVERY
    assert recover_node(data, []).state_hash() == hashes[EVERY]


def test_a_worker_that_crashes_costs_a_snapshot_not_the_node(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    worker = SnapshotWorker(partial(crash_once, str(tmp_path / "crashed")))
    hashes: Hashes = {}

    async def test() -> None:
        runtime = await NodeRuntime.open(
            SQLiteStore(path), QUIET, snapshot_every=EVERY, snapshot_worker=worker
        )
        await funded(runtime)
        await place(runtime, hashes, EVERY)
        await runtime.wait_for_snapshot()
        assert runtime.stats.snapshot_failures == 1 and runtime.stats.snapshots == 0
        assert runtime.failure is None and not runtime.stopped.is_set()
        # The next try is an interval later, with a new worker.
        await place(runtime, hashes, 2 * EVERY - 1)
        assert not runtime.snapshot_in_flight
        await place(runtime, hashes, 2 * EVERY)
        await runtime.wait_for_snapshot()
        assert runtime.stats.snapshots == 1 and runtime.stats.snapshot_position == 2 * EVERY
        await runtime.close()

    run(test)
    position, snapshot = stored_snapshot(path)
    assert position == 2 * EVERY
    assert recover_node(snapshot, []).state_hash() == hashes[2 * EVERY]


def test_close_abandons_a_snapshot_in_flight_and_stops_the_worker(
    tmp_path: Path, gate: Gate
) -> None:
    path = tmp_path / "node.sqlite3"

    async def test() -> None:
        runtime = await NodeRuntime.open(
            SQLiteStore(path), QUIET, snapshot_every=EVERY, snapshot_worker=gate.worker()
        )
        await funded(runtime)
        await place(runtime, {}, EVERY)
        assert runtime.snapshot_in_flight
        await runtime.close(snapshot=False)  # the gate never opens
        assert not runtime.snapshot_in_flight

    run(test)
    assert multiprocessing.active_children() == []
    assert stored_snapshot(path) == (0, None)


def test_a_worker_started_ahead_serves_the_first_snapshot(tmp_path: Path) -> None:
    # A node process starts its worker as it starts (start()), so that the
    # process's start does not fall among traders' orders.
    hashes: Hashes = {}

    async def test() -> None:
        runtime = await NodeRuntime.open(
            SQLiteStore(tmp_path / "node.sqlite3"), QUIET, snapshot_every=EVERY
        )
        runtime.start_snapshot_worker()
        runtime.start_snapshot_worker()  # once is enough: a second does nothing
        deadline = asyncio.get_running_loop().time() + 10
        while not multiprocessing.active_children():
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        (started,) = multiprocessing.active_children()
        await funded(runtime)
        await place(runtime, hashes, EVERY)
        await runtime.wait_for_snapshot()
        assert runtime.stats.snapshots == 1
        assert multiprocessing.active_children() == [started]  # the same process
        await runtime.close()
        assert multiprocessing.active_children() == []

    run(test)
    position, data = stored_snapshot(tmp_path / "node.sqlite3")
    assert position == EVERY and recover_node(data, []).state_hash() == hashes[EVERY]


def test_close_stops_the_worker(tmp_path: Path) -> None:
    async def test() -> None:
        runtime = await NodeRuntime.open(
            SQLiteStore(tmp_path / "node.sqlite3"), QUIET, snapshot_every=EVERY
        )
        await funded(runtime)
        await place(runtime, {}, EVERY)
        await runtime.wait_for_snapshot()
        assert runtime.stats.snapshots == 1
        (worker,) = multiprocessing.active_children()  # idle, kept for the next
        # It takes only the time the node leaves: the lowest priority, and on
        # Linux the idle class, set by the node as it started the process.
        assert worker.pid is not None
        assert os.getpriority(os.PRIO_PROCESS, worker.pid) == WORKER_NICENESS
        if hasattr(os, "SCHED_IDLE"):
            assert os.sched_getscheduler(worker.pid) == os.SCHED_IDLE
        await runtime.close()
        assert multiprocessing.active_children() == []

    run(test)


class FailingSQLiteStore(SQLiteStore):
    failing = False

    def commit(self, commit: Commit) -> int:
        if self.failing:
            raise StoreError("full", "the disk is full")
        return super().commit(commit)

    def commit_if_free(self, commit: Commit) -> int | None:
        if self.failing:
            raise StoreError("full", "the disk is full")
        return super().commit_if_free(commit)


def test_a_runtime_that_stops_on_a_failure_stops_its_worker(tmp_path: Path) -> None:
    async def test() -> None:
        store = FailingSQLiteStore(tmp_path / "node.sqlite3")
        runtime = await NodeRuntime.open(store, QUIET, snapshot_every=EVERY)
        await funded(runtime)
        await place(runtime, {}, EVERY)
        await runtime.wait_for_snapshot()
        (process,) = multiprocessing.active_children()
        store.failing = True
        with pytest.raises(NodeStoppedError):
            await runtime.submit(order(1))
        assert runtime.stopped.is_set()
        # Nobody closes a runtime that failed: its process exits. The worker
        # is stopped already (its sentinel is ready once it has ended).
        assert wait([process.sentinel], timeout=10) == [process.sentinel]
        store.close()

    run(test)


NODE_KILLED_OUTRIGHT = """
import asyncio, multiprocessing, sys
sys.path.insert(0, {folder!r})
from test_runtime import funded
from test_snapshots import EVERY, QUIET, place
from datn.runtime import NodeRuntime
from datn.store.sqlite import SQLiteStore

async def main():
    runtime = await NodeRuntime.open(SQLiteStore({path!r}), QUIET, snapshot_every=EVERY)
    await funded(runtime)
    await place(runtime, {{}}, EVERY)
    await runtime.wait_for_snapshot()
    (worker,) = multiprocessing.active_children()
    print(worker.pid, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def test_the_worker_ends_when_its_node_is_killed_outright(tmp_path: Path) -> None:
    code = NODE_KILLED_OUTRIGHT.format(
        folder=str(Path(__file__).parent), path=str(tmp_path / "node.sqlite3")
    )
    # Its stderr goes to a file: once it is killed, the multiprocessing
    # resource tracker it started reports the semaphores it left behind.
    log = tmp_path / "node.log"
    with log.open("wb") as errors:
        node = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=errors, text=True
        )
    try:
        assert node.stdout is not None
        ready, _, _ = select.select([node.stdout], [], [], 60)
        line = node.stdout.readline() if ready else ""
        assert line, f"the node did not take its snapshot: {log.read_text()}"
        worker = int(line)
    finally:
        node.kill()  # SIGKILL: the node stops nothing
        node.wait()
    try:
        handle = os.pidfd_open(worker)
    except ProcessLookupError:
        return  # ended and reaped already
    try:
        ended, _, _ = select.select([handle], [], [], 10)
        assert ended, "the worker outlived its node"
    finally:
        os.close(handle)
