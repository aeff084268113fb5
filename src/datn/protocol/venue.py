"""A node's local order intake: risk check, hold, match, book the trades.

This is the part of a node's core that needs no peers. An order request is
validated into an :class:`~datn.domain.Order`, checked by every enabled risk
policy, backed by a ledger hold for what it may need, matched in its product's
book, and every fill is booked in the ledger as one balanced entry that moves
cash one way and lots the other while consuming both sides' holds. When an
order leaves the book (filled, cancelled, or an IOC/FOK remainder), whatever is
left of its hold is released.

A market order is matched as a limit order at its protection price, the edge
of the band around the reference price: it can never pay more than the hold
it was accepted with.

Retries are idempotent: a second request with the same (trader, client order
id) gets the first answer back and changes nothing. Time comes in as
``now_ms`` and ids are counters, so a run is a function of its inputs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from datn.book import Fill, OrderBook
from datn.domain import (
    AssetCode,
    DomainError,
    Order,
    OrderId,
    OrderType,
    ProductSpec,
    Side,
    TimeInForce,
    Trade,
)
from datn.ledger import AccountKey, Ledger
from datn.protocol.booking import new_key, trade_entry
from datn.risk import (
    MarkedPosition,
    Reject,
    RiskConfig,
    RiskContext,
    check_order,
    protection_price_ticks,
    required_hold,
)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order as a trader sends it; validated by :meth:`LocalVenue.place`."""

    trader_id: str
    client_order_id: str
    product_id: str
    side: Side
    quantity_lots: int
    price_ticks: int | None
    time_in_force: TimeInForce = TimeInForce.GTC

    def __init__(
        self,
        trader_id: str,
        client_order_id: str,
        product_id: str,
        side: Side,
        quantity_lots: int,
        price_ticks: int | None,
        time_in_force: TimeInForce = TimeInForce.GTC,
    ) -> None:
        # Written out, not generated, for speed, as Order.__init__ is
        # (datn.domain.orders).
        object.__setattr__(self, "trader_id", trader_id)
        object.__setattr__(self, "client_order_id", client_order_id)
        object.__setattr__(self, "product_id", product_id)
        object.__setattr__(self, "side", side)
        object.__setattr__(self, "quantity_lots", quantity_lots)
        object.__setattr__(self, "price_ticks", price_ticks)
        object.__setattr__(self, "time_in_force", time_in_force)


@dataclass(frozen=True, slots=True)
class PlaceResult:
    """The answer to an order request: accepted with what happened, or
    rejected with a machine-readable ``reason`` (and nothing changed)."""

    accepted: bool
    order_id: OrderId | None = None
    trades: tuple[Trade, ...] = ()
    rested_lots: int = 0
    cancelled_lots: int = 0
    cancel_reason: str | None = None
    reason: str | None = None
    message: str = ""


@dataclass(slots=True)
class _OpenOrder:
    order: Order
    product: ProductSpec
    hold_id: str | None


@dataclass(slots=True)
class _TraderState:
    open_orders: int = 0
    recent_ms: deque[int] = field(default_factory=deque)


def trader_owner(trader_id: str) -> str:
    """The ledger owner name of a trader's accounts."""
    return f"trader:{trader_id}"


class LocalVenue:
    """One node's books, ledger and risk policies for its own traders."""

    def __init__(
        self,
        products: Iterable[ProductSpec],
        config: RiskConfig,
        *,
        reference_prices: Mapping[str, int] | None = None,
    ) -> None:
        self.products: dict[str, ProductSpec] = {p.product_id: p for p in products}
        self.config = config
        self.ledger = Ledger()
        self.books = {pid: OrderBook(pid) for pid in self.products}
        self.reference_prices: dict[str, int] = dict(reference_prices or {})
        self._open: dict[int, _OpenOrder] = {}
        self._traders: dict[str, _TraderState] = {}
        self._answers: dict[tuple[str, str], PlaceResult] = {}
        self._next_order_id = 1
        self._next_trade_id = 1
        self._next_entry = 1

    # ---------------------------------------------------------------- commands

    def deposit(self, trader_id: str, asset: str, amount: int) -> None:
        """Credit a trader's account from outside the node (cash or lots)."""
        self.ledger.deposit(self._entry_id("deposit"), trader_owner(trader_id), asset, amount)

    def place(self, request: OrderRequest, now_ms: int) -> PlaceResult:
        key = (request.trader_id, request.client_order_id)
        previous = self._answers.get(key)
        if previous is not None:
            return previous
        result = self._place(request, now_ms)
        self._answers[key] = result
        return result

    def cancel(self, trader_id: str, order_id: int) -> int:
        """Cancel a trader's resting order; return the lots cancelled."""
        open_order = self._open.get(order_id)
        if open_order is None or open_order.order.trader_id != trader_id:
            raise DomainError("order_id", "unknown_order", f"no open order {order_id} of yours")
        cancelled = self.books[open_order.order.product_id].cancel(order_id)
        self._close(order_id)
        return cancelled

    # ----------------------------------------------------------------- queries

    def open_order_ids(self, trader_id: str | None = None) -> list[int]:
        return [
            order_id
            for order_id, open_order in self._open.items()
            if trader_id is None or open_order.order.trader_id == trader_id
        ]

    def available(self, trader_id: str, asset: str) -> int:
        return self.ledger.available(AccountKey(trader_owner(trader_id), AssetCode(asset)))

    def balance(self, trader_id: str, asset: str) -> int:
        return self.ledger.balance(AccountKey(trader_owner(trader_id), AssetCode(asset)))

    def check_invariants(self) -> list[str]:
        """Every broken invariant, described; empty when all hold."""
        problems = list(self.ledger.check_invariants())
        for product_id, book in self.books.items():
            bid, ask = book.best_bid(), book.best_ask()
            if bid is not None and ask is not None and bid >= ask:
                problems.append(f"book {product_id} is crossed: bid {bid} >= ask {ask}")
        held_by_orders = sum(
            1 for o in self._open.values() if o.hold_id and self.ledger.find_hold(o.hold_id)
        )
        if held_by_orders != len(self.ledger.open_holds()):
            problems.append("a ledger hold has no open order, or an open order lost its hold")
        return problems

    # --------------------------------------------------------------- internals

    def _place(self, request: OrderRequest, now_ms: int) -> PlaceResult:
        product = self.products.get(request.product_id)
        if product is None:
            return _rejected("product_not_listed", f"{request.product_id} is not listed here")
        try:
            order = order_from_request(request, product, self._next_order_id)
        except DomainError as error:
            return _rejected(f"invalid_{error.field}", error.message)
        trader = self._traders.setdefault(request.trader_id, _TraderState())
        _forget_before(trader.recent_ms, now_ms - self.config.order_rate_window_ms)
        context = self._context(order, product, trader)
        decision = check_order(self.config, context)
        if isinstance(decision, Reject):
            return _rejected(decision.code.value, decision.message)
        self._next_order_id += 1
        trader.recent_ms.append(now_ms)
        hold = required_hold(self.config, context)
        hold_id = None
        if hold.amount:
            hold_id = f"order:{order.order_id}"
            account = AccountKey(trader_owner(order.trader_id), hold.asset)
            self.ledger.place_hold(hold_id, account, hold.amount)
        self._open[order.order_id] = _OpenOrder(order, product, hold_id)
        trader.open_orders += 1
        return self._match(order, product, now_ms)

    def _context(self, order: Order, product: ProductSpec, trader: _TraderState) -> RiskContext:
        owner = trader_owner(order.trader_id)
        positions = self._positions(owner, product) if self.config.short_selling else ()
        return risk_context(
            new_key,
            self.ledger,
            order,
            product,
            self.reference_prices.get(product.product_id),
            trader.open_orders,
            len(trader.recent_ms),
            positions,
        )

    def _positions(self, owner: str, product: ProductSpec) -> tuple[MarkedPosition, ...]:
        positions = []
        for other in self.products.values():
            mark = self.reference_prices.get(other.product_id)
            lots = self.ledger.balance(AccountKey(owner, other.product_id))
            if other.quote_currency == product.quote_currency and mark and lots:
                positions.append(MarkedPosition(other, lots, mark))
        return tuple(positions)

    def _match(self, order: Order, product: ProductSpec, now_ms: int) -> PlaceResult:
        book = self.books[product.product_id]
        result = book.submit(self._as_booked(order))
        trades = tuple(self._book_fill(order, product, fill, now_ms) for fill in result.fills)
        if not result.rested_lots:
            self._close(order.order_id)
        return PlaceResult(
            True,
            order.order_id,
            trades,
            result.rested_lots,
            result.cancelled_lots,
            result.cancel_reason,
        )

    def _as_booked(self, order: Order) -> Order:
        """A market order goes to the book as a limit at its protection price."""
        if order.order_type is OrderType.LIMIT:
            return order
        reference = self.reference_prices[order.product_id]  # risk refused it otherwise
        return Order(
            order.order_id,
            order.trader_id,
            order.product_id,
            order.side,
            order.quantity_lots,
            protection_price_ticks(self.config, order.side, reference),
            OrderType.LIMIT,
            order.time_in_force,
            order.client_order_id,
        )

    def _book_fill(self, taker: Order, product: ProductSpec, fill: Fill, now_ms: int) -> Trade:
        """Move cash and lots for one fill in a single balanced entry."""
        maker = self._open[fill.maker_order_id]
        buy, sell = (taker, maker.order) if taker.side is Side.BUY else (maker.order, taker)
        entry = trade_entry(
            self._entry_id("fill"),
            product,
            trader_owner(buy.trader_id),
            trader_owner(sell.trader_id),
            fill.quantity_lots,
            fill.price_ticks,
            buyer_hold=self._open[buy.order_id].hold_id,
            seller_hold=self._open[sell.order_id].hold_id,
        )
        self.ledger.post(entry)
        if fill.maker_done:
            self._close(fill.maker_order_id)
        self.reference_prices[product.product_id] = fill.price_ticks
        trade = Trade(
            self._next_trade_id,
            product.product_id,
            fill.price_ticks,
            fill.quantity_lots,
            maker.order.order_id,
            taker.order_id,
            taker.side,
            now_ms,
        )
        self._next_trade_id += 1
        return trade

    def _close(self, order_id: int) -> None:
        """The order left the book: release what is left of its hold."""
        open_order = self._open.pop(order_id)
        if open_order.hold_id is not None and self.ledger.find_hold(open_order.hold_id):
            self.ledger.release_hold(open_order.hold_id)
        self._traders[open_order.order.trader_id].open_orders -= 1

    def _entry_id(self, kind: str) -> str:
        entry_id = f"{kind}:{self._next_entry}"
        self._next_entry += 1
        return entry_id


def _rejected(reason: str, message: str) -> PlaceResult:
    return PlaceResult(False, reason=reason, message=message)


def _forget_before(timestamps: deque[int], cutoff_ms: int) -> None:
    while timestamps and timestamps[0] <= cutoff_ms:
        timestamps.popleft()


def order_from_request(request: OrderRequest, product: ProductSpec, order_id: int) -> Order:
    """The order a request describes; a bad field raises DomainError naming it."""
    order_type = OrderType.MARKET if request.price_ticks is None else OrderType.LIMIT
    return Order.create(
        order_id,
        request.trader_id,
        product.product_id,
        request.side,
        request.quantity_lots,
        request.price_ticks,
        order_type,
        request.time_in_force,
        request.client_order_id,
    )


def risk_context(
    key: Callable[[str, str], AccountKey],
    ledger: Ledger,
    order: Order,
    product: ProductSpec,
    reference_price_ticks: int | None,
    open_orders: int,
    recent_orders: int,
    positions: tuple[MarkedPosition, ...] = (),
) -> RiskContext:
    """What the policies read about ``order``, taken from the trader's accounts."""
    owner = trader_owner(order.trader_id)
    cash = ledger.available(key(owner, product.quote_currency))
    lots = ledger.available(key(owner, product.product_id))
    return RiskContext(
        order,
        product,
        max(cash, 0),
        max(lots, 0),
        reference_price_ticks,
        open_orders,
        recent_orders,
        positions,
    )
