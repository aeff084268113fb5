"""Node identity and signatures (Ed25519, through PyNaCl and libsodium).

A node is its Ed25519 public key; its id is that key in lowercase hex. The key
pair is derived from a 32-byte seed that the caller supplies, so nothing here
draws randomness and a simulated network is reproducible from one seed.

Every signature names its purpose: the signed bytes are the purpose tag, a NUL,
then the data. A signature made for one purpose (a batch of messages) can then
never be passed off as one made for another (a handshake challenge, a
settlement statement), even when an attacker chooses the data.
"""

from __future__ import annotations

import enum
import re
from typing import Final

import nacl.exceptions
import nacl.signing
from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519

from datn.protocol.messages import NodeId
from datn.wire.errors import LocalProtocolError, RemoteProtocolError

SEED_BYTES: Final = 32
PUBLIC_KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64

_NODE_ID: Final = re.compile(r"[0-9a-f]{64}")


class Purpose(enum.Enum):
    """What a signature vouches for. Tags contain no NUL, so prefixes cannot collide."""

    BATCH = b"datn/batch/v1"
    EVIDENCE = b"datn/evidence/v1"
    """The seal a node puts on an evidence bundle it exported."""
    HANDSHAKE = b"datn/handshake/v1"
    """A node's answer to a peer's challenge when a link opens."""
    ACK = b"datn/ack/v1"
    """A receiver's word on which of a link's frames it has kept durably."""


class NodeKey:
    """A node's signing key. Its repr shows the public id only, never the seed."""

    __slots__ = ("_signing", "node_id", "public_key")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
            raise LocalProtocolError("bad_seed", f"a seed is {SEED_BYTES} bytes")
        self._signing = nacl.signing.SigningKey(seed)
        self.public_key: bytes = self._signing.verify_key.encode()
        self.node_id: NodeId = node_id_from_public_key(self.public_key)

    def __repr__(self) -> str:
        return f"NodeKey(node_id={self.node_id!r})"

    def sign(self, purpose: Purpose, data: bytes) -> bytes:
        """The 64-byte signature of ``data`` for ``purpose``."""
        return self._signing.sign(_signed_bytes(purpose, data)).signature


def verify(node_id: NodeId, purpose: Purpose, data: bytes, signature: bytes) -> None:
    """Raise RemoteProtocolError unless ``node_id`` signed ``data`` for ``purpose``."""
    verify_key = nacl.signing.VerifyKey(public_key_from_node_id(node_id))
    try:
        verify_key.verify(_signed_bytes(purpose, data), signature)
    # libsodium also refuses a key that is no curve point, or of small order,
    # and a non-canonical signature: all of them are simply bad signatures.
    except nacl.exceptions.CryptoError:
        raise RemoteProtocolError("bad_signature", f"not signed by {node_id}") from None


def node_id_from_public_key(public_key: bytes) -> NodeId:
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise LocalProtocolError("bad_node_id", f"a public key is {PUBLIC_KEY_BYTES} bytes")
    return NodeId(public_key.hex())


def public_key_from_node_id(node_id: NodeId) -> bytes:
    """The raw public key; the id must be 64 lowercase hex digits."""
    if not isinstance(node_id, str) or _NODE_ID.fullmatch(node_id) is None:
        raise LocalProtocolError("bad_node_id", f"not a node id: {node_id!r}")
    return bytes.fromhex(node_id)


def is_public_key(raw: bytes) -> bool:
    """Whether ``raw`` is an Ed25519 public key some private key has: a
    point of the curve's group, not one of small order (all zeros, say),
    which no signature could ever verify against."""
    if len(raw) != 32:
        return False
    try:
        crypto_sign_ed25519_pk_to_curve25519(raw)
    except RuntimeError:
        return False
    return True


def check_node_id(node_id: NodeId) -> NodeId:
    """Return ``node_id`` if it is well formed."""
    public_key_from_node_id(node_id)
    return node_id


def _signed_bytes(purpose: Purpose, data: bytes) -> bytes:
    return purpose.value + b"\x00" + data
