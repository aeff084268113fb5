"""A node's risk configuration: one knob per policy, validated on construction.

A knob set to ``None`` (or ``False`` for the two cover switches) turns its
policy off. The config usually comes from an operator's file, so every value is
checked here, at the edge, and a bad one raises :class:`DomainError` naming the
field; the policies themselves can then trust it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from datn.domain.assets import AssetCode
from datn.domain.errors import DomainError
from datn.domain.limits import MAX_AMOUNT_MINOR, MAX_QUANTITY_LOTS, check_int, check_text

BPS_PER_UNIT: Final = 10_000
"""Basis points in one whole: 100 bps is 1 %."""

MAX_BPS: Final = 100 * BPS_PER_UNIT
"""Widest band or highest margin a config may set: 10 000 %."""

MAX_OPEN_ORDERS_LIMIT: Final = 1_000_000
MAX_ORDERS_PER_WINDOW_LIMIT: Final = 1_000_000
MAX_ORDER_RATE_WINDOW_MS: Final = 86_400_000
"""One day: a longer rate window would make the rate limit a daily quota."""

DEFAULT_MARKET_PROTECTION_BPS: Final = 500


@dataclass(frozen=True, slots=True)
class RiskConfig:
    """Which pre-trade policies a node enforces, and how tightly.

    ``market_protection_bps`` has no off switch: a market order without a
    protection price could fill at any price, and a market buy could not be
    costed for cash cover or for its hold. Set it wide to make it permissive.

    ``short_margin_bps`` doubles as the short-selling switch: ``None`` means
    short selling is off (position cover refuses any sell beyond the available
    position); a number allows shorts whose margin the trader's equity covers.

    ``order_rate_window_ms`` is not read by any policy (they have no clock); it
    tells the caller over which window to count ``recent_order_count``.
    """

    listed_products: frozenset[AssetCode] | None = None
    max_quantity_lots: int | None = None
    max_notional_minor: int | None = None
    price_band_bps: int | None = None
    market_protection_bps: int = DEFAULT_MARKET_PROTECTION_BPS
    max_open_orders: int | None = None
    max_orders_per_window: int | None = None
    order_rate_window_ms: int = 1_000
    cash_cover: bool = True
    position_cover: bool = True
    short_margin_bps: int | None = None

    def __post_init__(self) -> None:
        _check_listed(self.listed_products)
        _check_optional("max_quantity_lots", self.max_quantity_lots, 1, MAX_QUANTITY_LOTS)
        _check_optional("max_notional_minor", self.max_notional_minor, 1, MAX_AMOUNT_MINOR)
        _check_optional("price_band_bps", self.price_band_bps, 0, MAX_BPS)
        check_int("market_protection_bps", self.market_protection_bps, 0, MAX_BPS)
        _check_optional("max_open_orders", self.max_open_orders, 1, MAX_OPEN_ORDERS_LIMIT)
        _check_optional(
            "max_orders_per_window", self.max_orders_per_window, 1, MAX_ORDERS_PER_WINDOW_LIMIT
        )
        check_int("order_rate_window_ms", self.order_rate_window_ms, 1, MAX_ORDER_RATE_WINDOW_MS)
        _check_bool("cash_cover", self.cash_cover)
        _check_bool("position_cover", self.position_cover)
        _check_optional("short_margin_bps", self.short_margin_bps, 0, MAX_BPS)

    @property
    def short_selling(self) -> bool:
        """Whether a sell may exceed the available position (see ``short_margin_bps``)."""
        return self.short_margin_bps is not None


def _check_optional(field: str, value: object, low: int, high: int) -> None:
    if value is not None:
        check_int(field, value, low, high)


def _check_bool(field: str, value: object) -> None:
    if type(value) is not bool:
        raise DomainError(field, "not_boolean", f"must be true or false, got {value!r}")


def _check_listed(products: object) -> None:
    if products is None:
        return
    # A frozenset, not any iterable: a plain set could still be changed by the
    # code that built the config, and a string would iterate as characters.
    if not isinstance(products, frozenset):
        raise DomainError(
            "listed_products",
            "not_frozenset",
            f"must be a frozenset of product ids, got {products!r}",
        )
    for product_id in products:
        check_text("listed_products", product_id, 80)
