"""What a policy answers: accept, or reject with a reason.

A rejection carries a stable, machine-readable ``code`` that clients and tests
can branch on, and a ``message`` for people that states the numbers involved.
The codes are a ``StrEnum``, so each one compares equal to its snake_case text
and travels over the wire as that text.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, TypeAlias


class Reason(enum.StrEnum):
    """Why an order was rejected. The values are part of the public API."""

    PRODUCT_NOT_LISTED = "product_not_listed"
    MAX_QUANTITY = "max_quantity"
    NO_REFERENCE_PRICE = "no_reference_price"
    PRICE_BAND = "price_band"
    MAX_NOTIONAL = "max_notional"
    ORDER_RATE = "order_rate"
    MAX_OPEN_ORDERS = "max_open_orders"
    INSUFFICIENT_CASH = "insufficient_cash"
    INSUFFICIENT_POSITION = "insufficient_position"
    SHORT_MARGIN = "short_margin"


@dataclass(frozen=True, slots=True)
class Accept:
    """Every policy consulted passed."""


@dataclass(frozen=True, slots=True)
class Reject:
    """A policy refused the order; nothing was changed."""

    code: Reason
    message: str


Decision: TypeAlias = Accept | Reject

ACCEPT: Final = Accept()
