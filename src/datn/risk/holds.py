"""What to hold for an accepted order, so that policies stay true while it is open.

A check reads available balances; a hold then reserves what the order may
need, so the next order's check sees less available and two orders can never
both be covered by the same cash or lots. The hold is computed from the same
prices as the check: a buy holds its worst-case cost (the limit price, or the
protection price of a market buy), a sell holds the lots it would deliver from
the available position. The part of a sell beyond that position is a short: no
lots exist to hold, and the caller reports it as ``open_short_lots`` in later
contexts so that short-sale margin still counts it.
"""

from __future__ import annotations

from dataclasses import dataclass

from datn.domain.assets import AssetCode
from datn.domain.errors import DomainError
from datn.domain.orders import Side
from datn.risk.config import RiskConfig
from datn.risk.context import RiskContext
from datn.risk.valuation import worst_price_ticks


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation of ``amount`` of ``asset`` in the trader's account.

    The amount is in the asset's own unit: minor units for the quote currency,
    lots for a product. It may be zero (a sell that is entirely short).
    """

    asset: AssetCode
    amount: int

    def __init__(self, asset: AssetCode, amount: int) -> None:
        # Written out, not generated, for speed, as Order.__init__ is
        # (datn.domain.orders).
        object.__setattr__(self, "asset", asset)
        object.__setattr__(self, "amount", amount)


def required_hold(config: RiskConfig, context: RiskContext) -> Hold:
    """The hold to place for an order that :func:`check_order` accepted.

    With cash cover off, a buy's hold may exceed the available cash, and what
    to do with a hold the ledger cannot place is the caller's decision. Raises
    :class:`DomainError` for a market buy without a reference price, which the
    checks never accept.
    """
    order = context.order
    if order.side is Side.SELL:
        held_lots = min(order.quantity_lots, context.available_position_lots)
        return Hold(order.product_id, held_lots)
    price_ticks = worst_price_ticks(config, context)
    if price_ticks is None:
        raise DomainError(
            "reference_price_ticks", "no_reference_price", "a market buy cannot be costed"
        )
    cost_minor = context.product.notional_minor(order.quantity_lots, price_ticks)
    return Hold(context.product.quote_currency, cost_minor)
