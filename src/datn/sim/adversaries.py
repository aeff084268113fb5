"""Adversarial nodes in the simulator, and what they cost honest traders.

Each adversary is a named strategy: a small subclass of
:class:`~datn.protocol.node.NodeCore`. It runs through the same deterministic
core as every honest node and is journaled the same way: every input still
goes through :meth:`NodeCore._apply_into`, live, on replay and on restart,
and the strategy hooks in there, so a crashed adversary is rebuilt from its
snapshot and journal like any other node, and the simulator's replay check
(invariant 10) covers the strategy's own state too, which the node's
snapshot carries. Strategies draw no randomness: what they do is a function
of their inputs, with every choice a keyed hash of a counter, like the
core's ids.

The strategies (DESIGN.md sections 5, 7 and 10 say what must hold against
them; each class says it again):

``lock-grabber``
    Broadcasts huge orders that cross every resting order and never accepts.
``slow-acceptor``
    Accepts at the very edge of each offer's TTL, past an honest budget.
``replayer``
    Sends copies of its old messages again, as new messages.
``defaulter``
    Trades as usual, then never settles.
``bad-terms``
    As holder, adds offers beyond the originator's terms to its answers and
    confirms other terms than it offered.
``bond-claimer``
    Claims bonds it never pays for, one far beyond its capital.
``clock-stamper``
    Stamps its messages with extreme hybrid logical clock stamps.
``flooder``
    Floods every peer with adverts and trade prints at absurd prices.
``refuser``
    Offers as a holder, then refuses every acceptance or lets its locks lapse.
``off-market``
    Trades between its own traders at absurd prices, and prints them, to move
    marks.
``nonsense``
    Sends well-typed nonsense of every message kind, decoded through the wire
    codec, about things that exist and things that do not.

:func:`compare` measures an adversary: the same seed runs twice, the adversary
nodes switched on and then off (the same node ids running plain
:class:`NodeCore`), each through every phase with every invariant checked,
and it counts the executions between honest nodes in each run.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Self, cast

import msgspec

from datn.clearing.quota import PERMILLE, AcceptanceRatio, Quota, lock_quota
from datn.domain import AssetCode, Side, TimeInForce
from datn.domain.limits import MAX_PRICE_TICKS, MAX_QUANTITY_LOTS
from datn.ledger import AccountKey
from datn.protocol.clock import MAX_LOGICAL, Hlc, Now
from datn.protocol.context import Context
from datn.protocol.effects import (
    Accepted,
    Effect,
    Executed,
    Input,
    Pay,
    ReceiveInput,
    Reply,
    RestartInput,
    Send,
    SetTimer,
    TickInput,
    Violation,
)
from datn.protocol.liability import CAPITAL_OWNER, LOSSES_OWNER, Liability
from datn.protocol.messages import (
    Acceptance,
    Advert,
    BondAnswer,
    BondRequest,
    Confirmation,
    DefaultNotice,
    Message,
    NodeId,
    Offer,
    OrderBroadcast,
    PotentialTrades,
    Refusal,
    Release,
    StatementAnswer,
    StatementProposal,
    TradePrint,
)
from datn.protocol.node import NodeConfig, NodeCore
from datn.protocol.originator import Candidate, Originator, Working
from datn.protocol.venue import OrderRequest, trader_owner
from datn.risk import RiskConfig
from datn.sim.network import BOND_SETUP_MS, PRODUCTS, Faults, SimReport, Simulation
from datn.wire import (
    LocalProtocolError,
    RemoteProtocolError,
    decode_message,
    encode_message,
    to_wire,
)
from datn.wire.limits import MAX_INT64, MAX_OFFERS_PER_REPLY
from datn.wire.schema import (
    WireAcceptance,
    WireAdvert,
    WireBondAnswer,
    WireBondRequest,
    WireConfirmation,
    WireDefaultNotice,
    WireHeartbeat,
    WireHlc,
    WireMessage,
    WireOffer,
    WireOrderBroadcast,
    WirePotentialTrades,
    WireRefusal,
    WireRelease,
    WireSide,
    WireStatement,
    WireStatementAnswer,
    WireStatementProposal,
    WireTradePrint,
)

_STRATEGY_INPUTS: Final = (ReceiveInput, TickInput, RestartInput)
"""The inputs after which a strategy acts: each is always journaled."""
_STATE_ENCODER: Final = msgspec.msgpack.Encoder(order="deterministic")
YEAR_MS: Final = 365 * 86_400_000


class StrategyState(msgspec.Struct, array_like=True):
    """A strategy's own state: what it has done and means to do. It goes into
    the node's snapshot (and so its state hash) in MessagePack; a strategy
    adds its fields in a subclass, each with a default."""

    attack_from_ms: int | None = None
    """When the strategy started to play, on the node's monotonic clock."""
    draws: int = 0
    """How many keyed draws the strategy has made: the counter it hashes."""


class Adversary(NodeCore):
    """A node core that plays a strategy on top of the protocol.

    Every input goes through :meth:`_apply_into`, live and on replay, so a
    strategy's hooks run alike in both:

    * :meth:`_swallows` / :meth:`_on_swallowed`: a received message the
      strategy handles instead of the core (it is journaled all the same,
      and its stamp is checked and merged as the core would);
    * :meth:`_observe`: what the core did with an input;
    * :meth:`_act`: after every receive, tick and restart, the strategy's
      own moves;
    * :meth:`_rewrite`: the strategy's last word on the effects of an input
      (a stamp, a payment, an answer's terms);
    * :meth:`_next_act_ms`: when it next wants a tick;
    * :attr:`state`: its state (a :class:`StrategyState`), snapshotted with
      the node, and :meth:`_rebase` to move its times onto a restarted
      node's new monotonic clock.

    Knobs are class attributes; :meth:`tuned` makes a subclass with others.
    """

    name: ClassVar[str] = ""
    attack_ms: ClassVar[int] = 600_000
    """How long the strategy plays, from the moment :meth:`_ready` holds
    (by default: every peer has booked this node's bond); after that the
    node behaves like an honest one."""
    state_type: ClassVar[type[StrategyState]] = StrategyState
    state: StrategyState

    @classmethod
    def tuned(cls, **knobs: int) -> type[Self]:
        """This strategy with other knob values (class attributes)."""
        for knob, value in knobs.items():
            if not isinstance(getattr(cls, knob, None), int) or not isinstance(value, int):
                raise ValueError(f"{cls.__name__} has no integer knob {knob!r}")
            if value <= 0:
                raise ValueError(f"{knob} must be positive")
        return cast("type[Self]", type(cls.__name__, (cls,), dict(knobs)))

    @classmethod
    def network_config(cls, config: NodeConfig) -> NodeConfig:
        """The configuration every node of a comparison runs, with the
        strategy and without: most strategies leave it as it is."""
        return config

    # ------------------------------------------------------------ dispatch

    def _build(self, context: Context) -> None:
        super()._build(context)
        self.state = self.state_type()

    def _apply_into(self, event: Input, now: Now, out: list[Effect]) -> None:
        first = len(out)
        if isinstance(event, RestartInput):
            self._rebase(now.mono_ms - self.context.last_mono_ms)
        super()._apply_into(event, now, out)
        self._observe(event, now, out, first)
        if isinstance(event, _STRATEGY_INPUTS):
            state = self.state
            if state.attack_from_ms is None and self._ready(now):
                state.attack_from_ms = now.mono_ms
            self._act(event, now, out)
        self._rewrite(event, now, out, first)

    def _dispatch(self, event: Input, now: Now, out: list[Effect]) -> None:
        if (
            isinstance(event, ReceiveInput)
            and self._swallows(event.sender, event.message, now)
            and self._take_in(event, now)
        ):
            self._on_swallowed(event.sender, event.message, now, out)
        else:
            super()._dispatch(event, now, out)

    def _take_in(self, event: ReceiveInput, now: Now) -> bool:
        """Check and merge a swallowed message's stamp as the core does; a
        message the core would drop goes to the core, which counts it."""
        context = self.context
        if event.sender not in self.liability.peers:
            return False
        if not context.clock.admits(event.hlc, now.wall_ms, context.config.max_clock_drift_ms):
            return False
        context.clock.observe(event.hlc, now.wall_ms)
        context.hlc_in = event.hlc
        return True

    def _attacking(self, now: Now) -> bool:
        start = self.state.attack_from_ms
        return start is not None and now.mono_ms < start + self.attack_ms

    def _rebase(self, delta_ms: int) -> None:
        """Move every time the strategy keeps onto the restarted node's new
        monotonic clock, as the core re-bases its own deadlines."""
        state = self.state
        if state.attack_from_ms is not None:
            state.attack_from_ms += delta_ms

    # --------------------------------------------------------------- draws

    def _draw(self, bound: int) -> int:
        """A number in ``[0, bound)``: a keyed hash of the draw counter, so
        the journal decides it and replay repeats it."""
        self.state.draws += 1
        return self.context.random_id(self.name, "draw", self.state.draws) % bound

    def _chance(self, permille: int) -> bool:
        return self._draw(PERMILLE) < permille

    def _between(self, low: int, high: int) -> int:
        return low + self._draw(high - low + 1)

    @staticmethod
    def _timer(when_ms: int, out: list[Effect]) -> int:
        """Ask for a tick at ``when_ms``, and give it back."""
        out.append(SetTimer(when_ms))
        return when_ms

    # --------------------------------------------------------------- hooks

    def _ready(self, now: Now) -> bool:
        return all(view.bond_posted > 0 for view in self.liability.peers.values())

    def _swallows(self, sender: NodeId, message: Message, now: Now) -> bool:
        return False

    def _on_swallowed(self, sender: NodeId, message: Message, now: Now, out: list[Effect]) -> None:
        """Handle a message :meth:`_swallows` claimed."""

    def _observe(self, event: Input, now: Now, out: list[Effect], first: int) -> None:
        """What the core did with ``event``: its effects are ``out[first:]``."""

    def _act(self, event: Input, now: Now, out: list[Effect]) -> None:
        """The strategy's moves after ``event``; ``out`` already holds the core's effects."""

    def _rewrite(self, event: Input, now: Now, out: list[Effect], first: int) -> None:
        """Change the effects of ``event`` (``out[first:]``) before they leave."""

    def _next_act_ms(self) -> int | None:
        return None

    # ------------------------------------------------------------ snapshot

    def _strategy_snapshot(self) -> bytes:
        return _STATE_ENCODER.encode(self.state)

    def _strategy_restore(self, state: bytes) -> None:
        self.state = msgspec.msgpack.decode(state, type=self.state_type)

    # ------------------------------------------------------------- queries

    def next_timer_ms(self) -> int | None:
        times = [t for t in (super().next_timer_ms(), self._next_act_ms()) if t is not None]
        return min(times) if times else None


def _bounded_append(items: list[Any], item: object, limit: int) -> None:
    items.append(item)
    if len(items) > limit:
        del items[: len(items) - limit]


# ================================================================ lock-grabber


class LockGrabberState(StrategyState, array_like=True):
    grabs: int = 0
    next_grab_ms: int | None = None
    grab_ids: list[int] = msgspec.field(default_factory=list)
    """The request ids of the latest grabs, to tell their answers from those
    to its own traders' orders."""


class LockGrabber(Adversary):
    """Asks every peer for everything, as often as it can, and takes nothing.

    Every ``period_ms`` it broadcasts, for each product and side, an order for
    ``lots`` lots at a limit that crosses every resting order, to every peer.
    Answers to those requests are kept, never accepted or released: the
    holders' locks run out by themselves. Its own traders' orders are worked
    as usual.

    Must hold: honest holders never hold open for it more than the quota its
    bond allows, limit it (``lock_quota``, ``broadcast_rate``), shrink its
    quota to the floor as it takes nothing, and honest trading goes on.
    """

    name = "lock-grabber"
    period_ms: ClassVar[int] = 10
    lots: ClassVar[int] = 1_000_000
    state_type = LockGrabberState
    state: LockGrabberState

    def _swallows(self, sender: NodeId, message: Message, now: Now) -> bool:
        return type(message) is PotentialTrades and message.request_id in self.state.grab_ids

    def _on_swallowed(self, sender: NodeId, message: Message, now: Now, out: list[Effect]) -> None:
        assert isinstance(message, PotentialTrades)
        self.context.count("grab_locks_kept", len(message.offers))
        if message.limited:
            self.context.count(f"grab_limited:{message.limited}")

    def _act(self, event: Input, now: Now, out: list[Effect]) -> None:
        state = self.state
        if not self._attacking(now):
            state.next_grab_ms = None
            return
        if state.next_grab_ms is not None and now.mono_ms < state.next_grab_ms:
            return
        context = self.context
        for product_id in sorted(context.products):
            for side in (Side.BUY, Side.SELL):
                state.grabs += 1
                request_id = context.random_id("grab", state.grabs)
                _bounded_append(state.grab_ids, request_id, 256)
                limit = MAX_PRICE_TICKS if side is Side.BUY else 1
                request = OrderBroadcast(request_id, 1, product_id, side, self.lots, limit, False)
                for peer in context.peers:
                    context.send(peer, request, now, out)
        context.count("grab_broadcasts", 2 * len(context.products) * len(context.peers))
        state.next_grab_ms = self._timer(now.mono_ms + self.period_ms, out)

    def _rebase(self, delta_ms: int) -> None:
        super()._rebase(delta_ms)
        if self.state.next_grab_ms is not None:
            self.state.next_grab_ms += delta_ms

    def _next_act_ms(self) -> int | None:
        return self.state.next_grab_ms


# =============================================================== slow-acceptor


class SlowOriginator(Originator):
    """An originator that accepts at the edge of each offer's TTL."""

    node: SlowAcceptor | None = None
    """The node whose strategy decides when this originator plays."""

    def _playing(self, now: Now) -> bool:
        return self.node is not None and self.node._attacking(now)

    def _edge_ms(self, candidate: Candidate) -> int:
        assert self.node is not None
        ttl = min(candidate.offer.ttl_ms, self.context.config.max_offer_ttl_ms)
        return candidate.received_mono_ms + ttl - self.node.lead_ms

    def _decide(self, working: Working, now: Now, out: list[Effect]) -> None:
        if self._playing(now):
            node_id = self.context.node_id
            edges = [self._edge_ms(c) for c in working.candidates if c.holder != node_id]
            if edges and now.mono_ms < min(edges):
                working.awaiting = {node_id}  # never answers: the deadline decides
                working.deadline_mono_ms = min(edges)
                out.append(SetTimer(working.deadline_mono_ms))
                return
        super()._decide(working, now, out)

    def _in_budget(self, candidate: Candidate, now: Now) -> bool:
        if candidate.holder == self.context.node_id or not self._playing(now):
            return super()._in_budget(candidate, now)
        return now.mono_ms <= self._edge_ms(candidate)


class SlowAcceptor(Adversary):
    """Accepts at the last moment: ``lead_ms`` before an offer's TTL runs
    out, counted from its arrival, past an honest originator's budget.

    It keeps an order's collection window open (no peer is left to answer,
    so only the deadline closes it) until the earliest such edge among the
    remote offers, then ranks and accepts as usual, counting every remote
    offer as alive until its own edge.

    Must hold: holders refuse, as expired, every acceptance that reaches
    them after the lock's TTL by their own clock (the checker fails a run
    that takes one late), and take those that arrive in time.
    """

    name = "slow-acceptor"
    lead_ms: ClassVar[int] = 6
    originator_class = SlowOriginator

    def _build(self, context: Context) -> None:
        super()._build(context)
        assert isinstance(self.originator, SlowOriginator)
        self.originator.node = self


# ==================================================================== replayer

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


class ReplayerState(StrategyState, array_like=True):
    replays: int = 0
    next_replay_ms: int | None = None
    sent: list[tuple[int, str, bytes]] = msgspec.field(default_factory=list)
    """(monotonic ms, peer, the message in its wire encoding), oldest first."""


class Replayer(Adversary):
    """Sends copies of its old messages to the peers it first sent them to.

    It remembers the last ``memory`` messages of the kinds in
    :data:`REPLAYED` it sent; every ``period_ms`` it picks ``burst`` of those
    at least ``min_age_ms`` and at most ``max_age_ms`` old (a keyed hash of a
    counter picks which) and sends each again, as a new message under a new
    stamp (so a signed link's sequence numbers would not stop it: the core's
    idempotence has to). Otherwise it trades as usual.

    Must hold: a copy changes nothing an honest node keeps (ledger, books,
    locks, decisions, worked orders, settlement), and a holder's answer to a
    repeated acceptance is the decision it gave the first.
    """

    name = "replayer"
    period_ms: ClassVar[int] = 20
    burst: ClassVar[int] = 4
    memory: ClassVar[int] = 512
    min_age_ms: ClassVar[int] = 100
    max_age_ms: ClassVar[int] = 10**12
    """Copies of messages older than this are not sent (by default: any age)."""
    state_type = ReplayerState
    state: ReplayerState

    def _observe(self, event: Input, now: Now, out: list[Effect], first: int) -> None:
        sent = self.state.sent
        for effect in out[first:]:
            if type(effect) is Send and isinstance(effect.message, REPLAYED):
                try:
                    data = encode_message(effect.message)
                except LocalProtocolError:  # beyond the wire's limits: not sendable
                    self.context.count("replays_unencodable")
                    continue
                _bounded_append(sent, (now.mono_ms, effect.peer, data), self.memory)

    def _act(self, event: Input, now: Now, out: list[Effect]) -> None:
        state = self.state
        if not self._attacking(now):
            state.next_replay_ms = None
            return
        if state.next_replay_ms is not None and now.mono_ms < state.next_replay_ms:
            return
        old_enough = now.mono_ms - self.min_age_ms
        too_old = now.mono_ms - self.max_age_ms
        eligible = [
            index
            for index, (sent_ms, _, _) in enumerate(state.sent)
            if too_old <= sent_ms <= old_enough
        ]
        for _ in range(min(self.burst, len(eligible))):
            state.replays += 1
            pick = eligible[self.context.random_id("replay", state.replays) % len(eligible)]
            _, peer, data = state.sent[pick]
            message = decode_message(data)
            self.context.send(NodeId(peer), message, now, out)
            self.context.count(f"replays:{type(message).__name__}")
        state.next_replay_ms = self._timer(now.mono_ms + self.period_ms, out)

    def _rebase(self, delta_ms: int) -> None:
        super()._rebase(delta_ms)
        state = self.state
        if state.next_replay_ms is not None:
            state.next_replay_ms += delta_ms
        state.sent = [(t + delta_ms, peer, data) for t, peer, data in state.sent]

    def _next_act_ms(self) -> int | None:
        return self.state.next_replay_ms


# =================================================================== defaulter


class SilentLiability(Liability):
    """Clearing that never proposes a statement."""

    def settlement_cycle(self, now: Now, out: list[Effect]) -> None:
        """Proposes nothing, resends nothing and declares no one in default."""


class Defaulter(Adversary):
    """Trades as usual, then never settles: it proposes no statement and
    answers none, for the whole run.

    Must hold: its honest peers find trades with it unsettled past the
    deadline, suspend it, claim its bond for what it owes them (marked at
    prices it does not set) and record the rest as their loss, nothing
    hidden, and announce the same figures.
    """

    name = "defaulter"
    attack_ms: ClassVar[int] = 10**12
    """For good: a defaulter that settled after the flow would not default."""
    deadline_ms: ClassVar[int] = 15_000
    """The settlement deadline of a comparison's network: short enough to
    see the defaults within a run, far longer than its partitions."""
    liability_class = SilentLiability

    @classmethod
    def network_config(cls, config: NodeConfig) -> NodeConfig:
        clearing = config.clearing
        deadline = min(clearing.settlement_deadline_ms, cls.deadline_ms)
        clearing = dataclasses.replace(clearing, settlement_deadline_ms=deadline)
        return dataclasses.replace(config, clearing=clearing)

    def _swallows(self, sender: NodeId, message: Message, now: Now) -> bool:
        return isinstance(message, StatementProposal)

    def _on_swallowed(self, sender: NodeId, message: Message, now: Now, out: list[Effect]) -> None:
        self.context.count("statements_ignored")


# =================================================================== bad-terms


class BadTermsState(StrategyState, array_like=True):
    confirmed: list[tuple[int, str, bytes]] = msgspec.field(default_factory=list)
    """(lock id, originator, the confirmation it sent, wire-encoded): what it
    says again to every retry, so its word on a lock never changes."""


class BadTerms(Adversary):
    """A holder that offers beyond the originator's terms and confirms other
    terms than it offered.

    To every answer it gives while playing it adds an offer past the
    broadcast's limit (by ``skew_ticks``) and one for more lots than asked
    (by ``extra_lots``), with lock ids no lock stands behind. To an
    acceptance of a real lock that arrives in time it answers a confirmation
    of another price (``skew_ticks`` worse for the originator) or another
    quantity than accepted; it ends the lock and books nothing, and repeats
    the same confirmation to every retry.

    Must hold: an honest originator ignores and counts the bad offers
    (``offers_beyond_terms``), books nothing on a bad confirmation, records
    the holder's violation (a ``Violation`` effect with the frames, a
    ``violations:`` counter) and suspends it; no trader trades beyond its
    limit or on terms other than offered.
    """

    name = "bad-terms"
    skew_ticks: ClassVar[int] = 7
    extra_lots: ClassVar[int] = 5
    memory: ClassVar[int] = 4_096
    state_type = BadTermsState
    state: BadTermsState

    def _confirmed(self, sender: NodeId, lock_id: int) -> bytes | None:
        for confirmed_lock, originator, data in self.state.confirmed:
            if confirmed_lock == lock_id and originator == sender:
                return data
        return None

    def _swallows(self, sender: NodeId, message: Message, now: Now) -> bool:
        if type(message) is not Acceptance:
            return False
        if self._confirmed(sender, message.lock_id) is not None:
            return True
        lock = self.holder.locks.get(message.lock_id)
        return (
            self._attacking(now)
            and len(self.state.confirmed) < self.memory
            and lock is not None
            and lock.originator == sender
            and now.mono_ms < lock.expires_mono_ms
            and 1 <= message.quantity_lots <= lock.quantity_lots
        )

    def _on_swallowed(self, sender: NodeId, message: Message, now: Now, out: list[Effect]) -> None:
        assert isinstance(message, Acceptance)
        data = self._confirmed(sender, message.lock_id)
        confirmation: Message
        if data is None:
            confirmation = self._other_terms(message)
            lock = self.holder.locks[message.lock_id]
            self.holder.end_lock(lock, "bad_terms", now, out)
            self.state.confirmed.append((message.lock_id, sender, encode_message(confirmation)))
            self.context.count("bad_confirmations")
        else:
            confirmation = decode_message(data)
        self.context.send(sender, confirmation, now, out)

    def _other_terms(self, acceptance: Acceptance) -> Confirmation:
        lock = self.holder.locks[acceptance.lock_id]
        order = self.resting.orders[lock.order_id].order
        assert order.price_ticks is not None, "resting orders have a limit"
        side = order.side.opposite  # the originator's side
        price, lots = order.price_ticks, acceptance.quantity_lots
        variant = self._draw(3)
        worse = price + self.skew_ticks if side is Side.BUY else price - self.skew_ticks
        if variant == 0 and 1 <= worse <= MAX_PRICE_TICKS:
            price = worse
        elif variant == 1 and lots > 1:
            lots -= 1
        else:
            lots = min(MAX_QUANTITY_LOTS, lots + self.extra_lots)
        trade_id = self.context.random_id("bad-trade", acceptance.lock_id)
        return Confirmation(acceptance.lock_id, trade_id, order.product_id, side, price, lots)

    def _rewrite(self, event: Input, now: Now, out: list[Effect], first: int) -> None:
        if type(event) is not ReceiveInput or type(event.message) is not OrderBroadcast:
            return
        if not self._attacking(now):
            return
        broadcast = event.message
        for index in range(first, len(out)):
            effect = out[index]
            if (
                type(effect) is Send
                and type(effect.message) is PotentialTrades
                and effect.peer == event.sender
                and effect.message.request_id == broadcast.request_id
            ):
                answer = self._padded(event.sender, broadcast, effect.message)
                out[index] = Send(effect.peer, effect.hlc, answer)

    def _padded(
        self, originator: NodeId, broadcast: OrderBroadcast, answer: PotentialTrades
    ) -> PotentialTrades:
        """The answer with bad offers added: the same ones for the same
        broadcast, so a repeated answer stays the same."""
        if len(answer.offers) + 2 > MAX_OFFERS_PER_REPLY:
            return answer
        key = (originator, broadcast.request_id, broadcast.round)
        ttl_ms = self.context.config.lock_ttl_ms
        priority = Hlc(0, 0)
        asked = broadcast.quantity_lots
        limit = broadcast.limit_price_ticks
        offers = list(answer.offers)
        buy = broadcast.side is Side.BUY
        if limit is not None:
            beyond = limit + self.skew_ticks if buy else limit - self.skew_ticks
            if 1 <= beyond <= MAX_PRICE_TICKS:
                lock_id = self.context.random_id("bad-offer", *key, 1)
                offers.append(Offer(lock_id, beyond, min(asked, 10), priority, ttl_ms))
        if asked + self.extra_lots <= MAX_QUANTITY_LOTS:
            price = limit if limit is not None else 1
            lock_id = self.context.random_id("bad-offer", *key, 2)
            offers.append(Offer(lock_id, price, asked + self.extra_lots, priority, ttl_ms))
        self.context.count("bad_offers", len(offers) - len(answer.offers))
        return PotentialTrades(answer.request_id, answer.round, tuple(offers), answer.limited)


# ================================================================ bond-claimer


class BondClaimerState(StrategyState, array_like=True):
    claims: int = 0
    next_claim_ms: int | None = None


class BondClaimer(Adversary):
    """Claims bonds it never pays for.

    It posts its bonds as an honest node does, but withholds every bond
    payment its core makes (the ``Pay`` effects never reach the rail), and
    every ``period_ms`` it claims with each peer, under the request id its
    core has outstanding there, a bond ``claim_multiple`` times its whole
    capital. It plays from its first input: its bonds never count, so the
    usual start (every bond booked) never comes.

    Must hold: an honest holder counts no bond from it, gives it no quota
    (its answers to its broadcasts say ``limited="no_bond"``) and holds no
    collateral for it; it still trades with it as an originator, under the
    bond the honest node itself posted there.
    """

    name = "bond-claimer"
    period_ms: ClassVar[int] = 500
    claim_multiple: ClassVar[int] = 1_000
    state_type = BondClaimerState
    state: BondClaimerState

    def _ready(self, now: Now) -> bool:
        return True

    def _rewrite(self, event: Input, now: Now, out: list[Effect], first: int) -> None:
        if not self._attacking(now):
            return
        kept = [e for e in out[first:] if not (type(e) is Pay and e.purpose == "bond")]
        withheld = len(out) - first - len(kept)
        if withheld:
            out[first:] = kept
            self.context.count("bond_payments_withheld", withheld)

    def _act(self, event: Input, now: Now, out: list[Effect]) -> None:
        state = self.state
        if not self._attacking(now):
            state.next_claim_ms = None
            return
        if state.next_claim_ms is not None and now.mono_ms < state.next_claim_ms:
            return
        context = self.context
        asset = context.config.clearing.bond_asset
        capital = context.ledger.balance(AccountKey(CAPITAL_OWNER, AssetCode(asset)))
        amount = min(MAX_INT64, max(1, capital) * self.claim_multiple)
        for peer, view in self.liability.peers.items():
            if view.outgoing is not None and not view.outgoing.withdraw:
                bond_id = view.outgoing.bond_id
                context.send(peer, BondRequest(bond_id, asset, amount, False), now, out)
                state.claims += 1
                context.count("bond_claims_inflated")
        state.next_claim_ms = self._timer(now.mono_ms + self.period_ms, out)

    def _rebase(self, delta_ms: int) -> None:
        super()._rebase(delta_ms)
        if self.state.next_claim_ms is not None:
            self.state.next_claim_ms += delta_ms

    def _next_act_ms(self) -> int | None:
        return self.state.next_claim_ms


# =============================================================== clock-stamper


class ClockStamper(Adversary):
    """Stamps its messages with extreme hybrid logical clock stamps.

    While playing, each message it sends carries, with ``extreme_permille``
    chance, one of: a wall clock years ahead; one just beyond the drift its
    peers allow; a logical counter past the highest a peer accepts, or at
    the 64-bit edge; both at the edge; or the epoch (far behind, which a
    peer may take). With ``edge_permille`` chance (none by default) a stamp
    sits just inside the allowed drift instead: the most a peer may move an
    honest clock.

    Must hold: honest nodes refuse the stamps beyond their drift or counter
    limit and count them (``refused_clock_drift``), their clocks stay within
    the configured drift of their own wall clocks, and they can still send.
    """

    name = "clock-stamper"
    extreme_permille: ClassVar[int] = 500
    edge_permille: ClassVar[int] = 0

    def _rewrite(self, event: Input, now: Now, out: list[Effect], first: int) -> None:
        if not self._attacking(now):
            return
        for index in range(first, len(out)):
            effect = out[index]
            if type(effect) is not Send:
                continue
            if self.edge_permille and self._chance(self.edge_permille):
                drift = self.context.config.max_clock_drift_ms
                stamp = Hlc(now.wall_ms + drift - 1, 0)
            elif self._chance(self.extreme_permille):
                stamp = self._extreme(now)
            else:
                continue
            out[index] = Send(effect.peer, stamp, effect.message)
            self.context.count("stamps_extreme")

    def _extreme(self, now: Now) -> Hlc:
        drift = self.context.config.max_clock_drift_ms
        variant = self._draw(6)
        if variant == 0:
            return Hlc(now.wall_ms + self._between(1, 30) * YEAR_MS, 0)
        if variant == 1:
            return Hlc(now.wall_ms + drift + self._between(1, 1_000), 0)
        if variant == 2:
            return Hlc(now.wall_ms, MAX_LOGICAL + self._between(1, MAX_LOGICAL))
        if variant == 3:
            return Hlc(now.wall_ms, MAX_INT64)
        if variant == 4:
            return Hlc(MAX_INT64, MAX_INT64)
        return Hlc(0, 0)


# ===================================================================== flooder


class FlooderState(StrategyState, array_like=True):
    floods: int = 0
    version: int = 0
    next_flood_ms: int | None = None


class Flooder(Adversary):
    """Floods every peer with adverts and trade prints.

    Every ``period_ms`` it sends each peer ``adverts`` adverts and
    ``prints`` trade prints. The adverts show new order refs (some withdraw
    one), for listed products and for products no one lists, at any price,
    with versions that skip ahead by up to ``gap`` so that each leaves holes
    behind it. The prints report absurd prices: one tick, or
    ``price_multiple`` times the opening reference.

    Must hold: honest nodes' network books and their records of advert gaps
    stay within ``max_adverts_per_peer`` and ``max_advert_gaps`` (beyond
    them, counted and dropped), and one source moves no honest node's marks:
    the flooder's prints count as one source of many, so a mark for anyone
    else stays among the honest prices.
    """

    name = "flooder"
    period_ms: ClassVar[int] = 20
    adverts: ClassVar[int] = 10
    prints: ClassVar[int] = 2
    gap: ClassVar[int] = 7
    price_multiple: ClassVar[int] = 100
    state_type = FlooderState
    state: FlooderState

    def _act(self, event: Input, now: Now, out: list[Effect]) -> None:
        state = self.state
        if not self._attacking(now):
            state.next_flood_ms = None
            return
        if state.next_flood_ms is not None and now.mono_ms < state.next_flood_ms:
            return
        context = self.context
        for peer in context.peers:
            for _ in range(self.adverts):
                context.send(peer, self._advert(now), now, out)
            for _ in range(self.prints):
                context.send(peer, self._print(now), now, out)
        state.floods += 1
        context.count("flood_adverts", self.adverts * len(context.peers))
        context.count("flood_prints", self.prints * len(context.peers))
        state.next_flood_ms = self._timer(now.mono_ms + self.period_ms, out)

    def _product(self) -> str:
        products = sorted(self.context.products)
        if self._chance(200):
            return f"FLOOD{self._draw(1_000)}"
        return products[self._draw(len(products))]

    def _advert(self, now: Now) -> Advert:
        state = self.state
        state.version += self._between(1, self.gap)
        product_id = self._product()
        side = Side.BUY if self._draw(2) else Side.SELL
        price = self._absurd_price(product_id) if self._draw(2) else self._between(1, 10_000)
        lots = 0 if self._chance(100) else self._between(1, 1_000)
        order_ref = self.context.random_id("flood-ref", state.version)
        priority = Hlc(now.wall_ms, 0)
        return Advert(order_ref, product_id, side, price, lots, priority, state.version)

    def _print(self, now: Now) -> TradePrint:
        product_id = self._product()
        return TradePrint(
            product_id,
            self._absurd_price(product_id),
            self._between(1, 100),
            self.context.clock.tick(now.wall_ms),
        )

    def _absurd_price(self, product_id: str) -> int:
        if self._draw(2):
            return 1
        reference = self.context.marks.opening.get(product_id, 10_000)
        return min(MAX_PRICE_TICKS, reference * self.price_multiple)

    def _rebase(self, delta_ms: int) -> None:
        super()._rebase(delta_ms)
        if self.state.next_flood_ms is not None:
            self.state.next_flood_ms += delta_ms

    def _next_act_ms(self) -> int | None:
        return self.state.next_flood_ms


# ===================================================================== refuser


class Refuser(Adversary):
    """Offers as a holder, then refuses every acceptance.

    Its core answers broadcasts as usual, so its traders' resting orders
    are offered (and, as nothing ever takes them, they stay at the front of
    the book). While it plays, an acceptance of a live lock is refused at
    once as expired, or, with ``lapse_permille`` chance per lock, not
    answered at all, so the lock lapses and retries meet the core's refusal.

    Must hold: honest originators ask the other holders first in the next
    round, and route and rank a holder whose accepted lots keep ending
    refused after every other (its reliability falls below
    ``unreliable_permille``), so honest liquidity that stood all along is
    taken and honest executions stay high.
    """

    name = "refuser"
    lapse_permille: ClassVar[int] = 250

    def _swallows(self, sender: NodeId, message: Message, now: Now) -> bool:
        if type(message) is not Acceptance or not self._attacking(now):
            return False
        lock = self.holder.locks.get(message.lock_id)
        return (
            lock is not None
            and lock.originator == sender
            and now.mono_ms < lock.expires_mono_ms
            and 1 <= message.quantity_lots <= lock.quantity_lots
        )

    def _on_swallowed(self, sender: NodeId, message: Message, now: Now, out: list[Effect]) -> None:
        assert isinstance(message, Acceptance)
        lapse = self.context.random_id("lapse", message.lock_id) % PERMILLE
        if lapse < self.lapse_permille:
            self.context.count("refuser_lapsed")
            return
        lock = self.holder.locks[message.lock_id]
        refusal = self.holder.end_lock(lock, "expired", now, out)
        self.context.count("refuser_refused")
        self.context.send(sender, refusal, now, out)


# ================================================================== off-market

WASH_PREFIX: Final = "wash:"
"""The client order ids of an off-market node's own wash orders."""


class WashOriginator(Originator):
    """An originator that works its node's wash orders at home only: they
    are never broadcast, and a wash taker takes only its paired maker."""

    maker_order_id: int | None = None
    """While a wash taker is placed: the maker order it must trade with."""

    def _targets(self, working: Working, now: Now, *, counted: bool = False) -> list[NodeId]:
        if working.order.client_order_id.startswith(WASH_PREFIX):
            return []
        return super()._targets(working, now, counted=counted)

    def _local_offers(self, working: Working, now: Now) -> list[Candidate]:
        maker = self.maker_order_id
        if maker is None or not working.order.client_order_id.startswith(WASH_PREFIX):
            return super()._local_offers(working, now)
        order = working.order
        book = self.resting.books[order.product_id]
        found = book.lockable(
            order.side, working.limit_ticks, working.remaining_lots, order.trader_id
        )
        node_id = self.context.node_id
        candidates = []
        for order_id, price, lots in found:
            if order_id != maker:
                continue
            lock = self.holder.new_lock(node_id, order_id, lots, now)
            offer = Offer(lock.lock_id, price, lots, self.resting.orders[order_id].priority, 0)
            candidates.append(Candidate(node_id, offer, now.mono_ms))
        return candidates


class OffMarketState(StrategyState, array_like=True):
    washes: int = 0
    next_wash_ms: int | None = None


class OffMarket(Adversary):
    """Trades at off-market prices to move marks.

    Every ``period_ms`` one of its traders rests two lots of a product far
    from the market, on the side no honest order crosses (a sell at
    ``price_multiple`` times the opening reference, or a buy at one tick),
    and another of its traders takes one of them at once: a trade at home
    whose absurd price the core prints to every peer; the other lot rests,
    far from the market, in every peer's network book. It also sends every
    peer ``prints`` unbacked trade prints at such prices.

    Must hold: an honest node's marks for its exposure to this node do not
    move with its prices (they are the median of the other nodes' prices),
    so what it owes is valued at honest prices, and honest holders give it
    no more than its bond allows.
    """

    name = "off-market"
    period_ms: ClassVar[int] = 100
    price_multiple: ClassVar[int] = 20
    prints: ClassVar[int] = 1
    originator_class = WashOriginator
    state_type = OffMarketState
    state: OffMarketState

    def _act(self, event: Input, now: Now, out: list[Effect]) -> None:
        state = self.state
        if not self._attacking(now):
            state.next_wash_ms = None
            return
        if state.next_wash_ms is not None and now.mono_ms < state.next_wash_ms:
            return
        traders = self._traders()
        if len(traders) >= 2:
            state.washes += 1
            products = sorted(self.context.products)
            product_id = products[state.washes % len(products)]
            high = state.washes // len(products) % 2 == 0
            maker, taker = traders[state.washes % 2], traders[1 - state.washes % 2]
            self._wash(product_id, high, maker, taker, now, out)
        for peer in self.context.peers:
            for _ in range(self.prints):
                product_id = sorted(self.context.products)[self._draw(len(self.context.products))]
                price = self._absurd(product_id, bool(self._draw(2)))
                executed = self.context.clock.tick(now.wall_ms)
                self.context.send(peer, TradePrint(product_id, price, 1, executed), now, out)
        state.next_wash_ms = self._timer(now.mono_ms + self.period_ms, out)

    def _traders(self) -> list[str]:
        owners = {key.owner for key in self.context.ledger.accounts()}
        prefix = trader_owner("")
        return sorted(owner.removeprefix(prefix) for owner in owners if owner.startswith(prefix))

    def _absurd(self, product_id: str, high: bool) -> int:
        if not high:
            return 1
        reference = self.context.marks.opening.get(product_id, 10_000)
        return min(MAX_PRICE_TICKS, reference * self.price_multiple)

    def _wash(
        self, product_id: str, high: bool, maker: str, taker: str, now: Now, out: list[Effect]
    ) -> None:
        """A maker rests two lots at an absurd price; the taker takes one."""
        price = self._absurd(product_id, high)
        maker_side = Side.SELL if high else Side.BUY
        number = self.state.washes
        first = len(out)
        self._place(
            maker, f"{WASH_PREFIX}{number}:make", product_id, maker_side, 2, price, now, out
        )
        maker_id = next(
            (
                e.event.order_id
                for e in out[first:]
                if type(e) is Reply and type(e.event) is Accepted
            ),
            None,
        )
        if maker_id is None or maker_id not in self.resting.orders:
            self.context.count("wash_maker_refused")
            return
        originator = self.originator
        assert isinstance(originator, WashOriginator)
        originator.maker_order_id = maker_id
        try:
            self._place(
                taker,
                f"{WASH_PREFIX}{number}:take",
                product_id,
                maker_side.opposite,
                1,
                price,
                now,
                out,
            )
        finally:
            originator.maker_order_id = None
        self.context.count("wash_trades")

    def _place(
        self,
        trader: str,
        client_order_id: str,
        product_id: str,
        side: Side,
        lots: int,
        price: int,
        now: Now,
        out: list[Effect],
    ) -> None:
        tif = TimeInForce.GTC if client_order_id.endswith(":make") else TimeInForce.IOC
        request = OrderRequest(trader, client_order_id, product_id, side, lots, price, tif)
        self.originator.place(request, now, out)

    def _rebase(self, delta_ms: int) -> None:
        super()._rebase(delta_ms)
        if self.state.next_wash_ms is not None:
            self.state.next_wash_ms += delta_ms

    def _next_act_ms(self) -> int | None:
        return self.state.next_wash_ms


# ==================================================================== nonsense

FAKE_TTL_MS: Final = 10**12
"""The TTL of the locks a nonsense node makes up: longer than any run, so
what it later says about one never comes after that lock's end."""
_POOL: Final = 64
"""How many things of each kind a nonsense node remembers to talk about."""
_PRINTABLE: Final = "".join(chr(c) for c in range(33, 127))
_HEX: Final = "0123456789abcdef"
_REASONS: Final = ("expired", "unknown_lock", "awaiting_funds", "hash", "empty", "bad_quantity")


class NonsenseState(StrategyState, array_like=True):
    sent: int = 0
    next_ms: int | None = None
    offered_to_me: list[tuple[str, int]] = msgspec.field(default_factory=list)
    """(holder, lock id) of locks peers offered this node."""
    requests_seen: list[tuple[str, int, int]] = msgspec.field(default_factory=list)
    """(originator, request id, round) of broadcasts this node received."""
    my_locks: list[tuple[str, int]] = msgspec.field(default_factory=list)
    """(originator, lock id) of locks this node's core offered."""
    my_decisions: list[tuple[str, bytes]] = msgspec.field(default_factory=list)
    """(originator, wire bytes) of decisions this node's core sent."""
    my_refs: list[int] = msgspec.field(default_factory=list)
    """Order refs of this node's own adverts."""
    fakes: list[tuple[int, bytes]] = msgspec.field(default_factory=list)
    """Made-up lock ids announced in offers since the node last started, each
    with what this node said about it (empty until it says something): one
    word per lock, repeated."""
    pending: list[tuple[int, str, bytes, bool]] = msgspec.field(default_factory=list)
    """Nonsense held back to be sent later (reordered): (due ms, peer,
    bytes, whether it must leave the receiver unchanged)."""


class Nonsense(Adversary):
    """Sends well-typed nonsense of every message kind.

    Every ``period_ms`` it builds ``burst`` messages, taking the fourteen
    kinds in turn: each a wire struct of :mod:`datn.wire.schema` with every
    field in range (edges, random values, and ids of things that exist:
    locks offered to it and by it, broadcasts it received, its bond
    requests, its adverts, settlement cycles), encoded and decoded through
    the wire codec, so each is a message a real peer could send. It sends
    some twice (``duplicate_permille``) and holds some back for up to
    ``delay_ms`` (``delay_permille``), so they arrive out of order. Its core
    trades as usual beside it.

    What it says about locks never binds an honest node to a trade it did
    not make: it accepts or releases a lock only at a node that did not
    offer it that lock, and it decides only on locks it made up (announced
    first in an answer to a broadcast that does not exist, or to a round of
    one that was never broadcast), once each, or
    repeats its core's real decisions to nodes other than the lock's
    originator. Most of its messages are therefore *inert*: the receiver
    must count or answer them and change nothing it keeps; the simulation
    watches :attr:`inert_sends` and checks exactly that. The rest
    (broadcasts, adverts, prints, heartbeats, default notices, statements in
    its own name) are a peer's to send, and only every invariant must hold.

    Must hold: no honest node raises, none changes its ledger, books,
    locks, decisions, worked orders or clearing state on an inert message,
    and every invariant holds.
    """

    name = "nonsense"
    period_ms: ClassVar[int] = 20
    burst: ClassVar[int] = 7
    duplicate_permille: ClassVar[int] = 100
    delay_permille: ClassVar[int] = 150
    delay_ms: ClassVar[int] = 200
    state_type = NonsenseState
    state: NonsenseState
    inert_sends: list[Send]
    """The inert messages of the latest input, for the simulation to watch:
    not state (nothing the node does depends on it)."""

    def _build(self, context: Context) -> None:
        super()._build(context)
        self.inert_sends = []

    # --------------------------------------------------------- observing

    def _apply_into(self, event: Input, now: Now, out: list[Effect]) -> None:
        self.inert_sends = []
        super()._apply_into(event, now, out)

    def _rebase(self, delta_ms: int) -> None:
        super()._rebase(delta_ms)
        state = self.state
        if state.next_ms is not None:
            state.next_ms += delta_ms
        # A restarted process has lost what it held back, and the locks it
        # made up before are void like its real ones.
        state.pending = []
        state.fakes = []

    def _observe(self, event: Input, now: Now, out: list[Effect], first: int) -> None:
        state = self.state
        if type(event) is ReceiveInput:
            message, sender = event.message, event.sender
            if type(message) is PotentialTrades:
                for offer in message.offers:
                    _bounded_append(state.offered_to_me, (sender, offer.lock_id), _POOL)
            elif type(message) is OrderBroadcast:
                entry = (sender, message.request_id, message.round)
                _bounded_append(state.requests_seen, entry, _POOL)
        for effect in out[first:]:
            if type(effect) is not Send:
                continue
            message = effect.message
            if type(message) is PotentialTrades:
                for offer in message.offers:
                    _bounded_append(state.my_locks, (effect.peer, offer.lock_id), _POOL)
            elif type(message) is Confirmation or type(message) is Refusal:
                _bounded_append(state.my_decisions, (effect.peer, encode_message(message)), _POOL)
            elif type(message) is Advert:
                _bounded_append(state.my_refs, message.order_ref, _POOL)

    # ------------------------------------------------------------- acting

    def _act(self, event: Input, now: Now, out: list[Effect]) -> None:
        state = self.state
        if not self._attacking(now):
            state.next_ms = None
            state.pending = []
            return
        self._flush(now, out)
        if state.next_ms is not None and now.mono_ms < state.next_ms:
            return
        kinds = len(_BUILDERS)
        for _ in range(self.burst):
            builder = _BUILDERS[state.sent % kinds]
            state.sent += 1
            peer, wire, inert = builder(self, now)
            self._emit(peer, wire, inert, now, out)
        state.next_ms = self._timer(now.mono_ms + self.period_ms, out)

    def _emit(
        self, peer: NodeId, wire: WireMessage, inert: bool, now: Now, out: list[Effect]
    ) -> None:
        try:
            message = decode_message(msgspec.msgpack.encode(wire))
        except RemoteProtocolError:
            # A struct the codec refuses is this generator's bug: counted,
            # and the tests require the count to stay zero.
            self.context.count("nonsense_refused_by_codec")
            return
        self.context.count(f"nonsense:{type(message).__name__}")
        if self._holds_back(message):
            due = now.mono_ms + self._between(1, self.delay_ms)
            data = encode_message(message)
            _bounded_append(self.state.pending, (due, peer, data, inert), 256)
            out.append(SetTimer(due))
            return
        copies = 2 if self._chance(self.duplicate_permille) else 1
        for _ in range(copies):
            self._send(peer, message, inert, now, out)

    def _holds_back(self, message: Message) -> bool:
        """Hold back at random, but never an offer of made-up locks: what
        this node later decides on them must come after it."""
        if type(message) is PotentialTrades and message.offers:
            return False
        return self._chance(self.delay_permille)

    def _send(
        self, peer: NodeId, message: Message, inert: bool, now: Now, out: list[Effect]
    ) -> None:
        self.context.send(peer, message, now, out)
        if inert:
            effect = out[-1]
            assert type(effect) is Send
            self.inert_sends.append(effect)

    def _flush(self, now: Now, out: list[Effect]) -> None:
        state = self.state
        due = [p for p in state.pending if p[0] <= now.mono_ms]
        if not due:
            return
        state.pending = [p for p in state.pending if p[0] > now.mono_ms]
        for _, peer, data, inert in due:
            self._send(NodeId(peer), decode_message(data), inert, now, out)

    def _next_act_ms(self) -> int | None:
        times = [due for due, _, _, _ in self.state.pending]
        if self.state.next_ms is not None:
            times.append(self.state.next_ms)
        return min(times) if times else None

    # ------------------------------------------------------------- values

    def _pick(self, items: Sequence[Any]) -> Any:
        return items[self._draw(len(items))]

    def _peer(self) -> NodeId:
        return cast(NodeId, self._pick(self.context.peers))

    def _peer_other_than(self, peer: str) -> NodeId | None:
        others = [p for p in self.context.peers if p != peer]
        return cast(NodeId, self._pick(others)) if others else None

    def _int(self, low: int, high: int) -> int:
        """An integer in range: often an edge, sometimes small, else anywhere."""
        roll = self._draw(8)
        if roll == 0:
            return low
        if roll == 1:
            return high
        if roll < 5:
            return self._between(low, min(high, low + 20))
        return self._between(low, high)

    def _id(self) -> int:
        return self._int(0, MAX_INT64)

    def _lots(self) -> int:
        return self._int(1, MAX_QUANTITY_LOTS)

    def _ticks(self) -> int:
        if self._draw(3) == 0:
            reference = self.context.marks.reference(self._product_listed()) or 1
            return max(1, reference + self._between(-10, 10))
        return self._int(1, MAX_PRICE_TICKS)

    def _text(self, alphabet: str, low: int, high: int) -> str:
        return "".join(self._pick(alphabet) for _ in range(self._between(low, high)))

    def _product_listed(self) -> str:
        return cast(str, self._pick(sorted(self.context.products)))

    def _product(self) -> str:
        if self._draw(4):
            return self._product_listed()
        return self._text(_PRINTABLE, 1, 12 if self._draw(2) else 80)

    def _reason(self, empty: bool) -> str:
        roll = self._draw(4)
        if roll == 0 and empty:
            return ""
        if roll == 1:
            return cast(str, self._pick(_REASONS))
        return self._text(_PRINTABLE + " ", 1, 64)

    def _name(self) -> str:
        names = [self.context.node_id, *self.context.peers]
        return cast(str, self._pick(names)) if self._draw(3) else self._text(_PRINTABLE, 1, 64)

    def _hlc(self, now: Now) -> WireHlc:
        wall = self._pick((0, now.wall_ms, now.wall_ms + 10 * YEAR_MS, MAX_INT64, self._id()))
        return WireHlc(wall, self._int(0, MAX_INT64))

    def _side(self) -> WireSide:
        return WireSide.BUY if self._draw(2) else WireSide.SELL

    def _lock_not_binding(self, peer: NodeId) -> int:
        """A lock id ``peer`` holds no lock under for this node: made up, a
        lock another peer offered this node, this node's own, or random."""
        state = self.state
        roll = self._draw(4)
        others = [lock for holder, lock in state.offered_to_me if holder != peer]
        if roll == 0 and others:
            return cast(int, self._pick(others))
        if roll == 1 and state.my_locks:
            return cast(int, self._pick(state.my_locks)[1])
        if roll == 2 and state.fakes:
            return cast(int, self._pick(state.fakes)[0])
        return self._id()

    # ----------------------------------------------------------- builders

    def _broadcast(self, now: Now) -> tuple[NodeId, WireMessage, bool]:
        limit = None if self._draw(5) == 0 else self._ticks()
        wire = WireOrderBroadcast(
            self._id(), self._int(0, MAX_INT64), self._product(), self._side(),
            self._lots(), limit, bool(self._draw(2)),
        )  # fmt: skip
        return self._peer(), wire, False

    def _potential_trades(self, now: Now) -> tuple[NodeId, WireMessage, bool]:
        state = self.state
        if state.requests_seen and self._draw(2):
            originator, request_id, _ = self._pick(state.requests_seen)
            peer, round_ = NodeId(originator), 0  # rounds count from one
        else:
            peer, request_id, round_ = self._peer(), self._id(), self._int(0, MAX_INT64)
        offers: list[WireOffer] = []
        for _ in range(self._draw(4)):
            if self._draw(2):
                lock_id = self.context.random_id("fake-lock", state.sent, len(offers))
                _bounded_append(state.fakes, (lock_id, b""), _POOL)
                ttl = FAKE_TTL_MS
            else:
                lock_id, ttl = self._lock_not_binding(peer), self._int(1, MAX_INT64)
            priority = self._hlc(now)
            offers.append(WireOffer(lock_id, self._ticks(), self._lots(), priority, ttl))
        wire = WirePotentialTrades(request_id, round_, tuple(offers), self._reason(True))
        return peer, wire, True

    def _acceptance(self, now: Now) -> tuple[NodeId, WireMessage, bool]:
        peer = self._peer()
        return peer, WireAcceptance(self._lock_not_binding(peer), self._lots()), True

    def _release(self, now: Now) -> tuple[NodeId, WireMessage, bool]:
        peer = self._peer()
        return peer, WireRelease(self._lock_not_binding(peer)), True

    def _decision(self, now: Now, confirm: bool) -> tuple[NodeId, WireMessage, bool] | None:
        """A decision no honest node acted on: on a made-up lock (one word
        per lock), or a copy of a real one sent to another node."""
        state = self.state
        fresh = [index for index, (_, said) in enumerate(state.fakes) if not said]
        decided = [said for _, said in state.fakes if said]
        roll = self._draw(3)
        if roll == 0 and state.my_decisions:
            originator, data = self._pick(state.my_decisions)
            peer = self._peer_other_than(originator)
            if peer is not None:
                return peer, _wire_of(data), True
        if roll == 1 and decided:
            return self._peer(), _wire_of(self._pick(decided)), True
        if not fresh:
            return None
        index = cast(int, self._pick(fresh))
        lock_id = state.fakes[index][0]
        wire: WireMessage
        if confirm:
            wire = WireConfirmation(
                lock_id, self._id(), self._product(), self._side(), self._ticks(), self._lots()
            )
        else:
            wire = WireRefusal(lock_id, self._reason(False))
        state.fakes[index] = (lock_id, msgspec.msgpack.encode(wire))
        return self._peer(), wire, True

    def _confirmation(self, now: Now) -> tuple[NodeId, WireMessage, bool]:
        made = self._decision(now, confirm=True)
        if made is not None:
            return made
        return self._stray_refusal()

    def _refusal(self, now: Now) -> tuple[NodeId, WireMessage, bool]:
        made = self._decision(now, confirm=False)
        if made is not None:
            return made
        return self._stray_refusal()

    def _stray_refusal(self) -> tuple[NodeId, WireMessage, bool]:
        """A refusal of a lock this node never offered (one another peer
        offered it, or none): it binds no one, and contradicts nothing this
        node said before."""
        state = self.state
        if state.offered_to_me and self._draw(2):
            lock_id = cast(int, self._pick(state.offered_to_me)[1])
        else:
            lock_id = self._id()
        return self._peer(), WireRefusal(lock_id, self._reason(False)), True

    def _advert(self, now: Now) -> tuple[NodeId, WireMessage, bool]:
        state = self.state
        ref = self._pick(state.my_refs) if state.my_refs and self._draw(2) else self._id()
        wire = WireAdvert(
            ref, self._product(), self._side(), self._ticks(),
            0 if self._draw(4) == 0 else self._lots(), self._hlc(now), self._int(0, MAX_INT64),
        )  # fmt: skip
        return self._peer(), wire, False

    def _trade_print(self, now: Now) -> tuple[NodeId, WireMessage, bool]:
        wire = WireTradePrint(self._product(), self._ticks(), self._lots(), self._hlc(now))
        return self._peer(), wire, False

    def _heartbeat(self, now: Now) -> tuple[NodeId, WireMessage, bool]:
        echo = None if self._draw(2) else self._pick((self._id(), now.mono_ms - self._draw(100)))
        wall = self._pick((now.wall_ms, self._id(), 0))
        wire = WireHeartbeat(self._id(), echo, wall, self._int(0, MAX_INT64))
        return self._peer(), wire, False

    def _bond_request(self, now: Now) -> tuple[NodeId, WireMessage, bool]:
        """A bond request under an id the peer has answered or never will:
        never the next one, which would be a claim."""
        peer = self._peer()
        view = self.liability.peers[peer]
        answered = view.outgoing.bond_id - 1 if view.outgoing is not None else view.next_bond_id
        if answered >= 0 and self._draw(2):
            bond_id = self._between(0, answered)
        else:
            bond_id = self._between(answered + 1_000_000, MAX_INT64)
        asset = self.context.config.clearing.bond_asset if self._draw(2) else self._product()
        wire = WireBondRequest(bond_id, asset, self._int(1, MAX_INT64), bool(self._draw(2)))
        return peer, wire, True

    def _bond_answer(self, now: Now) -> tuple[NodeId, WireMessage, bool]:
        """A bond answer on an id the peer waits for no answer on: older than
        the last this node answered (whose answer may still be on its way,
        or lost), or far beyond any it will ask."""
        peer = self._peer()
        last = self.liability.peers[peer].last_bond_id
        if last > 1 and self._draw(2):
            bond_id = self._between(0, last - 1)
        else:
            bond_id = self._between(last + 1_000_000, MAX_INT64)
        return peer, WireBondAnswer(bond_id, self._reason(True)), True

    def _statement(self, low: str, high: str) -> WireStatement:
        lock_ids = sorted({self._id() for _ in range(self._draw(6))})
        assets = sorted({self._product() for _ in range(self._draw(4))})
        net = tuple((asset, self._nonzero()) for asset in assets)
        return WireStatement(low, high, self._int(0, MAX_INT64), tuple(lock_ids), net)

    def _nonzero(self) -> int:
        amount = self._int(1, MAX_INT64)
        return amount if self._draw(2) else -amount

    def _statement_proposal(self, now: Now) -> tuple[NodeId, WireMessage, bool]:
        """Mostly in another pair's name (the peer answers it out of turn
        and keeps nothing); now and then in this node's own, which a peer
        may answer and remember."""
        me = self.context.node_id
        first = me if self._draw(4) == 0 else self._name()
        second = self._name()
        if first == second:
            second = first + "~"
        low, high = (first, second) if first < second else (second, first)
        # Out of turn unless this node is its low side: answered, not kept.
        return self._peer(), WireStatementProposal(self._statement(low, high)), low != me

    def _statement_answer(self, now: Now) -> tuple[NodeId, WireMessage, bool]:
        """An answer for a cycle the peer is not waiting on."""
        peer = self._peer()
        cycle = self.liability.peers[peer].cycle
        if cycle > 0 and self._draw(2):
            answered = self._between(0, cycle - 1)
        else:
            answered = self._between(cycle + 1_000_000, MAX_INT64)
        digest = self._text(_HEX, 64, 64)
        return peer, WireStatementAnswer(answered, digest, self._reason(True)), True

    def _default_notice(self, now: Now) -> tuple[NodeId, WireMessage, bool]:
        wire = WireDefaultNotice(self._name(), self._int(0, MAX_INT64), self._int(0, MAX_INT64))
        return self._peer(), wire, False


def _wire_of(data: bytes) -> WireMessage:
    """A message's wire struct back from its encoding."""
    return to_wire(decode_message(data))


_BUILDERS: Final[tuple[Callable[[Nonsense, Now], tuple[NodeId, WireMessage, bool]], ...]] = (
    Nonsense._broadcast,
    Nonsense._potential_trades,
    Nonsense._acceptance,
    Nonsense._release,
    Nonsense._confirmation,
    Nonsense._refusal,
    Nonsense._advert,
    Nonsense._trade_print,
    Nonsense._heartbeat,
    Nonsense._bond_request,
    Nonsense._bond_answer,
    Nonsense._statement_proposal,
    Nonsense._statement_answer,
    Nonsense._default_notice,
)
"""One builder per message kind, taken in turn."""


STRATEGIES: Final[Mapping[str, type[Adversary]]] = {
    kind.name: kind
    for kind in (
        LockGrabber,
        SlowAcceptor,
        Replayer,
        Defaulter,
        BadTerms,
        BondClaimer,
        ClockStamper,
        Flooder,
        Refuser,
        OffMarket,
        Nonsense,
    )
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
    inert_delivered: int = 0
    """Inert nonsense (see :class:`Nonsense`) delivered to honest nodes."""
    inert_that_changed_state: list[str] = field(default_factory=list)
    """What changed, for each inert message that changed an honest node."""
    violations: list[tuple[NodeId, NodeId, str]] = field(default_factory=list)
    """(node, peer, reason) of every ``Violation`` effect of an honest node."""
    suspended: list[tuple[NodeId, NodeId, str]] = field(default_factory=list)
    """(node, peer, reason) for every peer an honest node suspended."""
    defaults: list[tuple[NodeId, NodeId, int, int]] = field(default_factory=list)
    """(claimant, defaulter, claimed, loss) for every default an honest node declared."""
    losses: dict[NodeId, int] = field(default_factory=dict)
    """What each honest node's ledger records as lost to peers in default."""
    bonds_held: dict[tuple[NodeId, NodeId], int] = field(default_factory=dict)
    """(holder, poster) -> the bond the holder held when the run ended."""
    adversary_stats: Counter[str] = field(default_factory=Counter)
    honest_stats: Counter[str] = field(default_factory=Counter)
    """Every honest node's counters, summed."""
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


def fingerprint(core: NodeCore) -> tuple[object, ...]:
    """What a message that binds a node to nothing must not change: its
    ledger, books, locks and decisions, the orders it works and what it
    waits on, and its bonds, settlement and suspensions with each peer."""
    holder, originator = core.holder, core.originator
    return (
        core.context.ledger.version,
        tuple(book.version for book in core.resting.books.values()),
        tuple(sorted(holder.locks)),
        tuple(sorted(holder.decisions)),
        tuple(
            sorted(
                (k, w.remaining_lots, w.round, tuple(sorted(w.accepted)), len(w.candidates))
                for k, w in originator.working.items()
            )
        ),
        tuple(sorted(originator.in_doubt)),
        tuple(
            (
                peer,
                view.bond_held,
                view.bond_posted,
                view.outgoing,
                view.suspended,
                tuple(sorted(view.unsettled)),
                view.settled,
                view.cycle,
                view.proposal,
            )
            for peer, view in core.liability.peers.items()
        ),
    )


def _what_changed(before: tuple[object, ...], after: tuple[object, ...]) -> str:
    parts = ("ledger", "books", "locks", "decisions", "working", "in_doubt", "clearing")
    return ", ".join(name for name, a, b in zip(parts, before, after, strict=True) if a != b)


def default_config() -> NodeConfig:
    """The configuration the simulator gives every node when none is given."""
    risk = RiskConfig(listed_products=frozenset(spec.product_id for spec, _ in PRODUCTS))
    return NodeConfig(risk)


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

    ``watchers`` run after every event of every phase, beside the checks of
    the invariant checker and of the locks held for adversaries.
    """

    def __init__(
        self,
        seed: int,
        nodes: int,
        adversaries: Iterable[NodeId],
        strategies: Mapping[NodeId, type[NodeCore]] | None = None,
        faults: Faults | None = None,
        config: NodeConfig | None = None,
        honest: type[NodeCore] = NodeCore,
    ) -> None:
        super().__init__(
            seed, nodes, faults=faults, config=config, strategies=strategies, honest=honest
        )
        self.adversaries = frozenset(adversaries)
        unknown = self.adversaries - set(self.ids)
        if unknown:
            raise ValueError(f"no such nodes: {sorted(unknown)}")
        self.honest = [n for n in self.ids if n not in self.adversaries]
        self.figures = RunFigures(quota={a: QuotaWatch() for a in sorted(self.adversaries)})
        self.watchers: list[Callable[[], None]] = []
        self._flow_rng = random.Random(f"flow:{seed}")
        self._adversary_rng = random.Random(f"adversaries:{seed}")
        self._offered: set[tuple[NodeId, int]] = set()
        self._decided: set[tuple[NodeId, int]] = set()
        self._limited: set[tuple[NodeId, NodeId, int, int]] = set()
        self._delivered: set[tuple[NodeId, NodeId, Message]] = set()
        self._inert: dict[int, Send] = {}
        """Inert nonsense in flight, by identity (kept, so the id stays its own)."""
        self._full_quotas: dict[int, Quota] = {}
        """The full quota (ratio not counted) by bond held."""

    # ------------------------------------------------------------ flow

    def schedule_flow(self, orders: int, duration_ms: int) -> int:
        network_rng, self.rng = self.rng, self._flow_rng
        try:
            return super().schedule_flow(orders, duration_ms)
        finally:
            self.rng = network_rng

    def _random_order(self, at: NodeId | None = None) -> None:
        network_rng, self.rng = self.rng, random.Random(self._flow_rng.getrandbits(64))
        try:
            super()._random_order(at)
        finally:
            self.rng = network_rng

    # -------------------------------------------------------- watching

    def run(self, until_ms: int | None = None, on_event: Callable[[], None] | None = None) -> None:
        """Run as the simulation does, checking the locks held for adversary
        nodes and running the watchers after every event, in every phase."""
        if on_event is None:
            super().run(until_ms, self._after_event)
            return
        outer = on_event

        def both() -> None:
            self._after_event()
            outer()

        super().run(until_ms, both)

    def _after_event(self) -> None:
        self._watch_locks()
        for watcher in self.watchers:
            watcher()

    def _watch_locks(self) -> None:
        quotas = self._full_quotas
        for adversary, watch in self.figures.quota.items():
            for holder in self.honest:
                core = self.nodes[holder].core
                notional, count = core.holder.open_for(adversary)
                if not count:
                    continue
                bond = core.liability.peers[adversary].bond_held
                quota = quotas.get(bond)
                if quota is None:
                    quota = quotas[bond] = lock_quota(bond, PERMILLE, self.config.clearing.quota)
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
                view = self.nodes[holder].core.liability.peers[adversary]
                permille = PERMILLE
                if view.ratio is not None:
                    # Reading a ratio decays it: read a copy, so that watching
                    # changes nothing in the holder.
                    permille = AcceptanceRatio.from_state(view.ratio.state()).permille(
                        self.now(holder).mono_ms, quota_config.ratio_min_offered_minor
                    )
                quota = lock_quota(view.bond_held, permille, quota_config)
                end = watch.end_quota
                if end is None or quota.max_lock_notional < end.max_lock_notional:
                    watch.end_quota = quota

    def _quiet(self, node_id: NodeId) -> bool:
        """As the simulation's, except that trades with a peer this node
        suspended stay on record, unsettled, until the operator reinstates
        it: they keep no honest node from being done."""
        if node_id in self.strategies:
            return True
        core = self.nodes[node_id].core
        liability = core.liability
        return (
            not core.originator.working
            and not core.originator.in_doubt
            and not core.holder.locks
            and not any(v.unsettled and not v.suspended for v in liability.peers.values())
        )

    def _apply(self, node_id: NodeId, effects: list[Effect]) -> None:
        if node_id not in self.adversaries:
            for effect in effects:
                if type(effect) is Violation:
                    self.figures.violations.append((node_id, effect.peer, effect.reason))
        super()._apply(node_id, effects)

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
        else:
            core = self.nodes[sender].core
            if isinstance(core, Nonsense) and any(s is effect for s in core.inert_sends):
                self._inert[id(effect)] = effect
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
        inert = self._inert.get(id(payload)) is payload
        key = (sender, receiver, payload.message)
        first = key not in self._delivered
        if first and not inert:
            refused = node.core.stats.get("refused_clock_drift", 0)
            super()._deliver(sender, receiver, payload)
            if node.core.stats.get("refused_clock_drift", 0) == refused:
                self._delivered.add(key)
            return
        # A copy of a message this node already received from the adversary,
        # or a message that binds it to nothing: nothing it keeps may change.
        before = fingerprint(node.core)
        refused = node.core.stats.get("refused_clock_drift", 0)
        super()._deliver(sender, receiver, payload)
        after = fingerprint(node.core)
        if node.core.stats.get("refused_clock_drift", 0) != refused:
            return  # refused for its stamp: as if never delivered
        if inert:
            self.figures.inert_delivered += 1
            if after != before:
                what = _what_changed(before, after)
                self.figures.inert_that_changed_state.append(
                    f"{type(payload.message).__name__} to {receiver}: {what}"
                )
        if first:
            self._delivered.add(key)
            return
        self.figures.repeats_delivered += 1
        if after != before:
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
            figures.honest_stats.update(core.stats)
            limited = {k: v for k, v in core.stats.items() if k.startswith("limited:")}
            figures.limited.update(limited)
            for lock_id, decided in core.holder.decisions.items():
                if (node_id, lock_id) in self._offered:
                    figures.adversary_lock_outcomes[_outcome(decided.message)] += 1
            for peer, view in core.liability.peers.items():
                if view.suspended:
                    figures.suspended.append((node_id, peer, view.suspended))
                figures.bonds_held[(node_id, peer)] = view.bond_held
            bond_asset = AssetCode(core.config.clearing.bond_asset)
            losses = core.context.ledger.balance(AccountKey(LOSSES_OWNER, bond_asset))
            figures.losses[node_id] = -losses
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


def play(sim: AdversarySimulation, orders: int) -> RunFigures:
    """Run ``sim`` through every phase, every invariant checked: fund, trader
    flow, heal, settle, final checks; return its figures."""
    sim.fund()
    end_ms = sim.schedule_flow(orders, flow_duration_ms(orders))
    sim.run(until_ms=end_ms)
    sim.note_end_quotas()
    sim.heal()
    sim.settle()
    sim.check_final()
    return sim.finish()


def measure(
    seed: int,
    nodes: int,
    orders: int,
    adversaries: Iterable[NodeId],
    strategy: type[NodeCore] | None,
    faults: Faults | None = CLEAN,
    config: NodeConfig | None = None,
    honest: type[NodeCore] = NodeCore,
) -> RunFigures:
    """One run through every phase (see :func:`play`). ``strategy`` None
    runs the adversary nodes as plain NodeCore; ``faults`` None derives them
    from the seed. ``config`` is every node's, as given (see
    :meth:`Adversary.network_config`); honest nodes run ``honest``."""
    ids = tuple(adversaries)
    strategies = {} if strategy is None else dict.fromkeys(ids, strategy)
    sim = AdversarySimulation(seed, nodes, ids, strategies, faults, config, honest)
    return play(sim, orders)


def strategy_kind(strategy: str | type[Adversary], orders: int) -> type[Adversary]:
    """The strategy class a comparison runs: a named strategy, or one passed
    without its own ``attack_ms``, plays from when it is ready until the
    trader flow ends."""
    kind = STRATEGIES[strategy] if isinstance(strategy, str) else strategy
    if kind.attack_ms == Adversary.attack_ms:
        kind = kind.tuned(attack_ms=BOND_SETUP_MS + flow_duration_ms(orders))
    return kind


def compare(
    seed: int,
    nodes: int,
    orders: int,
    strategy: str | type[Adversary],
    adversary_ids: Iterable[NodeId] | None = None,
    faults: Faults | None = CLEAN,
    config: NodeConfig | None = None,
    honest: type[NodeCore] = NodeCore,
) -> Comparison:
    """Run ``seed`` with the adversary nodes (by default the last node)
    playing ``strategy``, then with them honest; see the module docstring.

    Both runs use the strategy's :meth:`~Adversary.network_config` of
    ``config``. ``faults`` None derives them from the seed; the default is a
    clean network. Raises :class:`~datn.sim.invariants.InvariantError` if
    either run breaks one.
    """
    kind = strategy_kind(strategy, orders)
    config = kind.network_config(config or default_config())
    ids = tuple(adversary_ids) if adversary_ids is not None else default_adversaries(nodes)
    on = measure(seed, nodes, orders, ids, kind, faults, config, honest)
    off = measure(seed, nodes, orders, ids, None, faults, config, honest)
    return Comparison(seed, nodes, orders, kind.name, ids, faults, on, off)


_DEFENCE_COUNTERS: Final = (
    "offers_beyond_terms",
    "violations:",
    "refused_clock_drift",
    "adverts_over_limit",
    "adverts_unlisted",
    "prints_unlisted",
    "acceptances_unknown_lock",
    "answers_unknown_request",
    "bond_refused:",
    "statements_refused:",
    "refusals",
    "broadcasts_stale",
    "broadcasts_unlisted",
)
"""Honest counters that show a defence at work, for :func:`summary`."""


def summary(comparisons: list[Comparison]) -> list[str]:
    """Lines describing comparisons of one strategy (over one or more seeds):
    the figures of :func:`summary_json`, in words."""
    if not comparisons:
        return []
    f = summary_json(comparisons)
    numbers = f["seeds"]
    consecutive = numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    if len(numbers) > 2 and consecutive:
        seeds = f"{numbers[0]}..{numbers[-1]}"
    else:
        seeds = ", ".join(str(n) for n in numbers)
    done, lots = f["honest_executions"], f["honest_lots"]
    lines = [
        f"{f['strategy']} at {', '.join(f['adversaries'])} ({f['nodes']} nodes, "
        f"{f['orders']} orders, seed{'s' if len(numbers) > 1 else ''} {seeds})",
        f"  honest executions: {done['with']} with the adversary, {done['without']} without: "
        f"{done['kept']:.1%} kept (lots {lots['with']} / {lots['without']}: {lots['kept']:.1%})",
    ]
    if len(numbers) > 1:
        per_seed = ", ".join(f"{p['seed']}: {p['with']}/{p['without']}" for p in f["per_seed"])
        lines.append(f"    per seed: {per_seed}")
    held = f["held_for_one_adversary"]
    full, end = held["full_quota"], held["quota_when_flow_ended"]
    line = (
        f"  held open for one adversary at one honest holder, at most: "
        f"{held['peak_locks']} locks, {held['peak_notional']} notional "
        f"(full quota {full['locks']} locks, {full['notional']} notional; "
        f"{held['breaches']} breaches)"
    )
    if end is not None:
        line += f"; quota when the flow ended {end['locks']} locks, {end['notional']}"
    lines.append(line)
    lines.append(
        f"  locks offered to adversaries {f['locks_offered_to_adversaries']}; "
        + _counts("their outcomes", f["their_outcomes"])
    )
    lines.append(
        "  " + _counts("answers to adversaries limited", f["answers_to_adversaries_limited"])
    )
    lines.append(
        "  "
        + _counts(
            "decisions on adversaries' acceptances", f["decisions_on_adversaries_acceptances"]
        )
    )
    lines.append(
        "  " + _counts("honest holders' limited counters (with)", f["honest_holders_limited"])
    )
    lines.append("  " + _counts("honest defences at work (with)", f["honest_defences"]))
    lines.append(
        f"  repeated messages delivered to honest nodes: {f['repeats_delivered']} "
        f"({f['repeats_that_changed_state']} changed state)"
    )
    if f["inert_delivered"]:
        lines.append(
            f"  inert nonsense delivered to honest nodes: {f['inert_delivered']} "
            f"({len(f['inert_that_changed_state'])} changed state)"
        )
    violations = Counter(f"{v['node']}->{v['peer']} ({v['reason']})" for v in f["violations"])
    if violations:
        lines.append("  " + _counts("violations recorded by honest nodes", violations))
    if f["suspended"]:
        lines.append(
            "  suspended by honest nodes: "
            + ", ".join(f"{v['node']}->{v['peer']} ({v['reason']})" for v in f["suspended"])
        )
    return lines


def summary_json(comparisons: list[Comparison]) -> dict[str, Any]:
    """What comparisons of one strategy show, as a JSON object
    (``datn sim --json``; :func:`summary` puts it in words)."""
    if not comparisons:
        return {}
    first = comparisons[0]
    on = sum(c.on.honest_executions for c in comparisons)
    off = sum(c.off.honest_executions for c in comparisons)
    lots_on = sum(c.on.honest_lots for c in comparisons)
    lots_off = sum(c.off.honest_lots for c in comparisons)
    watches = [w for c in comparisons for w in c.on.quota.values()]
    full = max((w.full_quota for w in watches), key=lambda q: q.max_lock_notional)
    ends = [w.end_quota for w in watches if w.end_quota is not None]
    end = min(ends, key=lambda q: q.max_lock_notional) if ends else None
    return {
        "strategy": first.strategy,
        "adversaries": list(first.adversaries),
        "nodes": first.nodes,
        "orders": first.orders,
        "seeds": [c.seed for c in comparisons],
        "honest_executions": {"with": on, "without": off, "kept": kept(on, off)},
        "honest_lots": {"with": lots_on, "without": lots_off, "kept": kept(lots_on, lots_off)},
        "per_seed": [
            {"seed": c.seed, "with": c.on.honest_executions, "without": c.off.honest_executions}
            for c in comparisons
        ],
        "held_for_one_adversary": {
            "peak_locks": max(w.peak_locks for w in watches),
            "peak_notional": max(w.peak_notional for w in watches),
            "full_quota": {"locks": full.max_locks, "notional": full.max_lock_notional},
            "breaches": sum(w.breaches for w in watches),
            "quota_when_flow_ended": None
            if end is None
            else {"locks": end.max_locks, "notional": end.max_lock_notional},
        },
        "locks_offered_to_adversaries": sum(c.on.locks_offered_to_adversaries for c in comparisons),
        "their_outcomes": dict(sorted(_total(comparisons, "outcomes").items())),
        "answers_to_adversaries_limited": dict(sorted(_total(comparisons, "limited").items())),
        "decisions_on_adversaries_acceptances": dict(
            sorted(_total(comparisons, "decisions").items())
        ),
        "honest_holders_limited": dict(sorted(_total(comparisons, "all").items())),
        "honest_defences": dict(sorted(_total(comparisons, "defences").items())),
        "repeats_delivered": sum(c.on.repeats_delivered for c in comparisons),
        "repeats_that_changed_state": sum(c.on.repeats_that_changed_state for c in comparisons),
        "inert_delivered": sum(c.on.inert_delivered for c in comparisons),
        "inert_that_changed_state": [s for c in comparisons for s in c.on.inert_that_changed_state],
        "violations": [
            {"node": a, "peer": b, "reason": r} for c in comparisons for a, b, r in c.on.violations
        ],
        "suspended": [
            {"node": a, "peer": b, "reason": r}
            for a, b, r in sorted({s for c in comparisons for s in c.on.suspended})
        ],
    }


def _total(comparisons: list[Comparison], which: str) -> Counter[str]:
    total: Counter[str] = Counter()
    for c in comparisons:
        figures = c.on
        if which == "defences":
            total.update(
                {
                    k: v
                    for k, v in figures.honest_stats.items()
                    if any(k.startswith(name) for name in _DEFENCE_COUNTERS)
                }
            )
            continue
        total.update(
            {
                "limited": figures.limited_for_adversaries,
                "decisions": figures.decisions_for_adversaries,
                "outcomes": figures.adversary_lock_outcomes,
                "all": figures.limited,
            }[which]
        )
    return total


def _counts(label: str, counts: Mapping[str, int]) -> str:
    if not counts:
        return f"{label}: none"
    return f"{label}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


__all__ = [
    "CLEAN",
    "STRATEGIES",
    "Adversary",
    "AdversarySimulation",
    "BadTerms",
    "BondClaimer",
    "ClockStamper",
    "Comparison",
    "Defaulter",
    "Flooder",
    "LockGrabber",
    "Nonsense",
    "OffMarket",
    "QuotaWatch",
    "Refuser",
    "Replayer",
    "RunFigures",
    "SlowAcceptor",
    "StrategyState",
    "compare",
    "default_adversaries",
    "default_config",
    "fingerprint",
    "flow_duration_ms",
    "kept",
    "measure",
    "play",
    "strategy_kind",
    "summary",
    "summary_json",
]
