"""Snapshots built in a worker process, away from the live node.

Reading a large node's state takes long: with 100,000 open orders, about
0.2 s to read the state and 0.4 s more to encode it, all of it holding the
interpreter's lock. Done in the node process it would stall intake for that
long. But replay is deterministic: the state after journal position P is
also what recovery from the previous snapshot and the entries up to P gives.
So a worker process does exactly that, from the store's bytes, and hands
back the new snapshot's bytes:

1. the worker reads the previous snapshot and the journal entries after
   it, up to P, from the store itself, when the store can be read from
   another process (:meth:`~datn.store.Store.journal_source`: an SQLite
   file, opened read-only; commits never wait for a WAL reader). With
   another store, a thread of the node's reads them (through the store's
   reader) a page at a time and sends them to the worker with the previous
   snapshot's bytes;
2. the worker decodes them, recovers the node (:func:`~datn.wire.recover_node`),
   reads its snapshot and encodes it;
3. the runtime saves the bytes on its writer thread, a part of a quarter
   megabyte at a time (:meth:`~datn.store.Store.save_snapshot_part`), so
   that groups committing meanwhile wait for one part, not the whole.

Reading and sending the journal from the node process costs it little CPU,
but that little holds the interpreter's lock in many short turns, and each
commit on the writer thread waits for the lock many times: on a node with
one core to itself, commits took ten times as long while a snapshot was
read that way. A worker that reads for itself leaves the node only the new
snapshot's slices to take back.

The event loop only schedules: it never reads, decodes or encodes any of it.
The node's other threads share the interpreter's lock with the loop, so what
they do for a build goes in small pieces, one at a time (see
:meth:`SnapshotWorker._send_and_build`): a page of entries, a slice of a
snapshot. What remains in the node process is joining the new snapshot's
slices and the store's writing it (a copy of its bytes each).

The worker is one persistent process, started on the first build (or
before, by :meth:`SnapshotWorker.start`: a node process starts it as it
starts, so that the start, which costs the node's threads a few tens of
milliseconds, does not fall among traders' orders) with the
``spawn`` method (a fresh interpreter: the node process has threads and
database connections that a fork would copy in an unknown state). It runs
at the lowest scheduling priority (Linux's idle class, where the node
takes the core back the moment it wakes), so that on a busy machine intake
goes first, and ignores the terminal's interrupt: the node stops it when it
stops, and if the node process is killed outright, the worker ends by
itself. Like any ``spawn`` child it imports the program's main module
again: a script that runs a node keeps its start under
``if __name__ == "__main__":``.

Memory: while it builds, the worker holds a second copy of the node's state,
about as large as the live one, plus the bytes of the previous snapshot, of
the entries after it and of the new snapshot. It lets all of it go after
each build, but its process stays, and its memory returns to the system
only as far as the allocator gives it back.

A failed build (a worker that crashes or is killed, damaged bytes) costs
only that snapshot: the journal still holds everything. A crashed worker is
replaced by a new one at the next build.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Final, TypeVar

from datn.store import JournalSource, Store, StoreError
from datn.wire import encode_snapshot, recover_node

T = TypeVar("T")

ENTRIES_PER_READ: Final = 1_024
"""Journal entries read from the store, and sent to the worker, at a time:
a page is read and checked in about a millisecond, and pickled in less."""

SNAPSHOT_SLICE_BYTES: Final = 1 << 20
"""Snapshots cross between the node and the worker in slices of this size,
each pickled and unpickled in about a millisecond."""

WORKER_NICENESS: Final = 19
"""The worker's nice value: the lowest priority there is, so that the worker
takes only CPU time the node leaves."""

Build = Callable[[bytes | None, list[bytes]], bytes]
"""What the worker runs: (the previous snapshot or None, the journal entries
after it) to the encoded snapshot after the last entry. A module-level
function (or a ``functools.partial`` of one): the worker imports it by name."""


def build_snapshot(snapshot: bytes | None, entries: list[bytes]) -> bytes:
    """The encoded snapshot of the state after ``entries``, rebuilt from
    ``snapshot`` (None: the entries start with the genesis) and them."""
    recovered = recover_node(snapshot, entries)
    data = encode_snapshot(recovered.snapshot())
    # recover_node froze what it built out of the collector's passes, which
    # suits a node process; this one drops the state at once, so the
    # collector gets it back and frees any cycle in it now.
    del recovered
    gc.unfreeze()
    gc.collect()
    return data


class SnapshotWorker:
    """Builds a node's snapshots in one worker process; see the module
    docstring. One build at a time: the caller waits for one before it
    asks for the next. :meth:`close` stops the worker."""

    def __init__(self, build: Build = build_snapshot, *, start_method: str = "spawn") -> None:
        self._build = build
        self._context = multiprocessing.get_context(start_method)
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="datn-snapshot")
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        """Guards ``_pool`` and ``_closed``: the reader thread starts the
        worker, and :meth:`close` may stop it from another thread."""
        self._closed = False
        self._demoted: ProcessPoolExecutor | None = None
        """The pool whose worker was demoted to the idle class."""

    def start(self) -> None:
        """Start the worker process in the background, if it is not started
        (a build starts it otherwise). A failure here is the next build's."""
        with contextlib.suppress(RuntimeError):
            self._reader.submit(self._start)

    def _start(self) -> None:
        with contextlib.suppress(RuntimeError, BrokenProcessPool):
            self._call(self._worker(), _begin)

    async def build(self, store: Store, snapshot: bytes | None, after: int, position: int) -> bytes:
        """The encoded snapshot of the state after ``position``, built from
        ``snapshot`` (the state after ``after``; None with ``after`` 0) and
        the store's journal entries after ``after``, up to ``position``."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._reader, self._send_and_build, store, snapshot, after, position
        )

    def _send_and_build(
        self, store: Store, snapshot: bytes | None, after: int, position: int
    ) -> bytes:
        """On the reader thread: send the worker the snapshot and the
        entries, piece by piece, wait for it to build the new snapshot, and
        take that back piece by piece.

        Each piece is sent once the worker has the previous one: then only
        one of the node's own threads at a time (this one reading, the
        queue's pickling, the executor's reading the answer) competes with
        the loop for the interpreter's lock, and each for a millisecond or
        so before it waits again, which hands the lock back at once."""
        pool = self._worker()
        source = store.journal_source()
        if source is not None:
            size = self._call(pool, _read_and_build, source, self._build, after, position)
            return self._take_built(pool, size)
        self._call(pool, _begin)
        if snapshot is not None:
            for start in range(0, len(snapshot), SNAPSHOT_SLICE_BYTES):
                piece = snapshot[start : start + SNAPSHOT_SLICE_BYTES]
                self._call(pool, _add_snapshot, piece)
        while after < position:
            page = read_page(store, after, position)
            self._call(pool, _add_entries, page)
            after += len(page)
        size = self._call(pool, _finish, self._build, snapshot is not None)
        return self._take_built(pool, size)

    def _take_built(self, pool: ProcessPoolExecutor, size: int) -> bytes:
        """The snapshot the worker built, ``size`` bytes, a slice at a time."""
        pieces = [
            self._call(pool, _built_slice, start) for start in range(0, size, SNAPSHOT_SLICE_BYTES)
        ]
        self._call(pool, _begin)  # the worker lets its copy go
        return b"".join(pieces)

    def _call(self, pool: ProcessPoolExecutor, call: Callable[..., T], *args: object) -> T:
        """``call(*args)`` in the worker of ``pool``, waited for."""
        try:
            with self._lock:
                # Under the lock, so that close() finds a worker this starts.
                if self._closed or pool is not self._pool:
                    raise RuntimeError("the snapshot worker was stopped during a build")
                future = pool.submit(call, *args)
                if pool is not self._demoted:
                    # The pool started its process in submit(): lowered now,
                    # before it imports anything, so that even the start of
                    # a new worker (a second or so of imports) takes only
                    # time the node leaves. (Python exposes no public way to
                    # reach a pool's processes before 3.14.)
                    self._demoted = pool
                    for process in list((pool._processes or {}).values()):
                        if process.pid is not None:
                            _demote(process.pid)
            return future.result()
        except BrokenProcessPool:
            self._forget(pool)
            raise

    def _worker(self) -> ProcessPoolExecutor:
        """The worker's pool; a new one if there is none (the process
        starts with the first call)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the snapshot worker is stopped")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=self._context, initializer=_worker_started
                )
            return self._pool

    def _forget(self, pool: ProcessPoolExecutor) -> None:
        """A broken pool is shut down; the next build starts a new worker."""
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self, *, wait: bool = True) -> None:
        """Stop the worker now (a build in flight is abandoned and fails);
        with ``wait``, also until the reader thread and the worker are gone."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            # What ProcessPoolExecutor.terminate_workers() does from Python
            # 3.14 on: shutdown() alone would let the worker finish its build.
            for process in list((pool._processes or {}).values()):
                process.terminate()
            pool.shutdown(wait=wait, cancel_futures=True)
        self._reader.shutdown(wait=wait, cancel_futures=True)


def read_page(store: Store, after: int, position: int) -> list[bytes]:
    """Up to :data:`ENTRIES_PER_READ` journal entries after ``after``, none
    past ``position``."""
    page = store.entries(after, min(ENTRIES_PER_READ, position - after))
    if not page:
        raise StoreError("corrupt", f"the journal ends at entry {after}, but runs to {position}")
    return [data for _, data in page]


# ------------------------------------------------------------ in the worker


@dataclass
class _Received:
    """What the worker has received for the build in progress."""

    snapshot: list[bytes] = field(default_factory=list)
    entries: list[bytes] = field(default_factory=list)
    built: bytes = b""


_received = _Received()


def _demote(pid: int) -> None:
    """Give process ``pid`` the lowest priority there is: the lowest nice
    value and, on Linux, the idle class (a niced process still runs out its
    time slice, a few milliseconds, when the node wakes on the same core,
    and the node's answers wait that long; an idle-class one gives way at
    once)."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, WORKER_NICENESS)
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))


def _worker_started() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _demote(0)  # the node did already, unless it could not
    parent = multiprocessing.parent_process()
    if parent is not None:
        watch = threading.Thread(
            target=_end_with, args=(parent.sentinel,), name="datn-node-watch", daemon=True
        )
        watch.start()


def _end_with(sentinel: int) -> None:
    """End the worker once the node process has ended, however it ended: a
    node killed outright cannot stop its worker, which would otherwise wait
    for its next build forever. The sentinel is readable from then on."""
    multiprocessing.connection.wait([sentinel])
    os._exit(0)


def _begin() -> None:
    _received.snapshot, _received.entries, _received.built = [], [], b""


def _add_snapshot(piece: bytes) -> None:
    _received.snapshot.append(piece)


def _add_entries(page: list[bytes]) -> None:
    _received.entries.extend(page)


def _finish(build: Build, has_snapshot: bool) -> int:
    """Build; the size of the new snapshot, kept for :func:`_built_slice`."""
    snapshot = b"".join(_received.snapshot) if has_snapshot else None
    entries = _received.entries
    _begin()
    _received.built = build(snapshot, entries)
    return len(_received.built)


def _read_and_build(source: JournalSource, build: Build, after: int, position: int) -> int:
    """Read the snapshot after ``after`` and the entries after it up to
    ``position`` from ``source``, and build; as :func:`_finish`."""
    _begin()
    store = source.open()
    try:
        stored = store.load()
    finally:
        store.close()
    # The store's latest snapshot is the runtime's (``after``), unless a save
    # the runtime saw fail was kept after all: either serves.
    start = stored.snapshot_position
    if start < after or start > position or stored.position < position:
        raise StoreError(
            "misuse",
            f"the store holds a snapshot at {start} and entries to {stored.position}; "
            f"the build needs a snapshot from {after} on and entries to {position}",
        )
    snapshot, entries = stored.snapshot, stored.entries[: position - start]
    del stored
    _received.built = build(snapshot, entries)
    return len(_received.built)


def _built_slice(start: int) -> bytes:
    return _received.built[start : start + SNAPSHOT_SLICE_BYTES]
