"""The node core: one deterministic state machine per clearing node.

Inputs (a trader's place or cancel, a peer's message, a timer tick, a
restart) come with ``now``; each returns effects (journal, send, reply, set
timer, publish). The flow is DESIGN.md section 4:

* As **originator**, a node checks and holds an order, locks crossing
  quantity in its own book, broadcasts the order to peers (all of them, or
  only those its network book shows with crossing liquidity), collects
  potential trades until every asked peer answered or the collection window
  closed, ranks them by price, priority and node id, accepts the best and
  releases the rest, and books each confirmed trade. After refusals it
  broadcasts again, a bounded number of rounds; a GTC remainder then rests
  and is advertised to every peer.
* As **holder**, it locks crossing resting quantity for the originator for
  ``ttl_ms`` of its own monotonic clock, and on an acceptance decides once,
  by that clock: a confirmation while the lock lives, a refusal after. The
  decision is recorded, so a retried acceptance gets the same answer.

The transport may lose, duplicate, delay or reorder messages: every handler
is idempotent, an originator resends acceptances until a decision arrives,
and locks end by themselves. Every input is journaled before its effects, and
replaying the journal rebuilds the same state; after a restart every lock
that lived before is expired, so none is honoured late.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from datn.book import BookError, Fill, OrderBook, Reentry
from datn.clearing.config import ClearingConfig
from datn.clearing.exposure import exposure, exposure_cap, marked_value, obligations
from datn.clearing.quota import AcceptanceRatio, TokenBucket, lock_quota
from datn.clearing.settlement import Deltas, build_statement, net_of, reproduce, statement_hash
from datn.domain import AssetCode, DomainError, Order, OrderType, ProductSpec, Side, TimeInForce
from datn.ledger import (
    EXTERNAL,
    UNBOUNDED,
    AccountKey,
    Entry,
    EntryId,
    HoldId,
    HoldUse,
    Ledger,
    Posting,
)
from datn.protocol.booking import trade_entry
from datn.protocol.clock import Hlc, HybridClock, Now
from datn.protocol.effects import (
    Accepted,
    BondInput,
    CancelInput,
    DepositInput,
    Done,
    Effect,
    Executed,
    FundInput,
    Input,
    Journal,
    JournalEntry,
    PlaceInput,
    Publish,
    ReceiveInput,
    Rejected,
    Reply,
    RestartInput,
    Rested,
    Send,
    SetTimer,
    TickInput,
)
from datn.protocol.messages import (
    Acceptance,
    Advert,
    BondAnswer,
    BondRequest,
    Confirmation,
    DefaultNotice,
    Heartbeat,
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
from datn.protocol.venue import OrderRequest, order_from_request, risk_context, trader_owner
from datn.risk import (
    Reject,
    RiskConfig,
    RiskContext,
    check_order,
    protection_price_ticks,
    required_hold,
)

MAX_OFFERS_ACCEPTED: Final = 100
"""An originator takes at most this many potential trades for one order."""


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Protocol timings (milliseconds of the node's monotonic clock) and limits."""

    risk: RiskConfig
    lock_ttl_ms: int = 250
    collection_window_ms: int = 60
    acceptance_margin_ms: int = 10
    resend_ms: int = 40
    heartbeat_ms: int = 1_000
    heartbeat_peers: int = 8
    """At most this many peers are probed per heartbeat period, the ones probed
    longest ago first: each peer is probed every ``heartbeat_ms`` while there
    are at most this many peers, and every ``ceil(peers / heartbeat_peers)``
    periods beyond, so heartbeat traffic grows with N, not N squared. Answers
    to order broadcasts also measure round trips, so the peers a node trades
    with have fresh figures whatever the probe interval."""
    default_rtt_ms: int = 20
    max_rounds: int = 3
    broadcast_memory_ms: int = 60_000
    """A holder repeats its answer to a repeated order broadcast (a retry, a
    duplicate) while the broadcast is at most this much older, by the sending
    peer's HLC, than the newest broadcast the peer sent; ..."""
    max_answers_per_peer: int = 4_096
    """...and keeps at most this many answers per peer. A broadcast stamped no
    later than the newest answer it forgot is stale and gets no answer: its
    originator stopped waiting long ago, and new locks for it would tie up
    liquidity for nothing."""
    targeted_routing: bool = True
    clearing: ClearingConfig = field(default_factory=ClearingConfig)

    def __post_init__(self) -> None:
        if not 0 < self.collection_window_ms < self.lock_ttl_ms:
            raise DomainError("collection_window_ms", "bad_window", "must be inside the lock TTL")
        for name in (
            "acceptance_margin_ms",
            "resend_ms",
            "heartbeat_ms",
            "heartbeat_peers",
            "default_rtt_ms",
            "broadcast_memory_ms",
            "max_answers_per_peer",
        ):
            if getattr(self, name) <= 0:
                raise DomainError(name, "not_positive", "must be positive")
        if not 1 <= self.max_rounds <= 16:
            raise DomainError("max_rounds", "bad_rounds", "must be 1 to 16")


def peer_owner(node_id: str) -> str:
    """The ledger owner of a peer's accounts at this node: what it owes and is owed."""
    return f"peer:{node_id}"


CAPITAL_OWNER: Final = "node:capital"
"""The node's own money: what it posts as bond comes from here."""


def bond_posted_owner(node_id: str) -> str:
    """The bond this node posted with ``node_id``: its own cash, pledged there."""
    return f"bond-posted:{node_id}"


def bond_held_owner(node_id: str) -> str:
    """The bond ``node_id`` posted with this node, as owed back to it
    (negative). It mirrors that peer's ``bond-posted`` account here."""
    return f"bond-held:{node_id}"


def rail_owner(node_id: str) -> str:
    """The settlement rail to ``node_id``, as seen from this ledger: an external
    account, since what is settled leaves this ledger for the peer's."""
    return f"rail:{node_id}"


LOSSES_OWNER: Final = "node:losses"
"""What peers in default owed this node beyond their bonds: its recorded loss."""


def collateral_owner(node_id: str) -> str:
    """Where this node keeps the cash a peer posted with it as bond."""
    return f"collateral:{node_id}"


@dataclass(slots=True)
class _PeerAccounts:
    """The keys of the ledger accounts this node keeps for one peer, each
    opened on first use and kept: bonds, trades and the exposure check touch
    them all the time, and a key built once is not validated again."""

    peer: dict[str, AccountKey] | None = None
    """What the peer owes and is owed, by asset (None until the first trade)."""
    rail: dict[str, AccountKey] = field(default_factory=dict)
    bond_posted: AccountKey | None = None
    bond_held: AccountKey | None = None
    collateral: AccountKey | None = None


@dataclass(slots=True)
class _PeerView:
    rtt_ms: int
    offset_ms: int = 0
    adverts: dict[int, Advert] = field(default_factory=dict)
    bids: dict[str, dict[int, Advert]] = field(default_factory=dict)
    asks: dict[str, dict[int, Advert]] = field(default_factory=dict)
    """The same adverts by side and product: routing reads only one side."""
    adverts_seen_through: int = 0
    """Every advert version up to this one has arrived..."""
    adverts_seen_above: set[int] = field(default_factory=set)
    """...and these beyond it (a lost or late advert leaves a gap), so what a
    node remembers per peer stays small however many adverts it received."""
    advert_version_announced: int = 0
    # Clearing (DESIGN.md section 7).
    bond_posted: int = 0
    """What this node posted with the peer, as the peer acknowledged."""
    bond_held: int = 0
    """What the peer posted with this node."""
    bond_requests: dict[int, BondRequest] = field(default_factory=dict)
    """This node's bond requests the peer has not answered yet."""
    bond_resend_mono_ms: int = 0
    bond_answers: dict[int, BondAnswer] = field(default_factory=dict)
    """Answers this node gave the peer's bond requests, repeated on retries."""
    lock_notional: int = 0
    lock_count: int = 0
    """The locks this node holds open for the peer, as originator."""
    broadcasts: TokenBucket | None = None
    ratio: AcceptanceRatio | None = None
    cycle: int = 0
    """The last settlement cycle of this pair that was answered."""
    proposal: StatementProposal | None = None
    """As the lower id: the statement proposed and not yet answered."""
    proposal_resend_mono_ms: int = 0
    statement_answers: dict[int, StatementAnswer] = field(default_factory=dict)
    """As the higher id: the answer given for each cycle, repeated on retries."""
    settled: int = 0
    """How many statements this node has settled with the peer: two peers that
    count alike have settled the same statements (one is proposed at a time)."""
    suspended: str = ""
    """Why this node trades no more with the peer ("" while it does)."""
    accounts: _PeerAccounts = field(default_factory=_PeerAccounts)
    answers: dict[tuple[int, int], tuple[Hlc, PotentialTrades]] = field(default_factory=dict)
    """As holder: the answer given to each of the peer's recent broadcasts, by
    (request id, round), with the broadcast's HLC, oldest first."""
    answers_forgotten_through: Hlc | None = None
    """The latest HLC of an answer forgotten: broadcasts up to it are stale."""

    @property
    def stale(self) -> bool:
        """True when the peer announced adverts this node has not seen."""
        return self.adverts_seen_through < self.advert_version_announced

    def see_advert(self, version: int) -> bool:
        """Note that advert ``version`` arrived; False if it had already."""
        if version <= self.adverts_seen_through or version in self.adverts_seen_above:
            return False
        above = self.adverts_seen_above
        if version == self.adverts_seen_through + 1:
            self.adverts_seen_through = version
            while self.adverts_seen_through + 1 in above:
                self.adverts_seen_through += 1
                above.discard(self.adverts_seen_through)
        else:
            above.add(version)
        self.advert_version_announced = max(self.advert_version_announced, version)
        return True


@dataclass(slots=True)
class _Candidate:
    """A potential trade under consideration by an originator."""

    holder: NodeId
    offer: Offer
    received_mono_ms: int


@dataclass(slots=True)
class _Working:
    """An order this node originated and is still working across the network."""

    order: Order
    product: ProductSpec
    hold_id: str | None
    request_id: int
    remaining_lots: int
    filled_lots: int = 0
    round: int = 0
    awaiting: set[NodeId] = field(default_factory=set)
    candidates: list[_Candidate] = field(default_factory=list)
    deadline_mono_ms: int = 0
    broadcast_mono_ms: int | None = None
    """When the current round's broadcast left; None after a restart, when a
    late answer would measure the old process's clock."""
    accepted: dict[tuple[NodeId, int], int] = field(default_factory=dict)
    resend_mono_ms: int = 0
    refused: bool = False
    failed_holders: list[NodeId] = field(default_factory=list)
    cancel_requested: bool = False
    exhausted: set[NodeId] = field(default_factory=set)
    """Peers that answered this order without refusing: they offered all they had."""


@dataclass(slots=True)
class _RestingMeta:
    order: Order
    product: ProductSpec
    hold_id: str | None
    priority: Hlc
    order_ref: int
    filled_lots: int = 0


@dataclass(slots=True)
class _Lock:
    lock_id: int
    originator: NodeId
    order_id: int
    quantity_lots: int
    expires_mono_ms: int
    notional: int = 0


class NodeCore:
    """The state and rules of one node; see the module docstring."""

    def __init__(
        self,
        node_id: NodeId,
        products: Iterable[ProductSpec],
        peers: Iterable[NodeId],
        config: NodeConfig,
        secret: bytes,
        reference_prices: dict[str, int] | None = None,
    ) -> None:
        self.node_id = node_id
        self.config = config
        self.products: dict[str, ProductSpec] = {p.product_id: p for p in products}
        self.peers = {p: _PeerView(config.default_rtt_ms) for p in sorted(peers) if p != node_id}
        self._secret = secret
        self.ledger = Ledger()
        self.books: dict[str, OrderBook] = {pid: OrderBook(pid) for pid in self.products}
        self.reference_prices = dict(reference_prices or {})
        self.clock = HybridClock()
        self.journal: list[JournalEntry] = []
        self.working: dict[int, _Working] = {}
        self.resting: dict[int, _RestingMeta] = {}
        self.locks: dict[int, _Lock] = {}
        self.decisions: dict[int, Confirmation | Refusal] = {}
        self._hlc_in = Hlc(0, 0)
        """The HLC stamped on the peer message being handled."""
        self.answers: dict[tuple[str, str], Accepted] = {}
        self.open_orders: dict[str, int] = {}
        self.stats: dict[str, int] = {}
        self._requests: dict[int, int] = {}
        self._accepted_locks: dict[tuple[NodeId, int], int] = {}
        self._counter = 0
        self._advert_version = 0
        self._next_heartbeat_ms: int | None = None
        self._probe_queue: deque[NodeId] = deque(self.peers)
        assets = {p.product_id for p in self.products.values()}
        assets.update(p.quote_currency for p in self.products.values())
        self._asset_codes: tuple[str, ...] = tuple(sorted(assets))
        self._bonds_waiting: dict[NodeId, None] = {}
        self._capital = AccountKey(CAPITAL_OWNER, AssetCode(config.clearing.bond_asset))
        """The node's own cash, from which it posts bonds."""
        self.unsettled: dict[NodeId, dict[int, Deltas]] = {}
        """Per peer, the trades not settled yet: lock id -> what each changed
        in the peer's accounts here."""
        self._next_settlement_mono_ms: int | None = None
        self._unsettled_at: dict[NodeId, dict[int, int]] = {}
        self._default_notices: dict[NodeId, dict[NodeId, None]] = {}
        """Per peer, the other peers that declared it in default."""
        """Per peer, when each unsettled trade was booked (monotonic ms)."""
        """Peers with unanswered bond requests, in a replayable order."""

    # ================================================================ inputs

    def place(self, request: OrderRequest, now: Now) -> list[Effect]:
        return self._handle(PlaceInput(request), now)

    def cancel(self, trader_id: str, order_id: int, now: Now) -> list[Effect]:
        return self._handle(CancelInput(trader_id, order_id), now)

    def deposit(self, trader_id: str, asset: str, amount: int, now: Now) -> list[Effect]:
        return self._handle(DepositInput(trader_id, asset, amount), now)

    def fund(self, asset: str, amount: int, now: Now) -> list[Effect]:
        """Add to the node's own capital, from which it posts bonds."""
        return self._handle(FundInput(asset, amount), now)

    def post_bond(self, peer: NodeId, amount: int, now: Now) -> list[Effect]:
        """Post ``amount`` more of the bond asset with ``peer``."""
        return self._handle(BondInput(peer, amount, False), now)

    def withdraw_bond(self, peer: NodeId, amount: int, now: Now) -> list[Effect]:
        """Ask ``peer`` to give back ``amount`` of the bond posted with it."""
        return self._handle(BondInput(peer, amount, True), now)

    def receive(self, sender: NodeId, hlc: Hlc, message: Message, now: Now) -> list[Effect]:
        if sender not in self.peers:
            self._count("dropped_unknown_sender")
            return []
        return self._handle(ReceiveInput(sender, hlc, message), now)

    def tick(self, now: Now) -> list[Effect]:
        return self._handle(TickInput(), now)

    def restart(self, now: Now) -> list[Effect]:
        return self._handle(RestartInput(), now)

    @classmethod
    def rebuild(
        cls,
        node_id: NodeId,
        products: Iterable[ProductSpec],
        peers: Iterable[NodeId],
        config: NodeConfig,
        secret: bytes,
        journal: Iterable[JournalEntry],
        reference_prices: dict[str, int] | None = None,
    ) -> NodeCore:
        """A node whose state is the replay of ``journal``."""
        core = cls(node_id, products, peers, config, secret, reference_prices)
        for entry in journal:
            core._handle(entry.input, entry.now)
        return core

    # ============================================================== dispatch

    def _handle(self, event: Input, now: Now) -> list[Effect]:
        journal = JournalEntry(now, event)
        effects: list[Effect] = [Journal(journal)]
        _HANDLERS[type(event)](self, event, now, effects)
        if type(event) is PlaceInput and not _accepted_place(effects):
            return effects[1:]  # a rejected order changed nothing: not journaled
        self.journal.append(journal)
        return effects

    def _on_place(self, event: Input, now: Now, out: list[Effect]) -> None:
        assert isinstance(event, PlaceInput)
        request = event.request
        previous = self.answers.get((request.trader_id, request.client_order_id))
        if previous is not None:
            out.append(Reply(request.trader_id, previous))
            return
        rejection = self._admit(request, now, out)
        if rejection is not None:
            out.append(Reply(request.trader_id, rejection))

    def _on_cancel(self, event: Input, now: Now, out: list[Effect]) -> None:
        assert isinstance(event, CancelInput)
        working = self.working.get(event.order_id)
        if working is not None and working.order.trader_id == event.trader_id:
            working.cancel_requested = True
            return
        meta = self.resting.get(event.order_id)
        if meta is None or meta.order.trader_id != event.trader_id:
            out.append(Reply(event.trader_id, Rejected("", "unknown_order", "no such open order")))
            return
        book = self.books[meta.order.product_id]
        try:
            cancelled = book.cancel(event.order_id)
        except BookError:
            out.append(Reply(event.trader_id, Rejected("", "unknown_order", "already cancelled")))
            return
        self._release_part(meta, cancelled)
        view = book.get(event.order_id)
        if view is None:
            self._close_resting(meta, "cancelled", cancelled, now, out)
        else:
            self._advert(meta, view.open_lots, now, out)

    def _on_deposit(self, event: Input, now: Now, out: list[Effect]) -> None:
        assert isinstance(event, DepositInput)
        self.ledger.deposit(
            self._new_id("deposit"), trader_owner(event.trader_id), event.asset, event.amount
        )

    def _on_fund(self, event: Input, now: Now, out: list[Effect]) -> None:
        assert isinstance(event, FundInput)
        self.ledger.deposit(self._new_id("fund"), CAPITAL_OWNER, event.asset, event.amount)

    def _on_bond(self, event: Input, now: Now, out: list[Effect]) -> None:
        """Ask a peer to hold more bond, or to give some back. Posting holds
        the capital until the peer answers; both sides book only then."""
        assert isinstance(event, BondInput)
        view = self.peers.get(event.peer)
        if view is None or event.amount <= 0:
            self._count("bond_request_invalid")
            return
        asset = self.config.clearing.bond_asset
        bond_id = self._random_id("bond", len(self.journal), self._counter)
        self._counter += 1
        if event.withdraw:
            asked = sum(r.amount for r in view.bond_requests.values() if r.withdraw)
            if event.amount > view.bond_posted - asked:
                self._count("bond_withdraw_beyond_posted")
                return
        else:
            if self.ledger.available(self._capital) < event.amount:
                self._count("bond_post_without_capital")
                return
            self.ledger.place_hold(f"bond:{bond_id}", self._capital, event.amount)
        request = BondRequest(bond_id, asset, event.amount, event.withdraw)
        view.bond_requests[bond_id] = request
        self._bonds_waiting[event.peer] = None
        self._send(event.peer, request, now, out)
        view.bond_resend_mono_ms = now.mono_ms + self.config.clearing.bond_resend_ms
        out.append(SetTimer(view.bond_resend_mono_ms))

    def _on_receive(self, event: Input, now: Now, out: list[Effect]) -> None:
        assert isinstance(event, ReceiveInput)
        self.clock.observe(event.hlc, now.wall_ms)
        self._hlc_in = event.hlc
        handler = _MESSAGE_HANDLERS[type(event.message)]
        handler(self, event.sender, event.message, now, out)

    def _on_tick(self, event: Input, now: Now, out: list[Effect]) -> None:
        self._expire_locks(now, out)
        for working in list(self.working.values()):
            if working.awaiting and now.mono_ms >= working.deadline_mono_ms:
                working.awaiting.clear()
                self._decide(working, now, out)
            elif working.accepted and now.mono_ms >= working.resend_mono_ms:
                self._resend_acceptances(working, now, out)
        for peer in self._bonds_waiting:
            view = self.peers[peer]
            if now.mono_ms >= view.bond_resend_mono_ms:
                for request in view.bond_requests.values():
                    self._send(peer, request, now, out)
                view.bond_resend_mono_ms = now.mono_ms + self.config.clearing.bond_resend_ms
                out.append(SetTimer(view.bond_resend_mono_ms))
        if self.unsettled:
            self._settlement_cycle(now, out)
        self._heartbeat(now, out)

    def _on_restart(self, event: Input, now: Now, out: list[Effect]) -> None:
        # Locks lived on the monotonic clock of a process that is gone: none may
        # be honoured late, so all of them end now, as expired.
        for lock in list(self.locks.values()):
            self._end_lock(lock, Refusal(lock.lock_id, "expired_by_restart"), now, out)
        for working in self.working.values():
            working.deadline_mono_ms = now.mono_ms
            working.resend_mono_ms = now.mono_ms
            working.broadcast_mono_ms = None
        # Booking times were on the old process's clock: the deadline restarts.
        for booked in self._unsettled_at.values():
            for lock_id in booked:
                booked[lock_id] = now.mono_ms
        self._next_heartbeat_ms = None
        out.append(SetTimer(now.mono_ms))

    # ========================================================= originator

    def _admit(self, request: OrderRequest, now: Now, out: list[Effect]) -> Rejected | None:
        """Check and hold a new order, then start working it."""
        product = self.products.get(request.product_id)
        if product is None:
            return Rejected(request.client_order_id, "product_not_listed", "not listed here")
        order_id = self._counter + 1  # taken only if the order is accepted
        try:
            order = order_from_request(request, product, order_id)
        except DomainError as error:
            return Rejected(request.client_order_id, f"invalid_{error.field}", error.message)
        context = self._risk_context(order, product)
        decision = check_order(self.config.risk, context)
        if isinstance(decision, Reject):
            return Rejected(request.client_order_id, decision.code.value, decision.message)
        hold = required_hold(self.config.risk, context)
        hold_id = None
        if hold.amount:
            hold_id = f"order:{order_id}"
            account = AccountKey(trader_owner(order.trader_id), hold.asset)
            self.ledger.place_hold(hold_id, account, hold.amount)
        self._counter = order_id
        accepted = Accepted(request.client_order_id, order_id)
        self.answers[(request.trader_id, request.client_order_id)] = accepted
        self.open_orders[order.trader_id] = self.open_orders.get(order.trader_id, 0) + 1
        out.append(Reply(order.trader_id, accepted))
        request_id = self._random_id("request", order_id)
        working = _Working(order, product, hold_id, request_id, order.quantity_lots)
        self.working[order_id] = working
        self._requests[request_id] = order_id
        self._count("orders")
        self._start_round(working, now, out)
        return None

    def _risk_context(self, order: Order, product: ProductSpec) -> RiskContext:
        return risk_context(
            self.ledger,
            order,
            product,
            self.reference_prices.get(product.product_id),
            self.open_orders.get(order.trader_id, 0),
            0,
        )

    def _limit_of(self, working: _Working) -> int | None:
        """The worst price the order may trade at: its limit, or for a market
        order its protection price (so a fill never costs more than its hold)."""
        order = working.order
        if order.order_type is OrderType.LIMIT:
            return order.price_ticks
        reference = self.reference_prices[order.product_id]
        return protection_price_ticks(self.config.risk, order.side, reference)

    def _start_round(self, working: _Working, now: Now, out: list[Effect]) -> None:
        working.round += 1
        working.candidates = self._local_offers(working, now)
        order = working.order
        targets = self._targets(working)
        message = OrderBroadcast(
            working.request_id,
            working.round,
            order.product_id,
            order.side,
            working.remaining_lots,
            self._limit_of(working),
            order.time_in_force is TimeInForce.FOK,
        )
        for peer in targets:
            self._send(peer, message, now, out)
        self._count("broadcasts", len(targets))
        if not targets:
            self._decide(working, now, out)
            return
        working.awaiting = set(targets)
        working.broadcast_mono_ms = now.mono_ms
        working.deadline_mono_ms = now.mono_ms + self._window_ms(targets)
        out.append(SetTimer(working.deadline_mono_ms))

    def _window_ms(self, targets: list[NodeId]) -> int:
        """Wait at least the configured window, longer for a slow peer's round
        trip, but never so long that an answer could not be accepted in time."""
        config = self.config
        slowest = max(self.peers[peer].rtt_ms for peer in targets)
        cap = config.lock_ttl_ms // 2
        return min(max(config.collection_window_ms, slowest + config.acceptance_margin_ms), cap)

    def _targets(self, working: _Working) -> list[NodeId]:
        """Whom to ask. Broadcast: every peer. Targeted: every peer whose view
        may be stale, then the peers whose advertised crossing orders, best
        price first, cover what the node's own book does not; a peer that
        already answered this order without a refusal has given what it had."""
        if not self.config.targeted_routing:
            return [peer for peer, view in self.peers.items() if not view.suspended]
        order = working.order
        limit = self._limit_of(working)
        buy = order.side is Side.BUY
        chosen: list[NodeId] = []
        advertised: list[tuple[int, Hlc, NodeId, int]] = []
        for peer, view in self.peers.items():
            if peer in working.exhausted or view.suspended:
                continue
            if view.stale:
                chosen.append(peer)
                continue
            book = (view.asks if buy else view.bids).get(order.product_id)
            if not book:
                continue
            for advert in book.values():
                if _advert_crosses(advert, order.product_id, order.side, limit):
                    price_key = advert.price_ticks if buy else -advert.price_ticks
                    advertised.append((price_key, advert.priority, peer, advert.quantity_lots))
        local = sum(c.offer.quantity_lots for c in working.candidates)
        needed = working.remaining_lots - local
        for _, _, peer, lots in sorted(advertised):
            if needed <= 0:
                break
            if peer not in chosen:
                chosen.append(peer)
            needed -= lots
        return chosen

    def _local_offers(self, working: _Working, now: Now) -> list[_Candidate]:
        """Lock crossing quantity in this node's own book, as offers from itself."""
        order = working.order
        book = self.books[order.product_id]
        found = book.lockable(
            order.side, self._limit_of(working), working.remaining_lots, order.trader_id
        )
        candidates = []
        for order_id, price, lots in found:
            lock = self._new_lock(self.node_id, order_id, lots, now)
            offer = Offer(lock.lock_id, price, lots, self.resting[order_id].priority, 0)
            candidates.append(_Candidate(self.node_id, offer, now.mono_ms))
        return candidates

    def _on_potential_trades(
        self, sender: NodeId, message: Message, now: Now, out: list[Effect]
    ) -> None:
        assert isinstance(message, PotentialTrades)
        order_id = self._requests.get(message.request_id)
        working = self.working.get(order_id) if order_id is not None else None
        if working is None or working.round != message.round or sender not in working.awaiting:
            # Late or duplicate: give back every lock in it that this node has
            # neither taken nor still holds as a candidate of the current round.
            kept = (
                {c.offer.lock_id for c in working.candidates if c.holder == sender}
                if working
                else set()
            )
            for offer in message.offers:
                if (
                    sender,
                    offer.lock_id,
                ) not in self._accepted_locks and offer.lock_id not in kept:
                    self._send(sender, Release(offer.lock_id), now, out)
            return
        working.awaiting.discard(sender)
        if working.broadcast_mono_ms is not None:
            # A holder answers a broadcast at once and broadcasts are never
            # resent, so this is a clean round-trip sample.
            self._sample_rtt(self.peers[sender], now.mono_ms - working.broadcast_mono_ms)
        working.exhausted.add(sender)
        working.candidates.extend(_Candidate(sender, o, now.mono_ms) for o in message.offers)
        if not working.awaiting:
            self._decide(working, now, out)

    def _decide(self, working: _Working, now: Now, out: list[Effect]) -> None:
        """Rank what was offered, accept the best, release the rest."""
        buy = working.order.side is Side.BUY
        ranked = sorted(
            (c for c in working.candidates if self._in_budget(c, now)),
            key=lambda c: (
                c.offer.price_ticks if buy else -c.offer.price_ticks,
                c.offer.priority,
                c.holder,
            ),
        )
        chosen: list[tuple[_Candidate, int]] = []
        wanted = working.remaining_lots
        owed: dict[NodeId, int] = {}
        for candidate in ranked[:MAX_OFFERS_ACCEPTED]:
            if wanted == 0:
                break
            lots = min(wanted, candidate.offer.quantity_lots)
            if not self._may_accept(working, candidate, lots, owed):
                continue
            chosen.append((candidate, lots))
            wanted -= lots
        if working.order.time_in_force is TimeInForce.FOK and wanted:
            chosen = []  # fill or kill: take nothing unless the whole quantity is covered
        taken = {id(c) for c, _ in chosen}
        for candidate in working.candidates:
            if id(candidate) not in taken:
                self._give_back(candidate, now, out)
        working.candidates = []
        for candidate, lots in chosen:
            self._take(working, candidate, lots, now, out)
        if working.accepted:
            working.resend_mono_ms = now.mono_ms + self.config.resend_ms
            out.append(SetTimer(working.resend_mono_ms))
        else:
            self._finish_round(working, now, out)

    def _may_accept(
        self, working: _Working, candidate: _Candidate, lots: int, owed: dict[NodeId, int]
    ) -> bool:
        """An originator takes no trade that would leave it owing the holder,
        marked to the last prices, more than its bond there allows. ``owed``
        carries what this decision has already added, per holder."""
        holder = candidate.holder
        if holder == self.node_id:
            return True
        view = self.peers[holder]
        if view.suspended:
            self._count("acceptances_to_suspended")
            return False
        product = working.product
        price = candidate.offer.price_ticks
        mark = self.reference_prices.get(product.product_id, price)
        change = product.notional_minor(lots, price) - product.notional_minor(lots, mark)
        if working.order.side is Side.SELL:
            change = -change  # selling: the holder pays this node the notional
        marked = owed[holder] if holder in owed else self._marked(holder)
        cap = exposure_cap(view.bond_posted, self.config.clearing.exposure_multiple_percent)
        if obligations(marked + change) > cap:
            self._count("acceptances_over_bond")
            return False
        owed[holder] = marked + change
        return True

    def _in_budget(self, candidate: _Candidate, now: Now) -> bool:
        """Accept a remote lock only while it surely still lives at its holder."""
        if candidate.holder == self.node_id:
            return candidate.offer.lock_id in self.locks
        rtt = self.peers[candidate.holder].rtt_ms
        budget_end = (
            candidate.received_mono_ms
            + candidate.offer.ttl_ms
            - rtt
            - self.config.acceptance_margin_ms
        )
        return budget_end > now.mono_ms

    def _give_back(self, candidate: _Candidate, now: Now, out: list[Effect]) -> None:
        if candidate.holder == self.node_id:
            lock = self.locks.get(candidate.offer.lock_id)
            if lock is not None:
                self._end_lock(lock, Refusal(lock.lock_id, "released"), now, out)
        else:
            self._send(candidate.holder, Release(candidate.offer.lock_id), now, out)
            self._count("releases")

    def _take(
        self, working: _Working, candidate: _Candidate, lots: int, now: Now, out: list[Effect]
    ) -> None:
        lock_id = candidate.offer.lock_id
        if candidate.holder == self.node_id:
            self._take_local(working, self.locks[lock_id], lots, now, out)
            return
        working.accepted[(candidate.holder, lock_id)] = lots
        self._accepted_locks[(candidate.holder, lock_id)] = working.order.order_id
        self._send(candidate.holder, Acceptance(lock_id, lots), now, out)
        self._count("acceptances")

    def _take_local(
        self, working: _Working, lock: _Lock, lots: int, now: Now, out: list[Effect]
    ) -> None:
        """Both sides are this node's traders: trade at once, at the resting price."""
        del self.locks[lock.lock_id]
        meta = self.resting[lock.order_id]
        fill, reentry = self.books[meta.order.product_id].take(lock.lock_id, lots)
        self._count("local_trades")
        trade_id = self._trade(working.order, meta, fill.price_ticks, lots, now, out)
        self._executed(working, trade_id, fill.price_ticks, lots, self.node_id, out)
        self._after_fill(meta, fill, reentry, now, out)

    def _resend_acceptances(self, working: _Working, now: Now, out: list[Effect]) -> None:
        for (holder, lock_id), lots in working.accepted.items():
            self._send(holder, Acceptance(lock_id, lots), now, out)
            self._count("acceptance_resends")
        working.resend_mono_ms = now.mono_ms + self.config.resend_ms
        out.append(SetTimer(working.resend_mono_ms))

    def _on_confirmation(
        self, sender: NodeId, message: Message, now: Now, out: list[Effect]
    ) -> None:
        assert isinstance(message, Confirmation)
        working = self._awaiting_decision(sender, message.lock_id)
        if working is None:
            return
        lots = working.accepted.pop((sender, message.lock_id))
        assert lots == message.quantity_lots, "a holder confirmed other terms than accepted"
        product = working.product
        buyer, seller = trader_owner(working.order.trader_id), self._peer_account(sender)
        buyer_hold, seller_hold = working.hold_id, None
        if working.order.side is Side.SELL:
            buyer, seller = seller, buyer
            buyer_hold, seller_hold = seller_hold, buyer_hold
        entry = trade_entry(
            self._new_id("trade"),
            product,
            buyer,
            seller,
            lots,
            message.price_ticks,
            buyer_hold=buyer_hold,
            seller_hold=seller_hold,
        )
        self.ledger.post(entry)
        self._unsettled_trade(
            sender,
            message.lock_id,
            product,
            working.order.side is Side.SELL,
            lots,
            message.price_ticks,
            now,
        )
        self.reference_prices[product.product_id] = message.price_ticks
        self._count("remote_trades")
        self._executed(working, message.trade_id, message.price_ticks, lots, sender, out)
        self._maybe_finish(working, now, out)

    def _on_refusal(self, sender: NodeId, message: Message, now: Now, out: list[Effect]) -> None:
        assert isinstance(message, Refusal)
        working = self._awaiting_decision(sender, message.lock_id)
        if working is None:
            return
        del working.accepted[(sender, message.lock_id)]
        working.refused = True
        working.exhausted.discard(sender)  # what it refused is open again: ask it again
        working.failed_holders.append(sender)
        self._count("refusals")
        self._maybe_finish(working, now, out)

    def _awaiting_decision(self, holder: NodeId, lock_id: int) -> _Working | None:
        order_id = self._accepted_locks.get((holder, lock_id))
        working = self.working.get(order_id) if order_id is not None else None
        if working is None or (holder, lock_id) not in working.accepted:
            return None  # a repeated decision: already applied
        return working

    def _maybe_finish(self, working: _Working, now: Now, out: list[Effect]) -> None:
        if not working.accepted:
            self._finish_round(working, now, out)

    def _executed(
        self,
        working: _Working,
        trade_id: int,
        price_ticks: int,
        lots: int,
        counterparty: NodeId,
        out: list[Effect],
    ) -> None:
        working.remaining_lots -= lots
        working.filled_lots += lots
        event = Executed(working.order.order_id, trade_id, price_ticks, lots, counterparty)
        out.append(Reply(working.order.trader_id, event))

    def _finish_round(self, working: _Working, now: Now, out: list[Effect]) -> None:
        order = working.order
        tif = order.time_in_force
        if working.remaining_lots == 0:
            self._finish(working, "filled", now, out)
        elif tif is TimeInForce.FOK:
            reason = "fok_holder_failed" if working.filled_lots else "fok_unfillable"
            self._finish(working, reason, now, out)
        elif working.round < self.config.max_rounds and (
            working.refused or self._untried_liquidity(working)
        ):
            working.refused = False
            self._start_round(working, now, out)
        elif (
            tif is TimeInForce.GTC
            and order.order_type is OrderType.LIMIT
            and not working.cancel_requested
        ):
            self._rest(working, now, out)
        else:
            reason = "cancelled" if working.cancel_requested else "ioc_remainder"
            self._finish(working, reason, now, out)

    def _untried_liquidity(self, working: _Working) -> bool:
        """Targeted routing asked only the peers it needed; if they had less
        than advertised, others may still have crossing orders."""
        return self.config.targeted_routing and bool(self._targets(working))

    def _finish(self, working: _Working, reason: str, now: Now, out: list[Effect]) -> None:
        order = working.order
        del self.working[order.order_id]
        del self._requests[working.request_id]
        if working.hold_id is not None and self.ledger.find_hold(working.hold_id):
            self.ledger.release_hold(working.hold_id)
        self.open_orders[order.trader_id] -= 1
        if reason == "fok_holder_failed":
            self._count("fok_partial_fills")
        done = Done(
            order.order_id,
            working.filled_lots,
            working.remaining_lots,
            reason,
            tuple(working.failed_holders),
        )
        out.append(Reply(order.trader_id, done))

    def _rest(self, working: _Working, now: Now, out: list[Effect]) -> None:
        """Put a GTC remainder in the book and tell every peer."""
        order = working.order
        remainder = Order.create(
            order.order_id,
            order.trader_id,
            order.product_id,
            order.side,
            working.remaining_lots,
            order.price_ticks,
            order.order_type,
            order.time_in_force,
            order.client_order_id,
        )
        del self.working[order.order_id]
        del self._requests[working.request_id]
        meta = _RestingMeta(
            order,
            working.product,
            working.hold_id,
            self.clock.tick(now.wall_ms),
            self._random_id("ref", order.order_id),
            working.filled_lots,
        )
        self.resting[order.order_id] = meta
        result = self.books[order.product_id].submit(remainder)
        for fill in result.fills:
            # Quantity unlocked while this order was worked may cross it now.
            self._local_fill(meta, fill, now, out)
        if result.rested_lots:
            out.append(Reply(order.trader_id, Rested(order.order_id, result.rested_lots)))
            self._advert(meta, result.rested_lots, now, out)
        else:
            reason = result.cancel_reason or "filled"
            self._close_resting(meta, reason, result.cancelled_lots, now, out)

    # ============================================================== holder

    def _on_broadcast(self, sender: NodeId, message: Message, now: Now, out: list[Effect]) -> None:
        assert isinstance(message, OrderBroadcast)
        view = self.peers[sender]
        key = (message.request_id, message.round)
        remembered = view.answers.get(key)
        if remembered is not None:
            self._send(sender, remembered[1], now, out)
            return
        stamp = self._hlc_in
        forgotten = view.answers_forgotten_through
        if forgotten is not None and stamp <= forgotten:
            self._count("broadcasts_stale")
            return
        answer = self._offer(sender, message, now, out)
        view.answers[key] = (stamp, answer)
        self._forget_old_answers(view, stamp)
        self._send(sender, answer, now, out)

    def _forget_old_answers(self, view: _PeerView, newest: Hlc) -> None:
        """Keep a peer's answers within ``broadcast_memory_ms`` of its newest
        broadcast and within ``max_answers_per_peer``, forgetting the oldest
        received first."""
        answers, config = view.answers, self.config
        horizon_ms = newest.wall_ms - config.broadcast_memory_ms
        while answers:
            oldest = next(iter(answers))
            stamp = answers[oldest][0]
            if len(answers) <= config.max_answers_per_peer and stamp.wall_ms >= horizon_ms:
                return
            del answers[oldest]
            forgotten = view.answers_forgotten_through
            if forgotten is None or stamp > forgotten:
                view.answers_forgotten_through = stamp

    def _offer(
        self, originator: NodeId, message: OrderBroadcast, now: Now, out: list[Effect]
    ) -> PotentialTrades:
        book = self.books.get(message.product_id)
        product = self.products.get(message.product_id)
        offers: list[Offer] = []
        limited = ""
        if book is not None and product is not None:
            lockable = book.lockable(message.side, message.limit_price_ticks, message.quantity_lots)
            notional_left, count_left, binding = (
                self._lock_budget(originator, now) if lockable else (0, 0, "")
            )
            if notional_left <= 0 or count_left <= 0:
                limited, lockable = binding, []
            view, offered = self.peers[originator], 0
            for order_id, price, wanted in lockable:
                if count_left <= 0:
                    limited = "lock_quota"
                    break
                per_lot = product.notional_minor(1, price)
                lots = min(wanted, notional_left // per_lot)
                if lots < wanted:
                    limited = binding
                if lots <= 0:
                    break
                notional = per_lot * lots
                lock = self._new_lock(originator, order_id, lots, now, notional)
                notional_left -= notional
                offered += notional
                count_left -= 1
                view.lock_notional += notional
                view.lock_count += 1
                priority = self.resting[order_id].priority
                offers.append(Offer(lock.lock_id, price, lots, priority, self.config.lock_ttl_ms))
                out.append(SetTimer(lock.expires_mono_ms))
            if offered:
                self._ratio(view, now).offer(offered, now.mono_ms)
        self._count("locks_offered", len(offers))
        if limited:
            self._count(f"limited:{limited}")
        return PotentialTrades(message.request_id, message.round, tuple(offers), limited)

    def _new_lock(
        self, originator: NodeId, order_id: int, lots: int, now: Now, notional: int = 0
    ) -> _Lock:
        lock_id = self._random_id("lock", len(self.journal), self._counter)
        self._counter += 1
        meta = self.resting[order_id]
        self.books[meta.order.product_id].lock(lock_id, order_id, lots)
        lock = _Lock(
            lock_id, originator, order_id, lots, now.mono_ms + self.config.lock_ttl_ms, notional
        )
        self.locks[lock_id] = lock
        return lock

    def _on_acceptance(self, sender: NodeId, message: Message, now: Now, out: list[Effect]) -> None:
        assert isinstance(message, Acceptance)
        decision = self.decisions.get(message.lock_id)
        lock = self.locks.get(message.lock_id)
        if decision is None and lock is not None and lock.originator == sender:
            decision = self._decide_acceptance(lock, message, now, out)
        if decision is None:
            decision = Refusal(message.lock_id, "unknown_lock")
        self._send(sender, decision, now, out)

    def _decide_acceptance(
        self, lock: _Lock, message: Acceptance, now: Now, out: list[Effect]
    ) -> Confirmation | Refusal:
        """The holder's final word on a lock, by its own clock."""
        if now.mono_ms >= lock.expires_mono_ms:
            refusal = Refusal(lock.lock_id, "expired")
            self._end_lock(lock, refusal, now, out)
            self._count("refused_expired")
            return refusal
        if not 1 <= message.quantity_lots <= lock.quantity_lots:
            refusal = Refusal(lock.lock_id, "bad_quantity")
            self._end_lock(lock, refusal, now, out)
            return refusal
        del self.locks[lock.lock_id]
        self._lock_closed(lock)
        meta = self.resting[lock.order_id]
        fill, reentry = self.books[meta.order.product_id].take(lock.lock_id, message.quantity_lots)
        view = self.peers[lock.originator]
        self._ratio(view, now).take(
            lock.notional * fill.quantity_lots // lock.quantity_lots, now.mono_ms
        )
        trade_id = self._random_id("trade", lock.lock_id)
        self._book_holder_trade(meta, lock.originator, fill, trade_id, out)
        self._unsettled_trade(
            lock.originator,
            lock.lock_id,
            meta.product,
            meta.order.side is Side.SELL,
            fill.quantity_lots,
            fill.price_ticks,
            now,
        )
        confirmation = Confirmation(
            lock.lock_id,
            trade_id,
            meta.order.product_id,
            meta.order.side.opposite,
            fill.price_ticks,
            fill.quantity_lots,
        )
        self.decisions[lock.lock_id] = confirmation
        self._count("locks_taken")
        self._after_fill(meta, fill, reentry, now, out)
        return confirmation

    def _book_holder_trade(
        self, meta: _RestingMeta, originator: NodeId, fill: Fill, trade_id: int, out: list[Effect]
    ) -> None:
        resting_party, peer = trader_owner(meta.order.trader_id), self._peer_account(originator)
        buyer, seller = (
            (resting_party, peer) if meta.order.side is Side.BUY else (peer, resting_party)
        )
        holds = (meta.hold_id, None) if meta.order.side is Side.BUY else (None, meta.hold_id)
        entry = trade_entry(
            self._new_id("trade"),
            meta.product,
            buyer,
            seller,
            fill.quantity_lots,
            fill.price_ticks,
            buyer_hold=holds[0],
            seller_hold=holds[1],
        )
        self.ledger.post(entry)
        meta.filled_lots += fill.quantity_lots
        self.reference_prices[meta.product.product_id] = fill.price_ticks
        executed = Executed(
            meta.order.order_id, trade_id, fill.price_ticks, fill.quantity_lots, originator
        )
        out.append(Reply(meta.order.trader_id, executed))
        out.append(
            Publish(meta.product.product_id, fill.price_ticks, fill.quantity_lots, self.clock.last)
        )

    def _on_release(self, sender: NodeId, message: Message, now: Now, out: list[Effect]) -> None:
        assert isinstance(message, Release)
        lock = self.locks.get(message.lock_id)
        if lock is not None and lock.originator == sender:
            self._end_lock(lock, Refusal(lock.lock_id, "released"), now, out)

    def _expire_locks(self, now: Now, out: list[Effect]) -> None:
        for lock in list(self.locks.values()):
            if now.mono_ms >= lock.expires_mono_ms and lock.originator != self.node_id:
                self._end_lock(lock, Refusal(lock.lock_id, "expired"), now, out)
                self._count("locks_expired")

    def _end_lock(self, lock: _Lock, decision: Refusal, now: Now, out: list[Effect]) -> None:
        """End a lock without a trade; its quantity goes back to its order."""
        del self.locks[lock.lock_id]
        self._lock_closed(lock)
        if lock.originator != self.node_id:
            self.decisions[lock.lock_id] = decision
        meta = self.resting[lock.order_id]
        reentry = self.books[meta.order.product_id].release(lock.lock_id)
        self._after_reentry(meta, reentry, now, out)

    # ============================================================ resting

    def _lock_closed(self, lock: _Lock) -> None:
        view = self.peers.get(lock.originator)
        if view is not None:
            view.lock_notional -= lock.notional
            view.lock_count -= 1

    def _after_fill(
        self, meta: _RestingMeta, fill: Fill, reentry: Reentry, now: Now, out: list[Effect]
    ) -> None:
        if fill.maker_done or reentry.order_done:
            self._close_resting(meta, "filled", reentry.cancelled_lots, now, out)
            return
        self._after_reentry(meta, reentry, now, out)

    def _after_reentry(
        self, meta: _RestingMeta, reentry: Reentry, now: Now, out: list[Effect]
    ) -> None:
        """Book what returning quantity traded locally, then show the order anew."""
        for fill in reentry.fills:
            self._local_fill(meta, fill, now, out)
        if reentry.cancelled_lots:
            self._release_part(meta, reentry.cancelled_lots)
        if reentry.order_done:
            self._close_resting(meta, "done", reentry.cancelled_lots, now, out)
            return
        view = self.books[meta.order.product_id].get(meta.order.order_id)
        if view is not None:
            self._advert(meta, view.open_lots, now, out)

    def _local_fill(self, taker: _RestingMeta, fill: Fill, now: Now, out: list[Effect]) -> None:
        """A resting order of this node traded with another one of its orders."""
        maker = self.resting[fill.maker_order_id]
        trade_id = self._trade(taker.order, maker, fill.price_ticks, fill.quantity_lots, now, out)
        taker.filled_lots += fill.quantity_lots
        event = Executed(
            taker.order.order_id, trade_id, fill.price_ticks, fill.quantity_lots, self.node_id
        )
        out.append(Reply(taker.order.trader_id, event))
        if fill.maker_done:
            self._close_resting(maker, "filled", 0, now, out)
        else:
            view = self.books[maker.order.product_id].get(maker.order.order_id)
            if view is not None:
                self._advert(maker, view.open_lots, now, out)

    def _trade(
        self, taker: Order, maker: _RestingMeta, price: int, lots: int, now: Now, out: list[Effect]
    ) -> int:
        """Book a trade between two of this node's traders."""
        taker_hold = self._hold_of(taker.order_id)
        if taker.side is Side.BUY:
            buyer, seller = taker, maker.order
            buyer_hold, seller_hold = taker_hold, maker.hold_id
        else:
            buyer, seller = maker.order, taker
            buyer_hold, seller_hold = maker.hold_id, taker_hold
        entry = trade_entry(
            self._new_id("trade"),
            maker.product,
            trader_owner(buyer.trader_id),
            trader_owner(seller.trader_id),
            lots,
            price,
            buyer_hold=buyer_hold,
            seller_hold=seller_hold,
        )
        self.ledger.post(entry)
        maker.filled_lots += lots
        self.reference_prices[maker.product.product_id] = price
        out.append(Publish(maker.product.product_id, price, lots, self.clock.tick(now.wall_ms)))
        maker_event = Executed(
            maker.order.order_id, entry_trade_id(entry.entry_id), price, lots, self.node_id
        )
        out.append(Reply(maker.order.trader_id, maker_event))
        return entry_trade_id(entry.entry_id)

    def _hold_of(self, order_id: int) -> str | None:
        working = self.working.get(order_id)
        if working is not None:
            return working.hold_id
        return self.resting[order_id].hold_id

    def _release_part(self, meta: _RestingMeta, lots: int) -> None:
        """Release the hold behind ``lots`` of a resting order that will never fill."""
        if meta.hold_id is None or not lots or not self.ledger.find_hold(meta.hold_id):
            return
        order = meta.order
        if order.side is Side.BUY:
            assert order.price_ticks is not None
            amount = meta.product.notional_minor(lots, order.price_ticks)
        else:
            amount = lots
        held = self.ledger.find_hold(meta.hold_id)
        assert held is not None
        self.ledger.release_hold(meta.hold_id, min(amount, held.amount))

    def _close_resting(
        self, meta: _RestingMeta, reason: str, cancelled: int, now: Now, out: list[Effect]
    ) -> None:
        order = meta.order
        del self.resting[order.order_id]
        if meta.hold_id is not None and self.ledger.find_hold(meta.hold_id):
            self.ledger.release_hold(meta.hold_id)
        self.open_orders[order.trader_id] -= 1
        self._advert(meta, 0, now, out)
        done = Done(order.order_id, meta.filled_lots, cancelled, reason)
        out.append(Reply(order.trader_id, done))

    def _advert(self, meta: _RestingMeta, lots: int, now: Now, out: list[Effect]) -> None:
        self._advert_version += 1
        order = meta.order
        assert order.price_ticks is not None
        advert = Advert(
            meta.order_ref,
            order.product_id,
            order.side,
            order.price_ticks,
            lots,
            meta.priority,
            self._advert_version,
        )
        for peer in self.peers:
            self._send(peer, advert, now, out)
        self._count("adverts", len(self.peers))

    def _on_advert(self, sender: NodeId, message: Message, now: Now, out: list[Effect]) -> None:
        assert isinstance(message, Advert)
        view = self.peers[sender]
        if not view.see_advert(message.version):
            return
        current = view.adverts.get(message.order_ref)
        if current is not None and current.version > message.version:
            return  # an older advert overtaken by a newer one
        side = view.bids if message.side is Side.BUY else view.asks
        book = side.get(message.product_id)
        if book is None:
            book = side[message.product_id] = {}
        if message.quantity_lots:
            view.adverts[message.order_ref] = message
            book[message.order_ref] = message
        else:
            view.adverts.pop(message.order_ref, None)
            book.pop(message.order_ref, None)

    def _on_trade_print(
        self, sender: NodeId, message: Message, now: Now, out: list[Effect]
    ) -> None:
        self._count("prints_received")

    # ================================================================ bonds

    def _on_bond_request(
        self, sender: NodeId, message: Message, now: Now, out: list[Effect]
    ) -> None:
        """As holder of a peer's bond: book a posting or a withdrawal once,
        and give the same answer to every retry."""
        assert isinstance(message, BondRequest)
        view = self.peers[sender]
        answer = view.bond_answers.get(message.bond_id)
        if answer is None:
            reason = self._hold_bond(sender, view, message)
            answer = BondAnswer(message.bond_id, reason)
            view.bond_answers[message.bond_id] = answer
            self._count("bond_requests_done" if not reason else f"bond_refused:{reason}")
        self._send(sender, answer, now, out)

    def _hold_bond(self, peer: NodeId, view: _PeerView, request: BondRequest) -> str:
        asset = self.config.clearing.bond_asset
        if request.asset != asset:
            return "wrong_asset"
        if request.amount <= 0:
            return "bad_amount"
        amount = request.amount
        if request.withdraw:
            if amount > view.bond_held:
                return "beyond_bond"
            if view.lock_count:
                return "locks_open"
            if self._marked(peer) < 0:
                return "owing"
            amount = -amount
        accounts = view.accounts
        if accounts.bond_held is None or accounts.collateral is None:
            accounts.bond_held = self.ledger.open_account(bond_held_owner(peer), asset, UNBOUNDED)
            accounts.collateral = self.ledger.open_account(collateral_owner(peer), asset)
        entry = Entry(
            EntryId(f"bond-held:{peer}:{request.bond_id}"),
            (Posting(accounts.bond_held, -amount), Posting(accounts.collateral, amount)),
        )
        self.ledger.post(entry)
        view.bond_held += amount
        return ""

    def _on_bond_answer(
        self, sender: NodeId, message: Message, now: Now, out: list[Effect]
    ) -> None:
        """As poster: the peer has booked (or refused) a bond request; book
        this side of it, once."""
        assert isinstance(message, BondAnswer)
        view = self.peers[sender]
        request = view.bond_requests.pop(message.bond_id, None)
        if request is None:
            return  # a repeated answer
        if not view.bond_requests:
            self._bonds_waiting.pop(sender, None)
        hold = None if request.withdraw else f"bond:{request.bond_id}"
        if message.reason:
            if hold is not None:
                self.ledger.release_hold(hold)
            self._count(f"bond_refused_by_peer:{message.reason}")
            return
        accounts = view.accounts
        if accounts.bond_posted is None:
            accounts.bond_posted = self.ledger.open_account(
                bond_posted_owner(sender), request.asset
            )
        amount = -request.amount if request.withdraw else request.amount
        entry = Entry(
            EntryId(f"bond-posted:{sender}:{request.bond_id}"),
            (Posting(self._capital, -amount), Posting(accounts.bond_posted, amount)),
            () if hold is None else (HoldUse(HoldId(hold), request.amount),),
        )
        self.ledger.post(entry)
        view.bond_posted += amount

    # ============================================================= exposure

    def _marked(self, peer: NodeId) -> int:
        """The peer's accounts here, marked to the last trade prices, in the
        bond asset: positive, this node owes the peer; negative, it is owed."""
        keys = self.peers[peer].accounts.peer
        if keys is None:
            return 0
        balance = self.ledger.balance
        balances = {asset: balance(key) for asset, key in keys.items()}
        return marked_value(
            balances, self.products, self.reference_prices, self.config.clearing.bond_asset
        )

    def _lock_budget(self, originator: NodeId, now: Now) -> tuple[int, int, str]:
        """How much notional, and how many locks, this node may still offer
        ``originator``: the lesser of its lock quota and its exposure room;
        with the limit that binds (the reason, if that is nothing)."""
        view = self.peers[originator]
        clearing = self.config.clearing
        if view.suspended:
            return 0, 0, "suspended"
        if view.bond_held <= 0:
            return 0, 0, "no_bond"
        if view.broadcasts is None:
            view.broadcasts = TokenBucket(
                clearing.quota.broadcasts_per_s, clearing.quota.broadcast_burst, now.mono_ms
            )
        if not view.broadcasts.take(now.mono_ms):
            return 0, 0, "broadcast_rate"
        ratio = self._ratio(view, now).permille(now.mono_ms, clearing.quota.ratio_min_offered_minor)
        quota = lock_quota(view.bond_held, ratio, clearing.quota)
        cap = exposure_cap(view.bond_held, clearing.exposure_multiple_percent)
        room = cap - exposure(self._marked(originator), view.lock_notional)
        quota_left = quota.max_lock_notional - view.lock_notional
        binding = "exposure_cap" if room < quota_left else "lock_quota"
        notional = min(quota_left, room)
        count = quota.max_locks - view.lock_count
        if notional <= 0 or count <= 0:
            return 0, 0, binding if notional <= 0 else "lock_quota"
        return notional, count, binding

    def _ratio(self, view: _PeerView, now: Now) -> AcceptanceRatio:
        if view.ratio is None:
            view.ratio = AcceptanceRatio(self.config.clearing.quota.ratio_half_life_ms, now.mono_ms)
        return view.ratio

    # ============================================================ settlement

    def _unsettled_trade(
        self,
        peer: NodeId,
        lock_id: int,
        product: ProductSpec,
        peer_buys: bool,
        lots: int,
        price_ticks: int,
        now: Now,
    ) -> None:
        """Remember what a trade changed in ``peer``'s accounts here, for the
        next settlement statement of the pair."""
        notional = product.notional_minor(lots, price_ticks)
        cash, delivered = (-notional, lots) if peer_buys else (notional, -lots)
        deltas = tuple(sorted(((product.quote_currency, cash), (product.product_id, delivered))))
        self.unsettled.setdefault(peer, {})[lock_id] = deltas
        self._unsettled_at.setdefault(peer, {})[lock_id] = now.mono_ms

    def _settlement_cycle(self, now: Now, out: list[Effect]) -> None:
        """As the lower id of a pair: propose the statement of every trade not
        settled yet; resend one still unanswered."""
        clearing = self.config.clearing
        due = self._next_settlement_mono_ms
        if due is None or now.mono_ms >= due:
            due = now.mono_ms + clearing.settlement_cycle_ms
            ripe = now.mono_ms - clearing.settlement_lag_ms
            overdue = now.mono_ms - clearing.settlement_deadline_ms
            for peer in list(self.unsettled):
                booked = self._unsettled_at[peer]
                if min(booked.values()) <= overdue:
                    self._declare_default(peer, now, out)
                    continue
                view = self.peers[peer]
                if self.node_id < peer and view.proposal is None:
                    trades = {k: v for k, v in self.unsettled[peer].items() if booked[k] <= ripe}
                    if trades:
                        statement = build_statement(self.node_id, peer, view.cycle + 1, trades)
                        view.proposal = StatementProposal(statement)
                        view.proposal_resend_mono_ms = now.mono_ms
            self._next_settlement_mono_ms = due
            out.append(SetTimer(due))
        for peer in self.unsettled:
            view = self.peers[peer]
            if view.proposal is not None and now.mono_ms >= view.proposal_resend_mono_ms:
                self._send(peer, view.proposal, now, out)
                view.proposal_resend_mono_ms = now.mono_ms + clearing.bond_resend_ms
                out.append(SetTimer(view.proposal_resend_mono_ms))

    def _on_statement_proposal(
        self, sender: NodeId, message: Message, now: Now, out: list[Effect]
    ) -> None:
        """As the higher id: settle the proposed statement if this node's own
        records give the same one; answer each cycle once, the same way on
        every retry."""
        assert isinstance(message, StatementProposal)
        view = self.peers[sender]
        statement = message.statement
        answer = view.statement_answers.get(statement.cycle)
        if answer is None:
            mine, reason = reproduce(statement, self.node_id, self.unsettled.get(sender, {}))
            if not reason and (statement.low != sender or statement.cycle <= view.cycle):
                mine, reason = None, "out_of_turn"
            if mine is not None and not reason:
                self._settle(sender, statement.cycle, statement.lock_ids)
                view.cycle = statement.cycle
            else:
                self._count(f"statements_refused:{reason}")
            answer = StatementAnswer(statement.cycle, statement_hash(mine or statement), reason)
            view.statement_answers[statement.cycle] = answer
        self._send(sender, answer, now, out)

    def _on_statement_answer(
        self, sender: NodeId, message: Message, now: Now, out: list[Effect]
    ) -> None:
        """As the lower id: the peer settled (or refused) the proposal."""
        assert isinstance(message, StatementAnswer)
        view = self.peers[sender]
        proposal = view.proposal
        if proposal is None or proposal.statement.cycle != message.cycle:
            return  # a repeated answer
        view.proposal = None
        view.cycle = max(view.cycle, message.cycle)
        statement = proposal.statement
        if message.reason or message.statement_hash != statement_hash(statement):
            # Flagged, nothing moves; the trades stay open for the next cycle.
            self._count(f"statements_mismatched:{message.reason or 'hash'}")
            return
        self._settle(sender, statement.cycle, statement.lock_ids)

    def _settle(self, peer: NodeId, cycle: int, lock_ids: tuple[int, ...]) -> None:
        """Move the net of ``lock_ids`` over the built-in rail: out of the
        peer's accounts here, into the rail account that mirrors the peer's."""
        trades, booked = self.unsettled[peer], self._unsettled_at[peer]
        for lock_id in lock_ids:
            del booked[lock_id]
        net = net_of(trades.pop(lock_id) for lock_id in lock_ids)
        if not trades:
            del self.unsettled[peer], self._unsettled_at[peer]
        keys = self._peer_keys(peer)
        rails = self.peers[peer].accounts.rail
        postings = []
        for asset, amount in net:
            rail = rails.get(asset)
            if rail is None:
                rail = rails[asset] = self.ledger.open_account(rail_owner(peer), asset, EXTERNAL)
            postings.append(Posting(keys[asset], -amount))
            postings.append(Posting(rail, amount))
        if postings:
            self.ledger.post(Entry(EntryId(f"settle:{peer}:{cycle}"), tuple(postings)))
        self.peers[peer].settled += 1
        self._count("statements_settled")

    def _declare_default(self, peer: NodeId, now: Now, out: list[Effect]) -> None:
        """``peer`` did not settle by the deadline: suspend it, close out what
        it owes against its bond, record the rest as this node's loss, and
        tell every other peer."""
        view = self.peers[peer]
        asset = AssetCode(self.config.clearing.bond_asset)
        shortfall = max(0, -self._marked(peer))
        collateral = AccountKey(collateral_owner(peer), asset)
        claimed = min(shortfall, self.ledger.balance(collateral))
        loss = shortfall - claimed
        owner = self._peer_account(peer)
        if claimed:
            self.ledger.post(
                Entry(
                    EntryId(f"claim:{peer}"),
                    (Posting(collateral, -claimed), Posting(AccountKey(owner, asset), claimed)),
                )
            )
        if loss:
            self.ledger.open_account(LOSSES_OWNER, asset, UNBOUNDED)
            self.ledger.post(
                Entry(
                    EntryId(f"loss:{peer}"),
                    (
                        Posting(AccountKey(LOSSES_OWNER, asset), -loss),
                        Posting(AccountKey(owner, asset), loss),
                    ),
                )
            )
        self.unsettled.pop(peer, None)
        self._unsettled_at.pop(peer, None)
        view.proposal = None
        self._suspend(peer, "default", now, out)
        self._count("defaults_declared")
        notice = DefaultNotice(peer, claimed, loss)
        for other in self.peers:
            if other != peer:
                self._send(other, notice, now, out)

    def _suspend(self, peer: NodeId, reason: str, now: Now, out: list[Effect]) -> None:
        """No new locks for ``peer`` and none taken from it; its open locks end."""
        view = self.peers[peer]
        if view.suspended:
            return
        view.suspended = reason
        for lock in [lock for lock in self.locks.values() if lock.originator == peer]:
            self._end_lock(lock, Refusal(lock.lock_id, "suspended"), now, out)

    def _on_default_notice(
        self, sender: NodeId, message: Message, now: Now, out: list[Effect]
    ) -> None:
        assert isinstance(message, DefaultNotice)
        self._count("default_notices")
        defaulter = message.defaulter
        if defaulter not in self.peers or defaulter == sender:
            return
        witnesses = self._default_notices.setdefault(defaulter, {})
        witnesses[sender] = None
        quorum = self.config.clearing.default_notice_quorum
        if quorum and len(witnesses) >= quorum:
            self._suspend(defaulter, "notices", now, out)

    def settling(self) -> bool:
        """True while a proposed statement waits for its answer."""
        return any(self.peers[peer].proposal is not None for peer in self.unsettled)

    # =========================================================== heartbeats

    def _heartbeat(self, now: Now, out: list[Effect]) -> None:
        due = self._next_heartbeat_ms
        if due is not None and now.mono_ms < due:
            return
        if due is not None:
            beat = Heartbeat(now.mono_ms, None, now.wall_ms, self._advert_version)
            # Round robin: the peers probed longest ago go first.
            queue = self._probe_queue
            for _ in range(min(self.config.heartbeat_peers, len(queue))):
                peer = queue.popleft()
                queue.append(peer)
                self._send(peer, beat, now, out)
        self._next_heartbeat_ms = now.mono_ms + self.config.heartbeat_ms
        out.append(SetTimer(self._next_heartbeat_ms))

    def _on_heartbeat(self, sender: NodeId, message: Message, now: Now, out: list[Effect]) -> None:
        assert isinstance(message, Heartbeat)
        view = self.peers[sender]
        view.advert_version_announced = max(view.advert_version_announced, message.advert_version)
        if message.echo_mono_ms is None:
            answer = Heartbeat(now.mono_ms, message.sent_mono_ms, now.wall_ms, self._advert_version)
            self._send(sender, answer, now, out)
            return
        rtt = now.mono_ms - message.echo_mono_ms
        if self._sample_rtt(view, rtt):
            view.offset_ms = message.wall_ms - (now.wall_ms - rtt // 2)

    @staticmethod
    def _sample_rtt(view: _PeerView, rtt: int) -> bool:
        """Fold one round-trip sample into the peer's estimate, like TCP's
        SRTT in integers (7/8 old, 1/8 new); False if it is implausible."""
        if not 0 <= rtt <= 60_000:
            return False
        view.rtt_ms = (7 * view.rtt_ms + rtt) // 8
        return True

    # ============================================================ helpers

    def _send(self, peer: NodeId, message: Message, now: Now, out: list[Effect]) -> None:
        out.append(Send(peer, self.clock.tick(now.wall_ms), message))

    def _count(self, name: str, amount: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + amount

    def _new_id(self, kind: str) -> str:
        self._counter += 1
        return f"{kind}:{self._counter}"

    def _random_id(self, *parts: object) -> int:
        """An id peers cannot link to a trader or guess: a keyed hash of a counter."""
        digest = hashlib.blake2b(repr(parts).encode(), key=self._secret, digest_size=8).digest()
        return int.from_bytes(digest, "big") >> 1

    def _peer_account(self, peer: NodeId) -> str:
        """The ledger owner of ``peer``'s accounts, opened on its first trade."""
        self._peer_keys(peer)
        return peer_owner(peer)

    def _peer_keys(self, peer: NodeId) -> dict[str, AccountKey]:
        """``peer``'s accounts by asset, opened on its first trade: a node
        with hundreds of peers keeps accounts only for those it trades with
        (an account never opened reads as zero)."""
        accounts = self.peers[peer].accounts
        if accounts.peer is None:
            owner = peer_owner(peer)
            accounts.peer = {
                asset: self.ledger.open_account(owner, asset, UNBOUNDED)
                for asset in self._asset_codes
            }
        return accounts.peer

    # ============================================================ queries

    def state_hash(self) -> str:
        """A digest of everything replay must reproduce."""
        digest = hashlib.sha256(self.ledger.state_hash().encode())
        for part in self._state_parts():
            digest.update(repr(part).encode())
        return digest.hexdigest()

    def _state_parts(self) -> Iterator[object]:
        for product_id, book in sorted(self.books.items()):
            yield product_id, book.resting_orders(Side.BUY), book.resting_orders(Side.SELL)
        yield sorted((k, v.remaining_lots, v.round) for k, v in self.working.items())
        yield sorted((k, v.quantity_lots, v.expires_mono_ms) for k, v in self.locks.items())
        yield sorted(self.decisions.items())
        yield sorted((peer, sorted(trades.items())) for peer, trades in self.unsettled.items())
        for peer, v in self.peers.items():
            yield peer, v.bond_posted, v.bond_held, sorted(v.bond_requests), v.lock_notional
            yield v.lock_count, v.cycle, v.settled, v.suspended
            yield list(v.answers), v.answers_forgotten_through
        yield self._counter, self._advert_version, self.clock.last

    def next_timer_ms(self) -> int | None:
        """The earliest monotonic time at which ``tick`` has something to do."""
        times = [lock.expires_mono_ms for lock in self.locks.values()]
        for working in self.working.values():
            times.append(working.deadline_mono_ms if working.awaiting else working.resend_mono_ms)
        if self._next_heartbeat_ms is not None:
            times.append(self._next_heartbeat_ms)
        times.extend(self.peers[peer].bond_resend_mono_ms for peer in self._bonds_waiting)
        if self.unsettled:
            if self._next_settlement_mono_ms is not None:
                times.append(self._next_settlement_mono_ms)
            times.extend(
                view.proposal_resend_mono_ms
                for view in (self.peers[peer] for peer in self.unsettled)
                if view.proposal is not None
            )
        return min(times) if times else None


def entry_trade_id(entry_id: str) -> int:
    """The numeric trade id of a trade entry id such as ``trade:42``."""
    return int(entry_id.rsplit(":", 1)[1])


def _accepted_place(effects: list[Effect]) -> bool:
    return any(isinstance(e, Reply) and isinstance(e.event, Accepted) for e in effects)


def _advert_crosses(advert: Advert, product_id: str, side: Side, limit: int | None) -> bool:
    if advert.product_id != product_id or advert.side is side or not advert.quantity_lots:
        return False
    if limit is None:
        return True
    return advert.price_ticks <= limit if side is Side.BUY else advert.price_ticks >= limit


_HANDLERS = {
    PlaceInput: NodeCore._on_place,
    CancelInput: NodeCore._on_cancel,
    DepositInput: NodeCore._on_deposit,
    FundInput: NodeCore._on_fund,
    BondInput: NodeCore._on_bond,
    ReceiveInput: NodeCore._on_receive,
    TickInput: NodeCore._on_tick,
    RestartInput: NodeCore._on_restart,
}

_MESSAGE_HANDLERS = {
    OrderBroadcast: NodeCore._on_broadcast,
    PotentialTrades: NodeCore._on_potential_trades,
    Acceptance: NodeCore._on_acceptance,
    Release: NodeCore._on_release,
    Confirmation: NodeCore._on_confirmation,
    Refusal: NodeCore._on_refusal,
    Advert: NodeCore._on_advert,
    Heartbeat: NodeCore._on_heartbeat,
    TradePrint: NodeCore._on_trade_print,
    BondRequest: NodeCore._on_bond_request,
    BondAnswer: NodeCore._on_bond_answer,
    StatementProposal: NodeCore._on_statement_proposal,
    StatementAnswer: NodeCore._on_statement_answer,
    DefaultNotice: NodeCore._on_default_notice,
}
