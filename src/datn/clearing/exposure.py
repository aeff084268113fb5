"""Exposure: what a node stands to lose if a peer stops paying (DESIGN.md section 7).

A node records what it owes each peer and what each peer owes it in that
peer's accounts on its own ledger (``peer:<id>``, one per asset). Cash and
lots owed both ways net at settlement, so what is at risk is their value
marked to the last trade price: positive when this node owes the peer,
negative when the peer owes this node. Exposure to a peer is the part of that
the peer owes, plus the notional of the locks this node holds open for it
(each could become a trade before the peer pays for anything).
"""

from __future__ import annotations

from collections.abc import Mapping

from datn.domain import ProductSpec


def marked_value(
    balances: Mapping[str, int],
    products: Mapping[str, ProductSpec],
    marks: Mapping[str, int],
    currency: str,
) -> int:
    """The peer's position at this node in ``currency`` minor units: its cash
    in that currency plus its lots of every product quoted in it, each at its
    mark. Positive: this node owes the peer; negative: the peer owes it."""
    value = balances.get(currency, 0)
    for product_id, lots in balances.items():
        product = products.get(product_id)
        if product is None or product.quote_currency != currency or not lots:
            continue
        mark = marks.get(product_id)
        if mark is None:
            continue
        notional = product.notional_minor(abs(lots), mark)
        value += notional if lots > 0 else -notional
    return value


def exposure(marked: int, open_lock_notional: int) -> int:
    """What the peer owes, marked, plus the locks held open for it."""
    return max(0, -marked) + open_lock_notional


def obligations(marked: int) -> int:
    """What this node owes the peer, marked (the originator's side of the cap)."""
    return max(0, marked)


def exposure_cap(bond_minor: int, multiple_percent: int) -> int:
    """The most exposure a bond allows: ``multiple_percent`` % of it."""
    return max(0, bond_minor) * multiple_percent // 100
