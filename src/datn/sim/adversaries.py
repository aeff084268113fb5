"""Adversarial nodes in the simulator, and what they cost honest traders.

Each adversary is a named strategy: a small subclass of
:class:`~datn.protocol.node.NodeCore`. It runs through the same deterministic
core as every honest node and is journaled the same way, so a crashed
adversary is rebuilt from its journal like any other node, and the simulator's
replay check (invariant 10) covers the strategy's own state too. Strategies
draw no randomness: what they do is a function of their inputs, with ids
derived like the core's (a keyed hash of a counter).

The strategies (DESIGN.md section 7 says what must hold against them):

``lock-grabber``
    Broadcasts huge orders that cross every resting order, on every product
    and both sides, to every peer, every ``period_ms``; it never accepts and
    never releases, so every lock it obtains is held until it expires. Answers
    to its own traders' orders are handled as usual: its traders trade
    normally (their trades are not counted as honest).
``slow-acceptor``
    Trades as usual, but keeps its collection window open until the edge of
    the TTL and accepts then: ``lead_ms`` before the offer's TTL runs out,
    counted from when the offer arrived, where an honest originator stops at
    ``ttl - rtt - margin``. Holders refuse many of its acceptances as expired.
``replayer``
    Trades as usual, but remembers the last ``memory`` order-path, bond and
    settlement messages it sent, and every ``period_ms`` sends ``burst`` of
    the ones at least ``min_age_ms`` old again, to the peer it first sent them
    to, as new messages (so a signed link's sequence numbers do not stop them:
    the core's idempotence has to).

``defaulter``
    Trades as usual, then never settles: it proposes no statement and answers
    none. Its honest peers declare it in default at the settlement deadline,
    claim its bond for what it owes them (marked to the last prices) and
    record the rest as their own loss.

:func:`compare` measures an adversary: the same seed runs twice, the adversary
nodes switched on and then off (the same node ids running plain
:class:`NodeCore`), each through every phase with every invariant checked,
and it counts the executions between honest nodes in each run.
"""

from __future__ import annotations

import copy
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Final, Self, cast

from datn.clearing.quota import PERMILLE, Quota, lock_quota
from datn.domain import AssetCode, ProductSpec, Side
from datn.domain.limits import MAX_PRICE_TICKS
from datn.ledger import AccountKey
from datn.protocol.clock import Now
from datn.protocol.effects import (
    Effect,
    Executed,
    Input,
    Journal,
    JournalEntry,
    ReceiveInput,
    Reply,
    RestartInput,
    Send,
    SetTimer,
    TickInput,
)
from datn.protocol.messages import (
    Acceptance,
    BondAnswer,
    BondRequest,
    Confirmation,
    DefaultNotice,
    Message,
    NodeId,
    OrderBroadcast,
    PotentialTrades,
    Refusal,
    Release,
    StatementAnswer,
    StatementProposal,
)
from datn.protocol.node import NodeConfig, NodeCore
from datn.protocol.state import LOSSES_OWNER, Candidate, Working
from datn.sim.network import BOND_SETUP_MS, Faults, SimReport, Simulation

_STRATEGY_INPUTS: Final = (ReceiveInput, TickInput, RestartInput)
"""The inputs after which a strategy acts: each is always journaled."""


class Adversary(NodeCore):
    """A node core that plays a strategy on top of the protocol.

    Every input still goes through :meth:`NodeCore._handle`, which is also
    what journal replay calls, so a strategy's hooks run alike live and on
    replay:

    * :meth:`_swallows` / :meth:`_on_swallowed`: a received message the
      strategy handles instead of the core (it is journaled all the same);
    * :meth:`_act`: after every receive, tick and restart, the strategy's
      own moves;
    * :meth:`_next_act_ms`: when it next wants a tick;
    * :meth:`_strategy_state`: its state, part of :meth:`state_hash`.

    Knobs are class attributes; :meth:`tuned` makes a subclass with others.
    """

    name: ClassVar[str] = ""
    attack_ms: ClassVar[int] = 600_000
    """How long the strategy plays, from the moment every peer has booked this
    node's bond; after that the node behaves like an honest one."""

    # A strategy's own state starts from these class-level values; assigning
    # one makes it the instance's.
    _attack_from_ms: int | None = None

    @classmethod
    def tuned(cls, **knobs: int) -> type[Self]:
        """This strategy with other knob values (class attributes)."""
        for knob, value in knobs.items():
            if not isinstance(getattr(cls, knob, None), int) or not isinstance(value, int):
                raise ValueError(f"{cls.__name__} has no integer knob {knob!r}")
            if value <= 0:
                raise ValueError(f"{knob} must be positive")
        return cast("type[Self]", type(cls.__name__, (cls,), dict(knobs)))

    # ------------------------------------------------------------ dispatch

    def _handle(self, event: Input, now: Now) -> list[Effect]:
        if type(event) is ReceiveInput and self._swallows(event.message):
            journal = JournalEntry(now, event)
            out: list[Effect] = [Journal(journal)]
            self.clock.observe(event.hlc, now.wall_ms)
            self._on_swallowed(event.sender, event.message, now, out)
            self.journal.append(journal)
        else:
            out = super()._handle(event, now)
        if out and type(out[0]) is Journal:  # not an order the core refused
            self._observe(now, out)
        if isinstance(event, _STRATEGY_INPUTS):
            if self._attack_from_ms is None and all(v.bond_posted > 0 for v in self.peers.values()):
                self._attack_from_ms = now.mono_ms
            self._act(event, now, out)
        return out

    def _attacking(self, now: Now) -> bool:
        start = self._attack_from_ms
        return start is not None and now.mono_ms < start + self.attack_ms

    # --------------------------------------------------------------- hooks

    def _swallows(self, message: Message) -> bool:
        return False

    def _on_swallowed(self, sender: NodeId, message: Message, now: Now, out: list[Effect]) -> None:
        """Handle a message :meth:`_swallows` claimed."""

    def _observe(self, now: Now, out: list[Effect]) -> None:
        """What the core did on a journaled input, before the strategy acts."""

    def _act(self, event: Input, now: Now, out: list[Effect]) -> None:
        """The strategy's moves after ``event``; ``out`` already holds the core's effects."""

    def _next_act_ms(self) -> int | None:
        return None

    def _strategy_state(self) -> object:
        return self._attack_from_ms

    # ------------------------------------------------------------- queries

    def next_timer_ms(self) -> int | None:
        times = [t for t in (super().next_timer_ms(), self._next_act_ms()) if t is not None]
        return min(times) if times else None

    def _state_parts(self) -> Iterator[object]:
        yield from super()._state_parts()
        yield self.name, self._strategy_state()


class LockGrabber(Adversary):
    """Asks every peer for everything, as often as it can, and takes nothing.

    Every ``period_ms`` it broadcasts, for each product and side, an order for
    ``lots`` lots at a limit that crosses every resting order, to every peer.
    Answers to those requests are kept, never accepted or released: the
    holders' locks run out by themselves. Its own traders' orders are worked
    as usual (answers to them are told apart by request id).
    """

    name = "lock-grabber"
    period_ms: ClassVar[int] = 10
    lots: ClassVar[int] = 1_000_000
    _grabs: int = 0
    _next_grab_ms: int | None = None

    def _swallows(self, message: Message) -> bool:
        return type(message) is PotentialTrades and message.request_id not in self._requests

    def _on_swallowed(self, sender: NodeId, message: Message, now: Now, out: list[Effect]) -> None:
        assert isinstance(message, PotentialTrades)
        self._count("grab_locks_kept", len(message.offers))
        if message.limited:
            self._count(f"grab_limited:{message.limited}")

    def _act(self, event: Input, now: Now, out: list[Effect]) -> None:
        if not self._attacking(now):
            self._next_grab_ms = None
            return
        due = self._next_grab_ms
        if due is not None and now.mono_ms < due:
            return
        for product_id in sorted(self.products):
            for side in (Side.BUY, Side.SELL):
                self._grabs += 1
                limit = MAX_PRICE_TICKS if side is Side.BUY else 1
                request = OrderBroadcast(
                    self._random_id("grab", self._grabs),
                    1,
                    product_id,
                    side,
                    self.lots,
                    limit,
                    False,
                )
                for peer in self.peers:
                    self._send(peer, request, now, out)
        self._count("grab_broadcasts", 2 * len(self.products) * len(self.peers))
        self._next_grab_ms = now.mono_ms + self.period_ms
        out.append(SetTimer(self._next_grab_ms))

    def _next_act_ms(self) -> int | None:
        return self._next_grab_ms

    def _strategy_state(self) -> object:
        return self._attack_from_ms, self._grabs, self._next_grab_ms


class SlowAcceptor(Adversary):
    """Accepts at the last moment: ``lead_ms`` before an offer's TTL runs
    out, counted from its arrival, past an honest originator's budget.

    It keeps an order's collection window open (no peer is left to answer,
    so only the deadline closes it) until the earliest such edge among the
    remote offers, then ranks and accepts as usual, counting every remote
    offer as alive until its own edge.
    """

    name = "slow-acceptor"
    lead_ms: ClassVar[int] = 6

    def _edge_ms(self, candidate: Candidate) -> int:
        return candidate.received_mono_ms + candidate.offer.ttl_ms - self.lead_ms

    def _decide(self, working: Working, now: Now, out: list[Effect]) -> None:
        if self._attacking(now):
            edges = [self._edge_ms(c) for c in working.candidates if c.holder != self.node_id]
            if edges and now.mono_ms < min(edges):
                working.awaiting = {self.node_id}  # never answers: the deadline decides
                working.deadline_mono_ms = min(edges)
                out.append(SetTimer(working.deadline_mono_ms))
                return
        super()._decide(working, now, out)

    def _in_budget(self, candidate: Candidate, now: Now) -> bool:
        if candidate.holder == self.node_id or not self._attacking(now):
            return super()._in_budget(candidate, now)
        return now.mono_ms <= self._edge_ms(candidate)


REPLAYED: Final = (
    OrderBroadcast,
    PotentialTrades,
    Acceptance,
    Release,
    Confirmation,
    Refusal,
    BondRequest,
    BondAnswer,
    StatementProposal,
    StatementAnswer,
    DefaultNotice,
)
"""What a replayer remembers and sends again: the order path, bonds, settlement."""


class Replayer(Adversary):
    """Sends copies of its old messages to the peers it first sent them to.

    It remembers the last ``memory`` messages of the kinds in
    :data:`REPLAYED` it sent; every ``period_ms`` it picks ``burst`` of those
    at least ``min_age_ms`` old (a keyed hash of a counter picks which) and
    sends each again. Otherwise it trades as usual.
    """

    name = "replayer"
    period_ms: ClassVar[int] = 20
    burst: ClassVar[int] = 4
    memory: ClassVar[int] = 512
    min_age_ms: ClassVar[int] = 100

    def __init__(
        self,
        node_id: NodeId,
        products: Iterable[ProductSpec],
        peers: Iterable[NodeId],
        config: NodeConfig,
        secret: bytes,
        reference_prices: dict[str, int] | None = None,
    ) -> None:
        super().__init__(node_id, products, peers, config, secret, reference_prices)
        self._sent: deque[tuple[int, NodeId, Message]] = deque(maxlen=self.memory)
        self._replays = 0
        self._next_replay_ms: int | None = None

    def _observe(self, now: Now, out: list[Effect]) -> None:
        sent = self._sent
        for effect in out:
            if type(effect) is Send and isinstance(effect.message, REPLAYED):
                sent.append((now.mono_ms, effect.peer, effect.message))

    def _act(self, event: Input, now: Now, out: list[Effect]) -> None:
        if not self._attacking(now):
            self._next_replay_ms = None
            return
        due = self._next_replay_ms
        if due is not None and now.mono_ms < due:
            return
        old_enough = now.mono_ms - self.min_age_ms
        eligible = 0
        for sent_ms, _, _ in self._sent:  # oldest first
            if sent_ms > old_enough:
                break
            eligible += 1
        for _ in range(min(self.burst, eligible)):
            self._replays += 1
            _, peer, message = self._sent[self._random_id("replay", self._replays) % eligible]
            self._send(peer, message, now, out)
            self._count(f"replays:{type(message).__name__}")
        self._next_replay_ms = now.mono_ms + self.period_ms
        out.append(SetTimer(self._next_replay_ms))

    def _next_act_ms(self) -> int | None:
        return self._next_replay_ms

    def _strategy_state(self) -> object:
        return self._attack_from_ms, self._replays, self._next_replay_ms, tuple(self._sent)


class Defaulter(Adversary):
    """Trades as usual, then never settles: it proposes no statement and
    answers none, for the whole run. Its honest peers find trades with it
    unsettled past the deadline, suspend it, claim its bond for what it owes
    them and record the rest as their loss."""

    name = "defaulter"
    attack_ms: ClassVar[int] = 10**12
    """For good: a defaulter that settled after the flow would not default."""

    def _swallows(self, message: Message) -> bool:
        return isinstance(message, StatementProposal)

    def _on_swallowed(self, sender: NodeId, message: Message, now: Now, out: list[Effect]) -> None:
        self._count("statements_ignored")

    def _settlement_cycle(self, now: Now, out: list[Effect]) -> None:
        """Proposes nothing."""


STRATEGIES: Final[Mapping[str, type[Adversary]]] = {
    kind.name: kind for kind in (LockGrabber, SlowAcceptor, Replayer, Defaulter)
}
"""The named strategies, by name."""


# ================================================================ measurement


@dataclass
class QuotaWatch:
    """What honest holders held open for one adversary node, checked after
    every event, against the full quota its bond allows (the acceptance
    ratio can only shrink that)."""

    peak_locks: int = 0
    """The most locks any one honest holder held open for it at once."""
    peak_notional: int = 0
    """The most lock notional any one honest holder held open for it at once."""
    full_quota: Quota = field(default_factory=lambda: Quota(0, 0))
    """The full quota at the holder of the latest peak."""
    breaches: int = 0
    """Events after which some honest holder held more open than the full quota."""
    end_quota: Quota | None = None
    """The smallest quota, acceptance ratio counted, an honest holder allowed
    it when the trader flow ended."""


@dataclass
class RunFigures:
    """What one run of a comparison did."""

    honest_executions: int = 0
    """Executed events at honest nodes against honest nodes (or local trades)."""
    honest_lots: int = 0
    limited: Counter[str] = field(default_factory=Counter)
    """Honest holders' ``limited:`` counters, whoever they limited."""
    limited_for_adversaries: Counter[str] = field(default_factory=Counter)
    """Why honest holders' answers to adversary nodes offered less than asked."""
    locks_offered_to_adversaries: int = 0
    decisions_for_adversaries: Counter[str] = field(default_factory=Counter)
    """Honest holders' decisions on acceptances from adversary nodes."""
    adversary_lock_outcomes: Counter[str] = field(default_factory=Counter)
    """How the locks honest holders offered adversary nodes ended."""
    lock_outcomes: Counter[str] = field(default_factory=Counter)
    """How every lock of the run ended."""
    quota: dict[NodeId, QuotaWatch] = field(default_factory=dict)
    repeats_delivered: int = 0
    """Copies of a message an honest node had already received from an adversary node."""
    repeats_that_changed_state: int = 0
    suspended: list[tuple[NodeId, NodeId, str]] = field(default_factory=list)
    """(node, peer, reason) for every peer an honest node suspended."""
    defaults: list[tuple[NodeId, NodeId, int, int]] = field(default_factory=list)
    """(claimant, defaulter, claimed, loss) for every default an honest node declared."""
    losses: dict[NodeId, int] = field(default_factory=dict)
    """What each honest node's ledger records as lost to peers in default."""
    bonds_held: dict[tuple[NodeId, NodeId], int] = field(default_factory=dict)
    """(holder, poster) -> the bond the holder held when the run ended."""
    adversary_stats: Counter[str] = field(default_factory=Counter)
    report: SimReport | None = None


@dataclass
class Comparison:
    """One seed run with the adversary nodes playing ``strategy`` (``on``)
    and with them honest (``off``)."""

    seed: int
    nodes: int
    orders: int
    strategy: str
    adversaries: tuple[NodeId, ...]
    faults: Faults | None
    on: RunFigures
    off: RunFigures

    @property
    def ratio(self) -> float:
        """Honest executions with the adversary on, per execution with it off."""
        return kept(self.on.honest_executions, self.off.honest_executions)


def kept(with_adversary: int, without: int) -> float:
    return with_adversary / without if without else 1.0


def _fingerprint(core: NodeCore) -> tuple[object, ...]:
    """What a repeated message must not change: ledger, books, locks,
    decisions, orders being worked, unsettled trades."""
    return (
        core.ledger.version,
        tuple(book.version for book in core.books.values()),
        sorted(core.locks),
        len(core.decisions),
        sorted((k, w.remaining_lots, w.round, len(w.accepted)) for k, w in core.working.items()),
        sorted((peer, len(trades)) for peer, trades in core.unsettled.items()),
    )


class AdversarySimulation(Simulation):
    """A simulation that tells honest from adversary nodes and watches them.

    ``adversaries`` are the node ids measured as adversaries, whether or not
    they play a strategy (in the run without, they run plain NodeCore).

    So that the runs with and without a strategy differ only by what it made
    honest nodes do, the trader flow draws from a random source of its own
    (one seed per order), and so do the latency and faults of every message
    to or from an adversary node: what an adversary sends does not reshuffle
    the orders traders send or the fates of honest nodes' messages to each
    other.
    """

    def __init__(
        self,
        seed: int,
        nodes: int,
        adversaries: Iterable[NodeId],
        strategies: Mapping[NodeId, type[NodeCore]] | None = None,
        faults: Faults | None = None,
        config: NodeConfig | None = None,
    ) -> None:
        super().__init__(seed, nodes, faults=faults, config=config, strategies=strategies)
        self.adversaries = frozenset(adversaries)
        unknown = self.adversaries - set(self.ids)
        if unknown:
            raise ValueError(f"no such nodes: {sorted(unknown)}")
        self.honest = [n for n in self.ids if n not in self.adversaries]
        self.figures = RunFigures(quota={a: QuotaWatch() for a in sorted(self.adversaries)})
        self._flow_rng = random.Random(f"flow:{seed}")
        self._adversary_rng = random.Random(f"adversaries:{seed}")
        self._offered: set[tuple[NodeId, int]] = set()
        self._decided: set[tuple[NodeId, int]] = set()
        self._limited: set[tuple[NodeId, NodeId, int, int]] = set()
        self._delivered: set[tuple[NodeId, NodeId, Message]] = set()
        self._full_quotas: dict[int, Quota] = {}
        """The full quota (ratio not counted) by bond held."""

    # ------------------------------------------------------------ flow

    def schedule_flow(self, orders: int, duration_ms: int) -> int:
        network_rng, self.rng = self.rng, self._flow_rng
        try:
            return super().schedule_flow(orders, duration_ms)
        finally:
            self.rng = network_rng

    def _random_order(self) -> None:
        network_rng, self.rng = self.rng, random.Random(self._flow_rng.getrandbits(64))
        try:
            super()._random_order()
        finally:
            self.rng = network_rng

    # -------------------------------------------------------- watching

    def run(self, until_ms: int | None = None, on_event: Callable[[], None] | None = None) -> None:
        """Run as the simulation does, checking the locks held for adversary
        nodes after every event, in every phase."""
        if on_event is None:
            super().run(until_ms, self._watch_locks)
            return
        outer = on_event

        def both() -> None:
            self._watch_locks()
            outer()

        super().run(until_ms, both)

    def _watch_locks(self) -> None:
        quotas = self._full_quotas
        for adversary, watch in self.figures.quota.items():
            for holder in self.honest:
                view = self.nodes[holder].core.peers[adversary]
                count, notional = view.lock_count, view.lock_notional
                if not count:
                    continue
                quota = quotas.get(view.bond_held)
                if quota is None:
                    quota = lock_quota(view.bond_held, PERMILLE, self.config.clearing.quota)
                    quotas[view.bond_held] = quota
                if count > quota.max_locks or notional > quota.max_lock_notional:
                    watch.breaches += 1
                if count > watch.peak_locks or notional > watch.peak_notional:
                    watch.full_quota = quota
                    watch.peak_locks = max(watch.peak_locks, count)
                    watch.peak_notional = max(watch.peak_notional, notional)

    def note_end_quotas(self) -> None:
        """Record the smallest quota, acceptance ratio counted, that an honest
        holder allows each adversary node now."""
        quota_config = self.config.clearing.quota
        for adversary, watch in self.figures.quota.items():
            for holder in self.honest:
                view = self.nodes[holder].core.peers[adversary]
                permille = PERMILLE
                if view.ratio is not None:
                    # Reading a ratio decays it: read a copy, so that watching
                    # changes nothing in the holder.
                    permille = copy.copy(view.ratio).permille(
                        self.now(holder).mono_ms, quota_config.ratio_min_offered_minor
                    )
                quota = lock_quota(view.bond_held, permille, quota_config)
                end = watch.end_quota
                if end is None or quota.max_lock_notional < end.max_lock_notional:
                    watch.end_quota = quota

    def _reply(self, node_id: NodeId, effect: Reply) -> None:
        event = effect.event
        if (
            type(event) is Executed
            and node_id not in self.adversaries
            and event.counterparty not in self.adversaries
        ):
            self.figures.honest_executions += 1
            self.figures.honest_lots += event.quantity_lots
        super()._reply(node_id, effect)

    def _send(self, sender: NodeId, effect: Send) -> None:
        adversaries = self.adversaries
        message = effect.message
        if type(message) is DefaultNotice and sender not in adversaries:
            defaults = self.figures.defaults
            if all(d[:2] != (sender, message.defaulter) for d in defaults):
                defaults.append((sender, message.defaulter, message.claimed, message.loss))
        if sender not in adversaries and effect.peer not in adversaries:
            super()._send(sender, effect)
            return
        if sender not in adversaries:
            self._honest_to_adversary(sender, effect)
        network_rng, self.rng = self.rng, self._adversary_rng
        try:
            super()._send(sender, effect)
        finally:
            self.rng = network_rng

    def _honest_to_adversary(self, holder: NodeId, effect: Send) -> None:
        figures, message = self.figures, effect.message
        if type(message) is PotentialTrades:
            answer = (holder, effect.peer, message.request_id, message.round)
            if message.limited and answer not in self._limited:  # once, not per resend
                self._limited.add(answer)
                figures.limited_for_adversaries[message.limited] += 1
            for offer in message.offers:
                key = (holder, offer.lock_id)
                if key not in self._offered:
                    self._offered.add(key)
                    figures.locks_offered_to_adversaries += 1
        elif isinstance(message, Confirmation | Refusal):
            key = (holder, message.lock_id)
            if key not in self._decided:  # a decision is sent again on every retry
                self._decided.add(key)
                figures.decisions_for_adversaries[_outcome(message)] += 1

    def _deliver(self, sender: NodeId, receiver: NodeId, payload: Send | bytes) -> None:
        node = self.nodes[receiver]
        if (
            sender not in self.adversaries
            or receiver in self.adversaries
            or type(payload) is not Send
            or not node.up
            or (self.blocked and frozenset((sender, receiver)) in self.blocked)
        ):
            super()._deliver(sender, receiver, payload)
            return
        key = (sender, receiver, payload.message)
        if key not in self._delivered:
            self._delivered.add(key)
            super()._deliver(sender, receiver, payload)
            return
        # A copy of a message this node already received from the adversary:
        # every handler is idempotent, so nothing the node keeps may change.
        self.figures.repeats_delivered += 1
        before = _fingerprint(node.core)
        super()._deliver(sender, receiver, payload)
        if _fingerprint(node.core) != before:
            self.figures.repeats_that_changed_state += 1

    def finish(self) -> RunFigures:
        """Fill in what is read at the end of a run, and return the figures."""
        figures = self.figures
        figures.report = self.report
        figures.lock_outcomes = self.checker.lock_outcomes()
        for node_id, node in self.nodes.items():
            core = node.core
            if node_id in self.adversaries:
                figures.adversary_stats.update(core.stats)
                continue
            limited = {k: v for k, v in core.stats.items() if k.startswith("limited:")}
            figures.limited.update(limited)
            for lock_id, decision in core.decisions.items():
                if (node_id, lock_id) in self._offered:
                    figures.adversary_lock_outcomes[_outcome(decision)] += 1
            for peer, view in core.peers.items():
                if view.suspended:
                    figures.suspended.append((node_id, peer, view.suspended))
                figures.bonds_held[(node_id, peer)] = view.bond_held
            bond_asset = AssetCode(core.config.clearing.bond_asset)
            figures.losses[node_id] = -core.ledger.balance(AccountKey(LOSSES_OWNER, bond_asset))
        return figures


def _outcome(decision: Confirmation | Refusal) -> str:
    return decision.reason if isinstance(decision, Refusal) else "taken"


def default_adversaries(nodes: int, count: int = 1) -> tuple[NodeId, ...]:
    """The adversary nodes of a comparison: the last ``count`` node ids."""
    if not 1 <= count < nodes:
        raise ValueError("need at least one adversary and one honest node")
    return tuple(NodeId(f"n{i:03d}") for i in range(nodes - count, nodes))


def flow_duration_ms(orders: int) -> int:
    """The virtual time the trader flow is spread over, as run_simulation does."""
    return max(1_000, orders * 20)


CLEAN: Final = Faults.none()


def measure(
    seed: int,
    nodes: int,
    orders: int,
    adversaries: Iterable[NodeId],
    strategy: type[NodeCore] | None,
    faults: Faults | None = CLEAN,
    config: NodeConfig | None = None,
) -> RunFigures:
    """One run through every phase, every invariant checked: fund, trader
    flow, heal, settle, final checks. ``strategy`` None runs the adversary
    nodes as plain NodeCore; ``faults`` None derives them from the seed."""
    ids = tuple(adversaries)
    strategies = {} if strategy is None else dict.fromkeys(ids, strategy)
    sim = AdversarySimulation(seed, nodes, ids, strategies, faults, config)
    sim.fund()
    end_ms = sim.schedule_flow(orders, flow_duration_ms(orders))
    sim.run(until_ms=end_ms)
    sim.note_end_quotas()
    sim.heal()
    sim.settle()
    sim.check_final()
    return sim.finish()


def compare(
    seed: int,
    nodes: int,
    orders: int,
    strategy: str | type[Adversary],
    adversary_ids: Iterable[NodeId] | None = None,
    faults: Faults | None = CLEAN,
    config: NodeConfig | None = None,
) -> Comparison:
    """Run ``seed`` with the adversary nodes (by default the last node)
    playing ``strategy``, then with them honest; see the module docstring.

    A strategy named, or passed without its own ``attack_ms``, plays from
    when its bonds are booked until the trader flow ends. ``faults`` None
    derives them from the seed; the default is a clean network. Raises
    :class:`~datn.sim.invariants.InvariantError` if either run breaks one.
    """
    kind = STRATEGIES[strategy] if isinstance(strategy, str) else strategy
    if kind.attack_ms == Adversary.attack_ms:
        kind = kind.tuned(attack_ms=BOND_SETUP_MS + flow_duration_ms(orders))
    ids = tuple(adversary_ids) if adversary_ids is not None else default_adversaries(nodes)
    on = measure(seed, nodes, orders, ids, kind, faults, config)
    off = measure(seed, nodes, orders, ids, None, faults, config)
    return Comparison(seed, nodes, orders, kind.name, ids, faults, on, off)


def summary(comparisons: list[Comparison]) -> list[str]:
    """Lines describing comparisons of one strategy (over one or more seeds)."""
    if not comparisons:
        return []
    first = comparisons[0]
    on = sum(c.on.honest_executions for c in comparisons)
    off = sum(c.off.honest_executions for c in comparisons)
    lots_on = sum(c.on.honest_lots for c in comparisons)
    lots_off = sum(c.off.honest_lots for c in comparisons)
    numbers = [c.seed for c in comparisons]
    consecutive = numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    if len(numbers) > 2 and consecutive:
        seeds = f"{numbers[0]}..{numbers[-1]}"
    else:
        seeds = ", ".join(str(n) for n in numbers)
    lines = [
        f"{first.strategy} at {', '.join(first.adversaries)} ({first.nodes} nodes, "
        f"{first.orders} orders, seed{'s' if len(comparisons) > 1 else ''} {seeds})",
        f"  honest executions: {on} with the adversary, {off} without: "
        f"{kept(on, off):.1%} kept (lots {lots_on} / {lots_off}: {kept(lots_on, lots_off):.1%})",
    ]
    if len(comparisons) > 1:
        lines.append(
            "    per seed: "
            + ", ".join(
                f"{c.seed}: {c.on.honest_executions}/{c.off.honest_executions}" for c in comparisons
            )
        )
    watches = [w for c in comparisons for w in c.on.quota.values()]
    full = max((w.full_quota for w in watches), key=lambda q: q.max_lock_notional)
    ends = [w.end_quota for w in watches if w.end_quota is not None]
    line = (
        f"  held open for one adversary at one honest holder, at most: "
        f"{max(w.peak_locks for w in watches)} locks, "
        f"{max(w.peak_notional for w in watches)} notional "
        f"(full quota {full.max_locks} locks, {full.max_lock_notional} notional; "
        f"{sum(w.breaches for w in watches)} breaches)"
    )
    if ends:
        end = min(ends, key=lambda q: q.max_lock_notional)
        line += f"; quota when the flow ended {end.max_locks} locks, {end.max_lock_notional}"
    lines.append(line)
    offered = sum(c.on.locks_offered_to_adversaries for c in comparisons)
    lines.append(
        f"  locks offered to adversaries {offered}; "
        + _counts("their outcomes", _total(comparisons, "outcomes"))
    )
    lines.append("  " + _counts("answers to adversaries limited", _total(comparisons, "limited")))
    lines.append(
        "  " + _counts("decisions on adversaries' acceptances", _total(comparisons, "decisions"))
    )
    lines.append(
        "  " + _counts("honest holders' limited counters (with)", _total(comparisons, "all"))
    )
    repeats = sum(c.on.repeats_delivered for c in comparisons)
    changed = sum(c.on.repeats_that_changed_state for c in comparisons)
    lines.append(
        f"  repeated messages delivered to honest nodes: {repeats} ({changed} changed state)"
    )
    suspended = sorted({s for c in comparisons for s in c.on.suspended})
    if suspended:
        lines.append(
            "  suspended by honest nodes: " + ", ".join(f"{a}->{b} ({r})" for a, b, r in suspended)
        )
    return lines


def _total(comparisons: list[Comparison], which: str) -> Counter[str]:
    total: Counter[str] = Counter()
    for c in comparisons:
        figures = c.on
        total.update(
            {
                "limited": figures.limited_for_adversaries,
                "decisions": figures.decisions_for_adversaries,
                "outcomes": figures.adversary_lock_outcomes,
                "all": figures.limited,
            }[which]
        )
    return total


def _counts(label: str, counts: Counter[str]) -> str:
    if not counts:
        return f"{label}: none"
    return f"{label}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


__all__ = [
    "CLEAN",
    "STRATEGIES",
    "Adversary",
    "AdversarySimulation",
    "Comparison",
    "LockGrabber",
    "QuotaWatch",
    "Replayer",
    "RunFigures",
    "SlowAcceptor",
    "compare",
    "default_adversaries",
    "flow_duration_ms",
    "kept",
    "measure",
    "summary",
]
