"""The control messages of a peer link: the handshake and acknowledgements.

A link is one WebSocket connection that carries frames one way: the node
that has frames to send (the *sender*) dials the peer (the *receiver*). Both
prove their keys when it opens, over fresh challenges:

1. receiver -> sender: ``Hello`` — the protocol version, the receiver's
   public key and a 32-byte challenge;
2. sender -> receiver: ``Proof`` — the sender's public key, its own
   challenge, and its signature over ``"sender"``, the receiver's challenge
   and both keys;
3. receiver -> sender: ``Welcome`` — the receiver's signature over
   ``"receiver"``, the sender's challenge, both keys and the receiver's
   inbound window for this sender (what it has kept durably): the sender
   resends every kept frame the window lacks.

Then the sender sends frames (:mod:`datn.wire.frame`, signed once per batch)
and the receiver answers each durable step with an ``Ack``: its window,
signed and bound to this connection's challenges, so a forged or replayed
acknowledgement can never make the sender drop a frame the receiver lacks.

Each control message is one binary WebSocket message: a kind byte, then a
MessagePack array. Frames start with their version byte (1), which no
control kind uses. Everything here is pure: bytes in, values out; whatever
a peer sends, the only error is a :class:`RemoteProtocolError`.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, TypeVar

import msgspec

from datn.protocol.messages import NodeId
from datn.wire import RemoteProtocolError
from datn.wire.keys import (
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    NodeKey,
    Purpose,
    node_id_from_public_key,
    public_key_from_node_id,
    verify,
)
from datn.wire.limits import MAX_INT64, REPLAY_WINDOW

T = TypeVar("T")

LINK_VERSION: Final = 1
CHALLENGE_BYTES: Final = 32

HELLO: Final = 0x48
PROOF: Final = 0x50
WELCOME: Final = 0x57
ACK: Final = 0x41

_Key = Annotated[bytes, msgspec.Meta(min_length=PUBLIC_KEY_BYTES, max_length=PUBLIC_KEY_BYTES)]
_Challenge = Annotated[bytes, msgspec.Meta(min_length=CHALLENGE_BYTES, max_length=CHALLENGE_BYTES)]
_Signature = Annotated[bytes, msgspec.Meta(min_length=SIGNATURE_BYTES, max_length=SIGNATURE_BYTES)]
_Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT64)]
_Above = Annotated[tuple[_Seq, ...], msgspec.Meta(max_length=REPLAY_WINDOW)]


class Hello(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    version: int
    key: _Key
    challenge: _Challenge


class Proof(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    key: _Key
    challenge: _Challenge
    signature: _Signature


class Window(msgspec.Struct, array_like=True, forbid_unknown_fields=True, frozen=True):
    """Every sequence number up to ``contiguous``, and those in ``above``."""

    contiguous: _Seq = 0
    above: _Above = ()

    def has(self, seq: int) -> bool:
        return seq <= self.contiguous or seq in self.above


class Welcome(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    signature: _Signature
    window: Window


class Ack(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    window: Window
    signature: _Signature


_DECODERS: Final[dict[int, msgspec.msgpack.Decoder[Any]]] = {
    HELLO: msgspec.msgpack.Decoder(Hello),
    PROOF: msgspec.msgpack.Decoder(Proof),
    WELCOME: msgspec.msgpack.Decoder(Welcome),
    ACK: msgspec.msgpack.Decoder(Ack),
}
_ENCODER: Final = msgspec.msgpack.Encoder()
MAX_CONTROL_BYTES: Final = 16 + 9 * REPLAY_WINDOW + SIGNATURE_BYTES
"""The largest control message: an acknowledgement with a full window."""


def encode(kind: int, message: msgspec.Struct) -> bytes:
    return bytes([kind]) + _ENCODER.encode(message)


def decode(kind: int, data: bytes, cls: type[T]) -> T:
    """``data`` as a control message of ``kind``; RemoteProtocolError if it is not."""
    if not isinstance(data, bytes) or not data or data[0] != kind:
        raise RemoteProtocolError("unexpected_message", f"expected control message {kind:#x}")
    if len(data) > MAX_CONTROL_BYTES:
        raise RemoteProtocolError("control_too_large", f"{len(data)} bytes")
    try:
        message = _DECODERS[kind].decode(data[1:])
    except msgspec.MsgspecError as error:
        raise RemoteProtocolError("malformed_control", str(error)) from None
    if not isinstance(message, cls):  # pragma: no cover - the decoder's type
        raise RemoteProtocolError("unexpected_message", type(message).__name__)
    return message


def hello(key: NodeKey, challenge: bytes) -> bytes:
    return encode(HELLO, Hello(LINK_VERSION, key.public_key, challenge))


def read_hello(data: bytes, expected: NodeId) -> Hello:
    """The receiver's hello, refused if it is not ``expected`` (the peer dialled)."""
    message = decode(HELLO, data, Hello)
    if message.version != LINK_VERSION:
        raise RemoteProtocolError("unsupported_version", f"link version {message.version}")
    if node_id_from_public_key(message.key) != expected:
        raise RemoteProtocolError("wrong_peer", "the node at this address has another key")
    return message


def _proof_bytes(challenge: bytes, sender: bytes, receiver: bytes) -> bytes:
    return b"sender" + challenge + sender + receiver


def _welcome_bytes(challenge: bytes, sender: bytes, receiver: bytes, window: Window) -> bytes:
    return b"receiver" + challenge + sender + receiver + _ENCODER.encode(window)


def _ack_bytes(challenges: bytes, sender: bytes, receiver: bytes, window: Window) -> bytes:
    return b"ack" + challenges + sender + receiver + _ENCODER.encode(window)


def proof(key: NodeKey, their: Hello, challenge: bytes) -> bytes:
    signed = _proof_bytes(their.challenge, key.public_key, their.key)
    return encode(PROOF, Proof(key.public_key, challenge, key.sign(Purpose.HANDSHAKE, signed)))


def read_proof(data: bytes, key: NodeKey, challenge: bytes) -> tuple[NodeId, Proof]:
    """The sender's proof of its key, answering ``challenge``: its node id.
    Whether that node is a peer is the caller's call."""
    message = decode(PROOF, data, Proof)
    sender = node_id_from_public_key(message.key)
    signed = _proof_bytes(challenge, message.key, key.public_key)
    verify(sender, Purpose.HANDSHAKE, signed, message.signature)
    return sender, message


def welcome(key: NodeKey, their: Proof, window: Window) -> bytes:
    signed = _welcome_bytes(their.challenge, their.key, key.public_key, window)
    return encode(WELCOME, Welcome(key.sign(Purpose.HANDSHAKE, signed), window))


def read_welcome(data: bytes, key: NodeKey, peer: NodeId, challenge: bytes) -> Window:
    """The receiver's window, once its signature over ``challenge`` checks."""
    message = decode(WELCOME, data, Welcome)
    signed = _welcome_bytes(
        challenge, key.public_key, public_key_from_node_id(peer), message.window
    )
    verify(peer, Purpose.HANDSHAKE, signed, message.signature)
    return message.window


def ack(key: NodeKey, sender: NodeId, challenges: bytes, window: Window) -> bytes:
    """The receiver's signed word that it keeps ``window`` of ``sender``'s
    frames, on the connection ``challenges`` (both, sender's first) name."""
    signed = _ack_bytes(challenges, public_key_from_node_id(sender), key.public_key, window)
    return encode(ACK, Ack(window, key.sign(Purpose.ACK, signed)))


def read_ack(data: bytes, key: NodeKey, peer: NodeId, challenges: bytes) -> Window:
    message = decode(ACK, data, Ack)
    signed = _ack_bytes(challenges, key.public_key, public_key_from_node_id(peer), message.window)
    verify(peer, Purpose.ACK, signed, message.signature)
    return message.window
