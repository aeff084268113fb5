"""The wire form of peer messages: msgspec structs that mirror ``protocol.messages``.

Each struct encodes as a MessagePack array (field names are not sent), and the
message union is tagged by a small integer in the array's first slot. The
constraints on the field types are the validation: a decoder built on these
types refuses anything out of range, so nothing unchecked reaches the core.

The tags and the field order are the wire format. Add a message with a new tag
and never reuse or renumber an old one; changing a field means a new frame
version.
"""

from __future__ import annotations

import enum
from typing import Annotated, Final

import msgspec

from datn.domain.limits import MAX_PRICE_TICKS, MAX_QUANTITY_LOTS
from datn.wire.limits import (
    MAX_ASSETS_PER_STATEMENT,
    MAX_INT64,
    MAX_LOCKS_PER_STATEMENT,
    MAX_NODE_NAME_LENGTH,
    MAX_OFFERS_PER_REPLY,
    MAX_PRODUCT_ID_LENGTH,
    MAX_REASON_LENGTH,
)

# Printable ASCII; ``\Z`` rather than ``$``, which would also match before a
# trailing newline.
_PRINTABLE_NO_SPACE: Final = r"^[!-~]+\Z"
_PRINTABLE: Final = r"^[ -~]+\Z"
_PRINTABLE_OR_EMPTY: Final = r"^[ -~]*\Z"
_SHA256_HEX: Final = r"^[0-9a-f]{64}\Z"
NODE_NAME_PATTERN: Final = _PRINTABLE_NO_SPACE
"""What a node may call itself (or a peer) inside a message: see :data:`NodeName`."""

Id = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT64)]
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT64)]
Millis = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT64)]
PositiveMillis = Annotated[int, msgspec.Meta(ge=1, le=MAX_INT64)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=MAX_INT64)]
# Quantities and prices keep the domain's tighter bounds, so any notional built
# from them still fits 64 bits.
Lots = Annotated[int, msgspec.Meta(ge=1, le=MAX_QUANTITY_LOTS)]
LotsOrZero = Annotated[int, msgspec.Meta(ge=0, le=MAX_QUANTITY_LOTS)]
Ticks = Annotated[int, msgspec.Meta(ge=1, le=MAX_PRICE_TICKS)]
ProductId = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=MAX_PRODUCT_ID_LENGTH, pattern=_PRINTABLE_NO_SPACE),
]
Reason = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_REASON_LENGTH, pattern=_PRINTABLE)
]
# Where the protocol says "no reason" with an empty string.
ReasonOrEmpty = Annotated[
    str, msgspec.Meta(max_length=MAX_REASON_LENGTH, pattern=_PRINTABLE_OR_EMPTY)
]
# An asset is a currency code or a product id, so it is bounded like a product id.
AssetCode = ProductId
Amount = Annotated[int, msgspec.Meta(ge=1, le=MAX_INT64)]
# Symmetric, so that the other side's view of a net (its negation) fits too.
# Zero is in range here; codec refuses it, as no net entry is ever zero.
SignedAmount = Annotated[int, msgspec.Meta(ge=-MAX_INT64, le=MAX_INT64)]
# A node as the core names it inside a message body (a statement's pair, a
# defaulter). A real node uses its id, the hex public key that every frame
# header carries; the simulator's nodes are called ``n000`` and so on, and
# only their frame headers carry keys. So a body accepts any name the core
# does, printable and bounded; who signed a frame is the header's business,
# and a name is bound to a key by whoever reads both (an evidence bundle's
# header, for one).
NodeName = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=MAX_NODE_NAME_LENGTH, pattern=_PRINTABLE_NO_SPACE),
]
Sha256Hex = Annotated[str, msgspec.Meta(pattern=_SHA256_HEX)]


class WireSide(enum.IntEnum):
    """Side as one byte on the wire, independent of how the domain spells it."""

    BUY = 1
    SELL = 2


class _Wire(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """Common options: positional arrays, and no extra trailing elements accepted.
    Subclasses repeat ``frozen=True`` only because mypy does not inherit it."""


class WireHlc(_Wire, frozen=True):
    wall_ms: Millis
    logical: Count


class WireOffer(_Wire, frozen=True):
    lock_id: Id
    price_ticks: Ticks
    quantity_lots: Lots
    priority: WireHlc
    ttl_ms: PositiveMillis


class WireOrderBroadcast(_Wire, frozen=True, tag=1):
    request_id: Id
    round: Count
    product_id: ProductId
    side: WireSide
    quantity_lots: Lots
    limit_price_ticks: Ticks | None
    fill_or_kill: bool


class WirePotentialTrades(_Wire, frozen=True, tag=2):
    request_id: Id
    round: Count
    offers: Annotated[tuple[WireOffer, ...], msgspec.Meta(max_length=MAX_OFFERS_PER_REPLY)]
    # Appended later, with a default: a reply sent without it still decodes.
    limited: ReasonOrEmpty = ""


class WireAcceptance(_Wire, frozen=True, tag=3):
    lock_id: Id
    quantity_lots: Lots


class WireRelease(_Wire, frozen=True, tag=4):
    lock_id: Id


class WireConfirmation(_Wire, frozen=True, tag=5):
    lock_id: Id
    trade_id: Id
    product_id: ProductId
    side: WireSide
    price_ticks: Ticks
    quantity_lots: Lots


class WireRefusal(_Wire, frozen=True, tag=6):
    lock_id: Id
    reason: Reason


class WireAdvert(_Wire, frozen=True, tag=7):
    order_ref: Id
    product_id: ProductId
    side: WireSide
    price_ticks: Ticks
    quantity_lots: LotsOrZero
    priority: WireHlc
    version: Count
    # Appended later, with a default: an advert sent without it still decodes.
    traded_lots: LotsOrZero = 0


class WireTradePrint(_Wire, frozen=True, tag=8):
    product_id: ProductId
    price_ticks: Ticks
    quantity_lots: Lots
    executed: WireHlc


class WireHeartbeat(_Wire, frozen=True, tag=9):
    sent_mono_ms: Millis
    echo_mono_ms: Millis | None
    wall_ms: Millis
    advert_version: Count


class WireBondRequest(_Wire, frozen=True, tag=10):
    bond_id: Id
    asset: AssetCode
    amount: Amount
    withdraw: bool


class WireBondAnswer(_Wire, frozen=True, tag=11):
    bond_id: Id
    reason: ReasonOrEmpty


class WireStatement(_Wire, frozen=True):
    """Constraints between fields (low below high, lock ids and assets strictly
    increasing, no zero net) are beyond these types; codec checks them."""

    low: NodeName
    high: NodeName
    cycle: Count
    lock_ids: Annotated[tuple[Id, ...], msgspec.Meta(max_length=MAX_LOCKS_PER_STATEMENT)]
    net: Annotated[
        tuple[tuple[AssetCode, SignedAmount], ...],
        msgspec.Meta(max_length=MAX_ASSETS_PER_STATEMENT),
    ]


class WireStatementProposal(_Wire, frozen=True, tag=12):
    statement: WireStatement


class WireStatementAnswer(_Wire, frozen=True, tag=13):
    cycle: Count
    statement_hash: Sha256Hex
    reason: ReasonOrEmpty


class WireDefaultNotice(_Wire, frozen=True, tag=14):
    defaulter: NodeName
    claimed: Count
    loss: Count


WireMessage = (
    WireOrderBroadcast
    | WirePotentialTrades
    | WireAcceptance
    | WireRelease
    | WireConfirmation
    | WireRefusal
    | WireAdvert
    | WireTradePrint
    | WireHeartbeat
    | WireBondRequest
    | WireBondAnswer
    | WireStatementProposal
    | WireStatementAnswer
    | WireDefaultNotice
)


class WireEnvelope(_Wire, frozen=True):
    """One message in a batch; sender and receiver are in the frame header."""

    seq: Seq
    sent: WireHlc
    message: WireMessage
