"""Prices and amounts the policies and holds agree on, in integers only.

Every basis-point calculation is done by cross-multiplying, so no fraction is
ever formed. Where a result must be a whole tick or a whole minor unit, the
rounding direction is the one that keeps the node on the safe side, and the
function says which it is.
"""

from __future__ import annotations

from datn.domain.orders import OrderType, Side
from datn.risk.config import BPS_PER_UNIT, RiskConfig
from datn.risk.context import MarkedPosition, RiskContext


def ceil_div(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded up, exactly, for a positive denominator."""
    return -(-numerator // denominator)


def band_edges_ticks(reference_price_ticks: int, band_bps: int) -> tuple[int, int]:
    """Lowest and highest whole-tick prices within ``band_bps`` of the reference.

    The low edge rounds up and the high edge rounds down, so both are inside the
    exact band: a price is between them exactly when it is within the band. The
    low edge is at least one tick, because no price is lower.
    """
    low = ceil_div(reference_price_ticks * (BPS_PER_UNIT - band_bps), BPS_PER_UNIT)
    high = reference_price_ticks * (BPS_PER_UNIT + band_bps) // BPS_PER_UNIT
    return max(1, low), high


def protection_price_ticks(config: RiskConfig, side: Side, reference_price_ticks: int) -> int:
    """The worst price a market order may fill at: the band edge against its side.

    It is the same edge a limit order could be placed at under a price band of
    ``market_protection_bps``, so a market order never pays more (or receives
    less) than a limit order the node would have accepted.
    """
    low, high = band_edges_ticks(reference_price_ticks, config.market_protection_bps)
    return high if side is Side.BUY else low


def worst_price_ticks(config: RiskConfig, context: RiskContext) -> int | None:
    """The worst price the order can fill at: its limit, or its protection price.

    ``None`` for a market order when there is no reference price to protect it.
    """
    order = context.order
    if order.order_type is OrderType.LIMIT:
        return order.price_ticks
    if context.reference_price_ticks is None:
        return None
    return protection_price_ticks(config, order.side, context.reference_price_ticks)


def notional_price_ticks(config: RiskConfig, context: RiskContext) -> int | None:
    """The price an order's notional is measured at, or ``None`` if there is none.

    A buy is measured at its worst price, the most it can cost. A market sell is
    measured at the reference price: its protection price is a floor, and its
    proceeds have no ceiling, so the floor would understate it.
    """
    order = context.order
    if order.side is Side.BUY or order.order_type is OrderType.LIMIT:
        return worst_price_ticks(config, context)
    return context.reference_price_ticks


def order_notional_minor(config: RiskConfig, context: RiskContext) -> int | None:
    """The order's notional in minor units, or ``None`` if it has no price to measure at."""
    price_ticks = notional_price_ticks(config, context)
    if price_ticks is None:
        return None
    return context.product.notional_minor(context.order.quantity_lots, price_ticks)


def new_short_lots(context: RiskContext) -> int:
    """How many lots of this order would sell beyond the available position."""
    order = context.order
    if order.side is Side.BUY:
        return 0
    return max(0, order.quantity_lots - context.available_position_lots)


def short_price_ticks(context: RiskContext) -> int | None:
    """The price a new short is valued at: the highest one known for the product.

    A short loses as the price rises, so the prudent value is the highest of its
    limit (a sell fills only where a buyer pays at least that), the product's
    mark and the reference price. ``None`` when none of them is known.
    """
    known = [
        price
        for price in (
            context.order.price_ticks,
            context.mark_price_ticks(),
            context.reference_price_ticks,
        )
        if price is not None
    ]
    return max(known, default=None)


def position_value_minor(position: MarkedPosition) -> int:
    """Signed value of a position at its mark: negative for a short."""
    return position.product.notional_minor(position.position_lots, position.mark_price_ticks)


def short_exposure_minor(position: MarkedPosition) -> int:
    """Value at mark of the lots short now plus those open sells would short."""
    short_lots = max(0, -position.position_lots) + position.open_short_lots
    return position.product.notional_minor(short_lots, position.mark_price_ticks)


def equity_minor(context: RiskContext) -> int:
    """Available cash plus every position at its mark.

    Cash reserved by a hold is left out: it is already promised to an open
    order, and pledging it as margin as well would count it twice. This
    understates equity while buy orders are open, which errs on the node's side.
    """
    return context.available_cash_minor + sum(map(position_value_minor, context.positions))


def margin_required_minor(short_exposure_minor: int, margin_bps: int) -> int:
    """Equity needed to carry ``short_exposure_minor`` at ``margin_bps``.

    Rounded up, so that no short is ever carried on even a fraction of a minor
    unit less than the configured margin.
    """
    return ceil_div(short_exposure_minor * margin_bps, BPS_PER_UNIT)
