"""The real order book beside a naive model, compared after every step.

The model keeps resting orders in a plain list and matches by sorting it, the
slowest obviously-correct way. Hypothesis drives both with the same orders,
cancels and lock operations and checks that they agree on every fill and on
the whole book, and that the book's own invariants hold throughout. At any step
the book may also be replaced by one restored from its snapshot, as a node's
is when it starts again, and the comparison simply goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from datn.book import BookError, BookSnapshot, OrderBook
from datn.domain import Order, OrderId, OrderType, Side, TimeInForce, TraderId

PRODUCT = "p1model"
TRADERS = ["a", "b", "c"]
Fills = list[tuple[int, str, int, int, bool]]


@dataclass
class ModelOrder:
    order_id: int
    trader: str
    side: Side
    price: int
    open_lots: int
    seq: int
    locked_lots: int = 0
    cancel_pending: bool = False

    @property
    def available(self) -> int:
        return self.open_lots - self.locked_lots


class ModelBook:
    """Price-time priority, done by sorting on every match."""

    def __init__(self) -> None:
        self.orders: dict[int, ModelOrder] = {}
        self.locks: dict[int, tuple[int, int]] = {}
        self.seq = 0

    def _crossing(self, side: Side, price: int | None) -> list[ModelOrder]:
        others = [o for o in self.orders.values() if o.side is not side]
        if side is Side.BUY:
            others = [o for o in others if price is None or o.price <= price]
            others.sort(key=lambda o: (o.price, o.seq))
        else:
            others = [o for o in others if price is None or o.price >= price]
            others.sort(key=lambda o: (-o.price, o.seq))
        return others

    def _match(
        self, side: Side, price: int | None, quantity: int, trader: str
    ) -> tuple[int, bool, Fills]:
        fills: Fills = []
        for other in self._crossing(side, price):
            if quantity == 0:
                break
            if other.available <= 0:
                continue
            if other.trader == trader:
                return quantity, True, fills
            fill = min(other.available, quantity)
            quantity -= fill
            other.open_lots -= fill
            if other.open_lots == 0:
                del self.orders[other.order_id]
            fills.append((other.order_id, other.trader, other.price, fill, other.open_lots == 0))
        return quantity, False, fills

    def _fillable(self, side: Side, price: int | None, trader: str) -> int:
        total = 0
        for other in self._crossing(side, price):
            if other.available <= 0:
                continue
            if other.trader == trader:
                break
            total += other.available
        return total

    def submit(self, order: Order) -> tuple[Fills, int, int]:
        quantity = order.quantity_lots
        price, side, trader = order.price_ticks, order.side, order.trader_id
        if (
            order.time_in_force is TimeInForce.FOK
            and self._fillable(side, price, trader) < quantity
        ):
            return [], 0, quantity
        remaining, self_trade, fills = self._match(side, price, quantity, trader)
        if remaining and not self_trade and order.time_in_force is TimeInForce.GTC and price:
            self.seq += 1
            self.orders[order.order_id] = ModelOrder(
                order.order_id, trader, side, price, remaining, self.seq
            )
            return fills, remaining, 0
        return fills, 0, remaining

    def cancel(self, order_id: int) -> int:
        order = self.orders[order_id]
        cancelled = order.available
        order.open_lots -= cancelled
        order.cancel_pending = True
        if order.open_lots == 0:
            del self.orders[order_id]
        return cancelled

    def end_lock(self, lock_id: int, taken: int) -> tuple[Fills, Fills, int]:
        order_id, locked = self.locks.pop(lock_id)
        order = self.orders[order_id]
        order.locked_lots -= locked
        order.open_lots -= taken
        take_fills: Fills = []
        if taken:
            take_fills.append((order_id, order.trader, order.price, taken, order.open_lots == 0))
        if order.open_lots == 0:
            del self.orders[order_id]
            return take_fills, [], 0
        if order.cancel_pending:
            cancelled = order.available
            order.open_lots -= cancelled
            if order.open_lots == 0:
                del self.orders[order_id]
                _mark_done(take_fills)
            return take_fills, [], cancelled
        # What came back trades with anything that rested across it.
        left, self_trade, fills = self._match(
            order.side, order.price, order.available, order.trader
        )
        cancelled = left if self_trade else 0
        order.open_lots -= order.available - left + cancelled
        if order.open_lots == 0:
            del self.orders[order_id]
            _mark_done(take_fills)
        return take_fills, fills, cancelled


def _mark_done(take_fills: Fills) -> None:
    """The take that led to the order leaving the book reports it as done."""
    if take_fills:
        take_fills[0] = (*take_fills[0][:4], True)


class BookComparison(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.book = OrderBook(PRODUCT)
        self.model = ModelBook()
        self.next_id = 1
        self.next_lock = 1

    def _new_order(
        self, trader: str, side: Side, quantity: int, price: int | None, tif: TimeInForce
    ) -> Order:
        order_type = OrderType.MARKET if price is None else OrderType.LIMIT
        if price is None and tif is TimeInForce.GTC:
            tif = TimeInForce.IOC
        order = Order(
            OrderId(self.next_id),
            TraderId(trader),
            PRODUCT,
            side,
            quantity,
            price,  # type: ignore[arg-type]
            order_type,
            tif,
            "c",
        )
        self.next_id += 1
        return order

    @rule(
        trader=st.sampled_from(TRADERS),
        side=st.sampled_from(Side),
        quantity=st.integers(1, 12),
        price=st.one_of(st.none(), st.integers(95, 105)),
        tif=st.sampled_from(TimeInForce),
    )
    def submit(
        self, trader: str, side: Side, quantity: int, price: int | None, tif: TimeInForce
    ) -> None:
        order = self._new_order(trader, side, quantity, price, tif)
        result = self.book.submit(order)
        fills, rested, cancelled = self.model.submit(order)
        assert [tuple(f.fields()) for f in result.fills] == fills
        assert (result.rested_lots, result.cancelled_lots) == (rested, cancelled)
        assert result.filled_lots + rested + cancelled == quantity

    @precondition(lambda self: self.model.orders)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        order_id = data.draw(st.sampled_from(sorted(self.model.orders)))
        if self.model.orders[order_id].cancel_pending:
            try:
                self.book.cancel(order_id)
            except BookError as error:
                assert error.code == "unknown_order"
            else:
                raise AssertionError("cancelled a cancel-pending order twice")
            return
        assert self.book.cancel(order_id) == self.model.cancel(order_id)

    @rule(order_id=st.integers(10**6, 10**6 + 5))
    def cancel_unknown(self, order_id: int) -> None:
        try:
            self.book.cancel(order_id)
        except BookError as error:
            assert error.code == "unknown_order"
        else:
            raise AssertionError("cancelled an unknown order")

    @precondition(
        lambda self: any(
            o.available > 0 and not o.cancel_pending for o in self.model.orders.values()
        )
    )
    @rule(data=st.data())
    def lock(self, data: st.DataObject) -> None:
        candidates = sorted(
            o.order_id
            for o in self.model.orders.values()
            if o.available > 0 and not o.cancel_pending
        )
        order = self.model.orders[data.draw(st.sampled_from(candidates))]
        quantity = data.draw(st.integers(1, order.available + 2))
        lock_id = self.next_lock
        self.next_lock += 1
        if quantity > order.available:
            try:
                self.book.lock(lock_id, order.order_id, quantity)
            except BookError as error:
                assert error.code == "insufficient_unlocked"
            else:
                raise AssertionError("locked more than the unlocked quantity")
            return
        self.book.lock(lock_id, order.order_id, quantity)
        order.locked_lots += quantity
        self.model.locks[lock_id] = (order.order_id, quantity)

    @precondition(lambda self: self.model.locks)
    @rule(data=st.data(), take=st.booleans())
    def end_lock(self, data: st.DataObject, take: bool) -> None:
        lock_id = data.draw(st.sampled_from(sorted(self.model.locks)))
        locked = self.model.locks[lock_id][1]
        taken = data.draw(st.integers(1, locked)) if take else 0
        if taken:
            fill, reentry = self.book.take(lock_id, taken)
            actual_take = [tuple(fill.fields())]
        else:
            reentry = self.book.release(lock_id)
            actual_take = []
        take_fills, fills, cancelled = self.model.end_lock(lock_id, taken)
        assert actual_take == take_fills
        assert [tuple(f.fields()) for f in reentry.fills] == fills
        assert reentry.cancelled_lots == cancelled
        assert reentry.order_done == (reentry.order_id not in self.model.orders)

    @rule(lock_id=st.integers(10**6, 10**6 + 5))
    def end_unknown_lock(self, lock_id: int) -> None:
        for end in (lambda: self.book.release(lock_id), lambda: self.book.take(lock_id, 1)):
            try:
                end()
            except BookError as error:
                assert error.code == "unknown_lock"
            else:
                raise AssertionError("ended a lock that was never open")

    @rule()
    def restart_from_snapshot(self) -> None:
        snapshot = self.book.snapshot()
        data = msgspec.msgpack.encode(snapshot)
        self.book = OrderBook.restore(msgspec.msgpack.decode(data, type=BookSnapshot))
        assert self.book.snapshot() == snapshot

    @invariant()
    def same_book(self) -> None:
        for side in Side:
            actual = [
                (
                    v.order_id,
                    v.trader_id,
                    v.price_ticks,
                    v.open_lots,
                    v.locked_lots,
                    v.cancel_pending,
                )
                for v in self.book.resting_orders(side)
            ]
            mine = [o for o in self.model.orders.values() if o.side is side]
            mine.sort(key=lambda o: (-o.price if side is Side.BUY else o.price, o.seq))
            expected = [
                (o.order_id, o.trader, o.price, o.open_lots, o.locked_lots, o.cancel_pending)
                for o in mine
            ]
            assert actual == expected
            depth = [
                (v.price_ticks, v.quantity_lots, v.locked_lots, v.order_count)
                for v in self.book.depth(side, 100)
            ]
            by_price: dict[int, list[int]] = {}
            for o in mine:
                level = by_price.setdefault(o.price, [0, 0, 0])
                level[0] += o.open_lots
                level[1] += o.locked_lots
                level[2] += 1
            assert depth == [(p, *by_price[p]) for p in dict.fromkeys(o.price for o in mine)]
        assert self.book.open_locks() == sorted(self.model.locks)
        assert len(self.book) == len(self.model.orders)

    @invariant()
    def locked_within_open_and_never_crossed_on_unlocked(self) -> None:
        bids = [
            o.price for o in self.model.orders.values() if o.side is Side.BUY and o.available > 0
        ]
        asks = [
            o.price for o in self.model.orders.values() if o.side is Side.SELL and o.available > 0
        ]
        if bids and asks:
            assert max(bids) < min(asks)
        for order in self.model.orders.values():
            assert 0 <= order.locked_lots <= order.open_lots


BookComparison.TestCase.settings = settings(
    max_examples=1000, stateful_step_count=30, deadline=None
)
TestBookComparison = BookComparison.TestCase
