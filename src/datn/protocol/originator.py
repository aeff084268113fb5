"""The originator's part of the trade protocol (DESIGN.md section 4, steps
1, 2, 4, 6 and 7).

An originator checks and holds a new order, locks crossing quantity in its
own book, broadcasts the order to peers (every peer, or only those its
network book shows with crossing liquidity), collects potential trades
until every asked peer answered or the collection window closed, ranks
them, accepts the best and releases the rest, and books each confirmed
trade. After refusals it broadcasts again, a bounded number of rounds; a
GTC remainder then rests. A resting order that a peer's older advert
crosses is taken back out of the book and worked again, as the taker it
would have been at one venue (:meth:`Originator.rework_crossed`).

It trusts no holder beyond what the holder signed and what its own records
show:

* an offer beyond the order's limit or for more than was asked is ignored
  and counted, and never accepted;
* a confirmation on other terms than offered and accepted books nothing: it
  is the holder's protocol violation, kept with its messages as evidence,
  and the lock counts as refused;
* a holder that refused this order, or whose accepted lots often end
  refused or lapsed, is ranked and routed after every other holder, so
  liquidity that stood the whole time is taken first;
* an order stops waiting on a holder that does not decide within
  ``decision_timeout_ms``: the rest of the order goes on, and the accepted
  lots stay reserved, in doubt and shown, until the holder decides.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from mypy_extensions import mypyc_attr

from datn.clearing.exposure import obligations
from datn.clearing.quota import AcceptanceRatio
from datn.domain import DomainError, Order, OrderType, ProductSpec, Side, TimeInForce
from datn.domain.value import NodeId
from datn.ledger import LedgerError
from datn.protocol.booking import trade_entry
from datn.protocol.clock import Hlc, Now
from datn.protocol.context import Context
from datn.protocol.effects import (
    Accepted,
    CancelAnswer,
    Done,
    Effect,
    Executed,
    Rejected,
    Reply,
    SetTimer,
    Waiting,
    WaitOver,
)
from datn.protocol.holder import Holder
from datn.protocol.liability import Liability
from datn.protocol.messages import (
    Acceptance,
    Advert,
    Confirmation,
    Offer,
    OrderBroadcast,
    PotentialTrades,
    Refusal,
    Release,
)
from datn.protocol.network import NetworkView
from datn.protocol.resting import RestingMeta, RestingOrders
from datn.protocol.snapshot import (
    AcceptedState,
    CandidateState,
    InDoubtState,
    OrderState,
    OriginatorState,
    WorkingState,
)
from datn.protocol.traders import Traders
from datn.protocol.venue import OrderRequest, order_from_request, risk_context, trader_owner
from datn.risk import MarkedPosition, Reject, check_order, protection_price_ticks, required_hold

MAX_OFFERS_ACCEPTED: Final = 100
"""An originator takes at most this many potential trades for one order."""

MAX_REWORKED: Final = 8
"""At most this many resting orders a product side are worked again in one
heartbeat's pass over crossing adverts (:meth:`Originator.rework_crossed`)."""

MAX_EXAMINED: Final = 64
"""That pass looks at most at this many of the node's best resting orders a
product side, and at this many of each peer's best adverts: what it costs
stays bounded however many orders stand crossed (across a cut link, or
past a bond's cap). What lies deeper crosses less, and comes within reach
as the better orders trade."""


@dataclass(slots=True)
class Candidate:
    """A potential trade under consideration by an originator."""

    holder: NodeId
    offer: Offer
    received_mono_ms: int

    def __init__(self, holder: NodeId, offer: Offer, received_mono_ms: int) -> None:
        # Written out, not generated, for speed, as Order.__init__ is
        # (datn.domain.orders).
        self.holder = holder
        self.offer = offer
        self.received_mono_ms = received_mono_ms


@dataclass(slots=True)
class Working:
    """An order this node originated and is still working across the network."""

    order: Order
    product: ProductSpec
    hold_id: str | None
    request_id: int
    limit_ticks: int
    """The worst price it may trade at: its limit, or a market order's
    protection price as it was when the order was accepted (its hold was
    costed at that price, so the limit may not move later)."""
    remaining_lots: int
    filled_lots: int = 0
    round: int = 0
    asked_lots: int = 0
    """The quantity the current round's broadcast asked for: no offer may exceed it."""
    awaiting: set[NodeId] = field(default_factory=set)
    candidates: list[Candidate] = field(default_factory=list)
    deadline_mono_ms: int = 0
    broadcast_mono_ms: int | None = None
    """When the current round's broadcast left; None after a restart, when a
    late answer would measure the old process's clock."""
    accepted: dict[tuple[NodeId, int], tuple[int, Offer]] = field(default_factory=dict)
    """Acceptances sent and not decided yet: lots, and the offer they took."""
    waiting_since_mono_ms: int = 0
    resend_mono_ms: int = 0
    refused: bool = False
    failed_holders: list[NodeId] = field(default_factory=list)
    cancel_requested: bool = False
    exhausted: set[NodeId] = field(default_factory=set)
    """Peers that answered this order without refusing: they offered all they had."""
    in_doubt_lots: int = 0
    """Accepted lots this order stopped waiting for."""
    expected: dict[NodeId, int] = field(default_factory=dict)
    """Lots the current round asks each peer for because of its adverts."""

    def __init__(
        self,
        order: Order,
        product: ProductSpec,
        hold_id: str | None,
        request_id: int,
        limit_ticks: int,
        remaining_lots: int,
        filled_lots: int = 0,
        round: int = 0,
        asked_lots: int = 0,
        awaiting: set[NodeId] | None = None,
        candidates: list[Candidate] | None = None,
        deadline_mono_ms: int = 0,
        broadcast_mono_ms: int | None = None,
        accepted: dict[tuple[NodeId, int], tuple[int, Offer]] | None = None,
        waiting_since_mono_ms: int = 0,
        resend_mono_ms: int = 0,
        refused: bool = False,
        failed_holders: list[NodeId] | None = None,
        cancel_requested: bool = False,
        exhausted: set[NodeId] | None = None,
        in_doubt_lots: int = 0,
        expected: dict[NodeId, int] | None = None,
    ) -> None:
        # Written out, not generated, for speed, as Order.__init__ is
        # (datn.domain.orders); a container left out starts empty, as the
        # fields' factories say.
        self.order = order
        self.product = product
        self.hold_id = hold_id
        self.request_id = request_id
        self.limit_ticks = limit_ticks
        self.remaining_lots = remaining_lots
        self.filled_lots = filled_lots
        self.round = round
        self.asked_lots = asked_lots
        self.awaiting = set() if awaiting is None else awaiting
        self.candidates = [] if candidates is None else candidates
        self.deadline_mono_ms = deadline_mono_ms
        self.broadcast_mono_ms = broadcast_mono_ms
        self.accepted = {} if accepted is None else accepted
        self.waiting_since_mono_ms = waiting_since_mono_ms
        self.resend_mono_ms = resend_mono_ms
        self.refused = refused
        self.failed_holders = [] if failed_holders is None else failed_holders
        self.cancel_requested = cancel_requested
        self.exhausted = set() if exhausted is None else exhausted
        self.in_doubt_lots = in_doubt_lots
        self.expected = {} if expected is None else expected


@dataclass(slots=True)
class InDoubt:
    """Accepted lots whose holder did not decide within the decision timeout."""

    order_id: int
    trader_id: str
    product: ProductSpec
    side: Side
    lots: int
    offer: Offer
    hold_id: str | None
    resend_mono_ms: int


@mypyc_attr(allow_interpreted_subclasses=True)  # strategies and tests extend it
class Originator:
    """Working orders and their acceptances; see the module docstring."""

    def __init__(
        self,
        context: Context,
        traders: Traders,
        resting: RestingOrders,
        holder: Holder,
        network: NetworkView,
        liability: Liability,
    ) -> None:
        self.context = context
        self.traders = traders
        self.resting = resting
        self.holder = holder
        self.network = network
        self.liability = liability
        self.working: dict[int, Working] = {}
        self.in_doubt: dict[tuple[NodeId, int], InDoubt] = {}
        self._requests: dict[int, int] = {}
        """Request id -> order id, for the orders being worked."""
        self._accepted: dict[tuple[NodeId, int], int] = {}
        """(holder, lock id) -> order id, for the acceptances not decided yet."""
        self._finished_requests: OrderedDict[int, None] = OrderedDict()
        """Request ids of recently finished orders, oldest first: locks in a
        late answer to them are released. An OrderedDict, as the oldest goes
        at every order once it is full: a dict's first key, after many
        deletes from the front, costs a scan of the deleted places."""
        self._reliability: dict[NodeId, AcceptanceRatio] = {}
        self._credibility: dict[NodeId, AcceptanceRatio] = {}
        """Per peer: lots its adverts led this node to expect (as offered) and
        lots it then offered (as taken), decayed, in thousandths of a lot."""
        """Per holder: notional accepted (as offered) and confirmed (as taken), decayed."""

    # ================================================================ intake

    def place(self, request: OrderRequest, now: Now, out: list[Effect]) -> None:
        previous = self.traders.previous(request)
        if previous is not None:
            out.append(Reply(request.trader_id, previous))
            return
        answer = self._admit(request, now, out)
        if isinstance(answer, Rejected):
            self.traders.rejected(request, answer, now)
            out.append(Reply(request.trader_id, answer))

    def _admit(self, request: OrderRequest, now: Now, out: list[Effect]) -> Rejected | None:
        """Check and hold a new order, then start working it."""
        context = self.context
        product = context.products.get(request.product_id)
        if product is None:
            return Rejected(request.client_order_id, "product_not_listed", "not listed here")
        order_id = context.counter + 1  # taken only if the order is accepted
        try:
            order = order_from_request(request, product, order_id)
        except DomainError as error:
            return Rejected(request.client_order_id, f"invalid_{error.field}", error.message)
        risk = context.config.risk
        check = risk_context(
            context.key,
            context.ledger,
            order,
            product,
            context.marks.reference(product.product_id),
            self.traders.open_orders.get(order.trader_id, 0),
            self.traders.recent_orders(order.trader_id, now),
            self._positions(order.trader_id, product) if risk.short_selling else (),
        )
        decision = check_order(risk, check)
        if isinstance(decision, Reject):
            return Rejected(request.client_order_id, decision.code.value, decision.message)
        hold = required_hold(risk, check)
        limit = order.price_ticks
        if order.order_type is OrderType.MARKET:
            reference = check.reference_price_ticks
            assert reference is not None, "risk refuses a market order without a reference"
            limit = protection_price_ticks(risk, order.side, reference)
        assert limit is not None
        hold_id = None
        if hold.amount:
            hold_id = f"order:{order_id}"
            account = context.key(trader_owner(order.trader_id), hold.asset)
            try:
                context.ledger.place_hold(hold_id, account, hold.amount)
            except LedgerError as error:
                # Only when a policy that would have refused it is off (cash
                # or position cover): the ledger's floor still holds.
                return Rejected(request.client_order_id, error.code, error.message)
        context.next_counter()
        accepted = Accepted(request.client_order_id, order_id)
        self.traders.opened(order, now)
        out.append(Reply(order.trader_id, accepted))
        request_id = context.random_id("request", order_id)
        working = Working(order, product, hold_id, request_id, limit, order.quantity_lots)
        self.working[order_id] = working
        self._requests[request_id] = order_id
        context.count("orders")
        self._start_round(working, now, out)
        return None

    def _positions(self, trader_id: str, product: ProductSpec) -> tuple[MarkedPosition, ...]:
        """The trader's positions in products quoted like ``product``, at
        their marks: what short-sale margin reads."""
        context = self.context
        owner = trader_owner(trader_id)
        positions = []
        for other in context.products.values():
            if other.quote_currency != product.quote_currency:
                continue
            mark = context.marks.reference(other.product_id)
            lots = context.ledger.balance(context.key(owner, other.product_id))
            if mark and lots:
                positions.append(MarkedPosition(other, lots, mark))
        return tuple(positions)

    def cancel(self, order_id: int, now: Now, out: list[Effect]) -> CancelAnswer:
        """Cancel an order still being worked: at once while no acceptance
        of it is out (what it was offered is given back, and answers still
        to come are released as late), otherwise when its round ends."""
        working = self.working[order_id]
        if working.accepted:
            working.cancel_requested = True
            return CancelAnswer(order_id, "pending", 0, working.remaining_lots)
        for candidate in working.candidates:
            self._give_back(candidate, now, out)
        working.candidates = []
        working.awaiting.clear()
        lots = working.remaining_lots
        self._finish(working, "cancelled", now, out)
        return CancelAnswer(order_id, "cancelled", lots, 0)

    # ================================================================ rounds

    def _start_round(self, working: Working, now: Now, out: list[Effect]) -> None:
        context = self.context
        working.round += 1
        working.candidates = self._local_offers(working, now)
        order = working.order
        targets = self._targets(working, now, counted=True)
        working.asked_lots = working.remaining_lots
        message = OrderBroadcast(
            working.request_id,
            working.round,
            order.product_id,
            order.side,
            working.remaining_lots,
            working.limit_ticks,
            order.time_in_force is TimeInForce.FOK,
        )
        for peer in targets:
            context.send(peer, message, now, out)
        context.count("broadcasts", len(targets))
        if not targets:
            self._decide(working, now, out)
            return
        working.awaiting = set(targets)
        working.broadcast_mono_ms = now.mono_ms
        working.deadline_mono_ms = now.mono_ms + self._window_ms(targets)
        out.append(SetTimer(working.deadline_mono_ms))

    def _window_ms(self, targets: list[NodeId]) -> int:
        """Wait at least the configured window, longer for a slow peer's round
        trip, but never so long that an answer could not be accepted in time.
        A peer's round trip is budgeted with its jitter (smoothed round trip
        plus four deviations, as a lock's life is): on a wide-area link whose
        round trips vary, waiting for the mean alone closes the round before
        about one answer in five, and what that answer offered is lost to
        the order."""
        config = self.context.config
        views = self.network.views
        slowest = max(views[peer].rtt_budget_ms for peer in targets)
        cap = config.lock_ttl_ms // 2
        return min(max(config.collection_window_ms, slowest + config.acceptance_margin_ms), cap)

    def _demoted(self, working: Working, holder: NodeId, now: Now) -> bool:
        """A holder that refused this order, whose accepted lots end refused
        too often, or whose adverts promise more than it offers, goes after
        every other."""
        if holder == self.context.node_id:
            return False
        return holder in working.failed_holders or self._unreliable(holder, now)

    def _unreliable(self, holder: NodeId, now: Now) -> bool:
        """Whether ``holder``'s accepted lots end refused too often, or its
        adverts promise more than it offers."""
        floor = self.context.config.unreliable_permille
        for ratios in (self._reliability, self._credibility):
            ratio = ratios.get(holder)
            if ratio is not None and ratio.permille(now.mono_ms, 0) < floor:
                return True
        return False

    def _targets(self, working: Working, now: Now, *, counted: bool = False) -> list[NodeId]:
        """Whom to ask. Broadcast: every peer. Targeted: every peer whose view
        may be stale, then the peers whose advertised crossing orders, best
        price first (demoted holders last), cover what the node's own book
        does not at the same price or better; a peer that already answered
        this order without a refusal has given what it had. A peer that let
        the last round's window close unanswered is asked again, but its
        adverts cover nothing: the peers after it are asked as well. A peer
        out of reach (nothing heard from it for several heartbeat periods) is
        not asked at all.

        The node's own offers count against a peer's advert only where they
        are as good: a peer advertising a better price than the node's own
        book is asked even when that book could fill the whole order, so an
        order never trades through a better price the node knew of.

        ``counted``: peers out of reach that would have been asked are
        counted (``holders_out_of_reach``); a look that asks no one is not."""
        liability, network = self.liability, self.network
        views = network.views
        # Asked last round for what their adverts promised, and silent
        # (an answer pops its peer's entry).
        silent = set(working.expected)
        skipped = 0
        chosen: list[NodeId] = []
        if not self.context.config.targeted_routing:
            for peer in views:
                if liability.suspended(peer):
                    continue
                if network.out_of_reach(peer, now):
                    skipped += 1
                    continue
                chosen.append(peer)
            self._count_out_of_reach(skipped, counted)
            return chosen
        order = working.order
        limit = working.limit_ticks
        buy = order.side is Side.BUY
        needed = working.remaining_lots
        # The node's own offers, best first, as price keys (lower is better),
        # and the price at which they cover the whole order, if they do: no
        # advert at that price or worse is needed.
        own = sorted(
            (c.offer.price_ticks if buy else -c.offer.price_ticks, c.offer.quantity_lots)
            for c in working.candidates
        )
        cover: int | None = None
        covered = 0
        for price_key, lots in own:
            covered += lots
            if covered >= needed:
                cover = price_key
                break
        advertised: list[tuple[bool, int, Hlc, NodeId, int]] = []
        for peer, view in views.items():
            if peer in working.exhausted or liability.suspended(peer):
                continue
            if view.stale:
                if network.out_of_reach(peer, now):
                    skipped += 1
                else:
                    chosen.append(peer)
                continue
            book = (view.asks if buy else view.bids).get(order.product_id)
            if book is None:
                continue
            best = book.best_price_key()
            if best is None or best > (limit if buy else -limit):
                continue  # nothing there crosses
            if cover is not None and best >= cover:
                continue  # nothing there beats what this node has
            if network.out_of_reach(peer, now):
                skipped += 1
                continue
            demoted = self._demoted(working, peer, now)
            if demoted and cover is not None:
                continue  # a demoted peer comes after this node's own offers
            # Best first, and no further than this order needs from one peer.
            wanted = needed
            for advert in book.best_first():
                if wanted <= 0 or not _advert_crosses(advert, order.side, limit):
                    break
                price_key = advert.price_ticks if buy else -advert.price_ticks
                if cover is not None and price_key >= cover:
                    break
                advertised.append((demoted, price_key, advert.priority, peer, advert.quantity_lots))
                wanted -= advert.quantity_lots
        taken = 0
        working.expected = {}
        for demoted, price_key, _, peer, lots in sorted(advertised):
            while taken < len(own) and (demoted or own[taken][0] <= price_key):
                needed -= own[taken][1]
                taken += 1
            if needed <= 0:
                break
            if peer not in chosen:
                chosen.append(peer)
            working.expected[peer] = working.expected.get(peer, 0) + min(lots, needed)
            if peer not in silent:
                needed -= lots
        self._count_out_of_reach(skipped, counted)
        return chosen

    def _count_out_of_reach(self, skipped: int, counted: bool) -> None:
        """Peers out of reach (nothing heard from them for several heartbeat
        periods: :meth:`NetworkView.out_of_reach`) are not asked: an answer
        could not come back within the round, and every order they could
        fill would wait out the window for nothing."""
        if skipped and counted:
            self.context.count("holders_out_of_reach", skipped)

    def _local_offers(self, working: Working, now: Now) -> list[Candidate]:
        """Lock crossing quantity in this node's own book, as offers from itself."""
        order = working.order
        book = self.resting.books[order.product_id]
        node_id = self.context.node_id
        found = book.lockable(
            order.side, working.limit_ticks, working.remaining_lots, order.trader_id
        )
        candidates = []
        for order_id, price, lots in found:
            lock = self.holder.new_lock(node_id, order_id, lots, now)
            offer = Offer(lock.lock_id, price, lots, self.resting.orders[order_id].priority, 0)
            candidates.append(Candidate(node_id, offer, now.mono_ms))
        return candidates

    def on_potential_trades(
        self, sender: NodeId, message: PotentialTrades, now: Now, out: list[Effect]
    ) -> None:
        context = self.context
        order_id = self._requests.get(message.request_id)
        working = self.working.get(order_id) if order_id is not None else None
        if working is None or working.round != message.round or sender not in working.awaiting:
            self._late_answer(sender, message, working, now, out)
            return
        working.awaiting.discard(sender)
        if working.broadcast_mono_ms is not None:
            # A holder answers a broadcast at once and broadcasts are never
            # resent, so this is a clean round-trip sample.
            self.network.views[sender].sample_rtt(now.mono_ms - working.broadcast_mono_ms)
        working.exhausted.add(sender)
        expected = working.expected.pop(sender, 0)
        seen: set[int] = set()
        for offer in message.offers:
            if offer.lock_id in seen:
                context.count("offers_repeated")
                continue
            seen.add(offer.lock_id)
            if not self._within_terms(working, offer):
                context.count("offers_beyond_terms")
                context.send(sender, Release(offer.lock_id), now, out)
                continue
            working.candidates.append(Candidate(sender, offer, now.mono_ms))
        if expected:
            offered = sum(c.offer.quantity_lots for c in working.candidates if c.holder == sender)
            self._credit(sender, expected, min(offered, expected), now)
        if not working.awaiting:
            self._decide(working, now, out)

    def _lock_reused(self, holder: NodeId, lock_id: int) -> bool:
        """Whether ``holder``'s lock ``lock_id`` is already one of this node's
        trades (accepted, in doubt, or booked and not yet settled); counted."""
        if holder == self.context.node_id:
            return False
        key = (holder, lock_id)
        if (
            key in self._accepted
            or key in self.in_doubt
            or lock_id in self.liability.unsettled(holder)
        ):
            self.context.count("offers_lock_reused")
            return True
        return False

    @staticmethod
    def _within_terms(working: Working, offer: Offer) -> bool:
        """An offer may be taken only at or inside the order's limit, for no
        more than the round asked for."""
        if offer.quantity_lots > working.asked_lots or offer.quantity_lots <= 0:
            return False
        if working.order.side is Side.BUY:
            return 0 < offer.price_ticks <= working.limit_ticks
        return offer.price_ticks >= working.limit_ticks

    def _late_answer(
        self,
        sender: NodeId,
        message: PotentialTrades,
        working: Working | None,
        now: Now,
        out: list[Effect],
    ) -> None:
        """An answer after its round closed, or a duplicate: give back every
        lock in it that this node has neither taken nor still holds as a
        candidate of the current round. An answer to a request this node
        never made (or forgot) is ignored."""
        context = self.context
        if working is None and message.request_id not in self._finished_requests:
            context.count("answers_unknown_request")
            return
        kept = (
            {c.offer.lock_id for c in working.candidates if c.holder == sender}
            if working is not None
            else set()
        )
        for offer in message.offers:
            key = (sender, offer.lock_id)
            if key not in self._accepted and key not in self.in_doubt and offer.lock_id not in kept:
                context.send(sender, Release(offer.lock_id), now, out)

    def _decide(self, working: Working, now: Now, out: list[Effect]) -> None:
        """Rank what was offered, accept the best, release the rest."""
        buy = working.order.side is Side.BUY
        if self.context.logic_version >= 5:
            # A holder picks a fresh random id for every lock. An offer of an
            # id this node already has accepted, in doubt or unsettled would
            # make two trades one in the pair's settlement: it is dropped,
            # and nothing released, since the id is the other trade's.
            working.candidates = [
                c for c in working.candidates if not self._lock_reused(c.holder, c.offer.lock_id)
            ]
        ranked = sorted(
            (c for c in working.candidates if self._in_budget(c, now)),
            key=lambda c: (
                self._demoted(working, c.holder, now),
                c.offer.price_ticks if buy else -c.offer.price_ticks,
                c.offer.priority,
                c.holder,
            ),
        )
        chosen: list[tuple[Candidate, int]] = []
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
        # Holders whose offers a FOK gives back for want of the rest: asked
        # again beside whoever else the next round asks (core logic 4 on).
        given_back: set[NodeId] = set()
        if working.order.time_in_force is TimeInForce.FOK and wanted:
            chosen = []  # fill or kill: take nothing unless the whole quantity is covered
            given_back = {c.holder for c in working.candidates}
        taken = {id(c) for c, _ in chosen}
        for candidate in working.candidates:
            if id(candidate) not in taken:
                self._give_back(candidate, now, out)
        working.candidates = []
        for candidate, lots in chosen:
            self._take(working, candidate, lots, now, out)
        if working.accepted:
            working.waiting_since_mono_ms = now.mono_ms
            working.resend_mono_ms = now.mono_ms + self.context.config.resend_ms
            out.append(SetTimer(working.resend_mono_ms))
        else:
            self._finish_round(working, now, out, given_back)

    def _may_accept(
        self, working: Working, candidate: Candidate, lots: int, owed: dict[NodeId, int]
    ) -> bool:
        """An originator takes no trade that would leave it owing the holder,
        marked, more than its bond there allows. ``owed`` carries what this
        decision has already added, per holder."""
        holder = candidate.holder
        if holder == self.context.node_id:
            return True
        liability = self.liability
        if liability.suspended(holder):
            self.context.count("acceptances_to_suspended")
            return False
        marked = owed[holder] if holder in owed else liability.marked(holder)
        marked += self._owed_change(
            holder, working.product, working.order.side, lots, candidate.offer.price_ticks
        )
        if obligations(marked) > liability.posted_cap(holder):
            self.context.count("acceptances_over_bond")
            return False
        owed[holder] = marked
        return True

    def _owed_change(
        self, holder: NodeId, product: ProductSpec, side: Side, lots: int, price: int
    ) -> int:
        """How much more this node would owe ``holder``, marked, after
        trading ``lots`` with it at ``price``."""
        mark = self.context.marks.mark(product.product_id, holder)
        if mark is None:
            mark = price
        change = product.notional_minor(lots, price) - product.notional_minor(lots, mark)
        return -change if side is Side.SELL else change  # selling: the holder pays the notional

    def _in_budget(self, candidate: Candidate, now: Now) -> bool:
        """Accept a remote lock only while it surely still lives at its holder."""
        if candidate.holder == self.context.node_id:
            return candidate.offer.lock_id in self.holder.locks
        config = self.context.config
        ttl = min(candidate.offer.ttl_ms, config.max_offer_ttl_ms)
        rtt = self.network.views[candidate.holder].rtt_budget_ms
        return candidate.received_mono_ms + ttl - rtt - config.acceptance_margin_ms > now.mono_ms

    def _give_back(self, candidate: Candidate, now: Now, out: list[Effect]) -> None:
        if candidate.holder == self.context.node_id:
            lock = self.holder.locks.get(candidate.offer.lock_id)
            if lock is not None:
                self.holder.end_lock(lock, "released", now, out)
        else:
            self.context.send(candidate.holder, Release(candidate.offer.lock_id), now, out)
            self.context.count("releases")

    def _take(
        self, working: Working, candidate: Candidate, lots: int, now: Now, out: list[Effect]
    ) -> None:
        lock_id = candidate.offer.lock_id
        if candidate.holder == self.context.node_id:
            self._take_local(working, lock_id, lots, now, out)
            return
        key = (candidate.holder, lock_id)
        working.accepted[key] = (lots, candidate.offer)
        self._accepted[key] = working.order.order_id
        self.context.send(candidate.holder, Acceptance(lock_id, lots), now, out)
        self.context.count("acceptances")

    def _take_local(
        self, working: Working, lock_id: int, lots: int, now: Now, out: list[Effect]
    ) -> None:
        """Both sides are this node's traders: trade at once, at the resting price."""
        meta, fill, reentry = self.holder.take_local(lock_id, lots)
        self.context.count("local_trades")
        trade_id = self.resting.local_trade(
            working.order, working.hold_id, meta, fill.price_ticks, lots, now, out
        )
        self._executed(working, trade_id, fill.price_ticks, lots, self.context.node_id, out)
        self.resting.after_fill(meta, fill, reentry, now, out)

    # ============================================================ decisions

    def on_confirmation(
        self, sender: NodeId, message: Confirmation, now: Now, out: list[Effect]
    ) -> None:
        key = (sender, message.lock_id)
        order_id = self._accepted.get(key)
        if order_id is None:
            doubt = self.in_doubt.get(key)
            if doubt is not None:
                self._resolve_doubt(sender, doubt, message, now, out)
            return  # otherwise a repeated decision: already applied
        working = self.working[order_id]
        lots, offer = working.accepted[key]
        order = working.order
        if not _same_terms(message, order.product_id, order.side, lots, offer):
            self._violation(sender, working, offer, lots, message, now, out)
            notional = working.product.notional_minor(lots, offer.price_ticks)
            self._refused(sender, working, key, notional, now, out)
            return
        del working.accepted[key]
        del self._accepted[key]
        self._book(
            sender, order.trader_id, order.side, working.product, working.hold_id, message, now
        )
        self._executed(working, message.trade_id, message.price_ticks, lots, sender, out)
        self._maybe_finish(working, now, out)

    def _book(
        self,
        holder: NodeId,
        trader_id: str,
        side: Side,
        product: ProductSpec,
        hold_id: str | None,
        confirmation: Confirmation,
        now: Now,
    ) -> None:
        """Book a trade a holder confirmed on the terms accepted."""
        context = self.context
        lots, price = confirmation.quantity_lots, confirmation.price_ticks
        trader, peer = trader_owner(trader_id), self.liability.peer_account(holder)
        buyer, seller, buyer_hold, seller_hold = trader, peer, hold_id, None
        if side is Side.SELL:
            buyer, seller, buyer_hold, seller_hold = peer, trader, None, hold_id
        entry = trade_entry(
            context.new_id("trade"),
            product,
            buyer,
            seller,
            lots,
            price,
            buyer_hold=buyer_hold,
            seller_hold=seller_hold,
            ledger=context.ledger,
            key=context.key,
        )
        context.ledger.post(entry)
        self.liability.unsettled_trade(
            holder,
            confirmation.lock_id,
            product,
            side is Side.SELL,
            lots,
            price,
            now,
        )
        context.marks.record(product.product_id, holder, price)
        notional = product.notional_minor(lots, price)
        self._judge(holder, notional, notional, now)
        context.count("remote_trades")

    def _violation(
        self,
        holder: NodeId,
        working: Working,
        offer: Offer,
        lots: int,
        confirmation: Confirmation,
        now: Now,
        out: list[Effect],
    ) -> None:
        offered = PotentialTrades(working.request_id, working.round, (offer,))
        messages = (offered, Acceptance(offer.lock_id, lots), confirmation)
        self.liability.violation(holder, "confirmed_other_terms", messages, now, out)

    def on_refusal(self, sender: NodeId, message: Refusal, now: Now, out: list[Effect]) -> None:
        key = (sender, message.lock_id)
        order_id = self._accepted.get(key)
        if order_id is None:
            doubt = self.in_doubt.get(key)
            if doubt is not None:
                self._refuse_doubt(sender, key, doubt, now, out)
            return
        working = self.working[order_id]
        lots, offer = working.accepted[key]
        self._refused(
            sender, working, key, working.product.notional_minor(lots, offer.price_ticks), now, out
        )

    def _refused(
        self,
        holder: NodeId,
        working: Working,
        key: tuple[NodeId, int],
        notional: int,
        now: Now,
        out: list[Effect],
    ) -> None:
        del working.accepted[key]
        del self._accepted[key]
        working.refused = True
        working.exhausted.discard(holder)  # what it refused is open again: ask it again
        if holder not in working.failed_holders:
            working.failed_holders.append(holder)
        self._judge(holder, notional, 0, now)
        self.context.count("refusals")
        self._maybe_finish(working, now, out)

    def _judge(self, holder: NodeId, accepted: int, confirmed: int, now: Now) -> None:
        """Count ``accepted`` notional taken from ``holder``, ``confirmed`` of
        it confirmed: notional, not lots, so that decay keeps its precision."""
        ratio = self._reliability.get(holder)
        if ratio is None:
            half_life = self.context.config.clearing.quota.ratio_half_life_ms
            ratio = self._reliability[holder] = AcceptanceRatio(half_life, now.mono_ms)
        ratio.offer(accepted, now.mono_ms)
        if confirmed:
            ratio.take(confirmed, now.mono_ms)

    def _credit(self, holder: NodeId, expected: int, offered: int, now: Now) -> None:
        """Count what ``holder``'s adverts promised and what it offered."""
        ratio = self._credibility.get(holder)
        if ratio is None:
            half_life = self.context.config.clearing.quota.ratio_half_life_ms
            ratio = self._credibility[holder] = AcceptanceRatio(half_life, now.mono_ms)
        ratio.offer(1_000 * expected, now.mono_ms)
        if offered:
            ratio.take(1_000 * offered, now.mono_ms)

    def _maybe_finish(self, working: Working, now: Now, out: list[Effect]) -> None:
        if not working.accepted:
            self._finish_round(working, now, out)

    def _executed(
        self,
        working: Working,
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

    def _finish_round(
        self,
        working: Working,
        now: Now,
        out: list[Effect],
        given_back: set[NodeId] | frozenset[NodeId] = frozenset(),
    ) -> None:
        """The round ended with nothing more accepted: the order is filled,
        asks again, rests or ends. ``given_back``: the holders whose offers
        a FOK gave back, lacking the rest of its quantity; when another
        round asks others, it asks them again too, so that their offers and
        the others' may cover the whole together (core logic version 4 on;
        before, they counted as tried, and the order could end unfilled
        between two holders that together had all of it)."""
        order = working.order
        tif = order.time_in_force
        fok = tif is TimeInForce.FOK
        if working.remaining_lots == 0:
            self._finish(working, "filled", now, out)
        elif (
            # A FOK that took nothing, with nothing in doubt, is still whole:
            # it may ask again as a whole (core logic version 3 on).
            (not fok or self._whole_again(working))
            and working.round < self.context.config.max_rounds
            and not working.cancel_requested
            and (working.refused or self._untried_liquidity(working, now))
        ):
            working.refused = False
            if given_back and self.context.logic_version >= 4:
                working.exhausted -= given_back
            self._start_round(working, now, out)
        elif fok:
            reason = "fok_holder_failed" if working.filled_lots else "fok_unfillable"
            self._finish(working, reason, now, out)
        elif (
            tif is TimeInForce.GTC
            and order.order_type is OrderType.LIMIT
            and not working.cancel_requested
        ):
            self._rest(working, now, out)
        else:
            reason = "cancelled" if working.cancel_requested else "ioc_remainder"
            self._finish(working, reason, now, out)

    def _whole_again(self, working: Working) -> bool:
        """Whether a FOK order may have another round: nothing of it filled
        and nothing waits in doubt, so a round that covers the whole
        quantity still fills or kills it whole. Never under core logic
        version 2 or older (see
        :data:`~datn.protocol.effects.CORE_LOGIC_VERSION`)."""
        return (
            self.context.logic_version >= 3
            and working.filled_lots == 0
            and working.in_doubt_lots == 0
        )

    def _untried_liquidity(self, working: Working, now: Now) -> bool:
        """Targeted routing asked only the peers it needed; if they had less
        than advertised, others may still have crossing orders. (Asked
        without asking anyone: the round's ``expected``, which tells the
        next round who was silent, is left as it was.)"""
        if not self.context.config.targeted_routing:
            return False
        expected = working.expected
        found = bool(self._targets(working, now))
        working.expected = expected
        return found

    def _end_working(self, working: Working) -> None:
        order = working.order
        del self.working[order.order_id]
        del self._requests[working.request_id]
        finished = self._finished_requests
        finished[working.request_id] = None
        if len(finished) > self.context.config.finished_request_memory:
            finished.popitem(last=False)

    def _finish(self, working: Working, reason: str, now: Now, out: list[Effect]) -> None:
        order = working.order
        self._end_working(working)
        ledger = self.context.ledger
        if working.hold_id is not None and ledger.find_hold(working.hold_id):
            ledger.release_hold(working.hold_id)
        self.traders.closed(order, now)
        if reason == "fok_holder_failed":
            self.context.count("fok_partial_fills")
        done = Done(
            order.order_id,
            working.filled_lots,
            working.remaining_lots,
            reason,
            tuple(working.failed_holders),
            working.in_doubt_lots,
        )
        out.append(Reply(order.trader_id, done))

    def _rest(self, working: Working, now: Now, out: list[Effect]) -> None:
        """Put a GTC remainder in the book and tell every peer."""
        self._end_working(working)
        self.resting.rest(
            working.order,
            working.product,
            working.hold_id,
            working.remaining_lots,
            working.filled_lots,
            now,
            out,
        )

    # ======================================================== crossed books

    def rework_crossed(self, now: Now, out: list[Effect]) -> None:
        """Work again, as a taker, each resting order of this node that a
        peer's advert crosses and that is the newer of the two; called once
        a heartbeat period.

        Two crossing orders that reach two nodes within one advert's flight
        both rest, and so does an order whose rounds ended before a
        crossing holder's answer came. The newer order of such a pair (by
        priority stamp, then node id) would have been the taker had both
        been at one venue; its node takes it out of the book, withdraws its
        advert and works it across the network as if it had just arrived,
        and what it does not fill rests again. The older order's node
        waits: it is the maker. Only orders with nothing locked and no lots
        in doubt are taken, at most the crossing advertised quantity and
        :data:`MAX_REWORKED` orders a side, and only against peers this
        node would route to first and could take a lot from within its
        bond: a peer whose adverts promise more than it offers no longer
        makes this node work its orders. Each version of a peer's advert
        makes the node work one order again, once, so a peer that shows an
        order and never trades it (or is cut off) makes the node work no
        more orders than it sends adverts. Here only orders that have
        rested a heartbeat period are taken; a crossing advert as it
        arrives takes a younger one at once (:meth:`on_advert`)."""
        settled_ms = self.context.config.heartbeat_ms
        for product_id, book in self.resting.books.items():
            for side in (Side.BUY, Side.SELL):
                own_best = book.best_bid() if side is Side.BUY else book.best_ask()
                if own_best is None:
                    continue
                crossing = self._crossing_adverts(product_id, side, own_best, now)
                if crossing:
                    self._rework(product_id, side, crossing, settled_ms, MAX_REWORKED, now, out)

    def on_advert(self, sender: NodeId, advert: Advert, now: Now, out: list[Effect]) -> None:
        """A peer's advert that crosses a resting order of this node,
        older than it: the in-flight race. One order is taken at once, so
        a peer's adverts make this node work no more orders than it sends
        adverts; any others wait for the heartbeat's pass."""
        product = self.context.products.get(advert.product_id)
        book = self.resting.books.get(advert.product_id)
        if product is None or book is None or not advert.quantity_lots:
            return
        view = self.network.views.get(sender)
        if view is None or view.reworked.get(advert.order_ref) == advert.version:
            return
        side = advert.side.opposite
        own_best = book.best_bid() if side is Side.BUY else book.best_ask()
        if own_best is None or not _advert_crosses(advert, side, own_best):
            return
        if self._may_rework_against(sender, now) and self._within_bond(
            sender, product, side, advert.price_ticks
        ):
            self._rework(advert.product_id, side, [(sender, advert)], 0, 1, now, out)

    def _may_rework_against(self, peer: NodeId, now: Now) -> bool:
        view = self.network.views.get(peer)
        return (
            view is not None
            and not view.stale
            and not self.liability.suspended(peer)
            and not self._unreliable(peer, now)
        )

    def _within_bond(self, peer: NodeId, product: ProductSpec, side: Side, price: int) -> bool:
        """Whether this node could take a lot from ``peer`` at ``price``
        without owing it more than its bond there allows."""
        liability = self.liability
        change = self._owed_change(peer, product, side, 1, price)
        return obligations(liability.marked(peer) + change) <= liability.posted_cap(peer)

    def _crossing_adverts(
        self, product_id: str, side: Side, own_best: int, now: Now
    ) -> list[tuple[NodeId, Advert]]:
        """The adverts of peers this node may work against that cross its
        best resting order on ``side`` and that it could take a lot of
        within its bond, each peer's best first; not those that made it
        work an order again already."""
        buy = side is Side.BUY
        product = self.context.products[product_id]
        crossing: list[tuple[NodeId, Advert]] = []
        for peer, view in self.network.views.items():
            adverts = (view.asks if buy else view.bids).get(product_id)
            if adverts is None:
                continue
            best = adverts.best_price_key()
            if best is None or best > (own_best if buy else -own_best):
                continue  # nothing there crosses
            if not self._may_rework_against(peer, now):
                continue
            reworked = view.reworked
            within: dict[int, bool] = {}
            for count, advert in enumerate(adverts.best_first()):
                if count == MAX_EXAMINED or not _advert_crosses(advert, side, own_best):
                    break
                if reworked.get(advert.order_ref) == advert.version:
                    continue
                price = advert.price_ticks
                if price not in within:
                    within[price] = self._within_bond(peer, product, side, price)
                if within[price]:
                    crossing.append((peer, advert))
        return crossing

    def _rework(
        self,
        product_id: str,
        side: Side,
        crossing: list[tuple[NodeId, Advert]],
        settled_ms: int,
        most: int,
        now: Now,
        out: list[Effect],
    ) -> None:
        """Work again at most ``most`` of this node's resting orders on
        ``side``, best first, each newer than the oldest of ``crossing``
        that crosses it, up to the crossing quantity; each advert makes one
        order work, once.

        Each order is matched in logarithmic time against the adverts,
        sorted by how far they cross, and the oldest of every prefix of
        them; at most :data:`MAX_EXAMINED` orders are looked at."""
        buy = side is Side.BUY
        crossing = sorted(crossing, key=lambda pair: _reach(pair[1], buy))
        book = self.resting.books[product_id]
        left = sum(advert.quantity_lots for _, advert in crossing)
        node_id = self.context.node_id
        views = self.network.views
        doubted = {doubt.order_id for doubt in self.in_doubt.values()}
        reach, oldest = _prefix_oldest(crossing, buy)
        for rest in book.at_or_better(side, crossing[0][1].price_ticks, MAX_EXAMINED):
            if left <= 0 or most <= 0 or not crossing:
                break
            if rest.locked_lots or rest.cancel_pending or rest.order_id in doubted:
                continue
            meta = self.resting.orders[rest.order_id]
            if now.wall_ms < meta.priority.wall_ms + settled_ms:
                continue
            # The adverts that cross this order are a prefix of ``crossing``.
            count = bisect_right(reach, rest.price_ticks if buy else -rest.price_ticks)
            if not count:
                continue
            index = oldest[count - 1]
            peer, advert = crossing[index]
            if (advert.priority, peer) >= (meta.priority, node_id):
                continue  # the crossing orders are newer: their nodes take
            left -= rest.open_lots
            most -= 1
            # Each version of an advert makes this node work one order again,
            # once: a peer that shows an order and never trades it makes the
            # node work no more orders than it sends adverts.
            views[peer].reworked[advert.order_ref] = advert.version
            del crossing[index]
            reach, oldest = _prefix_oldest(crossing, buy)
            self._work_again(meta, now, out)

    def _work_again(self, meta: RestingMeta, now: Now, out: list[Effect]) -> None:
        """Take a resting order out of its book and work it as a new round
        of rounds, under its own hold."""
        context = self.context
        order = meta.order
        assert order.price_ticks is not None, "only limit orders rest"
        lots = self.resting.take_back(meta, now, out)
        # The advert version just taken is unique: the new request id cannot
        # repeat the one a holder may still remember for this order.
        request_id = context.random_id("request", order.order_id, self.resting.advert_version)
        working = Working(
            order,
            meta.product,
            meta.hold_id,
            request_id,
            order.price_ticks,
            lots,
            meta.filled_lots,
        )
        self.working[order.order_id] = working
        self._requests[request_id] = order.order_id
        context.count("orders_reworked")
        self._start_round(working, now, out)

    # ================================================================ doubt

    def give_up_waiting(self, working: Working, now: Now, out: list[Effect]) -> None:
        """Holders did not decide within the decision timeout: set their
        accepted lots apart, each with its own part of the order's hold, and
        let the rest of the order go on."""
        context = self.context
        holders: list[NodeId] = []
        total = 0
        for key, (lots, offer) in working.accepted.items():
            holder, lock_id = key
            hold_id = self._split_hold(working, lots, f"doubt:{holder}:{lock_id}")
            self.in_doubt[key] = InDoubt(
                working.order.order_id,
                working.order.trader_id,
                working.product,
                working.order.side,
                lots,
                offer,
                hold_id,
                now.mono_ms + context.config.heartbeat_ms,
            )
            del self._accepted[key]
            if holder not in holders:
                holders.append(holder)
            total += lots
        working.accepted.clear()
        working.remaining_lots -= total
        working.in_doubt_lots += total
        context.count("orders_gave_up_waiting")
        out.append(
            Reply(working.order.trader_id, Waiting(working.order.order_id, tuple(holders), total))
        )
        self._finish_round(working, now, out)

    def _split_hold(self, working: Working, lots: int, hold_id: str) -> str | None:
        """Move the part of the order's hold that ``lots`` need to a hold of their own."""
        if working.hold_id is None:
            return None
        ledger = self.context.ledger
        held = ledger.find_hold(working.hold_id)
        if held is None:
            return None
        if working.order.side is Side.BUY:
            wanted = working.product.notional_minor(lots, working.limit_ticks)
        else:
            wanted = lots
        amount = min(wanted, held.amount)
        if not amount:
            return None
        ledger.release_hold(working.hold_id, amount)
        ledger.place_hold(hold_id, held.account, amount)
        return hold_id

    def _resolve_doubt(
        self,
        holder: NodeId,
        doubt: InDoubt,
        confirmation: Confirmation,
        now: Now,
        out: list[Effect],
    ) -> None:
        key = (holder, confirmation.lock_id)
        product_id = doubt.product.product_id
        if not _same_terms(confirmation, product_id, doubt.side, doubt.lots, doubt.offer):
            offered = PotentialTrades(0, 0, (doubt.offer,))
            messages = (offered, Acceptance(doubt.offer.lock_id, doubt.lots), confirmation)
            self.liability.violation(holder, "confirmed_other_terms", messages, now, out)
            self._refuse_doubt(holder, key, doubt, now, out)
            return
        del self.in_doubt[key]
        self._book(
            holder, doubt.trader_id, doubt.side, doubt.product, doubt.hold_id, confirmation, now
        )
        self._release_doubt_hold(doubt)
        lots, price = confirmation.quantity_lots, confirmation.price_ticks
        trader = doubt.trader_id
        out.append(
            Reply(trader, Executed(doubt.order_id, confirmation.trade_id, price, lots, holder))
        )
        out.append(Reply(trader, WaitOver(doubt.order_id, holder, lots, "filled")))
        working = self.working.get(doubt.order_id)
        if working is not None:
            working.filled_lots += lots
            working.in_doubt_lots -= lots
        meta = self.resting.orders.get(doubt.order_id)
        if meta is not None:
            meta.filled_lots += lots

    def _refuse_doubt(
        self, holder: NodeId, key: tuple[NodeId, int], doubt: InDoubt, now: Now, out: list[Effect]
    ) -> None:
        del self.in_doubt[key]
        self._release_doubt_hold(doubt)
        self._judge(
            holder, doubt.product.notional_minor(doubt.lots, doubt.offer.price_ticks), 0, now
        )
        out.append(Reply(doubt.trader_id, WaitOver(doubt.order_id, holder, doubt.lots, "refused")))
        working = self.working.get(doubt.order_id)
        if working is not None:
            working.in_doubt_lots -= doubt.lots

    def _release_doubt_hold(self, doubt: InDoubt) -> None:
        ledger = self.context.ledger
        if doubt.hold_id is not None and ledger.find_hold(doubt.hold_id):
            ledger.release_hold(doubt.hold_id)

    # ================================================================ timers

    def tick(self, now: Now, out: list[Effect]) -> None:
        config = self.context.config
        for working in list(self.working.values()):
            if working.awaiting and now.mono_ms >= working.deadline_mono_ms:
                self._silent(working)
                self._decide(working, now, out)
            elif working.accepted:
                if now.mono_ms >= working.waiting_since_mono_ms + config.decision_timeout_ms:
                    self.give_up_waiting(working, now, out)
                elif now.mono_ms >= working.resend_mono_ms:
                    self._resend_acceptances(working, now, out)
        for (holder, lock_id), doubt in self.in_doubt.items():
            if now.mono_ms >= doubt.resend_mono_ms:
                self.context.send(holder, Acceptance(lock_id, doubt.lots), now, out)
                doubt.resend_mono_ms = now.mono_ms + config.heartbeat_ms
                out.append(SetTimer(doubt.resend_mono_ms))

    def _silent(self, working: Working) -> None:
        """The round's window closed on holders that did not answer. Their
        entries stay in ``working.expected``: the next round asks them
        again (an answer only late is not lost), but what they advertise
        covers nothing of the order then, so the next best are asked too
        (:meth:`_targets`): a holder out of reach, however good its
        adverts, keeps no order from the others."""
        self.context.count("holders_silent", len(working.awaiting))
        working.awaiting.clear()

    def _resend_acceptances(self, working: Working, now: Now, out: list[Effect]) -> None:
        for (holder, lock_id), (lots, _) in working.accepted.items():
            self.context.send(holder, Acceptance(lock_id, lots), now, out)
            self.context.count("acceptance_resends")
        working.resend_mono_ms = now.mono_ms + self.context.config.resend_ms
        out.append(SetTimer(working.resend_mono_ms))

    def next_timer_ms(self) -> int | None:
        times: list[int] = []
        for working in self.working.values():
            times.append(working.deadline_mono_ms if working.awaiting else working.resend_mono_ms)
        times.extend(doubt.resend_mono_ms for doubt in self.in_doubt.values())
        return min(times) if times else None

    def waiting_on(self) -> dict[int, tuple[NodeId, ...]]:
        """Orders waiting for holders' decisions, and on whom: for the node's status."""
        waiting: dict[int, list[NodeId]] = {}
        for order_id, working in self.working.items():
            if working.accepted:
                waiting[order_id] = [holder for holder, _ in working.accepted]
        for (holder, _), doubt in self.in_doubt.items():
            waiting.setdefault(doubt.order_id, []).append(holder)
        return {order_id: tuple(dict.fromkeys(h)) for order_id, h in waiting.items()}

    def restart(self, delta_ms: int, now: Now) -> None:
        """Orders decide at once on the new clock; offers received before
        the restart are out of budget (their holders' locks may have ended
        while this node was down), and resends go out now."""
        for working in self.working.values():
            working.deadline_mono_ms = now.mono_ms
            working.resend_mono_ms = now.mono_ms
            working.waiting_since_mono_ms += delta_ms
            working.broadcast_mono_ms = None
            for candidate in working.candidates:
                if candidate.holder != self.context.node_id:
                    candidate.received_mono_ms = now.mono_ms - self.context.config.max_offer_ttl_ms
        for ratios in (self._reliability, self._credibility):
            for ratio in ratios.values():
                ratio.rebase(delta_ms)
        for doubt in self.in_doubt.values():
            doubt.resend_mono_ms = now.mono_ms

    # ============================================================ snapshot

    def snapshot(self) -> OriginatorState:
        return OriginatorState(
            tuple(_working_state(w) for w in self.working.values()),
            tuple(
                InDoubtState(
                    holder,
                    d.order_id,
                    d.trader_id,
                    d.product.product_id,
                    d.side,
                    d.lots,
                    d.offer,
                    d.hold_id,
                    d.resend_mono_ms,
                )
                for (holder, _), d in self.in_doubt.items()
            ),
            tuple(self._finished_requests),
            tuple((holder, ratio.state()) for holder, ratio in self._reliability.items()),
            tuple((holder, ratio.state()) for holder, ratio in self._credibility.items()),
        )

    def restore(self, state: OriginatorState) -> None:
        products = self.context.products
        self.working = {}
        self._requests = {}
        self._accepted = {}
        for s in state.working:
            working = _working_from(s, products[s.order.product_id])
            order_id = working.order.order_id
            self.working[order_id] = working
            self._requests[working.request_id] = order_id
            for key in working.accepted:
                self._accepted[key] = order_id
        self.in_doubt = {
            (d.holder, d.offer.lock_id): InDoubt(
                d.order_id,
                d.trader_id,
                products[d.product_id],
                d.side,
                d.lots,
                d.offer,
                d.hold_id,
                d.resend_mono_ms,
            )
            for d in state.in_doubt
        }
        self._finished_requests = OrderedDict.fromkeys(state.finished_requests)
        self._reliability = {
            holder: AcceptanceRatio.from_state(ratio) for holder, ratio in state.reliability
        }
        self._credibility = {
            holder: AcceptanceRatio.from_state(ratio) for holder, ratio in state.credibility
        }


def _same_terms(
    confirmation: Confirmation, product_id: str, side: Side, lots: int, offer: Offer
) -> bool:
    """Whether a confirmation says exactly what was offered and accepted."""
    return (
        confirmation.lock_id == offer.lock_id
        and confirmation.quantity_lots == lots
        and confirmation.price_ticks == offer.price_ticks
        and confirmation.product_id == product_id
        and confirmation.side is side
    )


def _reach(advert: Advert, buy: bool) -> int:
    """How far an advert crosses orders of the other side: the lower, the
    more of them (an ask's price; a bid's, negated)."""
    return advert.price_ticks if buy else -advert.price_ticks


def _prefix_oldest(crossing: list[tuple[NodeId, Advert]], buy: bool) -> tuple[list[int], list[int]]:
    """For adverts sorted by :func:`_reach`: their reaches, and for each
    prefix the index of its oldest advert (priority stamp, then node id)."""
    reach: list[int] = []
    oldest: list[int] = []
    best = 0
    for index, (peer, advert) in enumerate(crossing):
        reach.append(_reach(advert, buy))
        if index and (advert.priority, peer) < (crossing[best][1].priority, crossing[best][0]):
            best = index
        oldest.append(best)
    return reach, oldest


def _advert_crosses(advert: Advert, side: Side, limit: int) -> bool:
    if advert.side is side or not advert.quantity_lots:
        return False
    return advert.price_ticks <= limit if side is Side.BUY else advert.price_ticks >= limit


def _working_state(w: Working) -> WorkingState:
    return WorkingState(
        OrderState.of(w.order),
        w.hold_id,
        w.request_id,
        w.limit_ticks,
        w.remaining_lots,
        w.filled_lots,
        w.round,
        w.asked_lots,
        tuple(sorted(w.awaiting)),
        tuple(CandidateState(c.holder, c.offer, c.received_mono_ms) for c in w.candidates),
        w.deadline_mono_ms,
        w.broadcast_mono_ms,
        tuple(AcceptedState(h, lots, offer) for (h, _), (lots, offer) in w.accepted.items()),
        w.waiting_since_mono_ms,
        w.resend_mono_ms,
        w.refused,
        tuple(w.failed_holders),
        w.cancel_requested,
        tuple(sorted(w.exhausted)),
        w.in_doubt_lots,
        tuple(w.expected.items()),
    )


def _working_from(s: WorkingState, product: ProductSpec) -> Working:
    return Working(
        s.order.order(),
        product,
        s.hold_id,
        s.request_id,
        s.limit_ticks,
        s.remaining_lots,
        s.filled_lots,
        s.round,
        s.asked_lots,
        set(s.awaiting),
        [Candidate(c.holder, c.offer, c.received_mono_ms) for c in s.candidates],
        s.deadline_mono_ms,
        s.broadcast_mono_ms,
        {(a.holder, a.offer.lock_id): (a.lots, a.offer) for a in s.accepted},
        s.waiting_since_mono_ms,
        s.resend_mono_ms,
        s.refused,
        list(s.failed_holders),
        s.cancel_requested,
        set(s.exhausted),
        s.in_doubt_lots,
        dict(s.expected),
    )
