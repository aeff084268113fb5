"""The node's own resting orders: its books, what it tells peers about them,
and the trades between two of its own traders.

A GTC remainder rests here once its originator has worked it across the
network. Peers see every change of a resting order as an advert (nothing in
it names the trader). Quantity locked for a peer stays in the book, in its
place, until the lock ends; quantity that comes back may trade at once
against the node's own crossing orders (a *reentry*), and those trades are
booked here, like any trade between two of the node's traders.
"""

from __future__ import annotations

import msgspec
from mypy_extensions import mypyc_attr

from datn.book import Fill, OrderBook, Reentry
from datn.domain import (
    AssetCode,
    Order,
    OrderId,
    OrderType,
    ProductSpec,
    Side,
    TraderId,
)
from datn.protocol.booking import trade_entry
from datn.protocol.clock import Hlc, Now
from datn.protocol.context import Context
from datn.protocol.effects import CancelAnswer, Done, Effect, Executed, Reply, Rested
from datn.protocol.messages import Advert
from datn.protocol.snapshot import ProductRestingState, RestingMetaState, RestingState
from datn.protocol.traders import Traders
from datn.protocol.venue import trader_owner


class RestingMeta:
    """What the node keeps about one of its resting orders beside the book.

    A node restored from a snapshot may rest hundreds of thousands of
    orders, most of which it will not touch again for a while: each keeps
    its snapshot state and builds its :class:`Order` when first asked."""

    __slots__ = (
        "_order",
        "_state",
        "filled_lots",
        "hold_id",
        "order_ref",
        "priority",
        "product",
        "untold_lots",
    )

    def __init__(
        self,
        order: Order | None,
        product: ProductSpec,
        hold_id: str | None,
        priority: Hlc,
        order_ref: int,
        filled_lots: int = 0,
        state: RestingMetaState | None = None,
    ) -> None:
        assert order is not None or state is not None
        self._order = order
        self._state = state
        self.product = product
        self.hold_id = hold_id
        self.priority = priority
        self.order_ref = order_ref
        """The random id peers know the order by."""
        self.filled_lots = filled_lots
        self.untold_lots = 0
        """Lots traded since the order's last advert: the print the next one
        carries (always within the same input, so never in a snapshot)."""

    @property
    def order(self) -> Order:
        order = self._order
        if order is None:
            m = self._state
            assert m is not None
            order = self._order = Order(
                OrderId(m.order_id),
                TraderId(m.trader_id),
                AssetCode(self.product.product_id),
                m.side,
                m.quantity_lots,
                m.price_ticks,
                OrderType.LIMIT,
                m.time_in_force,
                m.client_order_id,
            )
            self._state = None
        return order

    @property
    def trader_id(self) -> str:
        state = self._state
        return state.trader_id if state is not None else self.order.trader_id

    def to_state(self) -> RestingMetaState:
        """The order as a snapshot keeps it (without building its Order)."""
        state = self._state
        if state is not None:
            # Only the filled quantity of a resting order's metadata changes.
            if state.filled_lots == self.filled_lots:
                return state
            return msgspec.structs.replace(state, filled_lots=self.filled_lots)
        order = self.order
        assert order.order_type is OrderType.LIMIT and order.price_ticks is not None
        assert self.hold_id in (None, f"order:{order.order_id}")
        return RestingMetaState(
            order.order_id,
            order.trader_id,
            order.side,
            order.quantity_lots,
            order.price_ticks,
            order.time_in_force,
            order.client_order_id,
            self.hold_id is not None,
            self.priority,
            self.order_ref,
            self.filled_lots,
        )


@mypyc_attr(allow_interpreted_subclasses=True)  # strategies and tests extend it
class RestingOrders:
    """The books and the metadata of the node's resting orders."""

    def __init__(self, context: Context, traders: Traders) -> None:
        self.context = context
        self.traders = traders
        self.books: dict[str, OrderBook] = {pid: OrderBook(pid) for pid in context.products}
        self.orders: dict[int, RestingMeta] = {}
        self.advert_version = 0

    def add_product(self, product: ProductSpec) -> None:
        self.books.setdefault(product.product_id, OrderBook(product.product_id))

    # ============================================================== resting

    def rest(
        self,
        order: Order,
        product: ProductSpec,
        hold_id: str | None,
        remaining_lots: int,
        filled_lots: int,
        now: Now,
        out: list[Effect],
    ) -> Done | None:
        """Put ``remaining_lots`` of a GTC limit order in its book and tell
        every peer; the Done if nothing of it stays."""
        context = self.context
        # Orders are immutable: one that rests whole is its own remainder.
        remainder = order
        if remaining_lots != order.quantity_lots:
            remainder = Order.create(
                order.order_id,
                order.trader_id,
                order.product_id,
                order.side,
                remaining_lots,
                order.price_ticks,
                order.order_type,
                order.time_in_force,
                order.client_order_id,
            )
        meta = RestingMeta(
            order,
            product,
            hold_id,
            context.clock.tick(now.wall_ms),
            context.random_id("ref", order.order_id),
            filled_lots,
        )
        self.orders[order.order_id] = meta
        result = self.books[order.product_id].submit(remainder)
        for fill in result.fills:
            # Quantity unlocked while this order was worked may cross it now.
            self.local_fill(meta, fill, now, out)
        if result.rested_lots:
            out.append(Reply(order.trader_id, Rested(order.order_id, result.rested_lots)))
            self.advert(meta, result.rested_lots, now, out)
            return None
        reason = result.cancel_reason or "filled"
        return self.close(meta, reason, result.cancelled_lots, now, out)

    def cancel(self, order_id: int, now: Now, out: list[Effect]) -> CancelAnswer:
        """Cancel a resting order's unlocked quantity at once; its locked
        quantity stays promised until its locks end."""
        meta = self.orders[order_id]
        book = self.books[meta.order.product_id]
        view = book.get(order_id)
        assert view is not None, "a resting order is in its book"
        if view.cancel_pending:
            return CancelAnswer(order_id, "pending", 0, view.locked_lots)
        cancelled = book.cancel(order_id)
        self.release_part(meta, cancelled)
        view = book.get(order_id)
        if view is None:
            self.close(meta, "cancelled", cancelled, now, out)
            return CancelAnswer(order_id, "cancelled", cancelled, 0)
        self.advert(meta, view.open_lots, now, out)
        return CancelAnswer(order_id, "pending", cancelled, view.locked_lots)

    def take_back(self, meta: RestingMeta, now: Now, out: list[Effect]) -> int:
        """Take a resting order with nothing locked out of its book, to be
        worked again as a taker; return its open lots. Peers are told it is
        gone; its hold and its trader's view of it stay as they are."""
        order = meta.order
        book = self.books[order.product_id]
        view = book.get(order.order_id)
        assert view is not None and not view.locked_lots, "only unlocked quantity is taken back"
        book.cancel(order.order_id)
        del self.orders[order.order_id]
        self.advert(meta, 0, now, out)
        return view.open_lots

    def after_fill(
        self, meta: RestingMeta, fill: Fill, reentry: Reentry, now: Now, out: list[Effect]
    ) -> None:
        """A lock on ``meta`` was taken (``fill``); the rest of the lock came
        back to the order (``reentry``), and may have traded at once with
        another order of this node, possibly finishing it: those trades are
        booked before the order closes, or the book and the ledger part."""
        if fill.maker_done and not reentry.fills:
            self.close(meta, "filled", reentry.cancelled_lots, now, out)
            return
        self.after_reentry(meta, reentry, now, out, done_reason="filled")

    def after_reentry(
        self,
        meta: RestingMeta,
        reentry: Reentry,
        now: Now,
        out: list[Effect],
        done_reason: str = "done",
    ) -> None:
        """Book what returning quantity traded locally, then show the order anew."""
        for fill in reentry.fills:
            self.local_fill(meta, fill, now, out)
        if reentry.cancelled_lots:
            self.release_part(meta, reentry.cancelled_lots)
        if reentry.order_done:
            self.close(meta, done_reason, reentry.cancelled_lots, now, out)
            return
        view = self.books[meta.order.product_id].get(meta.order.order_id)
        if view is not None:
            self.advert(meta, view.open_lots, now, out)

    def local_fill(self, taker: RestingMeta, fill: Fill, now: Now, out: list[Effect]) -> None:
        """A resting order of this node traded with another one of its orders."""
        maker = self.orders[fill.maker_order_id]
        trade_id = self.local_trade(
            taker.order, taker.hold_id, maker, fill.price_ticks, fill.quantity_lots, now, out
        )
        taker.filled_lots += fill.quantity_lots
        event = Executed(
            taker.order.order_id,
            trade_id,
            fill.price_ticks,
            fill.quantity_lots,
            self.context.node_id,
        )
        out.append(Reply(taker.order.trader_id, event))
        if fill.maker_done:
            self.close(maker, "filled", 0, now, out)
        else:
            view = self.books[maker.order.product_id].get(maker.order.order_id)
            if view is not None:
                self.advert(maker, view.open_lots, now, out)

    def local_trade(
        self,
        taker: Order,
        taker_hold: str | None,
        maker: RestingMeta,
        price: int,
        lots: int,
        now: Now,
        out: list[Effect],
    ) -> int:
        """Book a trade between two of this node's traders, at the maker's price."""
        context = self.context
        if taker.side is Side.BUY:
            buyer, seller = taker, maker.order
            buyer_hold, seller_hold = taker_hold, maker.hold_id
        else:
            buyer, seller = maker.order, taker
            buyer_hold, seller_hold = maker.hold_id, taker_hold
        trade_id = context.next_counter()
        entry = trade_entry(
            f"trade:{trade_id}",
            maker.product,
            trader_owner(buyer.trader_id),
            trader_owner(seller.trader_id),
            lots,
            price,
            buyer_hold=buyer_hold,
            seller_hold=seller_hold,
            ledger=context.ledger,
            key=context.key,
        )
        context.ledger.post(entry)
        maker.filled_lots += lots
        context.marks.record(maker.product.product_id, context.node_id, price)
        context.publish_trade(maker.product.product_id, price, lots, now, out)
        maker.untold_lots += lots
        maker_event = Executed(maker.order.order_id, trade_id, price, lots, context.node_id)
        out.append(Reply(maker.order.trader_id, maker_event))
        return trade_id

    def release_part(self, meta: RestingMeta, lots: int) -> None:
        """Release the hold behind ``lots`` of a resting order that will never fill."""
        ledger = self.context.ledger
        if meta.hold_id is None or not lots:
            return
        held = ledger.find_hold(meta.hold_id)
        if held is None:
            return
        order = meta.order
        if order.side is Side.BUY:
            assert order.price_ticks is not None
            amount = meta.product.notional_minor(lots, order.price_ticks)
        else:
            amount = lots
        ledger.release_hold(meta.hold_id, min(amount, held.amount))

    def close(
        self, meta: RestingMeta, reason: str, cancelled: int, now: Now, out: list[Effect]
    ) -> Done:
        order = meta.order
        del self.orders[order.order_id]
        ledger = self.context.ledger
        if meta.hold_id is not None and ledger.find_hold(meta.hold_id):
            ledger.release_hold(meta.hold_id)
        self.traders.closed(order, now)
        self.advert(meta, 0, now, out)
        done = Done(order.order_id, meta.filled_lots, cancelled, reason)
        out.append(Reply(order.trader_id, done))
        return done

    def advert(self, meta: RestingMeta, lots: int, now: Now, out: list[Effect]) -> None:
        self.advert_version += 1
        order = meta.order
        assert order.price_ticks is not None
        advert = Advert(
            meta.order_ref,
            order.product_id,
            order.side,
            order.price_ticks,
            lots,
            meta.priority,
            self.advert_version,
            meta.untold_lots,
        )
        meta.untold_lots = 0
        context = self.context
        for peer in context.peers:
            context.send(peer, advert, now, out)
        context.count("adverts", len(context.peers))

    def of_trader(self, trader_id: str, product_id: str | None = None) -> list[int]:
        """The trader's resting orders (in ``product_id`` only, if given), oldest first."""
        return sorted(
            order_id
            for order_id, meta in self.orders.items()
            if meta.trader_id == trader_id
            and (product_id is None or meta.product.product_id == product_id)
        )

    # ============================================================ snapshot

    def snapshot(self) -> RestingState:
        by_product: dict[str, list[RestingMetaState]] = {pid: [] for pid in self.books}
        for meta in self.orders.values():
            by_product[meta.product.product_id].append(meta.to_state())
        return RestingState(
            tuple(
                ProductRestingState(book.snapshot(), tuple(by_product[product_id]))
                for product_id, book in self.books.items()
            ),
            self.advert_version,
        )

    def restore(self, state: RestingState) -> None:
        products = self.context.products
        self.books = {}
        self.orders = {}
        for part in state.products:
            product_id = part.book.product_id
            self.books[product_id] = OrderBook.restore(part.book)
            product = products[product_id]
            for m in part.orders:
                hold_id = f"order:{m.order_id}" if m.held else None
                self.orders[m.order_id] = RestingMeta(
                    None, product, hold_id, m.priority, m.order_ref, m.filled_lots, m
                )
        self.advert_version = state.advert_version
