"""Orders as traders write them: immutable, validated on construction.

An order is a limit order (a price in ticks) or a market order (no price); it
lives GTC (good till cancelled: its remainder rests), IOC (fill what you can now,
cancel the rest) or FOK (fill all of it now or none of it). A market order
never rests, so it must be IOC or FOK.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, NewType, TypeVar

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

    def __init__(
        self,
        order_id: OrderId,
        trader_id: TraderId,
        product_id: AssetCode,
        side: Side,
        quantity_lots: int,
        price_ticks: int | None,
        order_type: OrderType,
        time_in_force: TimeInForce,
        client_order_id: str,
    ) -> None:
        # Written out, not generated: in a compiled module the __init__ that
        # dataclasses generates runs interpreted, about fifteen times slower
        # than this, and the core builds orders on every input. Compiled,
        # object.__setattr__ (the class is frozen) is a plain slot store.
        # tests/unit/test_constructors.py checks it against the fields.
        object.__setattr__(self, "order_id", order_id)
        object.__setattr__(self, "trader_id", trader_id)
        object.__setattr__(self, "product_id", product_id)
        object.__setattr__(self, "side", side)
        object.__setattr__(self, "quantity_lots", quantity_lots)
        object.__setattr__(self, "price_ticks", price_ticks)
        object.__setattr__(self, "order_type", order_type)
        object.__setattr__(self, "time_in_force", time_in_force)
        object.__setattr__(self, "client_order_id", client_order_id)
        self.__post_init__()

    def __post_init__(self) -> None:
        _check_types(*self._values())
        check_int("order_id", self.order_id, 1, MAX_ORDER_ID)
        check_int("quantity_lots", self.quantity_lots, 1, MAX_QUANTITY_LOTS)
        if self.order_type is OrderType.LIMIT:
            check_int("price_ticks", self.price_ticks, 1, MAX_PRICE_TICKS)
        elif self.price_ticks is not None:
            raise DomainError("price_ticks", "price_on_market_order", "a market order has no price")
        elif self.time_in_force is TimeInForce.GTC:
            raise DomainError(
                "time_in_force", "market_order_gtc", "a market order must be IOC or FOK"
            )

    def _values(self) -> tuple[object, ...]:
        """The fields in constructor order."""
        return (
            self.order_id,
            self.trader_id,
            self.product_id,
            self.side,
            self.quantity_lots,
            self.price_ticks,
            self.order_type,
            self.time_in_force,
            self.client_order_id,
        )

    def __reduce__(self) -> tuple[type[Order], tuple[object, ...]]:
        # Copy and pickle rebuild the order through its constructor; a compiled
        # frozen dataclass has no slot state they could set field by field.
        return (type(self), self._values())

    @classmethod
    def create(
        cls,
        order_id: object,
        trader_id: object,
        product_id: object,
        side: object,
        quantity_lots: object,
        price_ticks: object,
        order_type: object,
        time_in_force: object,
        client_order_id: object,
    ) -> Order:
        """Build an order from untrusted values.

        Every field's type is checked before the order is built, so a wrong
        type is a :class:`DomainError` naming the field whether or not this
        module runs compiled (a compiled constructor would otherwise raise a
        bare ``TypeError``, or quietly take ``True`` for the integer 1).
        """
        fields: tuple[Any, ...] = (
            order_id,
            trader_id,
            product_id,
            side,
            quantity_lots,
            price_ticks,
            order_type,
            time_in_force,
            client_order_id,
        )
        _check_types(*fields)
        return cls(*fields)

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
        return cls.create(
            order_id,
            trader_id,
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
        return cls.create(
            order_id,
            trader_id,
            product.product_id,
            side,
            quantity_lots,
            None,
            OrderType.MARKET,
            time_in_force,
            client_order_id,
        )


def _check_types(
    order_id: object,
    trader_id: object,
    product_id: object,
    side: object,
    quantity_lots: object,
    price_ticks: object,
    order_type: object,
    time_in_force: object,
    client_order_id: object,
) -> None:
    """Refuse a field of the wrong type with an error naming it."""
    _check_is_int("order_id", order_id)
    _check_is_int("quantity_lots", quantity_lots)
    if price_ticks is not None:
        _check_is_int("price_ticks", price_ticks)
    check_text("trader_id", trader_id)
    check_text("product_id", product_id, 80)
    check_text("client_order_id", client_order_id)
    if not isinstance(side, Side):
        raise DomainError("side", "unknown_side", f"must be a Side, got {side!r}")
    if not isinstance(order_type, OrderType):
        raise DomainError("order_type", "unknown_order_type", f"got {order_type!r}")
    if not isinstance(time_in_force, TimeInForce):
        raise DomainError("time_in_force", "unknown_time_in_force", f"got {time_in_force!r}")


def _check_is_int(field: str, value: object) -> None:
    if type(value) is not int:
        raise DomainError(field, "not_integer", f"must be an integer, got {value!r}")


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

    def __init__(
        self,
        trade_id: int,
        product_id: AssetCode,
        price_ticks: int,
        quantity_lots: int,
        maker_order_id: OrderId,
        taker_order_id: OrderId,
        taker_side: Side,
        executed_at_ms: int,
    ) -> None:
        # Written out, not generated, for speed, as Order.__init__ is
        # (datn.domain.orders).
        object.__setattr__(self, "trade_id", trade_id)
        object.__setattr__(self, "product_id", product_id)
        object.__setattr__(self, "price_ticks", price_ticks)
        object.__setattr__(self, "quantity_lots", quantity_lots)
        object.__setattr__(self, "maker_order_id", maker_order_id)
        object.__setattr__(self, "taker_order_id", taker_order_id)
        object.__setattr__(self, "taker_side", taker_side)
        object.__setattr__(self, "executed_at_ms", executed_at_ms)
        self.__post_init__()

    def __post_init__(self) -> None:
        check_int("quantity_lots", self.quantity_lots, 1, MAX_QUANTITY_LOTS)
        check_int("price_ticks", self.price_ticks, 1, MAX_PRICE_TICKS)
