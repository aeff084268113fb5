"""Conversion between protocol messages and their MessagePack bytes.

The protocol core knows only its frozen dataclasses; this module maps each to
its wire struct and back, and owns the one rule of decoding here: every
failure, whatever the library raised, becomes a :class:`RemoteProtocolError`.
The few rules that relate one field to another (the order of a settlement
statement's ids and assets, its non-zero nets) are beyond the schema's types
and checked here, both ways; a peer that breaks them gets ``bad_statement``.
Encoding checks its own output with the decoder a peer will use, so a message
we built out of range fails here, as our bug, and never reaches the peer.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise
from typing import Final, TypeVar

import msgspec

from datn.domain.orders import Side
from datn.protocol.clock import Hlc
from datn.protocol.messages import (
    Acceptance,
    Advert,
    BondAnswer,
    BondRequest,
    Confirmation,
    DefaultNotice,
    Heartbeat,
    Message,
    NodeId,
    Offer,
    OrderBroadcast,
    PotentialTrades,
    Refusal,
    Release,
    Statement,
    StatementAnswer,
    StatementProposal,
    TradePrint,
)
from datn.wire.errors import LocalProtocolError, RemoteProtocolError
from datn.wire.limits import MAX_FRAME_BYTES
from datn.wire.schema import (
    WireAcceptance,
    WireAdvert,
    WireBondAnswer,
    WireBondRequest,
    WireConfirmation,
    WireDefaultNotice,
    WireHeartbeat,
    WireHlc,
    WireMessage,
    WireOffer,
    WireOrderBroadcast,
    WirePotentialTrades,
    WireRefusal,
    WireRelease,
    WireSide,
    WireStatement,
    WireStatementAnswer,
    WireStatementProposal,
    WireTradePrint,
)

T = TypeVar("T")
Ordered = TypeVar("Ordered", int, str)

_ENCODER: Final = msgspec.msgpack.Encoder()
_MESSAGE_DECODER: Final = msgspec.msgpack.Decoder(WireMessage)

_SIDE_TO_WIRE: Final = {Side.BUY: WireSide.BUY, Side.SELL: WireSide.SELL}
_SIDE_FROM_WIRE: Final = {WireSide.BUY: Side.BUY, WireSide.SELL: Side.SELL}


def encode_message(message: Message) -> bytes:
    """One message alone, e.g. for an outbox or journal entry."""
    return encode_checked(_MESSAGE_DECODER, to_wire(message))


def decode_message(data: bytes) -> Message:
    """The inverse of :func:`encode_message`; bad bytes raise RemoteProtocolError."""
    if len(data) > MAX_FRAME_BYTES:
        raise RemoteProtocolError("frame_too_large", f"{len(data)} > {MAX_FRAME_BYTES} bytes")
    return from_wire(decode_checked(_MESSAGE_DECODER, data))


def encode_checked(decoder: msgspec.msgpack.Decoder[T], value: object) -> bytes:
    """Encode ``value`` and prove that ``decoder`` accepts the result."""
    try:
        data = _ENCODER.encode(value)
        decoder.decode(data)
    except (msgspec.MsgspecError, TypeError, ValueError, OverflowError) as error:
        raise LocalProtocolError("bad_message", str(error)) from None
    return data


def decode_checked(decoder: msgspec.msgpack.Decoder[T], data: bytes) -> T:
    """Decode a peer's bytes; any failure is the peer's, and typed as such."""
    try:
        return decoder.decode(data)
    # msgspec reports invalid UTF-8 in a string as UnicodeDecodeError, not as
    # one of its own errors.
    except (msgspec.MsgspecError, UnicodeDecodeError) as error:
        raise RemoteProtocolError("malformed", str(error)) from None


def to_wire(message: Message) -> WireMessage:
    """The wire struct of a protocol message."""
    match message:
        case OrderBroadcast():
            return _broadcast_to_wire(message)
        case PotentialTrades():
            offers = tuple(_offer_to_wire(offer) for offer in message.offers)
            return WirePotentialTrades(message.request_id, message.round, offers, message.limited)
        case Acceptance():
            return WireAcceptance(message.lock_id, message.quantity_lots)
        case Release():
            return WireRelease(message.lock_id)
        case Confirmation():
            return _confirmation_to_wire(message)
        case Refusal():
            return WireRefusal(message.lock_id, message.reason)
        case Advert():
            return _advert_to_wire(message)
        case TradePrint():
            return _print_to_wire(message)
        case Heartbeat():
            return _heartbeat_to_wire(message)
        case BondRequest():
            return _bond_request_to_wire(message)
        case BondAnswer():
            return WireBondAnswer(message.bond_id, message.reason)
        case StatementProposal():
            return WireStatementProposal(_statement_to_wire(message.statement))
        case StatementAnswer():
            return WireStatementAnswer(message.cycle, message.statement_hash, message.reason)
        case DefaultNotice():
            return WireDefaultNotice(message.defaulter, message.claimed, message.loss)
    raise LocalProtocolError("bad_message", f"not a peer message: {type(message).__name__}")


def from_wire(wire: WireMessage) -> Message:
    """The protocol message of a decoded (hence validated) wire struct."""
    match wire:
        case WireOrderBroadcast():
            return _broadcast_from_wire(wire)
        case WirePotentialTrades():
            offers = tuple(_offer_from_wire(offer) for offer in wire.offers)
            return PotentialTrades(wire.request_id, wire.round, offers, wire.limited)
        case WireAcceptance():
            return Acceptance(wire.lock_id, wire.quantity_lots)
        case WireRelease():
            return Release(wire.lock_id)
        case WireConfirmation():
            return _confirmation_from_wire(wire)
        case WireRefusal():
            return Refusal(wire.lock_id, wire.reason)
        case WireAdvert():
            return _advert_from_wire(wire)
        case WireTradePrint():
            return _print_from_wire(wire)
        case WireHeartbeat():
            return Heartbeat(
                wire.sent_mono_ms, wire.echo_mono_ms, wire.wall_ms, wire.advert_version
            )
        case WireBondRequest():
            return BondRequest(wire.bond_id, wire.asset, wire.amount, wire.withdraw)
        case WireBondAnswer():
            return BondAnswer(wire.bond_id, wire.reason)
        case WireStatementProposal():
            return StatementProposal(_statement_from_wire(wire.statement))
        case WireStatementAnswer():
            return StatementAnswer(wire.cycle, wire.statement_hash, wire.reason)
        case WireDefaultNotice():
            return DefaultNotice(NodeId(wire.defaulter), wire.claimed, wire.loss)


def hlc_to_wire(hlc: Hlc) -> WireHlc:
    return WireHlc(hlc.wall_ms, hlc.logical)


def hlc_from_wire(wire: WireHlc) -> Hlc:
    return Hlc(wire.wall_ms, wire.logical)


def _side_to_wire(side: Side) -> WireSide:
    wire = _SIDE_TO_WIRE.get(side)
    if wire is None:
        raise LocalProtocolError("bad_message", f"not a side: {side!r}")
    return wire


def _broadcast_to_wire(m: OrderBroadcast) -> WireOrderBroadcast:
    side = _side_to_wire(m.side)
    price = m.limit_price_ticks
    return WireOrderBroadcast(
        m.request_id, m.round, m.product_id, side, m.quantity_lots, price, m.fill_or_kill
    )


def _broadcast_from_wire(w: WireOrderBroadcast) -> OrderBroadcast:
    side = _SIDE_FROM_WIRE[w.side]
    price = w.limit_price_ticks
    return OrderBroadcast(
        w.request_id, w.round, w.product_id, side, w.quantity_lots, price, w.fill_or_kill
    )


def _offer_to_wire(o: Offer) -> WireOffer:
    return WireOffer(o.lock_id, o.price_ticks, o.quantity_lots, hlc_to_wire(o.priority), o.ttl_ms)


def _offer_from_wire(w: WireOffer) -> Offer:
    return Offer(w.lock_id, w.price_ticks, w.quantity_lots, hlc_from_wire(w.priority), w.ttl_ms)


def _confirmation_to_wire(m: Confirmation) -> WireConfirmation:
    side = _side_to_wire(m.side)
    return WireConfirmation(
        m.lock_id, m.trade_id, m.product_id, side, m.price_ticks, m.quantity_lots
    )


def _confirmation_from_wire(w: WireConfirmation) -> Confirmation:
    side = _SIDE_FROM_WIRE[w.side]
    return Confirmation(w.lock_id, w.trade_id, w.product_id, side, w.price_ticks, w.quantity_lots)


def _advert_to_wire(m: Advert) -> WireAdvert:
    side = _side_to_wire(m.side)
    priority = hlc_to_wire(m.priority)
    return WireAdvert(
        m.order_ref,
        m.product_id,
        side,
        m.price_ticks,
        m.quantity_lots,
        priority,
        m.version,
        m.traded_lots,
    )


def _advert_from_wire(w: WireAdvert) -> Advert:
    side = _SIDE_FROM_WIRE[w.side]
    priority = hlc_from_wire(w.priority)
    return Advert(
        w.order_ref,
        w.product_id,
        side,
        w.price_ticks,
        w.quantity_lots,
        priority,
        w.version,
        w.traded_lots,
    )


def _print_to_wire(m: TradePrint) -> WireTradePrint:
    executed = hlc_to_wire(m.executed)
    return WireTradePrint(m.product_id, m.price_ticks, m.quantity_lots, executed)


def _print_from_wire(w: WireTradePrint) -> TradePrint:
    return TradePrint(w.product_id, w.price_ticks, w.quantity_lots, hlc_from_wire(w.executed))


def _heartbeat_to_wire(m: Heartbeat) -> WireHeartbeat:
    return WireHeartbeat(m.sent_mono_ms, m.echo_mono_ms, m.wall_ms, m.advert_version)


def _bond_request_to_wire(m: BondRequest) -> WireBondRequest:
    return WireBondRequest(m.bond_id, m.asset, m.amount, m.withdraw)


def _statement_to_wire(m: Statement) -> WireStatement:
    try:
        fault = _statement_fault(m.low, m.high, m.lock_ids, m.net)
    except (TypeError, ValueError):
        # Fields of the wrong type or shape: the decoder check in encoding
        # refuses them, and says which.
        fault = None
    if fault is not None:
        raise LocalProtocolError("bad_message", fault)
    return WireStatement(m.low, m.high, m.cycle, m.lock_ids, m.net)


def _statement_from_wire(w: WireStatement) -> Statement:
    fault = _statement_fault(w.low, w.high, w.lock_ids, w.net)
    if fault is not None:
        raise RemoteProtocolError("bad_statement", fault)
    return Statement(NodeId(w.low), NodeId(w.high), w.cycle, w.lock_ids, w.net)


def _statement_fault(
    low: str, high: str, lock_ids: tuple[int, ...], net: tuple[tuple[str, int], ...]
) -> str | None:
    """What breaks the rules between a statement's fields, or None. Types and
    ranges are the schema's business, checked before or after this."""
    if not low < high:
        return "low must be the lower node id"
    if not _strictly_increasing(lock_ids):
        return "lock ids must be strictly increasing"
    if not _strictly_increasing(asset for asset, _ in net):
        return "assets must be strictly increasing"
    if not all(amount for _, amount in net):
        return "a net amount must not be zero"
    return None


def _strictly_increasing(values: Iterable[Ordered]) -> bool:
    return all(a < b for a, b in pairwise(values))
