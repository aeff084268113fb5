"""Assets: the units a ledger holds.

An asset is either a cash currency (``USD``), counted in its minor unit, or a
product, counted in lots and identified by its product id. Ledgers key accounts
by the asset's code, a plain string, so both kinds share one namespace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NewType

from datn.domain.errors import DomainError
from datn.domain.limits import check_int

AssetCode = NewType("AssetCode", str)

_CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True, slots=True)
class Currency:
    """A cash currency; ``minor_digits`` is 2 for cents."""

    code: AssetCode
    minor_digits: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not _CURRENCY_CODE.match(self.code):
            raise DomainError("code", "bad_currency", f"must be three capitals, got {self.code!r}")
        check_int("minor_digits", self.minor_digits, 0, 8)

    def format_minor(self, amount_minor: int) -> str:
        """Render an amount for people, e.g. ``-12345`` -> ``-123.45 USD``."""
        sign = "-" if amount_minor < 0 else ""
        whole, frac = divmod(abs(amount_minor), 10**self.minor_digits)
        if self.minor_digits == 0:
            return f"{sign}{whole} {self.code}"
        return f"{sign}{whole}.{frac:0{self.minor_digits}d} {self.code}"


USD = Currency(AssetCode("USD"), 2)
