"""Carrying simulated messages as real signed frames.

With this transport every message a node sends is numbered on its link,
encoded, signed with the sender's Ed25519 key and sealed into a frame; the
receiver checks the header, verifies the signature, decodes and validates
the message and refuses replays. So a simulation proves that everything the
core says survives the wire, and that the network's duplicates are stopped
at the link, as they would be between real nodes.

On request (:meth:`SignedTransport.keep_evidence`) it also keeps every frame
that carries part of a trade, a settlement or a bond, as both of its nodes
would: the bytes that were signed, when they were sent and on which link.
From that log ``datn evidence export`` writes the bundle of one pair.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

from datn.evidence import EvidenceLog, Party, is_evidence
from datn.protocol.clock import Hlc
from datn.protocol.messages import Message, NodeId
from datn.wire import InboundLinks, NodeKey, OutboundLink, seal


class SignedTransport:
    """Frames for the links between ``nodes``; keys derive from ``seed``."""

    def __init__(self, seed: int, nodes: Iterable[NodeId]) -> None:
        names = list(nodes)
        self._keys = {
            name: NodeKey(hashlib.sha256(f"datn-sim:{seed}:{name}".encode()).digest())
            for name in names
        }
        self._names = {key.node_id: name for name, key in self._keys.items()}
        key_ids = [key.node_id for key in self._keys.values()]
        self._inbound = {
            name: InboundLinks(key.node_id, [k for k in key_ids if k != key.node_id])
            for name, key in self._keys.items()
        }
        self._outbound: dict[tuple[NodeId, NodeId], OutboundLink] = {}
        self.evidence: EvidenceLog | None = None
        self._clock: Callable[[], int] = lambda: 0

    def key(self, name: NodeId) -> NodeKey:
        """The signing key of the simulated node ``name``."""
        return self._keys[name]

    def party(self, name: NodeId) -> Party:
        """The simulated node ``name`` as an evidence bundle names it."""
        return Party(self._keys[name].node_id, name)

    def keep_evidence(self, clock: Callable[[], int]) -> EvidenceLog:
        """From now on, log every frame that carries evidence, stamped with
        ``clock()`` (the simulation's virtual milliseconds) when it is sent."""
        if self.evidence is None:
            self.evidence = EvidenceLog()
        self._clock = clock
        return self.evidence

    def frame(self, sender: NodeId, receiver: NodeId, hlc: Hlc, message: Message) -> bytes:
        link = self._outbound.get((sender, receiver))
        if link is None:
            link = OutboundLink(self._keys[sender].node_id, self._keys[receiver].node_id)
            self._outbound[(sender, receiver)] = link
        frame = seal(self._keys[sender], link.batch([(hlc, message)]))
        if self.evidence is not None and is_evidence(message):
            self.evidence.add(self._clock(), link.local, link.peer, frame)
        return frame

    def open(self, receiver: NodeId, frame: bytes) -> list[tuple[NodeId, Hlc, Message]]:
        """The messages in ``frame``; raises a ProtocolError for anything bad."""
        envelopes = self._inbound[receiver].receive(frame)
        return [(self._names[e.sender], e.sent, e.message) for e in envelopes]
