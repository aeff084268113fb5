"""What a node keeps as evidence: the signed frames that carry part of a trade,
a settlement or a bond, exactly as they travelled.

Every peer message travels in a frame its sender signed (``datn.wire.frame``),
so the evidence of a message is the exact frame it came in: anyone holding the
frame can check the sender's signature against the sender's node id, which is
its public key. Keeping the bytes rather than the decoded messages is what lets
a third party check them later without trusting the node that kept them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, NamedTuple

from datn.protocol.messages import (
    Acceptance,
    BondAnswer,
    BondRequest,
    Confirmation,
    Message,
    NodeId,
    OrderBroadcast,
    PotentialTrades,
    Refusal,
    Release,
    StatementAnswer,
    StatementProposal,
)

_EVIDENCE_TYPES: Final[frozenset[type]] = frozenset(
    {
        OrderBroadcast,
        PotentialTrades,
        Acceptance,
        Release,
        Confirmation,
        Refusal,
        StatementProposal,
        StatementAnswer,
        BondRequest,
        BondAnswer,
    }
)


def is_evidence(message: Message) -> bool:
    """Whether a frame carrying ``message`` is worth keeping as evidence: any
    part of a trade (a broadcast, because an offer may answer it; an answer
    only if it offers something), of a settlement or of a bond."""
    if type(message) is PotentialTrades:
        return bool(message.offers)
    return type(message) in _EVIDENCE_TYPES


class EvidenceRecord(NamedTuple):
    """One signed frame as its node logged it; ``sender`` and ``receiver`` are
    node ids (public keys), as in the frame's header."""

    time_ms: int
    sender: NodeId
    receiver: NodeId
    frame: bytes


class EvidenceLog:
    """The frames a node sent or received that carry evidence, in logging order."""

    __slots__ = ("records",)

    def __init__(self) -> None:
        self.records: list[EvidenceRecord] = []

    def add(self, time_ms: int, sender: NodeId, receiver: NodeId, frame: bytes) -> None:
        self.records.append(EvidenceRecord(time_ms, sender, receiver, frame))

    def __iter__(self) -> Iterator[EvidenceRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)
