"""Orders as traders write them: immutable, validated on construction.

An order is a limit order (a price in ticks) or a market order (no price); it
lives GTC (good till cancelled: its remainder rests), IOC (fill what you can now,
cancel the rest) or FOK (fill all of it now or none of it). A market order
never rests, so it must be IOC or FOK.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NewType, TypeVar

from datn.domain.assets import AssetCode
from datn.domain.errors import DomainError
from datn.domain.limits import MAX_PRICE_TICKS, MAX_QUANTITY_LOTS, check_int, check_text
from datn.domain.products import ProductSpec

OrderId = NewType("OrderId", int)
TraderId = NewType("TraderId", str)

MAX_ORDER_ID = 2**63 - 1

E = TypeVar("E", bound=enum.Enum)


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY

    @classmethod
    def parse(cls, text: object) -> Side:
        return _parse_enum(cls, "side", "unknown_side", text)


class OrderType(enum.Enum):
    LIMIT = "limit"
    MARKET = "market"

    @classmethod
    def parse(cls, text: object) -> OrderType:
        return _parse_enum(cls, "order_type", "unknown_order_type", text)


class TimeInForce(enum.Enum):
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"

    @classmethod
    def parse(cls, text: object) -> TimeInForce:
        return _parse_enum(cls, "time_in_force", "unknown_time_in_force", text)


def _parse_enum(cls: type[E], field: str, code: str, text: object) -> E:
    if isinstance(text, str):
        for member in cls:
            if member.value == text.lower():
                return member
    allowed = ", ".join(str(m.value) for m in cls)
    raise DomainError(field, code, f"must be one of {allowed}, got {text!r}")


@dataclass(frozen=True, slots=True)
class Order:
    """A trader's instruction. Use :meth:`limit` or :meth:`market` to build one."""

    order_id: OrderId
    trader_id: TraderId
    product_id: AssetCode
    side: Side
    quantity_lots: int
    price_ticks: int | None
    order_type: OrderType
    time_in_force: TimeInForce
    client_order_id: str

    def __post_init__(self) -> None:
        check_int("order_id", self.order_id, 1, MAX_ORDER_ID)
        check_text("trader_id", self.trader_id)
        check_text("product_id", self.product_id, 80)
        check_text("client_order_id", self.client_order_id)
        if not isinstance(self.side, Side):
            raise DomainError("side", "unknown_side", f"must be a Side, got {self.side!r}")
        if not isinstance(self.order_type, OrderType):
            raise DomainError("order_type", "unknown_order_type", f"got {self.order_type!r}")
        if not isinstance(self.time_in_force, TimeInForce):
            raise DomainError(
                "time_in_force", "unknown_time_in_force", f"got {self.time_in_force!r}"
            )
        check_int("quantity_lots", self.quantity_lots, 1, MAX_QUANTITY_LOTS)
        if self.order_type is OrderType.LIMIT:
            check_int("price_ticks", self.price_ticks, 1, MAX_PRICE_TICKS)
        elif self.price_ticks is not None:
            raise DomainError("price_ticks", "price_on_market_order", "a market order has no price")
        elif self.time_in_force is TimeInForce.GTC:
            raise DomainError(
                "time_in_force", "market_order_gtc", "a market order must be IOC or FOK"
            )

    @classmethod
    def limit(
        cls,
        *,
        order_id: int,
        trader_id: str,
        product: ProductSpec,
        side: Side,
        quantity_lots: int,
        price_minor: int,
        time_in_force: TimeInForce = TimeInForce.GTC,
        client_order_id: str,
    ) -> Order:
        """A limit order priced in minor units; refuses a price off the product's tick."""
        return cls(
            OrderId(order_id),
            TraderId(trader_id),
            product.product_id,
            side,
            quantity_lots,
            product.price_ticks(price_minor),
            OrderType.LIMIT,
            time_in_force,
            client_order_id,
        )

    @classmethod
    def market(
        cls,
        *,
        order_id: int,
        trader_id: str,
        product: ProductSpec,
        side: Side,
        quantity_lots: int,
        time_in_force: TimeInForce = TimeInForce.IOC,
        client_order_id: str,
    ) -> Order:
        """A market order: fills at whatever the book offers, never rests."""
        return cls(
            OrderId(order_id),
            TraderId(trader_id),
            product.product_id,
            side,
            quantity_lots,
            None,
            OrderType.MARKET,
            time_in_force,
            client_order_id,
        )


@dataclass(frozen=True, slots=True)
class Trade:
    """One execution between a resting (maker) order and an incoming (taker) order.

    The price is always the resting order's price.
    """

    trade_id: int
    product_id: AssetCode
    price_ticks: int
    quantity_lots: int
    maker_order_id: OrderId
    taker_order_id: OrderId
    taker_side: Side
    executed_at_ms: int

    def __post_init__(self) -> None:
        check_int("quantity_lots", self.quantity_lots, 1, MAX_QUANTITY_LOTS)
        check_int("price_ticks", self.price_ticks, 1, MAX_PRICE_TICKS)
