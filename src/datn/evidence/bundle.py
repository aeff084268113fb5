"""The evidence bundle: its format, its canonical lines, its hash chain and
seal, and the export that chooses which logged frames go in.

The bundle is JSON lines, ASCII, every line in canonical form (sorted keys,
no white space), so the bytes of a bundle are a function of its content::

    {"kind":"header","format":"datn-evidence","version":1,"exporter":ID,
     "nodes":[{"id":ID,"name":NAME},{"id":ID,"name":NAME}],
     "period":{"from_ms":MS,"to_ms":MS|null},
     "products":[{"id":PRODUCT_ID,"spec":SPEC}, ...],"chain":HEX}
    {"kind":"record","n":0,"time_ms":MS,"sender":ID,"receiver":ID,
     "frame":BASE64,"chain":HEX}
    ...
    {"kind":"seal","records":N,"chain":HEX,"signature":HEX}

``nodes`` are the pair, sorted by name: a node's name is what it calls itself
inside messages (its id on a real node; ``n000`` in the simulator), and the
first one is the ``low`` of the pair's settlement statements. ``products``
carries each traded product's canonical spec, so that cash amounts can be
recomputed: a product id is the hash of its spec, which verify checks. A
record is one signed frame, with when the exporter logged it (its own clock,
unsigned) and the frame's two ends. Records before ``from_ms`` are context:
the offer, acceptance, broadcast or proposal behind something in the period.

Integrity, so that any altered byte names the line it is in: each line's
``chain`` is the SHA-256 of the previous line's chain and the line's own
canonical content, and the seal, signed by the exporter (one of the pair),
closes the chain. A frame's own signature is checked on its own, so a record
altered inside its frame fails its sender's signature, whatever the chain says.
The chain and the seal protect what the frames cannot (the header, the times,
the order and number of records); the frames are what verify trusts for
everything it recomputes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from datn.domain.products import ProductSpec
from datn.evidence.log import EvidenceRecord, is_evidence
from datn.protocol.messages import (
    Acceptance,
    BondAnswer,
    BondRequest,
    Confirmation,
    NodeId,
    OrderBroadcast,
    PotentialTrades,
    Refusal,
    Release,
    StatementAnswer,
    StatementProposal,
)
from datn.wire.frame import Envelope, open_frame
from datn.wire.keys import NodeKey, Purpose

FORMAT: Final = "datn-evidence"
VERSION: Final = 1
_CHAIN_START: Final = b"datn-evidence-v1\x00"


@dataclass(frozen=True, slots=True)
class Party:
    """One node of a bundle: its id (public key) and the name it uses for
    itself in messages (the id itself on a real node)."""

    node_id: NodeId
    name: str


@dataclass(frozen=True, slots=True)
class BundleHeader:
    """What a bundle says about itself; ``products`` pairs each product id
    with the spec it stands for."""

    exporter: NodeId
    nodes: tuple[Party, Party]
    from_ms: int
    to_ms: int | None
    products: tuple[tuple[str, ProductSpec], ...]


# ------------------------------------------------------------------ export


def export_bundle(
    log: Iterable[EvidenceRecord],
    key: NodeKey,
    me: Party,
    peer: Party,
    products: Iterable[ProductSpec],
    start_ms: int = 0,
    end_ms: int | None = None,
) -> bytes:
    """The bundle of the frames between ``me`` (whose ``key`` seals it) and
    ``peer`` logged in ``[start_ms, end_ms)``, with the earlier frames that
    what is in the period refers to (the offer and acceptance behind a
    confirmation, the broadcast behind an offer, the proposal an answer
    answers, the trades a statement lists). Broadcasts that no offer answered
    are left out."""
    if key.node_id != me.node_id:
        raise ValueError(f"{key.node_id} cannot seal for {me.node_id}")
    if me.node_id == peer.node_id or me.name == peer.name:
        raise ValueError("a bundle is between two different nodes")
    pair = {me.node_id, peer.node_id}
    logged = sorted(
        (r for r in log if {r.sender, r.receiver} == pair and r.sender != r.receiver),
        key=lambda r: r.time_ms,
    )
    candidates = []
    for r in logged:
        if end_ms is None or r.time_ms < end_ms:
            envelopes = open_frame(r.frame).envelopes
            candidates.append(_Candidate(r, envelopes, _links_of(envelopes)))
    chosen = _choose(candidates, start_ms)
    traded = {
        e.message.product_id
        for c in chosen
        for e in c.envelopes
        if isinstance(e.message, Confirmation)
    }
    specs: dict[str, ProductSpec] = {p.product_id: p for p in products}
    nodes = (me, peer) if me.name < peer.name else (peer, me)
    header = BundleHeader(
        me.node_id,
        nodes,
        start_ms,
        end_ms,
        tuple((pid, specs[pid]) for pid in sorted(traded) if pid in specs),
    )
    return write_bundle(key, header, [c.record for c in chosen])


def write_bundle(key: NodeKey, header: BundleHeader, records: Sequence[EvidenceRecord]) -> bytes:
    """Lay out, chain and seal a bundle exactly as given (see the module
    docstring); :func:`export_bundle` chooses what goes in."""
    if key.node_id != header.exporter:
        raise ValueError(f"{key.node_id} cannot seal for {header.exporter}")
    head: dict[str, object] = {
        "kind": "header",
        "format": FORMAT,
        "version": VERSION,
        "exporter": header.exporter,
        "nodes": [{"id": p.node_id, "name": p.name} for p in header.nodes],
        "period": {"from_ms": header.from_ms, "to_ms": header.to_ms},
        "products": [
            {"id": pid, "spec": json.loads(spec.canonical_bytes())} for pid, spec in header.products
        ],
    }
    chain = chain_start(head)
    lines = [canonical({**head, "chain": chain})]
    for n, record in enumerate(records):
        doc: dict[str, object] = {
            "kind": "record",
            "n": n,
            "time_ms": record.time_ms,
            "sender": record.sender,
            "receiver": record.receiver,
            "frame": base64.b64encode(record.frame).decode("ascii"),
        }
        chain = chain_next(chain, doc)
        lines.append(canonical({**doc, "chain": chain}))
    seal: dict[str, object] = {"kind": "seal", "records": len(records), "chain": chain}
    signature = key.sign(Purpose.EVIDENCE, canonical(seal)).hex()
    lines.append(canonical({**seal, "signature": signature}))
    return b"\n".join(lines) + b"\n"


@dataclass(slots=True)
class _Candidate:
    record: EvidenceRecord
    envelopes: tuple[Envelope, ...]
    links: _Links


@dataclass(slots=True)
class _Links:
    """What a frame's messages give (``provides``) and refer to (``needs``):
    keys such as ``("lock", holder, lock_id)``; ``core`` is False for a frame of
    broadcasts alone, which is kept only if an offer answers it."""

    provides: set[tuple[object, ...]] = field(default_factory=set)
    needs: set[tuple[object, ...]] = field(default_factory=set)
    core: bool = False


def _links_of(envelopes: Iterable[Envelope]) -> _Links:
    links = _Links()
    for e in envelopes:
        m, s, r = e.message, e.sender, e.receiver
        if isinstance(m, OrderBroadcast):
            links.provides.add(("request", s, m.request_id, m.round))
            continue
        if not is_evidence(m):
            continue
        links.core = True
        if isinstance(m, PotentialTrades):
            links.needs.add(("request", r, m.request_id, m.round))
            links.provides.update(("lock", s, o.lock_id) for o in m.offers)
        elif isinstance(m, Acceptance | Release):
            links.provides.add(("lock", r, m.lock_id))
            links.needs.add(("lock", r, m.lock_id))
        elif isinstance(m, Confirmation | Refusal):
            links.provides.add(("lock", s, m.lock_id))
            links.needs.add(("lock", s, m.lock_id))
        elif isinstance(m, StatementProposal):
            links.provides.add(("cycle", m.statement.cycle))
            for holder in (s, r):
                links.needs.update(("lock", holder, lock) for lock in m.statement.lock_ids)
        elif isinstance(m, StatementAnswer):
            links.needs.add(("cycle", m.cycle))
        elif isinstance(m, BondRequest):
            links.provides.add(("bond", s, m.bond_id))
        elif isinstance(m, BondAnswer):
            links.needs.add(("bond", r, m.bond_id))
    return links


def _choose(candidates: list[_Candidate], start_ms: int) -> list[_Candidate]:
    """The period's frames, and whatever earlier frames or broadcasts they need."""
    chosen = [c.record.time_ms >= start_ms and c.links.core for c in candidates]
    wanted: set[tuple[object, ...]] = set()
    for c, keep in zip(candidates, chosen, strict=True):
        if keep:
            wanted |= c.links.needs
    changed = True
    while changed:
        changed = False
        for i, c in enumerate(candidates):
            if not chosen[i] and c.links.provides & wanted:
                chosen[i] = changed = True
                wanted |= c.links.needs
    return [c for c, keep in zip(candidates, chosen, strict=True) if keep]


# ------------------------------------------------------------------ lines
# The writer and the verifier must lay out and chain lines identically, so
# both use these.


def canonical(doc: Mapping[str, object]) -> bytes:
    """A line's bytes: sorted keys, no white space, ASCII; one form per content."""
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def chain_start(header: Mapping[str, object]) -> str:
    """The header's link of the chain, from its content without ``chain``."""
    return hashlib.sha256(_CHAIN_START + canonical(header)).hexdigest()


def chain_next(previous: str, doc: Mapping[str, object]) -> str:
    """A record's link of the chain: the previous link and its own content."""
    return hashlib.sha256(bytes.fromhex(previous) + canonical(doc)).hexdigest()


def without(doc: Mapping[str, object], name: str) -> dict[str, object]:
    """A line's content without one field, as it was before that field was added."""
    return {k: v for k, v in doc.items() if k != name}
