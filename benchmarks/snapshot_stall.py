"""Snapshot stall: how long a snapshot of a large node keeps intake waiting.

A node with ``--open`` (100,000) resting orders, in a SQLite store (WAL,
``synchronous=FULL``) in a temporary folder, whose latest snapshot is
``--tail`` (50,000, the default ``snapshot_every``) journal entries old: the
entries after it cancel a resting order and place another, so the book keeps
its size. The setup builds it once, through the core and the store's own
encodings; each run starts a :class:`~datn.runtime.NodeRuntime` on a fresh
copy of the file, as a restart would.

Each run feeds the runtime a steady flow of orders (``--rate`` per second,
IOCs that do not cross: one journal entry each, the book unchanged) for
``--baseline`` seconds with no snapshot, then makes a snapshot due at the next
commit, goes on until it is saved, and for ``--baseline`` seconds more.
Meanwhile a probe on the event loop sleeps 1 ms at a time and notes how late
it wakes: its lateness is how long the loop could not take an input (an
intake stall). Printed, for the snapshot's duration and for the baselines
before and after it: the longest stall and the 99th percentile, the longest
pass of the node process's cyclic garbage collector, and the
acknowledgement latency of the orders. On a shared machine a process also
waits for a CPU now and then; so the longest stall is printed again counting
only the stalls during which the node process was on a CPU for at least
half the time (its own threads held the loop back, not the machine). The
baselines last about as long as a background snapshot, so that each window
holds the collector's occasional full passes, whose length grows with what
the node keeps in memory as it runs.

Two ways, alternated, ``--runs`` (3) times each, medians printed:

* on the loop: the runtime as it was, which read the live core's snapshot
  on the event loop (the state must not move while it is read) and encoded
  it on the writer thread. (It also held commits back until the snapshot
  was saved; here only the reading and the encoding are as they were, so its
  acknowledgement latency is, if anything, understated);
* in a worker: the runtime now, whose worker process rebuilds the state
  from the previous snapshot and the journal after it, and encodes it
  (:mod:`datn.runtime.snapshots`); the loop only schedules.

Last, the stall the store itself causes while it saves a snapshot of that
size on its thread, with nothing else running: part of every way's stall,
as the store's driver copies the bytes it binds while holding the lock.

Nothing is asserted; the figures and conditions are printed.

Usage: python benchmarks/snapshot_stall.py [--open 100000] [--tail 50000]
       [--rate 2000] [--baseline 10] [--runs 3] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import datn.protocol.node
from datn.domain import USD, ProductKind, ProductSpec, Side, TimeInForce
from datn.protocol.clock import Now
from datn.protocol.effects import (
    CancelInput,
    DepositInput,
    Effect,
    Genesis,
    Input,
    Journal,
    PlaceInput,
    Reply,
    Rested,
)
from datn.protocol.messages import NodeId
from datn.protocol.node import NodeConfig, NodeCore
from datn.protocol.venue import OrderRequest
from datn.risk import RiskConfig
from datn.runtime import NodeRuntime
from datn.store import Commit
from datn.store.sqlite import SQLiteStore
from datn.wire import encode_entry, encode_snapshot

XYZ = ProductSpec("XYZ", ProductKind.SHARE, USD.code)
MID = 50_000
TRADERS = 1_000
WALL_EPOCH_MS = 1_795_000_000_000
GENESIS = Genesis(
    NodeId("a"),
    NodeConfig(RiskConfig(listed_products=frozenset({XYZ.product_id}))),
    (XYZ,),
    (),
    b"snapshot stall",
    ((XYZ.product_id, MID),),
)
PROBE_S = 0.001
"""The probe's sleep: it wakes this long after it slept, or later by a stall."""
COMMIT_BATCH = 10_000


class SnapshotOnLoop(NodeRuntime):
    """The runtime as it was: the live core's snapshot read on the loop, and
    encoded on the writer thread."""

    async def _build_snapshot(self, position: int) -> bytes:
        value = self.core.snapshot()
        return await self._loop.run_in_executor(self._writer, encode_snapshot, value)


# ------------------------------------------------------------------ setup


class Builder:
    """The node's journal, built through its core on a virtual clock."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.mono = 1_000
        self.entries: list[bytes] = []
        self.resting: list[tuple[str, int]] = []
        self.core, effects = NodeCore.start(GENESIS, self.now())
        self.keep(effects, "")
        for t in range(TRADERS):
            self.apply(DepositInput(f"t{t}", USD.code, 10**13))
            self.apply(DepositInput(f"t{t}", XYZ.product_id, 10**7))

    def now(self) -> Now:
        return Now(self.mono, WALL_EPOCH_MS + self.mono)

    def apply(self, event: Input) -> None:
        self.mono += 1
        trader = event.request.trader_id if isinstance(event, PlaceInput) else ""
        self.keep(self.core.handle(event, self.now()), trader)

    def keep(self, effects: list[Effect], trader: str) -> None:
        for effect in effects:
            if isinstance(effect, Journal):
                self.entries.append(encode_entry(effect.entry))
            elif isinstance(effect, Reply) and isinstance(effect.event, Rested):
                self.resting.append((trader, effect.event.order_id))

    def rest(self) -> None:
        """One more resting order, far from the market."""
        rng = self.rng
        side = rng.choice((Side.BUY, Side.SELL))
        offset = rng.randint(10, 1_500)
        price = MID - offset if side is Side.BUY else MID + offset
        trader = f"t{rng.randrange(TRADERS)}"
        lots = rng.randint(1, 20)
        request = OrderRequest(
            trader, f"r{self.mono}", XYZ.product_id, side, lots, price, TimeInForce.GTC
        )
        self.apply(PlaceInput(request))

    def churn(self) -> None:
        """Cancel a resting order and rest another: the book keeps its size."""
        index = self.rng.randrange(len(self.resting))
        self.resting[index], self.resting[-1] = self.resting[-1], self.resting[index]
        trader, order_id = self.resting.pop()
        self.apply(CancelInput(trader, order_id))
        self.rest()


def build_store(path: Path, args: argparse.Namespace) -> tuple[int, int, int]:
    """The store the runs copy: (snapshot position, its bytes, journal length)."""
    builder = Builder(args.seed)
    while len(builder.core.resting.orders) < args.open:
        builder.rest()
    with SQLiteStore(path) as store:
        commit_all(store, builder.entries)
        snapshot_position = len(builder.entries)
        snapshot = encode_snapshot(builder.core.snapshot())
        store.save_snapshot(snapshot_position, snapshot)
        builder.entries = []
        while len(builder.entries) < args.tail:
            builder.churn()
        commit_all(store, builder.entries)
        return snapshot_position, len(snapshot), store.position()


def commit_all(store: SQLiteStore, entries: list[bytes]) -> None:
    for start in range(0, len(entries), COMMIT_BATCH):
        store.commit(Commit(entries=entries[start : start + COMMIT_BATCH]))


# ------------------------------------------------------------------ a run


@dataclass
class Timeline:
    """The probe's wake-ups and the orders' acknowledgements, timestamped."""

    stalls: list[tuple[float, float, bool]] = field(default_factory=list)
    """(when the probe woke, how late in ms, whether the node process was
    on a CPU for at least half of the time: if not, the machine was busy
    elsewhere, and the stall is not the node's own)."""
    acks: list[tuple[float, float]] = field(default_factory=list)
    """(when the order was sent, its acknowledgement latency in ms)."""
    collections: list[tuple[float, float]] = field(default_factory=list)
    """(when a pass of the cyclic collector ended, how long it took in ms)."""
    _started: float = 0.0

    def collector(self, phase: str, _info: dict[str, int]) -> None:
        """A ``gc.callbacks`` hook."""
        now = time.perf_counter()
        if phase == "start":
            self._started = now
        else:
            self.collections.append((now, (now - self._started) * 1_000))


@dataclass
class Figures:
    longest_stall_ms: float
    longest_own_stall_ms: float
    p99_stall_ms: float
    longest_collection_ms: float
    ack_p50_ms: float
    ack_max_ms: float
    orders: int


def figures(timeline: Timeline, start: float, end: float) -> Figures:
    window = [(late, own) for at, late, own in timeline.stalls if start <= at <= end + PROBE_S]
    stalls = [late for late, _ in window] or [0.0]
    own = [late for late, busy in window if busy] or [0.0]
    acks = [latency for at, latency in timeline.acks if start <= at <= end] or [0.0]
    passes = [took for at, took in timeline.collections if start <= at <= end] or [0.0]
    return Figures(
        max(stalls),
        max(own),
        percentile(stalls, 0.99),
        max(passes),
        statistics.median(acks),
        max(acks),
        len(acks),
    )


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def probe(timeline: Timeline, stop: asyncio.Event) -> None:
    while not stop.is_set():
        slept, cpu = time.perf_counter(), time.process_time()
        await asyncio.sleep(PROBE_S)
        woke, used = time.perf_counter(), time.process_time() - cpu
        late_ms = max(0.0, (woke - slept - PROBE_S) * 1_000)
        timeline.stalls.append((woke, late_ms, used >= (woke - slept) / 2))


async def feed(runtime: NodeRuntime, rate: int, timeline: Timeline, stop: asyncio.Event) -> None:
    """Orders at ``rate`` per second, each answered on its own task."""
    rng = random.Random(1)
    pending: set[asyncio.Task[None]] = set()

    async def one(n: int) -> None:
        side = rng.choice((Side.BUY, Side.SELL))
        price = MID - 1_900 if side is Side.BUY else MID + 1_900
        request = OrderRequest(
            f"t{n % TRADERS}", f"f{n}", XYZ.product_id, side, 1, price, TimeInForce.IOC
        )
        sent = time.perf_counter()
        await runtime.submit(PlaceInput(request))
        timeline.acks.append((sent, (time.perf_counter() - sent) * 1_000))

    start = time.perf_counter()
    n = 0
    while not stop.is_set():
        due = int((time.perf_counter() - start) * rate)
        while n < due:
            n += 1
            task = asyncio.create_task(one(n))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.sleep(PROBE_S)
    await asyncio.gather(*pending)


@dataclass
class Run:
    before: Figures
    """The baseline before the snapshot."""
    during: Figures
    after: Figures
    """The baseline after it, on a heap grown as long as the node ran."""
    took_ms: float


async def one_run(kind: type[NodeRuntime], path: Path, args: argparse.Namespace) -> Run:
    runtime = await kind.open(SQLiteStore(path), snapshot_every=10**12)
    gc.collect()
    timeline, stop = Timeline(), asyncio.Event()
    gc.callbacks.append(timeline.collector)
    tasks = [
        asyncio.create_task(probe(timeline, stop)),
        asyncio.create_task(feed(runtime, args.rate, timeline, stop)),
    ]
    before = time.perf_counter()
    await asyncio.sleep(args.baseline)
    # Due at the next commit: the window starts now, so that it holds the
    # snapshot's first step, whenever the loop runs it.
    started = time.perf_counter()
    runtime.snapshot_every = runtime.stats.position - runtime.stats.snapshot_position
    while not runtime.snapshot_in_flight:
        await asyncio.sleep(PROBE_S)
    await runtime.wait_for_snapshot()
    ended = time.perf_counter()
    await asyncio.sleep(args.baseline)
    after = time.perf_counter()
    stop.set()
    await asyncio.gather(*tasks)
    gc.callbacks.remove(timeline.collector)
    assert runtime.stats.snapshots == 1, "the snapshot must be saved"
    await runtime.close()
    return Run(
        figures(timeline, before, started),
        figures(timeline, started, ended),
        figures(timeline, ended, after),
        (ended - started) * 1_000,
    )


async def save_alone(path: Path, runs: int) -> list[float]:
    """The longest loop stall while the store saves a snapshot of this size
    on another thread, with nothing else running: the part of a background
    snapshot's stall that is the store's writing it (the driver copies the
    bytes it binds while holding the interpreter's lock)."""
    loop = asyncio.get_running_loop()
    store = SQLiteStore(path)
    stored = await loop.run_in_executor(None, store.load)
    assert stored.snapshot is not None
    timeline, stop = Timeline(), asyncio.Event()
    probing = asyncio.create_task(probe(timeline, stop))
    stalls: list[float] = []
    for _ in range(runs):
        await asyncio.sleep(0.05)
        start = time.perf_counter()
        await loop.run_in_executor(
            None, store.save_snapshot, stored.snapshot_position, stored.snapshot
        )
        stalls.append(figures(timeline, start, time.perf_counter()).longest_stall_ms)
    stop.set()
    await probing
    store.close()
    return stalls


# ------------------------------------------------------------------ main


def report(label: str, runs: list[Run]) -> None:
    def median(values: list[float]) -> float:
        return statistics.median(values)

    def each(values: list[float]) -> str:
        return ", ".join(f"{value:,.1f}" for value in values)

    during = [run.during for run in runs]
    print(f"\n{label} ({len(runs)} runs, medians; each run's figure in brackets)")
    print(
        f"  snapshot, from its start to its save: {median([run.took_ms for run in runs]):,.0f} ms "
        f"({during[0].orders:,} orders sent meanwhile in the first run)"
    )
    longest = [f.longest_stall_ms for f in during]
    print(
        f"  longest intake stall during it: {median(longest):,.1f} ms [{each(longest)}];"
        f" p99 {median([f.p99_stall_ms for f in during]):,.1f} ms"
    )
    own = [f.longest_own_stall_ms for f in during]
    print(
        "  of which the node process's own (it was on a CPU for half the stall or more): "
        f"{median(own):,.1f} ms [{each(own)}]"
    )
    passes = [f.longest_collection_ms for f in during]
    print(
        "  longest pass of the node process's garbage collector during it: "
        f"{median(passes):,.1f} ms [{each(passes)}]"
    )
    print(
        f"  acknowledgement latency during it: p50 {median([f.ack_p50_ms for f in during]):,.1f}"
        f" ms, max {median([f.ack_max_ms for f in during]):,.1f} ms"
    )
    for name, window in (("before", [r.before for r in runs]), ("after", [r.after for r in runs])):
        print(
            f"  {name} it, no snapshot: longest stall "
            f"{median([f.longest_stall_ms for f in window]):,.1f} ms (own "
            f"{median([f.longest_own_stall_ms for f in window]):,.1f} ms), p99 "
            f"{median([f.p99_stall_ms for f in window]):,.1f} ms; longest collector pass "
            f"{median([f.longest_collection_ms for f in window]):,.1f} ms; acknowledgement p50 "
            f"{median([f.ack_p50_ms for f in window]):,.1f} ms, max "
            f"{median([f.ack_max_ms for f in window]):,.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open", type=int, default=100_000, help="resting orders")
    parser.add_argument("--tail", type=int, default=50_000, help="entries after the snapshot")
    parser.add_argument("--rate", type=int, default=2_000, help="orders per second")
    parser.add_argument("--baseline", type=float, default=10.0, help="seconds without snapshot")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    compiled = (datn.protocol.node.__file__ or "").endswith(".so")
    print(
        f"datn {metadata.version('datn')}, {'compiled core' if compiled else 'pure Python'}; "
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores"
    )
    print(f"load average at the start: {load_average()}")
    with tempfile.TemporaryDirectory() as folder:
        original = Path(folder) / "original.sqlite3"
        started = time.perf_counter()
        snapshot_position, snapshot_bytes, position = build_store(original, args)
        print(
            f"node: {args.open:,} resting orders, {TRADERS:,} traders; store: SQLite (WAL, "
            f"synchronous=FULL), {position:,} journal entries, the latest snapshot "
            f"({snapshot_bytes / 2**20:,.1f} MiB) at {snapshot_position:,}, {args.tail:,} "
            f"entries (cancel and replace) after it; built in "
            f"{time.perf_counter() - started:,.0f} s"
        )
        print(
            f"load: {args.rate:,} non-crossing IOC orders/s (one journal entry each); probe: "
            f"a {PROBE_S * 1_000:.0f} ms sleep on the loop, its lateness is the stall; "
            f"baselines of {args.baseline:.0f} s before the snapshot is made due and after it"
        )
        results: dict[str, list[Run]] = {"loop": [], "worker": []}
        for run in range(args.runs):
            for label, kind in (("loop", SnapshotOnLoop), ("worker", NodeRuntime)):
                copy = Path(folder) / f"{label}{run}.sqlite3"
                shutil.copyfile(original, copy)
                results[label].append(asyncio.run(one_run(kind, copy, args)))
                copy.unlink()
        report("snapshot on the loop (as it was)", results["loop"])
        report("snapshot in a worker process (now)", results["worker"])
        saves = asyncio.run(save_alone(original, args.runs))
        print(
            f"\nthe store saving a snapshot of this size alone (on a thread, no intake, no "
            f"worker): longest stall {statistics.median(saves):,.1f} ms "
            f"[{', '.join(f'{stall:,.1f}' for stall in saves)}]"
        )
    print(f"\nload average at the end: {load_average()}")


def load_average() -> str:
    return ", ".join(f"{load:.1f}" for load in os.getloadavg()) + " (1, 5, 15 min)"


if __name__ == "__main__":
    main()
