"""Evidence: what two nodes did, in a form a third party can check.

A node's ledger says what it believes it is owed, but a dispute between two
nodes needs something neither of them can rewrite. Every peer message travels
in a frame its sender signed, so a node keeps the frames that carry part of a
trade, a settlement or a bond (``log``), and can export those it exchanged with
one peer over a period as a sealed bundle (``bundle``). Anyone holding the
bundle can then check it, trusting nothing but its bytes (``verify``): the
frames' signatures and the bundle's hash chain show that nothing was altered,
and the trades, obligations and settlement statements are recomputed from the
signed messages alone (DESIGN.md sections 7 and 10).

Evidence is an audit tool, not the wire encoding: it reads signed frames, so it
imports ``datn.wire`` (and ``protocol``, ``clearing`` and ``domain``), while
nothing in the node core or in ``wire`` imports it. The simulator's transport,
the ``datn evidence`` command and the tests do.
"""

from __future__ import annotations

from datn.evidence.bundle import FORMAT, VERSION, BundleHeader, Party, export_bundle, write_bundle
from datn.evidence.log import EvidenceLog, EvidenceRecord, is_evidence
from datn.evidence.verify import Problem, Trade, Verification, verify_bundle

__all__ = [
    "FORMAT",
    "VERSION",
    "BundleHeader",
    "EvidenceLog",
    "EvidenceRecord",
    "Party",
    "Problem",
    "Trade",
    "Verification",
    "export_bundle",
    "is_evidence",
    "verify_bundle",
    "write_bundle",
]
