"""Envelopes, batches and the signed frame that carries a batch.

An envelope is one message on one link: sender, receiver, the link's sequence
number, the sender's HLC timestamp and the message. A batch is one or more
envelopes on the same link, and travels as one frame, signed once:

    version (1 byte) | sender key (32) | receiver key (32) | body | signature (64)

The body is the MessagePack array of the envelopes without their sender and
receiver (the header says those once). The signature covers every byte before
it, under :attr:`Purpose.BATCH`. Sender and receiver sit at fixed offsets so a
receiver can drop a frame from an unknown key or for another node before it
spends a signature check; and it checks the signature before it parses the
body, so the parser only ever sees bytes a known peer vouched for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final

import msgspec

from datn.protocol.clock import Hlc
from datn.protocol.messages import Message, NodeId
from datn.wire.codec import (
    decode_checked,
    encode_checked,
    from_wire,
    hlc_from_wire,
    hlc_to_wire,
    to_wire,
)
from datn.wire.errors import LocalProtocolError, RemoteProtocolError
from datn.wire.keys import (
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    NodeKey,
    Purpose,
    node_id_from_public_key,
    public_key_from_node_id,
    verify,
)
from datn.wire.limits import MAX_BATCH_ENVELOPES, MAX_FRAME_BYTES
from datn.wire.schema import WireEnvelope

FRAME_VERSION: Final = 1
HEADER_BYTES: Final = 1 + 2 * PUBLIC_KEY_BYTES
MIN_FRAME_BYTES: Final = HEADER_BYTES + 1 + SIGNATURE_BYTES
"""A header, the shortest MessagePack value, a signature."""

_Body = Annotated[
    tuple[WireEnvelope, ...], msgspec.Meta(min_length=1, max_length=MAX_BATCH_ENVELOPES)
]
_BODY_DECODER: Final = msgspec.msgpack.Decoder(_Body)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message on the link ``sender`` -> ``receiver``."""

    sender: NodeId
    receiver: NodeId
    seq: int
    sent: Hlc
    message: Message


@dataclass(frozen=True, slots=True)
class Batch:
    """Envelopes that travel in one frame: all on one link, at least one, boundedly many."""

    sender: NodeId
    receiver: NodeId
    envelopes: tuple[Envelope, ...]

    def __post_init__(self) -> None:
        if not self.envelopes:
            raise LocalProtocolError("empty_batch", "a batch holds at least one envelope")
        if len(self.envelopes) > MAX_BATCH_ENVELOPES:
            count = len(self.envelopes)
            raise LocalProtocolError("too_many_envelopes", f"{count} > {MAX_BATCH_ENVELOPES}")
        for envelope in self.envelopes:
            if (envelope.sender, envelope.receiver) != (self.sender, self.receiver):
                raise LocalProtocolError(
                    "mixed_link", f"envelope {envelope.seq} is on another link"
                )


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """The unsigned, unverified link of a frame: enough to decide whether to verify it."""

    sender: NodeId
    receiver: NodeId


def seal(key: NodeKey, batch: Batch) -> bytes:
    """Encode ``batch`` and sign it with the sender's ``key``: one frame, ready to send."""
    if key.node_id != batch.sender:
        raise LocalProtocolError("wrong_key", f"{key.node_id} cannot sign for {batch.sender}")
    body = encode_checked(_BODY_DECODER, tuple(_envelope_to_wire(e) for e in batch.envelopes))
    return sign_frame(key, batch.receiver, body)


def sign_frame(key: NodeKey, receiver: NodeId, body: bytes) -> bytes:
    """Lay out and sign a frame around an encoded body. :func:`seal` uses it; tests
    use it to sign bodies that :func:`seal` would refuse to build."""
    header = bytes([FRAME_VERSION]) + key.public_key + public_key_from_node_id(receiver)
    signed = header + body
    if len(signed) + SIGNATURE_BYTES > MAX_FRAME_BYTES:
        size = len(signed) + SIGNATURE_BYTES
        raise LocalProtocolError("frame_too_large", f"{size} > {MAX_FRAME_BYTES} bytes: split it")
    return signed + key.sign(Purpose.BATCH, signed)


def read_header(frame: bytes) -> FrameHeader:
    """Sender and receiver of ``frame``, checked for size and version only."""
    if len(frame) > MAX_FRAME_BYTES:
        raise RemoteProtocolError("frame_too_large", f"{len(frame)} > {MAX_FRAME_BYTES} bytes")
    if len(frame) < MIN_FRAME_BYTES:
        raise RemoteProtocolError("frame_too_short", f"{len(frame)} < {MIN_FRAME_BYTES} bytes")
    if frame[0] != FRAME_VERSION:
        raise RemoteProtocolError("unsupported_version", f"frame version {frame[0]}")
    sender = node_id_from_public_key(frame[1 : 1 + PUBLIC_KEY_BYTES])
    receiver = node_id_from_public_key(frame[1 + PUBLIC_KEY_BYTES : HEADER_BYTES])
    return FrameHeader(sender, receiver)


def open_frame(frame: bytes) -> Batch:
    """Verify and decode a frame. The batch is authentic; whether it is new, and
    for us, is the inbound link's call (see ``wire.link``)."""
    header = read_header(frame)
    signed, signature = frame[:-SIGNATURE_BYTES], frame[-SIGNATURE_BYTES:]
    verify(header.sender, Purpose.BATCH, signed, signature)
    body = decode_checked(_BODY_DECODER, signed[HEADER_BYTES:])
    envelopes = tuple(_envelope_from_wire(header, wire) for wire in body)
    return Batch(header.sender, header.receiver, envelopes)


def _envelope_to_wire(envelope: Envelope) -> WireEnvelope:
    return WireEnvelope(envelope.seq, hlc_to_wire(envelope.sent), to_wire(envelope.message))


def _envelope_from_wire(header: FrameHeader, wire: WireEnvelope) -> Envelope:
    sent = hlc_from_wire(wire.sent)
    return Envelope(header.sender, header.receiver, wire.seq, sent, from_wire(wire.message))
