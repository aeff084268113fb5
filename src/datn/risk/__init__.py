"""Pre-trade risk: pure policies that accept an order or say why not.

A node checks every incoming order before it holds anything or journals it.
The caller builds a :class:`RiskContext`, an immutable snapshot of the order
and of the trader's available cash, positions, marks, reference price and
order counts, and passes it with the node's :class:`RiskConfig` to
:func:`check_order`. The answer is :data:`ACCEPT` or a :class:`Reject` whose
``code`` is a stable :class:`Reason`. Nothing is changed either way: the
policies read their arguments and return a value. For an accepted order,
:func:`required_hold` says what to reserve, so that the next check sees it.

Each policy is also exported alone, and :data:`POLICIES` lists them in the
order :func:`check_order` runs them.
"""

from datn.risk.config import BPS_PER_UNIT, MAX_BPS, RiskConfig
from datn.risk.context import MarkedPosition, RiskContext
from datn.risk.decision import ACCEPT, Accept, Decision, Reason, Reject
from datn.risk.holds import Hold, required_hold
from datn.risk.policies import (
    POLICIES,
    Policy,
    check_cash_cover,
    check_listed_product,
    check_market_protection,
    check_max_notional,
    check_max_open_orders,
    check_max_quantity,
    check_order,
    check_order_rate,
    check_position_cover,
    check_price_band,
    check_short_margin,
)
from datn.risk.valuation import band_edges_ticks, protection_price_ticks, worst_price_ticks

__all__ = [
    "ACCEPT",
    "BPS_PER_UNIT",
    "MAX_BPS",
    "POLICIES",
    "Accept",
    "Decision",
    "Hold",
    "MarkedPosition",
    "Policy",
    "Reason",
    "Reject",
    "RiskConfig",
    "RiskContext",
    "band_edges_ticks",
    "check_cash_cover",
    "check_listed_product",
    "check_market_protection",
    "check_max_notional",
    "check_max_open_orders",
    "check_max_quantity",
    "check_order",
    "check_order_rate",
    "check_position_cover",
    "check_price_band",
    "check_short_margin",
    "protection_price_ticks",
    "required_hold",
    "worst_price_ticks",
]
