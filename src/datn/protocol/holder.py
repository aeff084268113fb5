"""The holder's part of the trade protocol (DESIGN.md section 4, steps 3 and 5).

A holder answers an originator's broadcast by locking crossing quantity of
its resting orders for ``lock_ttl_ms`` of its own monotonic clock (within
the originator's quota and exposure cap), and decides once on every
acceptance, by that clock: a confirmation while the lock lives, a refusal
after. The decision is remembered, so a retried acceptance gets the same
answer: a confirmation until its trade is settled (until then the
originator may still be asking), a refusal for ``decision_memory_ms`` (after
that an unknown lock is refused all the same). Decisions are only ever told
to the lock's own originator.

A broadcast the network delivered twice gets the answer the first got; the
holder remembers answers for a bounded window per peer (see
:class:`~datn.protocol.config.NodeConfig`). The holder is also the
timekeeper of every lock the node's own orders take from its own book
(``originator`` is then the node itself); those never get a decision, the
originator takes or releases them directly.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from mypy_extensions import mypyc_attr

from datn.book import Fill, Reentry
from datn.domain import Side
from datn.domain.value import NodeId
from datn.protocol.booking import trade_entry
from datn.protocol.clock import Hlc, Now
from datn.protocol.context import Context
from datn.protocol.effects import Effect, Executed, Reply, SetTimer
from datn.protocol.liability import Liability
from datn.protocol.messages import (
    Acceptance,
    Confirmation,
    Offer,
    OrderBroadcast,
    PotentialTrades,
    Refusal,
    Release,
)
from datn.protocol.resting import RestingMeta, RestingOrders
from datn.protocol.snapshot import DecisionState, HolderState, LockState, MemoryState
from datn.protocol.venue import trader_owner


@dataclass(slots=True)
class Lock:
    lock_id: int
    originator: NodeId
    order_id: int
    quantity_lots: int
    expires_mono_ms: int
    notional: int = 0

    def __init__(
        self,
        lock_id: int,
        originator: NodeId,
        order_id: int,
        quantity_lots: int,
        expires_mono_ms: int,
        notional: int = 0,
    ) -> None:
        # Written out, not generated, for speed, as Order.__init__ is
        # (datn.domain.orders).
        self.lock_id = lock_id
        self.originator = originator
        self.order_id = order_id
        self.quantity_lots = quantity_lots
        self.expires_mono_ms = expires_mono_ms
        self.notional = notional


@dataclass(slots=True)
class _Decision:
    originator: NodeId
    message: Confirmation | Refusal


@dataclass(slots=True)
class _Memory:
    """A peer's recent broadcasts and the answers they got."""

    answers: OrderedDict[tuple[int, int], tuple[Hlc, PotentialTrades]] = field(
        default_factory=OrderedDict
    )
    """By (request id, round), with the broadcast's HLC, first received first
    (an OrderedDict: a dict's first key, after many deletes from the front,
    costs a scan of the deleted places, up to the dict's size)."""
    forgotten_through: Hlc | None = None
    """The latest HLC of an answer forgotten: broadcasts up to it are stale."""
    newest: Hlc | None = None
    """The latest HLC of any broadcast from the peer: the memory window ends there."""


@mypyc_attr(allow_interpreted_subclasses=True)  # strategies and tests extend it
class Holder:
    """Locks, decisions and answered broadcasts; see the module docstring."""

    def __init__(self, context: Context, resting: RestingOrders, liability: Liability) -> None:
        self.context = context
        self.resting = resting
        self.liability = liability
        self.locks: dict[int, Lock] = {}
        self.decisions: dict[int, _Decision] = {}
        self._refusals: deque[tuple[int, int]] = deque()
        """(monotonic ms, lock id) of remembered refusals, oldest first."""
        self.memories: dict[NodeId, _Memory] = {}
        self._open: dict[NodeId, list[int]] = {}
        """Per originator, [notional, count] of the locks open for it."""

    # ============================================================ broadcast

    def on_broadcast(
        self, sender: NodeId, message: OrderBroadcast, now: Now, out: list[Effect]
    ) -> None:
        memory = self.memories.get(sender)
        if memory is None:
            memory = self.memories[sender] = _Memory()
        key = (message.request_id, message.round)
        remembered = memory.answers.get(key)
        if remembered is not None:
            self.context.send(sender, remembered[1], now, out)
            return
        config = self.context.config
        stamp = self.context.hlc_in
        if memory.newest is None or stamp > memory.newest:
            memory.newest = stamp
        horizon_ms = memory.newest.wall_ms - config.broadcast_memory_ms
        forgotten = memory.forgotten_through
        if stamp.wall_ms < horizon_ms or (forgotten is not None and stamp <= forgotten):
            self.context.count("broadcasts_stale")
            return
        answer = self._offer(sender, message, now, out)
        memory.answers[key] = (stamp, answer)
        self._forget_old_answers(memory, horizon_ms)
        self.context.send(sender, answer, now, out)

    def _forget_old_answers(self, memory: _Memory, horizon_ms: int) -> None:
        """Keep a peer's answers to broadcasts stamped from ``horizon_ms`` on,
        at most ``max_answers_per_peer`` of them, forgetting the first
        received first (an older one received later goes when it comes first,
        or when a newer stamp makes it stale anyway)."""
        answers, limit = memory.answers, self.context.config.max_answers_per_peer
        while answers:
            oldest = next(iter(answers))
            stamp = answers[oldest][0]
            if len(answers) <= limit and stamp.wall_ms >= horizon_ms:
                return
            del answers[oldest]
            forgotten = memory.forgotten_through
            if forgotten is None or stamp > forgotten:
                memory.forgotten_through = stamp

    def _offer(
        self, originator: NodeId, message: OrderBroadcast, now: Now, out: list[Effect]
    ) -> PotentialTrades:
        """Lock what crosses, within the originator's quota and exposure cap."""
        context = self.context
        book = self.resting.books.get(message.product_id)
        product = context.products.get(message.product_id)
        offers: list[Offer] = []
        limited = ""
        if book is None or product is None:
            context.count("broadcasts_unlisted")
            return PotentialTrades(message.request_id, message.round, (), "not_listed")
        lockable = book.lockable(message.side, message.limit_price_ticks, message.quantity_lots)
        notional_left, count_left, binding = (
            self.liability.lock_budget(originator, now) if lockable else (0, 0, "")
        )
        if notional_left <= 0 or count_left <= 0:
            limited, lockable = binding, []
        offered = 0
        ttl_ms = context.config.lock_ttl_ms
        mark_per_lot = 0
        if message.side is Side.SELL and context.logic_version >= 6:
            # The originator sells into this node's bids: through such a lock
            # it comes to owe the lots, worth the mark each, against the
            # price; below half the mark that is more than the price itself.
            mark = context.marks.mark(message.product_id, originator)
            if mark is not None:
                mark_per_lot = product.notional_minor(1, mark)
        for order_id, price, wanted in lockable:
            if count_left <= 0:
                limited = "lock_quota"
                break
            # A lock counts against the cap and the quota at what the
            # originator may come to owe through it (core logic 6; before,
            # at its price, which let a sale into a bid far below the mark
            # take the exposure past the cap).
            at_price = product.notional_minor(1, price)
            per_lot = max(at_price, mark_per_lot - at_price)
            lots = min(wanted, notional_left // per_lot)
            if lots < wanted:
                limited = binding
            if lots <= 0:
                break
            notional = per_lot * lots
            lock = self.new_lock(originator, order_id, lots, now, notional)
            notional_left -= notional
            offered += notional
            count_left -= 1
            priority = self.resting.orders[order_id].priority
            offers.append(Offer(lock.lock_id, price, lots, priority, ttl_ms))
            out.append(SetTimer(lock.expires_mono_ms))
        if offered:
            self.liability.offered(originator, offered, now)
        context.count("locks_offered", len(offers))
        if limited:
            context.count(f"limited:{limited}")
        return PotentialTrades(message.request_id, message.round, tuple(offers), limited)

    def new_lock(
        self, originator: NodeId, order_id: int, lots: int, now: Now, notional: int = 0
    ) -> Lock:
        context = self.context
        # A lock offered to a peer gets an id it cannot guess; one of the
        # node's own orders on its own book never leaves the node.
        number = context.next_counter()
        lock_id = number if originator == context.node_id else context.random_id("lock", number)
        meta = self.resting.orders[order_id]
        self.resting.books[meta.order.product_id].lock(lock_id, order_id, lots)
        lock = Lock(
            lock_id, originator, order_id, lots, now.mono_ms + context.config.lock_ttl_ms, notional
        )
        self.locks[lock_id] = lock
        if originator != context.node_id:
            tally = self._open.get(originator)
            if tally is None:
                tally = self._open[originator] = [0, 0]
            tally[0] += notional
            tally[1] += 1
        return lock

    def open_for(self, originator: NodeId) -> tuple[int, int]:
        """The notional and count of the locks open for ``originator``."""
        tally = self._open.get(originator)
        return (tally[0], tally[1]) if tally is not None else (0, 0)

    # =========================================================== decisions

    def on_acceptance(
        self, sender: NodeId, message: Acceptance, now: Now, out: list[Effect]
    ) -> None:
        context = self.context
        decided = self.decisions.get(message.lock_id)
        if decided is not None and decided.originator == sender:
            context.send(sender, decided.message, now, out)
            return
        lock = self.locks.get(message.lock_id)
        if decided is not None or lock is None or lock.originator != sender:
            # Never tell one peer what was decided on another's lock.
            context.count("acceptances_unknown_lock")
            context.send(sender, Refusal(message.lock_id, "unknown_lock"), now, out)
            return
        context.send(sender, self._decide(lock, message, now, out), now, out)

    def _decide(
        self, lock: Lock, message: Acceptance, now: Now, out: list[Effect]
    ) -> Confirmation | Refusal:
        """The holder's final word on a lock, by its own clock."""
        if now.mono_ms >= lock.expires_mono_ms:
            self.context.count("refused_expired")
            return self.end_lock(lock, "expired", now, out)
        if not 1 <= message.quantity_lots <= lock.quantity_lots:
            self.context.count("refused_bad_quantity")
            return self.end_lock(lock, "bad_quantity", now, out)
        meta, fill, reentry = self._take(lock, message.quantity_lots)
        self.liability.taken(
            lock.originator, lock.notional * fill.quantity_lots // lock.quantity_lots, now
        )
        trade_id = self.context.random_id("trade", lock.lock_id)
        self._book_trade(meta, lock.originator, fill, trade_id, now, out)
        self.liability.unsettled_trade(
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
        self.decisions[lock.lock_id] = _Decision(lock.originator, confirmation)
        self.context.count("locks_taken")
        self.context.count("lock_outcome:taken")
        self.resting.after_fill(meta, fill, reentry, now, out)
        return confirmation

    def _take(self, lock: Lock, lots: int) -> tuple[RestingMeta, Fill, Reentry]:
        del self.locks[lock.lock_id]
        self._closed(lock)
        meta = self.resting.orders[lock.order_id]
        fill, reentry = self.resting.books[meta.order.product_id].take(lock.lock_id, lots)
        return meta, fill, reentry

    def take_local(self, lock_id: int, lots: int) -> tuple[RestingMeta, Fill, Reentry]:
        """The node's own order takes a lock on its own book."""
        return self._take(self.locks[lock_id], lots)

    def _book_trade(
        self,
        meta: RestingMeta,
        originator: NodeId,
        fill: Fill,
        trade_id: int,
        now: Now,
        out: list[Effect],
    ) -> None:
        context = self.context
        resting_party = trader_owner(meta.order.trader_id)
        peer = self.liability.peer_account(originator)
        buyer, seller = (
            (resting_party, peer) if meta.order.side is Side.BUY else (peer, resting_party)
        )
        holds = (meta.hold_id, None) if meta.order.side is Side.BUY else (None, meta.hold_id)
        entry = trade_entry(
            context.new_id("trade"),
            meta.product,
            buyer,
            seller,
            fill.quantity_lots,
            fill.price_ticks,
            buyer_hold=holds[0],
            seller_hold=holds[1],
            ledger=context.ledger,
            key=context.key,
        )
        context.ledger.post(entry)
        meta.filled_lots += fill.quantity_lots
        product_id = meta.product.product_id
        context.marks.record(product_id, context.node_id, fill.price_ticks)
        executed = Executed(
            meta.order.order_id, trade_id, fill.price_ticks, fill.quantity_lots, originator
        )
        out.append(Reply(meta.order.trader_id, executed))
        context.publish_trade(product_id, fill.price_ticks, fill.quantity_lots, now, out)
        meta.untold_lots += fill.quantity_lots

    def on_release(self, sender: NodeId, message: Release, now: Now, out: list[Effect]) -> None:
        lock = self.locks.get(message.lock_id)
        if lock is not None and lock.originator == sender:
            self.end_lock(lock, "released", now, out)

    # ================================================================ ending

    def expire(self, now: Now, out: list[Effect]) -> None:
        node_id = self.context.node_id
        for lock in list(self.locks.values()):
            if now.mono_ms >= lock.expires_mono_ms and lock.originator != node_id:
                self.end_lock(lock, "expired", now, out)
                self.context.count("locks_expired")

    def end_lock(self, lock: Lock, reason: str, now: Now, out: list[Effect]) -> Refusal:
        """End a lock without a trade; its quantity goes back to its order."""
        del self.locks[lock.lock_id]
        self._closed(lock)
        refusal = Refusal(lock.lock_id, reason)
        if lock.originator != self.context.node_id:
            self.decisions[lock.lock_id] = _Decision(lock.originator, refusal)
            self._refusals.append((now.mono_ms, lock.lock_id))
            self.context.count(f"lock_outcome:{reason}")
        meta = self.resting.orders[lock.order_id]
        reentry = self.resting.books[meta.order.product_id].release(lock.lock_id)
        self.resting.after_reentry(meta, reentry, now, out)
        return refusal

    def end_locks_of(self, peer: NodeId, reason: str, now: Now, out: list[Effect]) -> None:
        for lock in [lock for lock in self.locks.values() if lock.originator == peer]:
            self.end_lock(lock, reason, now, out)

    def _closed(self, lock: Lock) -> None:
        tally = self._open.get(lock.originator)
        if tally is not None:
            tally[0] -= lock.notional
            tally[1] -= 1
            if not tally[1]:
                del self._open[lock.originator]

    def settled(self, lock_ids: tuple[int, ...]) -> None:
        """These trades are settled: both sides have booked them, so no
        originator will ask about their locks again."""
        decisions = self.decisions
        for lock_id in lock_ids:
            decided = decisions.get(lock_id)
            if decided is not None and isinstance(decided.message, Confirmation):
                del decisions[lock_id]

    def forget_old(self, now: Now) -> None:
        cutoff = now.mono_ms - self.context.config.decision_memory_ms
        refusals, decisions = self._refusals, self.decisions
        while refusals and refusals[0][0] <= cutoff:
            _, lock_id = refusals.popleft()
            decided = decisions.get(lock_id)
            if decided is not None and isinstance(decided.message, Refusal):
                del decisions[lock_id]

    # ============================================================ restart

    def restart(self, delta_ms: int, now: Now, out: list[Effect]) -> None:
        """Locks lived on the monotonic clock of a process that is gone: none
        may be honoured late, so all of them end now, as expired."""
        self._refusals = deque((t + delta_ms, lock_id) for t, lock_id in self._refusals)
        for lock in list(self.locks.values()):
            self.end_lock(lock, "expired_by_restart", now, out)

    # ============================================================ snapshot

    def snapshot(self) -> HolderState:
        return HolderState(
            tuple(
                LockState(
                    lock.lock_id,
                    lock.originator,
                    lock.order_id,
                    lock.quantity_lots,
                    lock.expires_mono_ms,
                    lock.notional,
                )
                for lock in self.locks.values()
            ),
            tuple(
                DecisionState(
                    lock_id,
                    decided.originator,
                    decided.message if isinstance(decided.message, Confirmation) else None,
                    decided.message if isinstance(decided.message, Refusal) else None,
                )
                for lock_id, decided in self.decisions.items()
            ),
            tuple(self._refusals),
            tuple(
                MemoryState(
                    peer,
                    tuple(
                        (request_id, round_, stamp, answer)
                        for (request_id, round_), (stamp, answer) in memory.answers.items()
                    ),
                    memory.forgotten_through,
                    memory.newest,
                )
                for peer, memory in self.memories.items()
            ),
        )

    def restore(self, state: HolderState) -> None:
        self.locks = {}
        self._open = {}
        node_id = self.context.node_id
        for s in state.locks:
            lock = Lock(
                s.lock_id, s.originator, s.order_id, s.quantity_lots, s.expires_mono_ms, s.notional
            )
            self.locks[lock.lock_id] = lock
            if lock.originator != node_id:
                tally = self._open.setdefault(lock.originator, [0, 0])
                tally[0] += lock.notional
                tally[1] += 1
        self.decisions = {}
        for d in state.decisions:
            message = d.confirmation if d.confirmation is not None else d.refusal
            assert message is not None, "a decision is a confirmation or a refusal"
            self.decisions[d.lock_id] = _Decision(d.originator, message)
        self._refusals = deque(state.refusals)
        self.memories = {
            m.peer: _Memory(
                OrderedDict(((r, n), (stamp, answer)) for r, n, stamp, answer in m.answers),
                m.forgotten_through,
                m.newest,
            )
            for m in state.memories
        }
