"""A deterministic network of node cores in virtual time, with faults.

Every random choice comes from one ``random.Random(seed)``: trader flow,
latencies, loss, duplication, reordering, partitions, crashes and clock skew.
The same seed replays the same run, message for message. Nodes run the real
:class:`~datn.protocol.node.NodeCore`; the network only moves its messages.

A run has two phases, as in TigerBeetle's simulator: a safety phase with
faults, in which invariants are checked after every event, and a liveness
phase on a healed network, which must end with every lock ended, every order
finished or resting, and every trade on both nodes' ledgers.

Each node keeps its journal here, as its store would: the simulator encodes
a snapshot of every node now and then (every ``snapshot_every`` journal
entries) and keeps only the entries after it. A crashed node is recovered
from its latest snapshot and that tail, must hash equal to what it was, and
restarts on a monotonic clock with another origin, lower or higher. Bond
money moves over a built-in rail: a poster's ``Pay`` reaches the holder's
node as a receipt after a short delay, and only then does the holder count
the bond.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mypy_extensions import mypyc_attr

from datn.domain import USD, ProductKind, ProductSpec, Side, TimeInForce
from datn.domain.assets import AssetCode
from datn.domain.bulk import collector_paused, frozen_set_up
from datn.protocol.clock import Hlc, Now
from datn.protocol.effects import (
    Accepted,
    Done,
    Effect,
    Executed,
    Genesis,
    Journal,
    JournalEntry,
    Pay,
    Rejected,
    Reply,
    Send,
    SetTimer,
    Violation,
)
from datn.protocol.liability import peer_owner
from datn.protocol.messages import (
    Acceptance,
    Confirmation,
    Message,
    NodeId,
    OrderBroadcast,
    PotentialTrades,
    Refusal,
    Release,
)
from datn.protocol.node import NodeConfig, NodeCore
from datn.protocol.venue import OrderRequest, trader_owner
from datn.risk import RiskConfig
from datn.sim.invariants import WALL_EPOCH_MS, InvariantChecker, InvariantError
from datn.sim.transport import SignedTransport
from datn.wire import ProtocolError
from datn.wire.snapshot import decode_snapshot, encode_snapshot

PRODUCTS = (
    (ProductSpec("XYZ", ProductKind.SHARE, USD.code), 5_000),
    (ProductSpec("ACME", ProductKind.SHARE, USD.code, tick_size_minor=5), 2_400),
)
STARTING_CASH_MINOR = 10_000_000
BOND_MINOR = 5_000_000
"""What every node posts with every peer: room for a few dozen open locks."""
BOND_SETUP_MS = 2_000
STARTING_LOTS = 1_000
ORDER_MESSAGES = (OrderBroadcast, PotentialTrades, Acceptance, Release, Confirmation, Refusal)
_ORDER_MESSAGE_TYPES: frozenset[type] = frozenset(ORDER_MESSAGES)
_FOREVER = 2**62
SNAPSHOT_EVERY = 5_000
"""A node's store takes a snapshot after this many journal entries, and keeps
only the entries after it."""
RAIL_DELAY_MS = (5, 30)
"""How long the built-in rail takes to report a bond payment received."""
MONO_ORIGINS_MS = 10**6
"""A node's monotonic clock starts anywhere in [0, this) at each start."""


@dataclass(frozen=True, slots=True)
class Faults:
    """Fault knobs; :meth:`from_seed` derives a mix from the run's seed."""

    loss_pct: int = 0
    duplicate_pct: int = 0
    latency_ms: tuple[int, int] = (1, 5)
    reorder_pct: int = 0
    partitions: bool = False
    crashes: bool = False
    max_skew_ms: int = 0
    clock_jumps: bool = False
    stalls: bool = False
    """Nodes stop taking inputs now and then for up to six seconds (a
    stalled event loop, a paused virtual machine) while what is sent to them
    waits, and then take what waited (:meth:`Simulation._resume`)."""

    @classmethod
    def none(cls) -> Faults:
        return cls()

    def __reduce__(self) -> tuple[type[Faults], tuple[object, ...]]:
        """Pickled as a constructor call: compiled, the frozen class refuses
        the attribute writes pickle would otherwise make (runs in other
        processes send their faults back)."""
        return Faults, (
            self.loss_pct,
            self.duplicate_pct,
            self.latency_ms,
            self.reorder_pct,
            self.partitions,
            self.crashes,
            self.max_skew_ms,
            self.clock_jumps,
            self.stalls,
        )

    @classmethod
    def from_seed(cls, rng: random.Random) -> Faults:
        low = rng.randint(1, 5)
        return cls(
            loss_pct=rng.choice((0, 1, 3, 10)),
            duplicate_pct=rng.choice((0, 1, 5)),
            latency_ms=(low, low + rng.choice((2, 10, 40))),
            reorder_pct=rng.choice((0, 5, 20)),
            partitions=rng.random() < 0.5,
            crashes=rng.random() < 0.5,
            max_skew_ms=rng.choice((0, 50, 5_000)),
            clock_jumps=rng.random() < 0.3,
        )


@dataclass
class SimReport:
    seed: int
    nodes: int
    orders: int = 0
    rejected: int = 0
    trades: int = 0
    cross_node_trades: int = 0
    order_messages: int = 0
    messages: Counter[str] = field(default_factory=Counter)
    lock_outcomes: Counter[str] = field(default_factory=Counter)
    trade_latency_ms: list[int] = field(default_factory=list)
    crashes: int = 0
    stalls: int = 0
    events: int = 0
    frames_refused: Counter[str] = field(default_factory=Counter)
    faults: Faults = field(default_factory=Faults)
    violations: Counter[tuple[NodeId, NodeId, str]] = field(default_factory=Counter)
    """(node, peer, reason) of every protocol violation a node recorded."""


@dataclass
class _Node:
    core: NodeCore
    mono_offset_ms: int
    skew_ms: int
    up: bool = True
    timer_at: int | None = None
    stalled_until: int = 0
    """While the simulation's time is before this, the node takes no input..."""
    waiting: list[tuple[int, int, str, Any, Any, Any]] = field(default_factory=list)
    """...and what comes for it waits here, to be taken when the stall ends."""
    snapshot: bytes | None = None
    """The latest snapshot the node's store holds, encoded..."""
    journal: list[JournalEntry] = field(default_factory=list)
    """...and the journal entries after it (all of them, before the first)."""


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled; AdversarySimulation extends it
class Simulation:
    """``nodes`` node cores with ``traders`` traders each; see the module docstring."""

    def __init__(
        self,
        seed: int,
        nodes: int,
        traders: int = 3,
        faults: Faults | None = None,
        targeted: bool = True,
        config: NodeConfig | None = None,
        signed: bool = False,
        strategies: Mapping[NodeId, type[NodeCore]] | None = None,
        honest: type[NodeCore] = NodeCore,
    ) -> None:
        self.seed = seed
        # Node classes by id: a subclass of NodeCore plays a named strategy
        # (an adversary); every other node runs ``honest`` (NodeCore itself,
        # or a subclass a test watches through).
        self.strategies = dict(strategies or {})
        self.honest_kind = honest
        self.rng = random.Random(seed)
        if faults is None:
            # Stalls are drawn apart from the others, so that the seeds drawn
            # before they existed still give the faults they gave.
            stalls = random.Random(f"{seed}:stalls").random() < 0.3
            faults = replace(Faults.from_seed(self.rng), stalls=stalls)
        self.faults = faults
        self.report = SimReport(seed, nodes, faults=self.faults)
        self.time_ms = 0
        # (virtual ms, sequence, kind, payload, receiver, sent): the sequence
        # keeps ties in order and never repeats, so comparison stops there. Only
        # deliveries use the last two fields; keeping them flat saves a tuple
        # per message.
        self._queue: list[tuple[int, int, str, Any, Any, Any]] = []
        self._seq = 0
        self.ids = [NodeId(f"n{i:03d}") for i in range(nodes)]
        products = [spec for spec, _ in PRODUCTS]
        self.mids: dict[str, int] = {spec.product_id: price for spec, price in PRODUCTS}
        # A node's opening reference prices are part of its configuration: a node
        # rebuilt from its journal must start from the same ones, not today's mids.
        self.opening_references = dict(self.mids)
        risk = RiskConfig(listed_products=frozenset(p.product_id for p in products))
        self.config = config or NodeConfig(risk, targeted_routing=targeted)
        self.nodes: dict[NodeId, _Node] = {}
        self.snapshot_every = SNAPSHOT_EVERY
        self.snapshots_taken = 0
        with collector_paused():  # as in fund(): all of it lives as long as the run
            for node_id in self.ids:
                skew = self.rng.randint(-self.faults.max_skew_ms, self.faults.max_skew_ms)
                origin = self.rng.randint(0, MONO_ORIGINS_MS)
                now = Now(self.time_ms + origin, WALL_EPOCH_MS + self.time_ms + skew)
                kind = self.strategies.get(node_id, honest)
                core, effects = kind.start(self._genesis(node_id), now)
                node = self.nodes[node_id] = _Node(core, origin, skew)
                node.journal.extend(e.entry for e in effects if type(e) is Journal)
        self.traders = {n: [f"{n}t{j}" for j in range(traders)] for n in self.ids}
        self.deposited: Counter[str] = Counter()
        self.capital: Counter[str] = Counter()
        self.blocked: set[frozenset[NodeId]] = set()
        self.checker = InvariantChecker(self)
        self.per_event_checks = True
        """False skips the checks after every event (benchmarks measure what
        they cost); the checker still watches what is sent, and the final
        checks still run."""
        self._submitted: dict[tuple[NodeId, int], int] = {}
        self.transport = SignedTransport(seed, self.ids) if signed else None
        self.rail_received: Counter[tuple[NodeId, NodeId]] = Counter()
        """Bond money the rail delivered, by (poster, holder)."""
        self.rail_returned: Counter[tuple[NodeId, NodeId]] = Counter()
        """Bond money holders paid back, by (poster, holder)."""
        self._requests: dict[tuple[NodeId, str], OrderRequest] = {}
        """The order requests of the run, by (node, client order id)."""
        self.orders: dict[tuple[NodeId, int], OrderRequest] = {}
        """Accepted orders by (node, order id): what each was asked to do."""

    def _genesis(self, node_id: NodeId) -> Genesis:
        return Genesis(
            node_id,
            self.config,
            tuple(spec for spec, _ in PRODUCTS),
            tuple(self.ids),
            f"{self.seed}:{node_id}".encode(),
            tuple(sorted(self.opening_references.items())),
        )

    # ------------------------------------------------------------ clocks

    def now(self, node_id: NodeId) -> Now:
        node = self.nodes[node_id]
        return Now(self.time_ms + node.mono_offset_ms, WALL_EPOCH_MS + self.time_ms + node.skew_ms)

    def _virtual_time_of(self, node_id: NodeId, mono_ms: int) -> int:
        return mono_ms - self.nodes[node_id].mono_offset_ms

    # ------------------------------------------------------------- events

    def _schedule(self, at_ms: int, kind: str, payload: Any) -> None:
        self._seq += 1
        at = at_ms if at_ms > self.time_ms else self.time_ms
        heapq.heappush(self._queue, (at, self._seq, kind, payload, None, None))

    def fund(self) -> None:
        """Deposit every trader's starting assets and post every bond.

        Everything this builds (accounts, bonds, the peers' views) lives as
        long as the run, so the cyclic collector is paused meanwhile, as for a
        restore (``collector_paused``): at 200 nodes it would otherwise rescan
        the growing heap for a fifth of the set-up's time, finding nothing."""
        with collector_paused():
            self._fund()

    def _fund(self) -> None:
        for node_id, traders in self.traders.items():
            for trader in traders:
                self._apply(
                    node_id,
                    self.nodes[node_id].core.deposit(
                        trader, USD.code, STARTING_CASH_MINOR, self.now(node_id)
                    ),
                )
                self.deposited[USD.code] += STARTING_CASH_MINOR
                for spec, _ in PRODUCTS:
                    self._apply(
                        node_id,
                        self.nodes[node_id].core.deposit(
                            trader, spec.product_id, STARTING_LOTS, self.now(node_id)
                        ),
                    )
                    self.deposited[spec.product_id] += STARTING_LOTS
            core = self.nodes[node_id].core
            capital = BOND_MINOR * (len(self.ids) - 1)
            self._apply(node_id, core.fund(USD.code, capital, self.now(node_id)))
            self.capital[USD.code] += capital
            for peer in self.ids:
                if peer != node_id:
                    self._apply(node_id, core.post_bond(peer, BOND_MINOR, self.now(node_id)))
            self._apply(node_id, core.tick(self.now(node_id)))
        # Bonds first: a peer trades with no one who has not posted with it.
        self.run(until_ms=self.time_ms + BOND_SETUP_MS)

    def schedule_flow(self, orders: int, duration_ms: int) -> int:
        """Schedule ``orders`` trader actions and the seed's faults over the
        next ``duration_ms`` of virtual time; return when that span ends."""
        start = self.time_ms
        for _ in range(orders):
            self._schedule(start + self.rng.randint(0, duration_ms), "order", None)
        if self.faults.crashes:
            for _ in range(max(1, len(self.ids) // 10)):
                self._schedule(
                    start + self.rng.randint(0, duration_ms), "crash", self.rng.choice(self.ids)
                )
        if self.faults.partitions:
            for _ in range(max(1, len(self.ids) // 5)):
                a, b = self.rng.sample(self.ids, 2)
                cut_at = start + self.rng.randint(0, duration_ms)
                self._schedule(cut_at, "cut", frozenset((a, b)))
                self._schedule(cut_at + self.rng.randint(50, 2_000), "heal", frozenset((a, b)))
        if self.faults.clock_jumps:
            for _ in range(max(1, len(self.ids) // 10)):
                self._schedule(
                    start + self.rng.randint(0, duration_ms), "jump", self.rng.choice(self.ids)
                )
        if self.faults.stalls:
            for _ in range(max(2, len(self.ids) // 2)):
                self._schedule(
                    start + self.rng.randint(0, duration_ms), "stall", self.rng.choice(self.ids)
                )
        return start + duration_ms

    def run(self, until_ms: int | None = None, on_event: Callable[[], None] | None = None) -> None:
        queue, pop, report = self._queue, heapq.heappop, self.report
        checker, checks = self.checker, self.per_event_checks
        end = until_ms if until_ms is not None else _FOREVER
        stalls = self.faults.stalls
        while queue and queue[0][0] <= end:
            at, _, kind, payload, receiver, sent = pop(queue)
            self.time_ms = at
            if stalls and self._waits_out_a_stall(at, kind, payload, receiver, sent):
                continue
            if kind == "deliver":
                self._deliver(payload, receiver, sent)
            else:
                self._dispatch(kind, payload)
            report.events += 1
            if checks:
                checker.after_event()
            if on_event is not None:
                on_event()

    def _dispatch(self, kind: str, payload: Any) -> None:
        if kind == "tick":
            self._tick(payload)
        elif kind == "order":
            self._random_order(payload)
        elif kind == "crash":
            self._crash(payload)
        elif kind == "restart":
            self._restart(payload)
        elif kind == "cut":
            self.blocked.add(payload)
        elif kind == "heal":
            self.blocked.discard(payload)
        elif kind == "rail":
            self._rail(payload)
        elif kind == "jump":
            node = self.nodes[payload]
            node.skew_ms += self.rng.choice((-1, 1)) * self.rng.randint(1_000, 30_000)
        elif kind == "stall":
            self.stall(payload, self.rng.randint(100, 6_000))
        elif kind == "resume":
            node_id, until = payload
            if self.nodes[node_id].stalled_until == until:  # not ended already
                self._resume(node_id)

    def stall(self, node_id: NodeId, duration_ms: int) -> None:
        """Stall ``node_id`` now for ``duration_ms``, unless it is down or
        stalled already (runs with :attr:`Faults.stalls` only)."""
        node = self.nodes[node_id]
        if node.up and node.stalled_until <= self.time_ms:
            node.stalled_until = self.time_ms + duration_ms
            self._schedule(node.stalled_until, "resume", (node_id, node.stalled_until))
            self.report.stalls += 1

    def _waits_out_a_stall(
        self, at: int, kind: str, payload: Any, receiver: Any, sent: Any
    ) -> bool:
        """Keep an event for a stalled node until its stall ends; whether it
        was kept. (A trader's order is kept in :meth:`_random_order`, once
        it has picked its node.)"""
        if kind == "deliver":
            node_id = receiver
        elif kind == "tick":
            node_id = payload
        elif kind == "rail":
            node_id = payload[1].peer
        else:
            return False
        node = self.nodes[node_id]
        if node.stalled_until <= at:
            return False
        if kind != "tick" or node.timer_at == at:  # a timer set again since is none
            node.waiting.append((at, 0, kind, payload, receiver, sent))
        return True

    def _resume(self, node_id: NodeId) -> None:
        """The node's stall ends: it takes what waited, in an order of its
        own (an event loop takes the sockets ready after a stall as the
        kernel lists them, a trader's before a peer's as often as not; each
        peer's messages still come in the order they were sent)."""
        node = self.nodes[node_id]
        node.stalled_until = 0
        waiting, node.waiting = node.waiting, []
        sources: dict[Any, list[tuple[int, int, str, Any, Any, Any]]] = {}
        for event in waiting:
            kind = event[2]
            source = event[3] if kind == "deliver" else (kind, len(sources))
            sources.setdefault(source, []).append(event)
        queues = list(sources.values())
        while queues:
            index = self.rng.randrange(len(queues))
            _, _, kind, payload, receiver, sent = queues[index].pop(0)
            if not queues[index]:
                queues.pop(index)
            if kind == "tick":
                node.timer_at = self.time_ms
            self._seq += 1
            heapq.heappush(self._queue, (self.time_ms, self._seq, kind, payload, receiver, sent))

    # ----------------------------------------------------------- traders

    def _random_order(self, at: NodeId | None = None) -> None:
        """A trader's action at a random node, or at ``at``."""
        node_id = self.rng.choice(self.ids) if at is None else at
        node = self.nodes[node_id]
        if not node.up:
            return
        if node.stalled_until > self.time_ms:
            # The trader's request waits with the rest; it is drawn when taken.
            node.waiting.append((self.time_ms, 0, "order", node_id, None, None))
            return
        trader = self.rng.choice(self.traders[node_id])
        core = node.core
        mine = core.resting.of_trader(trader)
        if mine and self.rng.random() < 0.2:
            self._apply(node_id, core.cancel(trader, self.rng.choice(mine), self.now(node_id)))
            return
        spec, _ = self.rng.choice(PRODUCTS)
        mid = self.mids[spec.product_id] = self.mids[spec.product_id] + self.rng.randint(-2, 2)
        side = self.rng.choice((Side.BUY, Side.SELL))
        roll = self.rng.random()
        lean = self.rng.randint(-6, 3) if side is Side.BUY else self.rng.randint(-3, 6)
        price: int | None = max(1, mid + lean)
        tif = TimeInForce.GTC
        if roll < 0.08:
            price, tif = None, TimeInForce.IOC
        elif roll < 0.18:
            tif = TimeInForce.IOC
        elif roll < 0.25:
            tif = TimeInForce.FOK
        quantity = self.rng.choice((1, 2, 5, 10, 20))
        self.report.orders += 1
        request = OrderRequest(
            trader, f"c{self.report.orders}", spec.product_id, side, quantity, price, tif
        )
        self._requests[(node_id, request.client_order_id)] = request
        self._apply(node_id, core.place(request, self.now(node_id)))

    # ----------------------------------------------------------- network

    def _apply(self, node_id: NodeId, effects: list[Effect]) -> None:
        self.checker.touched(node_id)
        node = self.nodes[node_id]
        for effect in effects:
            kind = type(effect)
            if kind is Send:
                self._send(node_id, effect)  # type: ignore[arg-type]
            elif kind is SetTimer:
                self._set_timer(node_id, effect.at_mono_ms)  # type: ignore[union-attr]
            elif kind is Reply:
                self._reply(node_id, effect)  # type: ignore[arg-type]
            elif kind is Journal:
                node.journal.append(effect.entry)  # type: ignore[union-attr]
            elif kind is Pay:
                self._pay(node_id, effect)  # type: ignore[arg-type]
            elif kind is Violation:
                violation: Violation = effect  # type: ignore[assignment]
                self.report.violations[(node_id, violation.peer, violation.reason)] += 1
        if len(node.journal) >= self.snapshot_every:
            self._take_snapshot(node)

    def _take_snapshot(self, node: _Node) -> None:
        """The node's store snapshots it and drops the journal before it."""
        # Not read back here: a crash reads it back, and the restart checks
        # the node it gives.
        node.snapshot = encode_snapshot(node.core.snapshot(), verify=False)
        node.journal = []
        self.snapshots_taken += 1

    def _pay(self, payer: NodeId, pay: Pay) -> None:
        """The built-in rail: bond money reaches the payee's node as a receipt
        after a short delay; money paid back is only counted."""
        if pay.purpose == "bond_return":
            self.rail_returned[(pay.peer, payer)] += pay.amount
            return
        low, high = RAIL_DELAY_MS
        self._schedule(self.time_ms + self.rng.randint(low, high), "rail", (payer, pay))

    def _rail(self, payload: tuple[NodeId, Pay]) -> None:
        payer, pay = payload
        node = self.nodes[pay.peer]
        if not node.up:
            self._schedule(self.time_ms + 100, "rail", payload)
            return
        self.rail_received[(payer, pay.peer)] += pay.amount
        now = self.now(pay.peer)
        effects = node.core.bond_received(payer, pay.ref, pay.asset, pay.amount, now)
        self._apply(pay.peer, effects)

    def _send(self, sender: NodeId, effect: Send) -> None:
        message = effect.message
        kind = type(message)
        self.report.messages[kind.__name__] += 1
        if kind in _ORDER_MESSAGE_TYPES:
            self.report.order_messages += 1
            self.checker.watch(sender, effect)
        faults = self.faults
        # One 128-bit draw decides this message's fate: each knob takes its
        # digits in turn (mixed radix), which is as uniform as separate draws
        # to within 2**-100 and several times cheaper.
        bits, roll = divmod(self.rng.getrandbits(128), 100)
        if roll < faults.loss_pct:
            return
        bits, roll = divmod(bits, 100)
        copies = 2 if roll < faults.duplicate_pct else 1
        payload: Send | bytes = effect
        if self.transport is not None:
            payload = self.transport.frame(sender, effect.peer, effect.hlc, message)
        low, high = faults.latency_ms
        for _ in range(copies):
            bits, spread = divmod(bits, high - low + 1)
            delay = low + spread
            bits, roll = divmod(bits, 100)
            if roll < faults.reorder_pct:
                bits, extra = divmod(bits, 4 * high + 1)
                delay += extra
            self._seq += 1
            event = (self.time_ms + delay, self._seq, "deliver", sender, effect.peer, payload)
            heapq.heappush(self._queue, event)

    def _deliver(self, sender: NodeId, receiver: NodeId, payload: Send | bytes) -> None:
        node = self.nodes[receiver]
        if not node.up or (self.blocked and frozenset((sender, receiver)) in self.blocked):
            return
        if type(payload) is Send:
            time_ms = self.time_ms
            now = Now(time_ms + node.mono_offset_ms, WALL_EPOCH_MS + time_ms + node.skew_ms)
            message = payload.message
            effects = node.core.receive(sender, payload.hlc, message, now)
            if type(message) is Confirmation:
                self.checker.confirmed(receiver, sender, message, effects)
            self._apply(receiver, effects)
            return
        assert isinstance(payload, bytes)
        for origin, hlc, message in self._open_frame(receiver, payload):
            now = self.now(receiver)
            effects = node.core.receive(origin, hlc, message, now)
            if type(message) is Confirmation:
                self.checker.confirmed(receiver, origin, message, effects)
            self._apply(receiver, effects)

    def _open_frame(self, receiver: NodeId, frame: bytes) -> list[tuple[NodeId, Hlc, Message]]:
        assert self.transport is not None
        try:
            return self.transport.open(receiver, frame)
        except ProtocolError as error:
            # A duplicated frame is a replay: the link refuses it, as between real nodes.
            self.report.frames_refused[error.code] += 1
            return []

    def _set_timer(self, node_id: NodeId, at_mono_ms: int) -> None:
        node = self.nodes[node_id]
        at = self._virtual_time_of(node_id, at_mono_ms)
        if node.timer_at is not None and node.timer_at <= at and node.timer_at >= self.time_ms:
            return
        node.timer_at = at
        self._schedule(at, "tick", node_id)

    def _tick(self, node_id: NodeId) -> None:
        node = self.nodes[node_id]
        if not node.up or node.timer_at != self.time_ms:
            return
        node.timer_at = None
        self._apply(node_id, node.core.tick(self.now(node_id)))
        following = node.core.next_timer_ms()
        if following is not None:
            self._set_timer(node_id, max(following, self.now(node_id).mono_ms + 1))

    def _reply(self, node_id: NodeId, effect: Reply) -> None:
        event = effect.event
        if isinstance(event, Executed):
            self.checker.executed(node_id, event)
            self.report.trades += 1
            if event.counterparty != node_id:
                self.report.cross_node_trades += 1
            started = self._submitted.get((node_id, event.order_id))
            if started is not None:
                self.report.trade_latency_ms.append(self.time_ms - started)
        elif isinstance(event, Done):
            self._submitted.pop((node_id, event.order_id), None)
        elif isinstance(event, Accepted):
            self._submitted[(node_id, event.order_id)] = self.time_ms
            request = self._requests.pop((node_id, event.client_order_id), None)
            if request is not None:
                self.orders[(node_id, event.order_id)] = request
        elif isinstance(event, Rejected):
            self.report.rejected += 1

    # ------------------------------------------------------------ crashes

    def crash(self, node_id: NodeId) -> None:
        """Crash ``node_id`` now; it restarts by itself a little later."""
        self._crash(node_id)

    def _crash(self, node_id: NodeId) -> None:
        node = self.nodes[node_id]
        if not node.up:
            return
        # What waited for it meets a node that is down: messages and the
        # trader's requests are lost with it, the rail pays again later.
        self._resume(node_id)
        node.up = False
        node.timer_at = None
        self.report.crashes += 1
        self._schedule(self.time_ms + self.rng.randint(10, 1_000), "restart", node_id)

    def _restart(self, node_id: NodeId) -> None:
        """Recover the node from its store (latest snapshot and the journal
        after it), prove it identical, then restart it on a monotonic clock
        with a new origin."""
        node = self.nodes[node_id]
        before = node.core.state_hash()
        kind = self.strategies.get(node_id, self.honest_kind)
        snapshot = None if node.snapshot is None else decode_snapshot(node.snapshot)
        journal = list(node.journal)
        recovered = kind.recover(journal, snapshot)
        if recovered.state_hash() != before:
            raise InvariantError(
                f"seed {self.seed}: node {node_id} recovered from its store differs (invariant 10)"
            )
        node.mono_offset_ms = self.rng.randint(0, MONO_ORIGINS_MS)
        node.up = True
        core, effects = recovered.restart(self.now(node_id))
        node.core = core
        self.checker.restarted(node_id)
        self._apply(node_id, effects)

    # ------------------------------------------------------------ phases

    def heal(self) -> None:
        """End every fault: the liveness phase runs on a clean network."""
        self.faults = Faults(latency_ms=self.faults.latency_ms)
        self.blocked.clear()
        self._queue = [
            e for e in self._queue if e[2] not in {"order", "crash", "cut", "jump", "stall"}
        ]
        heapq.heapify(self._queue)
        for node_id, node in self.nodes.items():
            node.waiting = [e for e in node.waiting if e[2] != "order"]
            self._resume(node_id)
            if not node.up:
                self._restart(node_id)
            self._schedule(self.time_ms + 1, "tick", node_id)
            node.timer_at = self.time_ms + 1

    def settle(self, horizon_ms: int = 30_000) -> None:
        """Run until no order is being worked, no lock is open and every
        trade is settled."""
        deadline = self.time_ms + horizon_ms
        while self.time_ms < deadline:
            step_end = self.time_ms + 100
            self.run(until_ms=step_end)
            self.time_ms = max(self.time_ms, step_end)
            if all(self._quiet(node_id) for node_id in self.nodes):
                return
            for node_id, node in self.nodes.items():
                if node.timer_at is None or node.timer_at < self.time_ms:
                    node.timer_at = self.time_ms + 1
                    self._schedule(self.time_ms + 1, "tick", node_id)
        stuck = [node_id for node_id in self.nodes if not self._quiet(node_id)]
        raise InvariantError(
            f"seed {self.seed}: nodes {stuck} still working or settling after the liveness phase"
        )

    def _quiet(self, node_id: NodeId) -> bool:
        """Nothing left to do: no order worked, no lock open, nothing to
        settle. A node playing a strategy need not be: a defaulter never
        settles, and its honest peers declare it in default instead."""
        core = self.nodes[node_id].core
        if node_id in self.strategies:
            return True
        # Trades with a suspended peer stay on record until the operator
        # reinstates it: they are not left to settle.
        return (
            not core.originator.working
            and not core.originator.in_doubt
            and not core.holder.locks
            and not any(v.unsettled and not v.suspended for v in core.liability.peers.values())
        )

    def check_final(self) -> None:
        self.checker.final()


def run_simulation(
    seed: int,
    nodes: int,
    orders: int,
    *,
    faults: Faults | None = None,
    targeted: bool = True,
    signed: bool = False,
    on_progress: Callable[[SimReport], None] | None = None,
) -> SimReport:
    """One full run: safety phase with faults, liveness phase healed, final checks."""
    with frozen_set_up() as set_up_done:
        sim = Simulation(seed, nodes, faults=faults, targeted=targeted, signed=signed)
        sim.fund()
        set_up_done()
        duration_ms = max(1_000, orders * 20)
        end_ms = sim.schedule_flow(orders, duration_ms)
        sim.run(
            until_ms=end_ms,
            on_event=None if on_progress is None else lambda: on_progress(sim.report),
        )
        sim.heal()
        sim.settle()
        sim.check_final()
    sim.report.lock_outcomes = sim.checker.lock_outcomes()
    return sim.report


def trader_accounts(sim: Simulation, asset: str) -> int:
    """What all traders of the network hold of ``asset``."""
    total = 0
    for node_id, traders in sim.traders.items():
        ledger = sim.nodes[node_id].core.context.ledger
        for trader in traders:
            from datn.ledger import AccountKey  # noqa: PLC0415

            total += ledger.balance(AccountKey(trader_owner(trader), AssetCode(asset)))
    return total


__all__ = ["Faults", "SimReport", "Simulation", "peer_owner", "run_simulation", "trader_accounts"]
