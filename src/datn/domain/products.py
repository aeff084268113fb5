"""Products and their content-addressed ids.

Nodes agree on what a product is without a registry: a product's id is the
SHA-256 of its canonical spec. The canonical form is JSON with sorted keys, no
white space and ASCII only, so two nodes that write the same spec get the same
id, and a spec that differs in any field gets another.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Final

from datn.domain.assets import AssetCode
from datn.domain.errors import DomainError
from datn.domain.limits import (
    MAX_LOT_SIZE,
    MAX_PRICE_TICKS,
    MAX_TICK_SIZE_MINOR,
    check_int,
    check_text,
)

PRODUCT_ID_PREFIX: Final = "p1"
"""Version tag of the canonical form; a new form would get a new prefix."""

_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,31}$")
_ATTRIBUTE_KEY = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_ATTRIBUTES: Final = 16


class ProductKind(enum.Enum):
    SHARE = "share"
    BOND = "bond"
    OPTION = "option"
    FUTURE = "future"
    FUND = "fund"
    OTHER = "other"

    @classmethod
    def parse(cls, text: object) -> ProductKind:
        try:
            return cls(text)
        except ValueError:
            allowed = ", ".join(k.value for k in cls)
            raise DomainError("kind", "unknown_kind", f"must be one of {allowed}") from None


@dataclass(frozen=True, slots=True)
class ProductSpec:
    """What a product is. Prices are quoted per unit in ticks of ``tick_size_minor``
    minor units of ``quote_currency``; quantities are in lots of ``lot_size`` units.

    ``attributes`` carries kind-specific terms (an option's strike and expiry, a
    bond's coupon) as sorted ``(key, value)`` text pairs.
    """

    symbol: str
    kind: ProductKind
    quote_currency: AssetCode
    tick_size_minor: int = 1
    lot_size: int = 1
    attributes: tuple[tuple[str, str], ...] = field(default=())
    product_id: AssetCode = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_text("symbol", self.symbol, 32)
        if not _SYMBOL.fullmatch(self.symbol):
            raise DomainError("symbol", "bad_symbol", "must be capitals, digits, '.', '_' or '-'")
        if not isinstance(self.kind, ProductKind):
            raise DomainError("kind", "unknown_kind", f"must be a ProductKind, got {self.kind!r}")
        if not isinstance(self.quote_currency, str) or not re.fullmatch(
            r"[A-Z]{3}", self.quote_currency
        ):
            raise DomainError("quote_currency", "bad_currency", "must be three capitals")
        check_int("tick_size_minor", self.tick_size_minor, 1, MAX_TICK_SIZE_MINOR)
        check_int("lot_size", self.lot_size, 1, MAX_LOT_SIZE)
        self._check_attributes()
        digest = hashlib.sha256(self.canonical_bytes()).hexdigest()
        object.__setattr__(self, "product_id", AssetCode(f"{PRODUCT_ID_PREFIX}{digest}"))

    def _check_attributes(self) -> None:
        attrs = self.attributes
        if not isinstance(attrs, tuple) or len(attrs) > MAX_ATTRIBUTES:
            raise DomainError(
                "attributes", "bad_attributes", f"must be a tuple of at most {MAX_ATTRIBUTES} pairs"
            )
        keys: list[str] = []
        for pair in attrs:
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise DomainError(
                    "attributes", "bad_attributes", "each attribute is a (key, value) pair"
                )
            key, value = pair
            if not isinstance(key, str) or not _ATTRIBUTE_KEY.match(key):
                raise DomainError("attributes", "bad_attribute_key", f"bad key {key!r}")
            check_text(f"attributes.{key}", value, 64)
            keys.append(key)
        if keys != sorted(set(keys)):
            raise DomainError("attributes", "unsorted_attributes", "keys must be unique and sorted")

    def canonical_bytes(self) -> bytes:
        """The spec as canonical JSON: the input of the product id."""
        doc = {
            "attributes": dict(self.attributes),
            "kind": self.kind.value,
            "lot_size": self.lot_size,
            "quote_currency": self.quote_currency,
            "symbol": self.symbol,
            "tick_size_minor": self.tick_size_minor,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()

    def price_ticks(self, price_minor: int) -> int:
        """Convert a per-unit price in minor units into ticks; refuse one off the tick."""
        check_int("price", price_minor, 1, MAX_PRICE_TICKS * self.tick_size_minor)
        ticks, rest = divmod(price_minor, self.tick_size_minor)
        if rest:
            raise DomainError(
                "price",
                "off_tick",
                f"{price_minor} is not a multiple of the tick {self.tick_size_minor}",
            )
        return ticks

    def notional_minor(self, quantity_lots: int, price_ticks: int) -> int:
        """Cash value of ``quantity_lots`` at ``price_ticks``, in minor units."""
        return quantity_lots * self.lot_size * price_ticks * self.tick_size_minor
