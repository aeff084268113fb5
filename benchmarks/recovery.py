"""Recovery: replay speed, snapshots, and the core's memory after a long run.

A node's store keeps a snapshot and the journal after it; a restart decodes
the snapshot, restores the node from it and replays the tail. This script
measures that path on the node core itself, through the same byte encodings
a store uses (``datn.wire.journal``, ``datn.wire.snapshot``):

* a node ``a`` with a peer ``b`` (both real cores, messages delivered at
  once, every bond posted over the built-in rail) is fed a deterministic
  trader flow at a fixed virtual rate: first ``--book`` (50,000) resting
  orders (buys below the market, sells above it, spread over many price
  levels), then a churn that keeps the book at about that size: each
  action either crosses the book with an IOC and tops it up (local trades),
  takes an order ``b`` just rested inside the spread (a trade between the
  nodes, settled every cycle), cancels a resting order and replaces it, or
  places an IOC that does not cross;
* after 100,000 orders and after 1,000,000 orders (``--orders``), with the
  same live book, both past the retention windows, it measures the core's
  resident memory: the bytes of every object reachable from the core (a walk
  of ``gc.get_referents``, classes and modules excluded), and the process's
  resident set for reference; at the first point also the snapshot's size,
  the time to take and to restore it, and a replay of the whole journal
  from the genesis;
* then the book grows to ``--open`` (100,000) resting orders, and it
  measures the snapshot again; then, twice, it snapshots the node, journals
  the next ``--tail`` entries and times the whole recovery a store's restart makes
  (``datn.wire.recover_node``: decode the snapshot and every entry,
  restore, replay, with the cyclic collector paused as it does), whose
  state hash must equal the live node's, and the replay alone (entries per
  second). The first tail is a node in a network: for each of ``a``'s
  traders' actions, ``--network`` (10) actions elsewhere reach it as adverts
  and prints; the second has ``a``'s traders' actions only (40 % of its
  entries are orders), the heaviest tail a node's journal can have.

Figures are medians of ``--runs`` repetitions where a step is repeated (the
restore path); the flow itself runs once. The core keeps answers to finished
orders for ``client_order_memory_ms`` and refusals for
``decision_memory_ms`` (the retention windows), so the memory of a node
that has run longer than them is bounded by its live state and its order
rate, not its history; this run uses a 60 s client-order memory at
200 trader actions per second, as printed. Nothing here asserts a figure.

Usage: python benchmarks/recovery.py [--book 50000] [--open 100000]
       [--orders 100000 1000000] [--tail 10000] [--network 10] [--runs 5]
       [--seed 7]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import replace
from importlib import metadata
from types import FunctionType, ModuleType

import msgspec

import datn.book.book
import datn.ledger.ledger
import datn.protocol.node
from datn.domain import USD, ProductKind, ProductSpec, Side, TimeInForce
from datn.domain.bulk import collector_paused
from datn.protocol.clock import Now
from datn.protocol.effects import Effect, Genesis, Journal, JournalEntry, Pay, Reply, Send
from datn.protocol.messages import NodeId
from datn.protocol.node import NodeConfig, NodeCore
from datn.protocol.venue import OrderRequest
from datn.risk import RiskConfig
from datn.wire import decode_entry, decode_snapshot, encode_entry, encode_snapshot, recover_node

XYZ = ProductSpec("XYZ", ProductKind.SHARE, USD.code)
A, B = NodeId("a"), NodeId("b")
MID = 50_000
WALL_EPOCH_MS = 1_795_000_000_000
ORDER_INTERVAL_MS = 5
"""Virtual time between trader actions: 200 orders per second."""
TRADERS = 1_000


class Flow:
    """Two cores, a wire that delivers at once, and a deterministic flow."""

    def __init__(self, seed: int, config: NodeConfig) -> None:
        self.rng = random.Random(seed)
        self.mono = 1_000
        self.queue: deque[tuple[NodeId, Send]] = deque()
        self.nodes: dict[NodeId, NodeCore] = {}
        self.journal: list[JournalEntry] = []
        self.tail: list[JournalEntry] | None = None
        self.orders = 0
        self.b_orders = 0
        self.resting: list[int] = []
        self.resting_set: set[int] = set()
        for node_id in (A, B):
            genesis = Genesis(
                node_id, config, (XYZ,), (A, B), node_id.encode(), ((XYZ.product_id, MID),)
            )
            core, effects = NodeCore.start(genesis, self.now())
            self.nodes[node_id] = core
            self.apply(node_id, effects)
        for node_id, core in self.nodes.items():
            for t in range(TRADERS):
                trader = f"t{t}"
                self.apply(node_id, core.deposit(trader, USD.code, 10**13, self.now()))
                self.apply(node_id, core.deposit(trader, XYZ.product_id, 10**7, self.now()))
            self.apply(node_id, core.fund(USD.code, 10**14, self.now()))
            peer = B if node_id == A else A
            self.apply(node_id, core.post_bond(peer, 10**13, self.now()))
        self.deliver()

    def now(self) -> Now:
        return Now(self.mono, WALL_EPOCH_MS + self.mono)

    def apply(self, node_id: NodeId, effects: list[Effect]) -> None:
        for effect in effects:
            kind = type(effect)
            if kind is Send:
                self.queue.append((node_id, effect))  # type: ignore[arg-type]
            elif kind is Journal and node_id == A:
                entry = effect.entry  # type: ignore[union-attr]
                if self.tail is not None:
                    self.tail.append(entry)
                else:
                    self.journal.append(entry)
            elif kind is Pay and effect.purpose == "bond":  # type: ignore[union-attr]
                pay: Pay = effect  # type: ignore[assignment]
                payee = self.nodes[pay.peer]
                self.apply(
                    pay.peer,
                    payee.bond_received(node_id, pay.ref, pay.asset, pay.amount, self.now()),
                )
            elif kind is Reply and node_id == A:
                self.noted(effect)  # type: ignore[arg-type]

    def noted(self, reply: Reply) -> None:
        event = reply.event
        name = type(event).__name__
        if name == "Rested":
            order_id = event.order_id  # type: ignore[union-attr]
            self.resting.append(order_id)
            self.resting_set.add(order_id)
        elif name == "Done":
            self.resting_set.discard(event.order_id)  # type: ignore[union-attr]

    def deliver(self) -> None:
        while self.queue:
            sender, send = self.queue.popleft()
            node = self.nodes[send.peer]
            self.apply(send.peer, node.receive(sender, send.hlc, send.message, self.now()))

    def place(
        self,
        node_id: NodeId,
        side: Side,
        lots: int,
        *,
        far: bool = True,
        cross: bool = False,
        inside: bool = False,
        tif: TimeInForce = TimeInForce.GTC,
    ) -> None:
        self.orders += node_id == A
        if node_id == B:
            self.b_orders += 1
        rng = self.rng
        if inside:
            price = MID + 5 if side is Side.BUY else MID - 5
        elif cross:
            price = MID + 2_000 if side is Side.BUY else MID - 2_000
        elif far:
            offset = rng.randint(10, 1_500)
            price = MID - offset if side is Side.BUY else MID + offset
        else:
            offset = rng.randint(1_600, 1_900)
            price = MID - offset if side is Side.BUY else MID + offset
        trader = f"t{rng.randrange(TRADERS if node_id == A else 10)}"
        request = OrderRequest(
            trader,
            f"{node_id}{self.mono}-{rng.getrandbits(32)}",
            XYZ.product_id,
            side,
            lots,
            price,
            tif,
        )
        self.apply(node_id, self.nodes[node_id].place(request, self.now()))
        self.deliver()

    def step(self) -> None:
        """One trader action at ``a``, then time moves on."""
        self.mono += ORDER_INTERVAL_MS
        core = self.nodes[A]
        for node_id, node in self.nodes.items():
            self.apply(node_id, node.tick(self.now()))
        self.deliver()
        rng = self.rng
        roll = rng.random()
        side = rng.choice((Side.BUY, Side.SELL))
        if roll < 0.40 and self.resting:
            # Cancel a resting order and place another: the book keeps its size.
            order_id = self._pick_resting()
            trader = core.resting.orders[order_id].order.trader_id
            self.apply(A, core.cancel(trader, order_id, self.now()))
            self.place(A, side, rng.randint(1, 20))
        elif roll < 0.70:
            self.place(A, side, rng.randint(1, 20), cross=True, tif=TimeInForce.IOC)
            self.place(A, side.opposite, rng.randint(1, 20))  # and top the book up
        elif roll < 0.80:
            # b shows a better price than anything in a's book, and a takes it.
            lots = rng.randint(1, 3)
            self.place(B, side.opposite, lots, inside=True)
            self.place(A, side, lots, inside=True, tif=TimeInForce.IOC)
        else:
            self.place(A, side, rng.randint(1, 20), tif=TimeInForce.IOC)

    def network_step(self) -> None:
        """The rest of the network at work, as ``a`` sees it: ``b`` rests,
        cancels or crosses its own orders (``a`` receives its adverts and the
        prints of its trades)."""
        self.mono += 1
        core, rng = self.nodes[B], self.rng
        resting = list(core.resting.orders) if rng.random() < 0.5 else []
        side = rng.choice((Side.BUY, Side.SELL))
        if len(resting) > 500:
            order_id = resting[rng.randrange(len(resting))]
            trader = core.resting.orders[order_id].trader_id
            self.apply(B, core.cancel(trader, order_id, self.now()))
            self.deliver()
        elif rng.random() < 0.3 and resting:
            self.place(B, side, rng.randint(1, 5), cross=True, tif=TimeInForce.IOC)
        else:
            self.place(B, side, rng.randint(1, 20))

    def _pick_resting(self) -> int:
        resting, live = self.resting, self.resting_set
        while True:
            index = self.rng.randrange(len(resting))
            order_id = resting[index]
            resting[index] = resting[-1]
            resting.pop()
            if order_id in live:
                return order_id


def deep_size(root: object) -> int:
    """Bytes of every object reachable from ``root``, each counted once;
    classes, modules and functions (shared code, not state) excluded."""
    seen: set[int] = set()
    stack = [root]
    total = 0
    skip = (type, ModuleType, FunctionType)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def median_time(action: Callable[[], object], runs: int) -> tuple[float, object]:
    """The median time of ``runs`` calls, each from a collected heap (the
    previous call's result freed before, not during, the next)."""
    times: list[float] = []
    result: object = None
    for _ in range(runs):
        result = None
        gc.collect()
        start = time.perf_counter()
        value = action()
        times.append(time.perf_counter() - start)
        result = value
    return statistics.median(times), result


def restart_time(snapshot: bytes, entries: list[bytes], runs: int) -> tuple[float, str]:
    """The median time a restarted process takes to recover from these bytes,
    and the state hash it reaches: each run is a new interpreter (as a real
    restart is) that reads the bytes from a file, untimed, then times
    ``recover_node`` on them."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "store.msgpack")
        with open(path, "wb") as store:
            store.write(msgspec.msgpack.encode([snapshot, entries]))
        times: list[float] = []
        hashes: set[str] = set()
        for _ in range(runs):
            out = subprocess.run(
                [sys.executable, __file__, "--restart-from", path],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()
            times.append(float(out[0]))
            hashes.add(out[1])
    assert len(hashes) == 1, "every restart must reach the same state"
    return statistics.median(times), hashes.pop()


def restart_from(path: str) -> None:
    """The child of :func:`restart_time`: recover once, print seconds and hash."""
    with open(path, "rb") as store:
        snapshot, entries = msgspec.msgpack.decode(store.read(), type=tuple[bytes, list[bytes]])
    start = time.perf_counter()
    recovered = recover_node(snapshot, entries)
    elapsed = time.perf_counter() - start
    print(f"{elapsed:.6f} {recovered.state_hash()}")


def live_state(core: NodeCore) -> str:
    ledger = core.context.ledger
    return (
        f"{len(core.resting.orders):,} resting orders, {len(ledger.open_holds()):,} open holds, "
        f"{len(ledger.accounts()):,} accounts, {len(core.traders.answers):,} remembered answers, "
        f"{len(core.holder.decisions):,} remembered decisions"
    )


def measure_tail(flow: Flow, label: str, network: int, args: argparse.Namespace) -> None:
    """Snapshot ``a`` now, journal the next ``--tail`` entries of a flow
    with ``network`` of ``b``'s actions for each of ``a``'s, and time the
    recovery a store's restart makes: decode the snapshot and every entry,
    restore, replay. The state it gives must equal the live node's."""
    core = flow.nodes[A]
    snapshot = encode_snapshot(core.snapshot())
    flow.tail = []
    while len(flow.tail) < args.tail:
        flow.step()
        for _ in range(network):
            flow.network_step()
    tail = flow.tail  # a step journals several entries: at least --tail of them
    flow.journal.extend(tail)
    flow.tail = None
    kinds: Counter[str] = Counter()
    for entry in tail:
        kind = type(entry.input).__name__.removesuffix("Input")
        if kind == "Receive":
            kind = type(entry.input.message).__name__  # type: ignore[union-attr]
        kinds[kind] += 1
    encoded = [encode_entry(entry) for entry in tail]

    def replay_only() -> float:
        entries = [decode_entry(data) for data in encoded]
        recovered = NodeCore.recover([], decode_snapshot(snapshot))
        with collector_paused():
            start = time.perf_counter()
            for entry in entries:
                recovered._core._apply(entry.input, entry.now)  # type: ignore[union-attr]
            return time.perf_counter() - start

    total_s, state_hash = restart_time(snapshot, encoded, args.runs)
    replay_s = statistics.median(replay_only() for _ in range(args.runs))
    assert state_hash == core.state_hash(), "recovery must give the live state"
    mix = ", ".join(
        f"{kind} {100 * count / len(tail):.0f} %" for kind, count in kinds.most_common(6)
    )
    print(
        f"  tail with {label} flow ({mix}): replay of {len(tail):,} entries "
        f"{replay_s * 1000:,.0f} ms ({len(tail) / replay_s:,.0f} entries/s); restore from the "
        f"snapshot plus this tail in a new process, decoding included: "
        f"{total_s * 1000:,.0f} ms (state hash equals the live node's)"
    )


def snapshot_figures(core: NodeCore, runs: int) -> None:
    take_s, snapshot = median_time(lambda: encode_snapshot(core.snapshot()), runs)
    assert isinstance(snapshot, bytes)
    size_mib = len(snapshot) / 2**20
    print(f"  snapshot: {size_mib:,.1f} MiB, taken and encoded in {take_s * 1000:,.0f} ms")
    restore_s, state_hash = restart_time(snapshot, [], runs)
    assert state_hash == core.state_hash(), "the snapshot must restore the live state"
    print(f"  decode and restore the snapshot, in a new process: {restore_s * 1000:,.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--book", type=int, default=50_000, help="live book of the long run")
    parser.add_argument("--open", type=int, default=100_000, help="open orders at recovery")
    parser.add_argument("--orders", type=int, nargs=2, default=[100_000, 1_000_000])
    parser.add_argument("--tail", type=int, default=10_000)
    parser.add_argument(
        "--network", type=int, default=10, help="b's actions per a's in the network tail"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--restart-from", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.restart_from:
        restart_from(args.restart_from)
        return
    compiled = [
        m.__name__
        for m in (datn.book.book, datn.ledger.ledger, datn.protocol.node)
        if (m.__file__ or "").endswith(".so")
    ]
    build = "compiled: " + ", ".join(compiled) if compiled else "pure Python"
    print(f"datn {metadata.version('datn')}, {build}")
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores")
    risk = RiskConfig(listed_products=frozenset({XYZ.product_id}))
    config = replace(NodeConfig(risk), client_order_memory_ms=60_000)
    print(
        f"node a: {args.book:,} resting orders, churned to {args.orders[0]:,} and "
        f"{args.orders[1]:,} orders, then {args.open:,} resting for recovery; "
        f"{1_000 // ORDER_INTERVAL_MS} trader actions/s virtual, client-order memory "
        f"{config.client_order_memory_ms // 1_000} s, decision memory "
        f"{config.decision_memory_ms // 1_000} s, ledger id memory {config.ledger_id_memory:,}; "
        f"seed {args.seed}"
    )
    started = time.perf_counter()
    flow = Flow(args.seed, config)
    core = flow.nodes[A]

    def rest_until(open_orders: int) -> None:
        while len(core.resting.orders) < open_orders:
            flow.mono += ORDER_INTERVAL_MS
            flow.place(A, flow.rng.choice((Side.BUY, Side.SELL)), flow.rng.randint(1, 20))

    rest_until(args.book)
    while flow.orders < args.orders[0]:
        flow.step()
    gc.collect()
    first_memory = deep_size(core)
    print(f"\nafter {flow.orders:,} orders: {live_state(core)}")
    print(f"  core memory {first_memory / 2**20:,.1f} MiB (process RSS {rss_mb():,.0f} MiB)")
    snapshot_figures(core, args.runs)
    full = list(flow.journal)
    with collector_paused():
        start = time.perf_counter()
        NodeCore.recover(full)
        full_s = time.perf_counter() - start
    print(
        f"  replay of the whole journal from the genesis ({len(full):,} entries): "
        f"{full_s:,.1f} s ({len(full) / full_s:,.0f} entries/s)"
    )
    del full
    flow.journal = []  # the store keeps the journal; the node does not

    while flow.orders < args.orders[1]:
        flow.step()
        if len(flow.journal) > 200_000:
            flow.journal = []
    gc.collect()
    second_memory = deep_size(core)
    print(f"\nafter {flow.orders:,} orders: {live_state(core)}")
    print(f"  core memory {second_memory / 2**20:,.1f} MiB (process RSS {rss_mb():,.0f} MiB)")
    print(
        f"  memory after {args.orders[1]:,} orders / after {args.orders[0]:,}, "
        f"the same live book: {second_memory / first_memory:.2f}x"
    )

    rest_until(args.open)
    flow.journal = []
    print(f"\nwith {len(core.resting.orders):,} open orders: {live_state(core)}")
    snapshot_figures(core, args.runs)
    for label, network in (("network", args.network), ("traders only", 0)):
        measure_tail(flow, label, network, args)
    print(f"\ntotal wall time {time.perf_counter() - started:,.0f} s")


if __name__ == "__main__":
    main()
