"""The messages nodes exchange, as immutable values (DESIGN.md section 4).

They carry no trader identity: only node ids, random request and lock ids,
products, prices and quantities. Encoding, envelopes and signatures live in
``datn.wire``; here a message is just what it says.
"""

from __future__ import annotations

from datn.clearing.settlement import Statement
from datn.domain.orders import Side
from datn.domain.value import NodeId, Value
from datn.protocol.clock import Hlc


class OrderBroadcast(Value, frozen=True):
    """Originator -> peers: this order is looking for the other side.
    ``request_id`` is random per order; ``round`` counts re-broadcasts."""

    request_id: int
    round: int
    product_id: str
    side: Side
    quantity_lots: int
    limit_price_ticks: int | None
    fill_or_kill: bool


class Offer(Value, frozen=True):
    """Part of a resting order, locked for the originator for ``ttl_ms`` on the
    holder's clock, at the resting order's price and time priority."""

    lock_id: int
    price_ticks: int
    quantity_lots: int
    priority: Hlc
    ttl_ms: int


class PotentialTrades(Value, frozen=True):
    """Holder -> originator: the answer to one broadcast round (maybe empty).
    ``limited`` says why the holder offered less than it could have, or
    nothing: a quota or cap of the originator's (``""`` when nothing held
    it back)."""

    request_id: int
    round: int
    offers: tuple[Offer, ...]
    limited: str = ""


class Acceptance(Value, frozen=True):
    """Originator -> holder: I take lock ``lock_id`` for ``quantity_lots``."""

    lock_id: int
    quantity_lots: int


class Release(Value, frozen=True):
    """Originator -> holder: I will not take lock ``lock_id``."""

    lock_id: int


class Confirmation(Value, frozen=True):
    """Holder -> originator: the trade happened, with its terms. ``side`` is the
    originator's side."""

    lock_id: int
    trade_id: int
    product_id: str
    side: Side
    price_ticks: int
    quantity_lots: int


class Refusal(Value, frozen=True):
    """Holder -> originator: lock ``lock_id`` had ended when the acceptance came."""

    lock_id: int
    reason: str


class Advert(Value, frozen=True):
    """Holder -> peers: resting order ``order_ref`` now shows ``quantity_lots``
    (zero: it left the book). ``version`` counts the holder's adverts, so a peer
    can tell when it missed one. ``traded_lots`` is the trade print: lots of
    it that traded, at its price, since the last advert (every trade at a
    node changes one of its resting orders, so the advert of that change
    carries the print to every peer)."""

    order_ref: int
    product_id: str
    side: Side
    price_ticks: int
    quantity_lots: int
    priority: Hlc
    version: int
    traded_lots: int = 0


class TradePrint(Value, frozen=True):
    """Anonymous report of a trade, on its own (the prints of a node's own
    trades ride on its adverts)."""

    product_id: str
    price_ticks: int
    quantity_lots: int
    executed: Hlc


class Heartbeat(Value, frozen=True):
    """Measures round trip and clock offset. ``sent_mono_ms`` is the sender's
    monotonic clock; an answer echoes it back with its own wall clock.
    ``advert_version`` is how many adverts the sender has sent."""

    sent_mono_ms: int
    echo_mono_ms: int | None
    wall_ms: int
    advert_version: int


class BondRequest(Value, frozen=True):
    """Poster -> holder: hold ``amount`` of ``asset`` as my bond with you, or,
    with ``withdraw``, give that much back. ``bond_id`` is random per request;
    a retry repeats it and gets the same answer."""

    bond_id: int
    asset: str
    amount: int
    withdraw: bool


class BondAnswer(Value, frozen=True):
    """Holder -> poster: the recorded answer to a bond request. An empty
    ``reason`` means done: the holder has booked it."""

    bond_id: int
    reason: str


class StatementProposal(Value, frozen=True):
    """Lower id -> higher id: settle this statement."""

    statement: Statement


class StatementAnswer(Value, frozen=True):
    """Higher id -> lower id: the hash of the statement it computed for the
    cycle; an empty ``reason`` means they matched and it moved the amounts."""

    cycle: int
    statement_hash: str
    reason: str


class DefaultNotice(Value, frozen=True):
    """Claimant -> every peer: ``defaulter`` did not settle by the deadline; the
    claimant suspended it, took ``claimed`` from its bond and recorded
    ``loss`` (minor units of the bond asset) as its own."""

    defaulter: NodeId
    claimed: int
    loss: int


Message = (
    OrderBroadcast
    | PotentialTrades
    | Acceptance
    | Release
    | Confirmation
    | Refusal
    | Advert
    | TradePrint
    | Heartbeat
    | BondRequest
    | BondAnswer
    | StatementProposal
    | StatementAnswer
    | DefaultNotice
)

__all__ = [
    "Acceptance",
    "Advert",
    "BondAnswer",
    "BondRequest",
    "Confirmation",
    "DefaultNotice",
    "Heartbeat",
    "Message",
    "NodeId",
    "Offer",
    "OrderBroadcast",
    "PotentialTrades",
    "Refusal",
    "Release",
    "Statement",
    "StatementAnswer",
    "StatementProposal",
    "TradePrint",
]
