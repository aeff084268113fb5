"""The snapshot a risk check reads: one order and the trader's state around it.

The context is a frozen dataclass rather than a protocol the ledger implements.
A value can be compared before and after a check (which is how the tests prove
the policies change nothing), printed in a rejection report, and replayed in
the simulator without a ledger behind it. It also makes the reads explicit: the
caller takes every number below in the same step in which it places the order's
hold, so the check and the hold see one state, and no policy can observe a
balance that moves between two of its reads.

Amounts are as the ledger keeps them: cash in minor units of the product's
quote currency, positions in lots, prices in ticks of that product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from datn.domain.errors import DomainError
from datn.domain.limits import MAX_AMOUNT_MINOR, MAX_PRICE_TICKS, check_int
from datn.domain.orders import Order
from datn.domain.products import ProductSpec

MAX_COUNT: Final = 2**63 - 1
"""Largest order count or position size: counts travel as signed 64-bit integers."""


@dataclass(frozen=True, slots=True)
class MarkedPosition:
    """A trader's position in one product, with the price it is valued at.

    ``position_lots`` is signed: negative is a short. ``open_short_lots`` is the
    part of the trader's open sell orders in this product that would sell beyond
    the position if filled; nothing is held for it, so margin must count it.
    """

    product: ProductSpec
    position_lots: int
    mark_price_ticks: int
    open_short_lots: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.product, ProductSpec):
            raise DomainError(
                "product", "not_product", f"must be a ProductSpec, got {self.product!r}"
            )
        check_int("position_lots", self.position_lots, -MAX_COUNT, MAX_COUNT)
        check_int("mark_price_ticks", self.mark_price_ticks, 1, MAX_PRICE_TICKS)
        check_int("open_short_lots", self.open_short_lots, 0, MAX_COUNT)


@dataclass(frozen=True, slots=True)
class RiskContext:
    """Everything the policies may read about one incoming order.

    - ``available_cash_minor``: cash in the quote currency that no hold reserves.
    - ``available_position_lots``: lots of the order's product that no hold
      reserves; zero when the trader is flat or short.
    - ``reference_price_ticks``: the node's reference price for the product (last
      trade or an operator-set price), or ``None`` if it has none yet.
    - ``open_order_count``: the trader's orders still being worked, without this one.
    - ``recent_order_count``: orders the trader placed in the current rate window,
      without this one.
    - ``positions``: every position of the trader in products quoted in the same
      currency, with its mark; only short-sale margin reads it. Margin is kept per
      quote currency, because the core has no exchange rates.
    """

    order: Order
    product: ProductSpec
    available_cash_minor: int
    available_position_lots: int
    reference_price_ticks: int | None = None
    open_order_count: int = 0
    recent_order_count: int = 0
    positions: tuple[MarkedPosition, ...] = ()

    def __init__(
        self,
        order: Order,
        product: ProductSpec,
        available_cash_minor: int,
        available_position_lots: int,
        reference_price_ticks: int | None = None,
        open_order_count: int = 0,
        recent_order_count: int = 0,
        positions: tuple[MarkedPosition, ...] = (),
    ) -> None:
        # Written out, not generated, for speed, as Order.__init__ is
        # (datn.domain.orders).
        object.__setattr__(self, "order", order)
        object.__setattr__(self, "product", product)
        object.__setattr__(self, "available_cash_minor", available_cash_minor)
        object.__setattr__(self, "available_position_lots", available_position_lots)
        object.__setattr__(self, "reference_price_ticks", reference_price_ticks)
        object.__setattr__(self, "open_order_count", open_order_count)
        object.__setattr__(self, "recent_order_count", recent_order_count)
        object.__setattr__(self, "positions", positions)
        self.__post_init__()

    def __post_init__(self) -> None:
        self._check_product()
        check_int("available_cash_minor", self.available_cash_minor, 0, MAX_AMOUNT_MINOR)
        check_int("available_position_lots", self.available_position_lots, 0, MAX_COUNT)
        if self.reference_price_ticks is not None:
            check_int("reference_price_ticks", self.reference_price_ticks, 1, MAX_PRICE_TICKS)
        check_int("open_order_count", self.open_order_count, 0, MAX_COUNT)
        check_int("recent_order_count", self.recent_order_count, 0, MAX_COUNT)
        self._check_positions()

    def _check_product(self) -> None:
        if not isinstance(self.order, Order):
            raise DomainError("order", "not_order", f"must be an Order, got {self.order!r}")
        if not isinstance(self.product, ProductSpec):
            raise DomainError(
                "product", "not_product", f"must be a ProductSpec, got {self.product!r}"
            )
        if self.product.product_id != self.order.product_id:
            raise DomainError("product", "product_mismatch", "is not the order's product")

    def _check_positions(self) -> None:
        if not isinstance(self.positions, tuple):
            raise DomainError("positions", "not_tuple", "must be a tuple of MarkedPosition")
        seen: set[str] = set()
        for position in self.positions:
            if not isinstance(position, MarkedPosition):
                raise DomainError("positions", "not_position", f"got {position!r}")
            if position.product.quote_currency != self.product.quote_currency:
                raise DomainError(
                    "positions", "other_currency", f"{position.product.symbol} is quoted elsewhere"
                )
            if position.product.product_id in seen:
                raise DomainError("positions", "duplicate", f"{position.product.symbol} twice")
            seen.add(position.product.product_id)

    def mark_price_ticks(self) -> int | None:
        """The mark of the order's own product, if the trader has a position entry for it."""
        for position in self.positions:
            if position.product.product_id == self.product.product_id:
                return position.mark_price_ticks
        return None
