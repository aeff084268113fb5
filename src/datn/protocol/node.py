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

Clearing with peers (bonds, exposure caps, settlement, default) is the
other half of the core, :class:`~datn.protocol.liability.Liability`, which
NodeCore inherits; both work on the state in :mod:`datn.protocol.state`.

The transport may lose, duplicate, delay or reorder messages: every handler
is idempotent, an originator resends acceptances until a decision arrives,
and locks end by themselves. Every input is journaled before its effects, and
replaying the journal rebuilds the same state; after a restart every lock
that lived before is expired, so none is honoured late.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Final

from datn.book import BookError, Fill, Reentry
from datn.clearing.exposure import exposure_cap, obligations
from datn.domain import DomainError, Order, OrderType, ProductSpec, Side, TimeInForce
from datn.ledger import AccountKey
from datn.protocol.booking import trade_entry
from datn.protocol.clock import Hlc, Now
from datn.protocol.config import NodeConfig
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
    SetTimer,
    TickInput,
)
from datn.protocol.liability import Liability
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
from datn.protocol.state import (
    CAPITAL_OWNER,
    Candidate,
    Lock,
    PeerView,
    RestingMeta,
    Working,
)
from datn.protocol.venue import OrderRequest, order_from_request, risk_context, trader_owner
from datn.risk import (
    Reject,
    RiskContext,
    check_order,
    protection_price_ticks,
    required_hold,
)

__all__ = ["NodeConfig", "NodeCore", "entry_trade_id"]

MAX_OFFERS_ACCEPTED: Final = 100
"""An originator takes at most this many potential trades for one order."""


class NodeCore(Liability):
    """The state and rules of one node; see the module docstring. Its state
    and constructor are :class:`~datn.protocol.state.NodeState`'s."""

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
        working = Working(order, product, hold_id, request_id, order.quantity_lots)
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

    def _limit_of(self, working: Working) -> int | None:
        """The worst price the order may trade at: its limit, or for a market
        order its protection price (so a fill never costs more than its hold)."""
        order = working.order
        if order.order_type is OrderType.LIMIT:
            return order.price_ticks
        reference = self.reference_prices[order.product_id]
        return protection_price_ticks(self.config.risk, order.side, reference)

    def _start_round(self, working: Working, now: Now, out: list[Effect]) -> None:
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

    def _targets(self, working: Working) -> list[NodeId]:
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

    def _local_offers(self, working: Working, now: Now) -> list[Candidate]:
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
            candidates.append(Candidate(self.node_id, offer, now.mono_ms))
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
        working.candidates.extend(Candidate(sender, o, now.mono_ms) for o in message.offers)
        if not working.awaiting:
            self._decide(working, now, out)

    def _decide(self, working: Working, now: Now, out: list[Effect]) -> None:
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
        self, working: Working, candidate: Candidate, lots: int, owed: dict[NodeId, int]
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

    def _in_budget(self, candidate: Candidate, now: Now) -> bool:
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

    def _give_back(self, candidate: Candidate, now: Now, out: list[Effect]) -> None:
        if candidate.holder == self.node_id:
            lock = self.locks.get(candidate.offer.lock_id)
            if lock is not None:
                self._end_lock(lock, Refusal(lock.lock_id, "released"), now, out)
        else:
            self._send(candidate.holder, Release(candidate.offer.lock_id), now, out)
            self._count("releases")

    def _take(
        self, working: Working, candidate: Candidate, lots: int, now: Now, out: list[Effect]
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
        self, working: Working, lock: Lock, lots: int, now: Now, out: list[Effect]
    ) -> None:
        """Both sides are this node's traders: trade at once, at the resting price."""
        del self.locks[lock.lock_id]
        meta = self.resting[lock.order_id]
        fill, reentry = self.books[meta.order.product_id].take(lock.lock_id, lots)
        self._count("local_trades")
        trade_id = self._trade(working.order, meta, fill.price_ticks, lots, now, out)
        self._executed(working, trade_id, fill.price_ticks, lots, self.node_id, out)
        self._after_fill(meta, fill, reentry, now, out)

    def _resend_acceptances(self, working: Working, now: Now, out: list[Effect]) -> None:
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

    def _awaiting_decision(self, holder: NodeId, lock_id: int) -> Working | None:
        order_id = self._accepted_locks.get((holder, lock_id))
        working = self.working.get(order_id) if order_id is not None else None
        if working is None or (holder, lock_id) not in working.accepted:
            return None  # a repeated decision: already applied
        return working

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

    def _finish_round(self, working: Working, now: Now, out: list[Effect]) -> None:
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

    def _untried_liquidity(self, working: Working) -> bool:
        """Targeted routing asked only the peers it needed; if they had less
        than advertised, others may still have crossing orders."""
        return self.config.targeted_routing and bool(self._targets(working))

    def _finish(self, working: Working, reason: str, now: Now, out: list[Effect]) -> None:
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

    def _rest(self, working: Working, now: Now, out: list[Effect]) -> None:
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
        meta = RestingMeta(
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
        if view.newest_broadcast is None or stamp > view.newest_broadcast:
            view.newest_broadcast = stamp
        horizon_ms = view.newest_broadcast.wall_ms - self.config.broadcast_memory_ms
        forgotten = view.answers_forgotten_through
        if stamp.wall_ms < horizon_ms or (forgotten is not None and stamp <= forgotten):
            self._count("broadcasts_stale")
            return
        answer = self._offer(sender, message, now, out)
        view.answers[key] = (stamp, answer)
        self._forget_old_answers(view, horizon_ms)
        self._send(sender, answer, now, out)

    def _forget_old_answers(self, view: PeerView, horizon_ms: int) -> None:
        """Keep a peer's answers to broadcasts stamped from ``horizon_ms`` on,
        at most ``max_answers_per_peer`` of them, forgetting the first
        received first (an older one received later goes when it comes first,
        or when a newer stamp makes it stale anyway)."""
        answers, config = view.answers, self.config
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
    ) -> Lock:
        lock_id = self._random_id("lock", len(self.journal), self._counter)
        self._counter += 1
        meta = self.resting[order_id]
        self.books[meta.order.product_id].lock(lock_id, order_id, lots)
        lock = Lock(
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
        self, lock: Lock, message: Acceptance, now: Now, out: list[Effect]
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
        self, meta: RestingMeta, originator: NodeId, fill: Fill, trade_id: int, out: list[Effect]
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

    def _end_lock(self, lock: Lock, decision: Refusal, now: Now, out: list[Effect]) -> None:
        """End a lock without a trade; its quantity goes back to its order."""
        del self.locks[lock.lock_id]
        self._lock_closed(lock)
        if lock.originator != self.node_id:
            self.decisions[lock.lock_id] = decision
        meta = self.resting[lock.order_id]
        reentry = self.books[meta.order.product_id].release(lock.lock_id)
        self._after_reentry(meta, reentry, now, out)

    def _end_locks_of(self, peer: NodeId, reason: str, now: Now, out: list[Effect]) -> None:
        for lock in [lock for lock in self.locks.values() if lock.originator == peer]:
            self._end_lock(lock, Refusal(lock.lock_id, reason), now, out)

    # ============================================================ resting

    def _lock_closed(self, lock: Lock) -> None:
        view = self.peers.get(lock.originator)
        if view is not None:
            view.lock_notional -= lock.notional
            view.lock_count -= 1

    def _after_fill(
        self, meta: RestingMeta, fill: Fill, reentry: Reentry, now: Now, out: list[Effect]
    ) -> None:
        if fill.maker_done or reentry.order_done:
            self._close_resting(meta, "filled", reentry.cancelled_lots, now, out)
            return
        self._after_reentry(meta, reentry, now, out)

    def _after_reentry(
        self, meta: RestingMeta, reentry: Reentry, now: Now, out: list[Effect]
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

    def _local_fill(self, taker: RestingMeta, fill: Fill, now: Now, out: list[Effect]) -> None:
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
        self, taker: Order, maker: RestingMeta, price: int, lots: int, now: Now, out: list[Effect]
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

    def _release_part(self, meta: RestingMeta, lots: int) -> None:
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
        self, meta: RestingMeta, reason: str, cancelled: int, now: Now, out: list[Effect]
    ) -> None:
        order = meta.order
        del self.resting[order.order_id]
        if meta.hold_id is not None and self.ledger.find_hold(meta.hold_id):
            self.ledger.release_hold(meta.hold_id)
        self.open_orders[order.trader_id] -= 1
        self._advert(meta, 0, now, out)
        done = Done(order.order_id, meta.filled_lots, cancelled, reason)
        out.append(Reply(order.trader_id, done))

    def _advert(self, meta: RestingMeta, lots: int, now: Now, out: list[Effect]) -> None:
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
    def _sample_rtt(view: PeerView, rtt: int) -> bool:
        """Fold one round-trip sample into the peer's estimate, like TCP's
        SRTT in integers (7/8 old, 1/8 new); False if it is implausible."""
        if not 0 <= rtt <= 60_000:
            return False
        view.rtt_ms = (7 * view.rtt_ms + rtt) // 8
        return True

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
            yield list(v.answers), v.answers_forgotten_through, v.newest_broadcast
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
