"""How a trade is written into a node's ledger.

A trade is one balanced entry: the buyer pays the notional in the quote
currency and receives the lots; the seller the reverse. Either side may be a
local trader (whose open order's hold the entry consumes) or a peer node,
whose account at this node records what it owes or is owed until settlement.
"""

from __future__ import annotations

from collections.abc import Callable

from datn.domain import AssetCode, ProductSpec
from datn.ledger import AccountKey, Entry, EntryId, HoldId, HoldUse, Ledger, Posting

KeyMaker = Callable[[str, str], AccountKey]


def new_key(owner: str, asset: str) -> AccountKey:
    """A freshly built (and checked) account key."""
    return AccountKey(owner, AssetCode(asset))


def trade_entry(
    entry_id: str,
    product: ProductSpec,
    buyer: str,
    seller: str,
    quantity_lots: int,
    price_ticks: int,
    *,
    buyer_hold: str | None,
    seller_hold: str | None,
    ledger: Ledger | None = None,
    key: KeyMaker = new_key,
) -> Entry:
    """The entry for ``buyer`` taking ``quantity_lots`` from ``seller``; the
    holds, if given, are consumed by what each side pays or delivers. With
    ``ledger``, each consumption is capped at what is left of its hold: a
    short sale holds only the lots the seller had, and delivers the rest
    from its credit. ``key`` makes account keys (a node passes its cache of
    checked keys)."""
    notional = product.notional_minor(quantity_lots, price_ticks)
    cash, lots = product.quote_currency, product.product_id
    postings = (
        Posting(key(buyer, cash), -notional),
        Posting(key(seller, cash), notional),
        Posting(key(seller, lots), -quantity_lots),
        Posting(key(buyer, lots), quantity_lots),
    )
    uses = []
    for hold_id, wanted in ((buyer_hold, notional), (seller_hold, quantity_lots)):
        if hold_id is None:
            continue
        amount = wanted
        if ledger is not None:
            hold = ledger.find_hold(hold_id)
            amount = 0 if hold is None else min(wanted, hold.amount)
        if amount:
            uses.append(HoldUse(HoldId(hold_id), amount))
    return Entry(EntryId(entry_id), postings, tuple(uses))
