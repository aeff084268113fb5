"""The pre-trade policies, one function each, and the check that runs them all.

Every policy has the same shape, ``(config, context) -> Decision``, reads only
its arguments and returns :data:`ACCEPT` when its knob is off or the order is
none of its business. :func:`check_order` runs them in the order of
:data:`POLICIES` and returns the first rejection, so a trader always sees the
same reason for the same order and state. The order puts what the order *is*
before what the trader *has*: first whether the node trades the product at all,
then the order's own size and price, then the trader's activity, and last the
cover and margin checks, which the trader can fix by depositing or waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeAlias

from datn.domain.orders import OrderType, Side
from datn.risk.config import RiskConfig
from datn.risk.context import RiskContext
from datn.risk.decision import ACCEPT, Decision, Reason, Reject
from datn.risk.valuation import (
    band_edges_ticks,
    equity_minor,
    margin_required_minor,
    new_short_lots,
    order_notional_minor,
    short_exposure_minor,
    short_price_ticks,
    worst_price_ticks,
)

Policy: TypeAlias = Callable[[RiskConfig, RiskContext], Decision]


def check_listed_product(config: RiskConfig, context: RiskContext) -> Decision:
    """Refuse a product the node does not list."""
    listed = config.listed_products
    if listed is None or context.order.product_id in listed:
        return ACCEPT
    return Reject(Reason.PRODUCT_NOT_LISTED, f"{context.product.symbol} is not listed on this node")


def check_max_quantity(config: RiskConfig, context: RiskContext) -> Decision:
    """Refuse an order larger than ``max_quantity_lots``."""
    limit_lots = config.max_quantity_lots
    quantity_lots = context.order.quantity_lots
    if limit_lots is None or quantity_lots <= limit_lots:
        return ACCEPT
    return Reject(
        Reason.MAX_QUANTITY,
        f"quantity of {quantity_lots} lots exceeds the maximum of {limit_lots} lots",
    )


def check_market_protection(config: RiskConfig, context: RiskContext) -> Decision:
    """Refuse a market order that has no reference price to set its protection price."""
    if context.order.order_type is OrderType.LIMIT or context.reference_price_ticks is not None:
        return ACCEPT
    return _no_reference_price(context, "set the protection price of a market order")


def check_price_band(config: RiskConfig, context: RiskContext) -> Decision:
    """Refuse a limit price more than ``price_band_bps`` away from the reference price.

    A product without a reference price yet (nothing has traded) has no band;
    refusing every order would keep it from ever trading. Market orders are
    bounded by their protection price instead.
    """
    band_bps = config.price_band_bps
    reference_ticks = context.reference_price_ticks
    price_ticks = context.order.price_ticks
    if band_bps is None or reference_ticks is None or price_ticks is None:
        return ACCEPT
    low_ticks, high_ticks = band_edges_ticks(reference_ticks, band_bps)
    if low_ticks <= price_ticks <= high_ticks:
        return ACCEPT
    return Reject(
        Reason.PRICE_BAND,
        f"limit price of {price_ticks} ticks is outside {low_ticks}..{high_ticks} ticks, "
        f"the band of {band_bps} bps around the reference price of {reference_ticks} ticks",
    )


def check_max_notional(config: RiskConfig, context: RiskContext) -> Decision:
    """Refuse an order whose notional exceeds ``max_notional_minor``."""
    limit_minor = config.max_notional_minor
    if limit_minor is None:
        return ACCEPT
    notional_minor = order_notional_minor(config, context)
    if notional_minor is None:
        return _no_reference_price(context, "measure the notional of a market order")
    if notional_minor <= limit_minor:
        return ACCEPT
    return Reject(
        Reason.MAX_NOTIONAL,
        f"notional of {notional_minor} minor units of {context.product.quote_currency} "
        f"exceeds the maximum of {limit_minor}",
    )


def check_order_rate(config: RiskConfig, context: RiskContext) -> Decision:
    """Refuse an order past ``max_orders_per_window`` in the current window."""
    limit = config.max_orders_per_window
    placed = context.recent_order_count
    if limit is None or placed < limit:
        return ACCEPT
    return Reject(
        Reason.ORDER_RATE,
        f"{placed} orders were already placed in this window of "
        f"{config.order_rate_window_ms} ms; the limit is {limit}",
    )


def check_max_open_orders(config: RiskConfig, context: RiskContext) -> Decision:
    """Refuse an order that would make more than ``max_open_orders`` open at once."""
    limit = config.max_open_orders
    open_count = context.open_order_count
    if limit is None or open_count < limit:
        return ACCEPT
    return Reject(
        Reason.MAX_OPEN_ORDERS,
        f"{open_count} orders are already open; the limit is {limit}",
    )


def check_cash_cover(config: RiskConfig, context: RiskContext) -> Decision:
    """Refuse a buy whose worst-case cost exceeds the available cash."""
    order = context.order
    if not config.cash_cover or order.side is Side.SELL:
        return ACCEPT
    price_ticks = worst_price_ticks(config, context)
    if price_ticks is None:
        return _no_reference_price(context, "cost a market buy")
    cost_minor = context.product.notional_minor(order.quantity_lots, price_ticks)
    if cost_minor <= context.available_cash_minor:
        return ACCEPT
    return Reject(
        Reason.INSUFFICIENT_CASH,
        f"buying {order.quantity_lots} lots at {price_ticks} ticks costs {cost_minor} "
        f"minor units of {context.product.quote_currency}, "
        f"but only {context.available_cash_minor} are available",
    )


def check_position_cover(config: RiskConfig, context: RiskContext) -> Decision:
    """Refuse a sell beyond the available position, unless short selling is on."""
    order = context.order
    if not config.position_cover or config.short_selling or order.side is Side.BUY:
        return ACCEPT
    available_lots = context.available_position_lots
    if order.quantity_lots <= available_lots:
        return ACCEPT
    return Reject(
        Reason.INSUFFICIENT_POSITION,
        f"selling {order.quantity_lots} lots needs that many available, "
        f"but only {available_lots} are and short selling is off",
    )


def check_short_margin(config: RiskConfig, context: RiskContext) -> Decision:
    """Refuse a short sale unless equity covers the margin on all short exposure.

    The exposure is every position already short, every lot open sells would
    short, and this order's own new short part, each valued at a mark.
    """
    margin_bps = config.short_margin_bps
    short_lots = new_short_lots(context)
    if margin_bps is None or short_lots == 0:
        return ACCEPT
    price_ticks = short_price_ticks(context)
    if price_ticks is None:
        return _no_reference_price(context, "value a short market sell")
    new_exposure_minor = context.product.notional_minor(short_lots, price_ticks)
    exposure_minor = new_exposure_minor + sum(map(short_exposure_minor, context.positions))
    required_minor = margin_required_minor(exposure_minor, margin_bps)
    equity = equity_minor(context)
    if equity >= required_minor:
        return ACCEPT
    return Reject(
        Reason.SHORT_MARGIN,
        f"shorting {short_lots} lots at {price_ticks} ticks brings short exposure to "
        f"{exposure_minor} minor units of {context.product.quote_currency}; "
        f"a margin of {margin_bps} bps needs equity of {required_minor}, but equity is {equity}",
    )


def _no_reference_price(context: RiskContext, purpose: str) -> Reject:
    return Reject(
        Reason.NO_REFERENCE_PRICE,
        f"there is no reference price for {context.product.symbol} to {purpose}",
    )


POLICIES: Final[tuple[Policy, ...]] = (
    check_listed_product,
    check_max_quantity,
    check_market_protection,
    check_price_band,
    check_max_notional,
    check_order_rate,
    check_max_open_orders,
    check_cash_cover,
    check_position_cover,
    check_short_margin,
)
"""Every policy, in the order :func:`check_order` runs them."""


def check_order(config: RiskConfig, context: RiskContext) -> Decision:
    """Run every policy in :data:`POLICIES` order; return the first rejection or accept."""
    for policy in POLICIES:
        decision = policy(config, context)
        if isinstance(decision, Reject):
            return decision
    return ACCEPT
