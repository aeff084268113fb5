"""Named bounds on every number that enters the core.

Python integers never overflow, but every amount also has to travel over the
wire and into storage as a signed 64-bit integer, so the edge rejects anything
that could not. Quantity and price bounds are chosen so that a notional
(quantity x lot size x price x tick size) of any accepted order still fits.
"""

from __future__ import annotations

from typing import Final

from datn.domain.errors import DomainError

MAX_AMOUNT_MINOR: Final = 2**63 - 1
"""Largest balance or amount in minor units (signed 64-bit)."""

MAX_QUANTITY_LOTS: Final = 10**12
MAX_PRICE_TICKS: Final = 10**12
MAX_TICK_SIZE_MINOR: Final = 10**6
MAX_LOT_SIZE: Final = 10**6
MAX_ID_LENGTH: Final = 64
"""Longest trader id, client order id or symbol, in characters."""


def check_int(field: str, value: object, low: int, high: int) -> int:
    """Return ``value`` if it is an int (not a bool) in ``[low, high]``."""
    if type(value) is not int:
        raise DomainError(field, "not_integer", f"must be an integer, got {value!r}")
    if value < low:
        code = "not_positive" if low == 1 else "too_small"
        raise DomainError(field, code, f"must be at least {low}, got {value}")
    if value > high:
        raise DomainError(field, "too_large", f"must be at most {high}, got {value}")
    return value


def check_text(field: str, value: object, max_length: int = MAX_ID_LENGTH) -> str:
    """Return ``value`` if it is a non-empty printable string of bounded length."""
    if not isinstance(value, str):
        raise DomainError(field, "not_text", f"must be a string, got {value!r}")
    if not value:
        raise DomainError(field, "empty", "must not be empty")
    if len(value) > max_length:
        raise DomainError(field, "too_long", f"must be at most {max_length} characters")
    if not value.isprintable():
        raise DomainError(field, "not_printable", "must contain printable characters only")
    return value
