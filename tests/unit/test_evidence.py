"""Evidence bundles: signed frames between two nodes, verified trusting neither.

The bundles here are built by hand, frame by frame, with the wire's own keys,
links and seals, so each test says exactly which signed messages a bundle
holds; tests/sim/test_evidence_sim.py exports bundles from simulated runs.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datn.clearing.settlement import statement_hash
from datn.domain import USD, ProductKind, ProductSpec, Side
from datn.evidence import (
    BundleHeader,
    EvidenceLog,
    EvidenceRecord,
    Party,
    Problem,
    Verification,
    export_bundle,
    is_evidence,
    verify_bundle,
    write_bundle,
)
from datn.protocol.clock import Hlc
from datn.protocol.messages import (
    Acceptance,
    Advert,
    BondAnswer,
    BondRequest,
    Confirmation,
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
)
from datn.wire import NodeKey, OutboundLink, Purpose, seal
from datn.wire.keys import SIGNATURE_BYTES

A = NodeKey(bytes([1]) * 32)
B = NodeKey(bytes([2]) * 32)
C = NodeKey(bytes([3]) * 32)
# Simulated nodes call themselves n000, n001 in messages; keys are in headers only.
NAMES = {A.node_id: "n000", B.node_id: "n001", C.node_id: "n002"}
KEYS = {A.node_id: A, B.node_id: B, C.node_id: C}
XYZ = ProductSpec("XYZ", ProductKind.SHARE, USD.code)
ACME = ProductSpec("ACME", ProductKind.SHARE, USD.code, tick_size_minor=5, lot_size=10)
PRODUCTS = (XYZ, ACME)


def party(key: NodeKey, named: bool = True) -> Party:
    return Party(key.node_id, NAMES[key.node_id] if named else key.node_id)


class Wire:
    """Two or more nodes' links, signing every message into a frame and logging
    it as the nodes' evidence log would."""

    def __init__(self) -> None:
        self.log = EvidenceLog()
        self.links: dict[tuple[NodeKey, NodeKey], OutboundLink] = {}
        self.time_ms = 0

    def send(self, sender: NodeKey, receiver: NodeKey, *messages: Message) -> bytes:
        link = self.links.setdefault(
            (sender, receiver), OutboundLink(sender.node_id, receiver.node_id)
        )
        self.time_ms += 10
        batch = link.batch((Hlc(1_795_000_000_000 + self.time_ms, 0), m) for m in messages)
        frame = seal(sender, batch)
        self.log.add(self.time_ms, sender.node_id, receiver.node_id, frame)
        return frame

    def trade(
        self,
        holder: NodeKey,
        originator: NodeKey,
        lock_id: int,
        product: ProductSpec,
        side: Side,
        price: int,
        lots: int,
        *,
        accept: bool = True,
        offer: bool = True,
    ) -> Confirmation:
        """The four signed steps of a cross-node trade; ``side`` is the originator's."""
        request = lock_id + 1_000
        limit = price + 5 if side is Side.BUY else price - 5
        self.send(
            originator,
            holder,
            OrderBroadcast(request, 0, product.product_id, side, lots, limit, False),
        )
        if offer:
            offered = Offer(lock_id, price, lots, Hlc(1, 0), 250)
            self.send(holder, originator, PotentialTrades(request, 0, (offered,)))
        if accept:
            self.send(originator, holder, Acceptance(lock_id, lots))
        confirmation = Confirmation(lock_id, lock_id + 7, product.product_id, side, price, lots)
        self.send(holder, originator, confirmation)
        return confirmation

    def records(self) -> list[EvidenceRecord]:
        return list(self.log)


def bundle_of(
    records: list[EvidenceRecord],
    *,
    exporter: NodeKey = A,
    products: tuple[tuple[str, ProductSpec], ...] | None = None,
    named: bool = True,
    from_ms: int = 0,
    to_ms: int | None = None,
) -> bytes:
    """A bundle of exactly ``records`` between A and B, sealed by ``exporter``."""
    nodes = sorted((party(A, named), party(B, named)), key=lambda p: p.name)
    specs = products if products is not None else tuple((p.product_id, p) for p in PRODUCTS)
    header = BundleHeader(
        exporter.node_id, (nodes[0], nodes[1]), from_ms, to_ms, tuple(sorted(specs))
    )
    return write_bundle(exporter, header, records)


def statement_of(
    low: str, high: str, cycle: int, locks: tuple[int, ...], net: tuple[tuple[str, int], ...]
) -> StatementProposal:
    """A proposal; ``net`` in any order (a statement sorts it by asset)."""
    return StatementProposal(Statement(NodeId(low), NodeId(high), cycle, locks, tuple(sorted(net))))


def two_trades(wire: Wire) -> None:
    """A (n000) buys 3 lots of ACME from B at 100 ticks: 3 x 10 x 100 x 5 =
    15,000 cents. B sells 2 XYZ to A's resting bid at 50: A pays 100 cents."""
    wire.trade(B, A, 11, ACME, Side.BUY, 100, 3)
    wire.trade(A, B, 22, XYZ, Side.SELL, 50, 2)


def lines_of(data: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in data.splitlines()]


def first(verification: Verification) -> Problem:
    assert verification.problems, "the bundle verified"
    return verification.problems[0]


# --- a valid bundle ---------------------------------------------------------


def test_a_valid_bundle_verifies_and_recomputes_what_each_side_owes() -> None:
    wire = Wire()
    wire.send(A, B, BondRequest(5, USD.code, 50_000, False))
    wire.send(B, A, BondAnswer(5, ""))
    two_trades(wire)
    wire.send(A, B, Release(33))
    wire.send(B, A, Refusal(44, "expired"))
    net = ((ACME.product_id, -3), (USD.code, 15_100), (XYZ.product_id, -2))
    proposal = statement_of("n000", "n001", 1, (11, 22), net)
    wire.send(A, B, proposal)
    wire.send(B, A, StatementAnswer(1, statement_hash(proposal.statement), ""))

    result = verify_bundle(bundle_of(wire.records()))

    assert result.ok, result.problems
    assert result.records == result.frames_verified == 14
    assert [(t.lock_id, t.holder, t.originator) for t in result.trades] == [
        (11, "n001", "n000"),
        (22, "n000", "n001"),
    ]
    assert result.owed == {
        "n000": {USD.code: 15_000 + 100},
        "n001": {ACME.product_id: 3, XYZ.product_id: 2},
    }
    assert result.net == dict(net)
    assert (result.statements, result.agreed, result.unsettled) == (1, 1, {})
    assert result.bonds == {"n000": {USD.code: 50_000}}
    assert result.exporter == "n000"


def test_the_bundle_is_canonical_json_lines_header_records_seal() -> None:
    wire = Wire()
    two_trades(wire)
    data = bundle_of(wire.records())
    assert data.endswith(b"\n") and data.isascii()
    lines = lines_of(data)
    header, records, sealed = lines[0], lines[1:-1], lines[-1]
    assert header["kind"] == "header" and header["format"] == "datn-evidence"
    assert header["version"] == 1
    assert header["nodes"] == [
        {"id": A.node_id, "name": "n000"},
        {"id": B.node_id, "name": "n001"},
    ]
    assert [r["n"] for r in records] == list(range(8))
    assert records[0]["sender"] == A.node_id and records[0]["receiver"] == B.node_id
    assert sealed["kind"] == "seal" and sealed["records"] == 8
    for raw in data.splitlines():
        assert json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode() == raw


def test_real_nodes_name_themselves_by_their_ids() -> None:
    wire = Wire()
    two_trades(wire)
    low, high = sorted([A.node_id, B.node_id])
    deltas = {A.node_id: 15_100, B.node_id: -15_100}
    net = ((ACME.product_id, -3 if low == A.node_id else 3), (USD.code, deltas[low]))
    net += ((XYZ.product_id, -2 if low == A.node_id else 2),)
    sender = KEYS[low]
    proposal = statement_of(low, high, 1, (11, 22), net)
    wire.send(sender, KEYS[high], proposal)
    result = verify_bundle(bundle_of(wire.records(), named=False))
    assert result.ok, result.problems
    assert result.statements == 1


def test_what_is_evidence() -> None:
    offer = Offer(1, 1, 1, Hlc(0, 0), 1)
    assert is_evidence(PotentialTrades(1, 0, (offer,)))
    assert not is_evidence(PotentialTrades(1, 0, ()))
    assert is_evidence(Acceptance(1, 1)) and is_evidence(StatementAnswer(1, "0" * 64, ""))
    assert not is_evidence(Heartbeat(1, None, 1, 0))
    assert not is_evidence(Advert(1, "P", Side.BUY, 1, 1, Hlc(0, 0), 1))


# --- what verify refuses ----------------------------------------------------


def test_a_frame_signed_by_another_key_is_named() -> None:
    wire = Wire()
    two_trades(wire)
    records = wire.records()
    forged = records[3].frame[:-SIGNATURE_BYTES]
    forged += C.sign(Purpose.BATCH, forged)
    records[3] = records[3]._replace(frame=forged)
    result = verify_bundle(bundle_of(records))
    assert first(result).where == "record 3"
    assert "bad_signature" in first(result).what
    # The trade it confirmed does not count.
    assert [t.lock_id for t in result.trades] == [22]


def test_a_frame_between_other_nodes_is_named() -> None:
    wire = Wire()
    two_trades(wire)
    wire.send(A, C, Acceptance(77, 1))
    result = verify_bundle(bundle_of(wire.records()))
    assert first(result) == Problem(
        "record 8", f"frame from {A.node_id} to {C.node_id} is not between the bundle's nodes"
    )


def test_a_confirmation_without_the_originators_acceptance_does_not_count() -> None:
    wire = Wire()
    wire.trade(B, A, 11, ACME, Side.BUY, 100, 3, accept=False)
    result = verify_bundle(bundle_of(wire.records()))
    assert result.problems == [
        Problem(
            "record 2",
            "lock 11: confirmed by n001, but no acceptance signed by n000 is in the bundle",
        )
    ]
    assert result.trades == [] and result.net == {}


def test_a_confirmation_of_a_lock_never_offered_does_not_count() -> None:
    wire = Wire()
    wire.trade(B, A, 11, ACME, Side.BUY, 100, 3, offer=False)
    result = verify_bundle(bundle_of(wire.records()))
    assert first(result) == Problem(
        "record 2", "lock 11: confirmed by n001, but no offer of it signed by n001 is in the bundle"
    )
    assert result.trades == []


@pytest.mark.parametrize(
    ("confirmation", "fault"),
    [
        (Confirmation(11, 1, ACME.product_id, Side.BUY, 101, 3), "offered at 100"),
        (Confirmation(11, 1, ACME.product_id, Side.BUY, 100, 2), "n000 accepted [3]"),
        (Confirmation(11, 1, XYZ.product_id, Side.BUY, 100, 3), "but n000 broadcast buy"),
        (Confirmation(11, 1, ACME.product_id, Side.SELL, 100, 3), "but n000 broadcast buy"),
    ],
)
def test_a_confirmation_on_other_terms_than_offered_and_accepted_is_named(
    confirmation: Confirmation, fault: str
) -> None:
    wire = Wire()
    wire.send(A, B, OrderBroadcast(1_011, 0, ACME.product_id, Side.BUY, 3, 105, False))
    wire.send(B, A, PotentialTrades(1_011, 0, (Offer(11, 100, 3, Hlc(1, 0), 250),)))
    wire.send(A, B, Acceptance(11, 3))
    wire.send(B, A, confirmation)
    result = verify_bundle(bundle_of(wire.records()))
    assert first(result).where == "record 3"
    assert fault in first(result).what
    assert result.trades == []


def test_a_holder_that_confirms_and_refuses_one_lock_is_named() -> None:
    wire = Wire()
    wire.trade(B, A, 11, ACME, Side.BUY, 100, 3)
    wire.send(B, A, Refusal(11, "expired"))
    result = verify_bundle(bundle_of(wire.records()))
    assert first(result) == Problem(
        "record 3", "lock 11: n001 both confirmed and refused it (refusal in record 4)"
    )


def test_a_statement_whose_net_does_not_match_its_trades_is_named() -> None:
    wire = Wire()
    two_trades(wire)
    wire.send(A, B, statement_of("n000", "n001", 1, (11, 22), ((USD.code, 15_100),)))
    result = verify_bundle(bundle_of(wire.records()))
    assert first(result).where == "record 8"
    assert "statement of cycle 1 nets [('USD', 15100)], its trades net" in first(result).what


def test_a_statement_listing_a_trade_not_in_the_bundle_is_named() -> None:
    wire = Wire()
    two_trades(wire)
    wire.send(A, B, statement_of("n000", "n001", 1, (11, 99), ((USD.code, 1),)))
    result = verify_bundle(bundle_of(wire.records()))
    assert first(result) == Problem(
        "record 8", "statement of cycle 1 lists locks with no verified trade in the bundle: [99]"
    )


def test_a_statement_proposed_by_the_higher_id_or_for_other_nodes_is_named() -> None:
    wire = Wire()
    wire.trade(B, A, 11, XYZ, Side.BUY, 100, 1)
    net = ((USD.code, 100), (XYZ.product_id, -1))
    wire.send(B, A, statement_of("n000", "n001", 1, (11,), net))
    wire.send(A, B, statement_of("n000", "n002", 2, (11,), net))
    result = verify_bundle(bundle_of(wire.records()))
    assert result.problems == [
        Problem("record 4", "statement of cycle 1 proposed by n001"),
        Problem("record 5", "statement of n000 and n002, not of this pair"),
    ]


def test_an_answer_agreeing_to_another_statement_is_named() -> None:
    wire = Wire()
    wire.trade(B, A, 11, XYZ, Side.BUY, 100, 1)
    net = ((USD.code, 100), (XYZ.product_id, -1))
    proposal = statement_of("n000", "n001", 1, (11,), net)
    wire.send(A, B, proposal)
    wire.send(B, A, StatementAnswer(1, "ab" * 32, ""))
    result = verify_bundle(bundle_of(wire.records()))
    assert first(result).where == "record 5"
    assert first(result).what.startswith("agrees to statement abab")
    assert result.agreed == 0 and result.unsettled == dict(net)


def test_a_trade_settled_twice_is_named() -> None:
    wire = Wire()
    wire.trade(B, A, 11, XYZ, Side.BUY, 100, 1)
    net = ((USD.code, 100), (XYZ.product_id, -1))
    for cycle in (1, 2):
        proposal = statement_of("n000", "n001", cycle, (11,), net)
        wire.send(A, B, proposal)
        wire.send(B, A, StatementAnswer(cycle, statement_hash(proposal.statement), ""))
    result = verify_bundle(bundle_of(wire.records()))
    assert result.problems == [Problem("record 7", "lock 11 settled twice: cycles 1 and 2")]


def test_a_trade_under_the_id_of_the_other_nodes_lock_is_named() -> None:
    wire = Wire()
    wire.trade(A, B, 11, XYZ, Side.SELL, 50, 2)
    # B, holding now, confirms a trade under the id A's lock had.
    wire.trade(B, A, 11, ACME, Side.BUY, 100, 3)
    result = verify_bundle(bundle_of(wire.records()))
    assert result.problems == [
        Problem(
            "record 7",
            "lock 11: n001 confirmed a trade under the id of n000's lock (record 3): "
            "a statement could not say which of the two it settles",
        )
    ]
    assert [(t.lock_id, t.holder) for t in result.trades] == [(11, "n000")]


def test_a_product_spec_that_does_not_hash_to_its_id_is_refused() -> None:
    wire = Wire()
    wire.trade(B, A, 11, ACME, Side.BUY, 100, 3)
    lying = ACME.product_id[:-4] + "0000"
    products = ((lying, ACME), (XYZ.product_id, XYZ))
    result = verify_bundle(bundle_of(wire.records(), products=products))
    assert first(result) == Problem(
        "header", f"product {lying}: its spec hashes to {ACME.product_id}, not to its id"
    )
    # Without a spec there is no notional: the trade does not count.
    assert result.problems[1] == Problem(
        "record 3", f"lock 11: product {ACME.product_id} has no spec in the header"
    )


def test_a_bundle_sealed_by_a_third_node_is_refused() -> None:
    wire = Wire()
    two_trades(wire)
    nodes = (party(A), party(B))
    header = BundleHeader(C.node_id, nodes, 0, None, ())
    result = verify_bundle(write_bundle(C, header, wire.records()))
    assert result.problems == [Problem("header", "exporter: must be one of the two nodes")]


def test_a_removed_record_is_named_by_the_record_after_it_and_by_the_seal() -> None:
    wire = Wire()
    two_trades(wire)
    lines = bundle_of(wire.records()).splitlines(keepends=True)
    del lines[3]  # record 2
    result = verify_bundle(b"".join(lines))
    assert [p.where for p in result.problems[:2]] == ["record 2", "record 3"]
    assert any(p.where == "seal" for p in result.problems)


def test_bundles_sealed_by_either_node_verify() -> None:
    wire = Wire()
    two_trades(wire)
    assert verify_bundle(bundle_of(wire.records(), exporter=B)).ok


@settings(max_examples=200)
@given(st.binary(max_size=400))
def test_any_bytes_give_problems_never_an_exception(data: bytes) -> None:
    result = verify_bundle(data)
    assert not result.ok


# --- tampering ---------------------------------------------------------------


def small_bundle() -> bytes:
    """One trade, its statement and the answer: every kind of line, kept small."""
    wire = Wire()
    wire.trade(B, A, 11, XYZ, Side.BUY, 100, 1)
    proposal = statement_of("n000", "n001", 1, (11,), ((USD.code, 100), (XYZ.product_id, -1)))
    wire.send(A, B, proposal)
    wire.send(B, A, StatementAnswer(1, statement_hash(proposal.statement), ""))
    return bundle_of(wire.records(), products=((XYZ.product_id, XYZ),))


SMALL = small_bundle()


def line_labels(data: bytes, position: int) -> set[str]:
    """Where a change at ``position`` must be reported: its line, and for a
    line break (which joins two lines when changed) the line after it too."""
    count = data.count(b"\n")
    line = data[:position].count(b"\n")

    def label(n: int) -> str:
        return "header" if n == 0 else "seal" if n >= count - 1 else f"record {n - 1}"

    labels = {label(line)}
    if data[position : position + 1] == b"\n":
        labels.add(label(line + 1))
    return labels


@pytest.mark.parametrize("frame", ["\\u00e9", "\\u00e9AAA", "not base64!"])
def test_a_frame_that_is_not_base64_is_named(frame: str) -> None:
    lines = SMALL.split(b"\n")
    start = lines[1].index(b'"frame":"') + len(b'"frame":"')
    end = lines[1].index(b'"', start)
    lines[1] = lines[1][:start] + frame.encode() + lines[1][end:]
    result = verify_bundle(b"\n".join(lines))
    assert first(result).where == "record 0"
    assert first(result).what.startswith("frame: not")


def test_the_small_bundle_verifies() -> None:
    result = verify_bundle(SMALL)
    assert result.ok, result.problems
    assert result.agreed == 1


def test_flipping_a_bit_of_any_byte_is_detected_and_names_its_line() -> None:
    """Every position, with the flipped bit going round the seven low ones: the
    low bits turn digits and base64 letters into other valid ones, the higher
    ones into other characters (a byte above 0x7f is simply not ASCII; the
    test below replaces bytes with any value)."""
    for position in range(len(SMALL)):
        tampered = bytearray(SMALL)
        tampered[position] ^= 1 << (position % 7)
        result = verify_bundle(bytes(tampered))
        assert not result.ok, position
        assert first(result).where in line_labels(SMALL, position), (position, result.problems)


@settings(max_examples=250)
@given(st.data())
def test_any_single_byte_replaced_is_detected(data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(SMALL) - 1), label="position")
    value = data.draw(st.integers(0, 255).filter(lambda v: v != SMALL[position]), label="value")
    tampered = bytearray(SMALL)
    tampered[position] = value
    result = verify_bundle(bytes(tampered))
    assert not result.ok
    assert first(result).where in line_labels(SMALL, position)


def test_a_truncated_or_extended_bundle_is_refused() -> None:
    assert not verify_bundle(SMALL[:-1]).ok
    assert not verify_bundle(SMALL + b"\n").ok
    assert not verify_bundle(SMALL + SMALL.splitlines(keepends=True)[1]).ok
    assert verify_bundle(b"") == Verification(
        problems=[Problem("bundle", "too short: a bundle has a header and a seal at least")]
    )


# --- export ------------------------------------------------------------------


def test_export_keeps_the_pairs_evidence_for_the_period_and_what_it_refers_to() -> None:
    wire = Wire()
    wire.trade(B, A, 11, XYZ, Side.BUY, 100, 1)  # records at 10..40 ms
    wire.send(A, C, Acceptance(12, 1))  # another pair: left out
    # Lock 13: offered and accepted before the period, confirmed in it.
    wire.send(A, B, OrderBroadcast(1_013, 0, XYZ.product_id, Side.BUY, 1, 60, False))
    wire.send(B, A, PotentialTrades(1_013, 0, (Offer(13, 60, 1, Hlc(1, 0), 250),)))
    wire.send(A, B, Acceptance(13, 1))  # at 80 ms
    wire.send(A, B, OrderBroadcast(1_014, 0, XYZ.product_id, Side.BUY, 1, 60, False))
    start = wire.time_ms + 1
    wire.send(B, A, Confirmation(13, 5, XYZ.product_id, Side.BUY, 60, 1))
    wire.send(B, A, PotentialTrades(1_015, 0, ()))  # no offer: no evidence
    wire.send(A, B, OrderBroadcast(1_016, 0, XYZ.product_id, Side.BUY, 1, 60, False))
    wire.trade(A, B, 17, XYZ, Side.SELL, 70, 2)
    end = wire.time_ms + 1
    wire.trade(A, B, 18, XYZ, Side.SELL, 70, 2)  # after the period

    data = export_bundle(wire.log, A, party(A), party(B), PRODUCTS, start, end)
    result = verify_bundle(data)

    assert result.ok, result.problems
    assert [(t.lock_id, t.in_period) for t in result.trades] == [(13, True), (17, True)]
    kept = lines_of(data)[1:-1]
    messages = [r["time_ms"] for r in kept]
    # Lock 13's broadcast, offer and acceptance as context; neither broadcast
    # 1014 nor 1016, which nothing answered; then lock 17's four messages.
    assert messages == [60, 70, 80, 100, 130, 140, 150, 160]
    header = lines_of(data)[0]
    assert header["period"] == {"from_ms": start, "to_ms": end}
    assert header["products"] == [{"id": XYZ.product_id, "spec": json.loads(XYZ.canonical_bytes())}]
    # A bought 1 lot from B at 60 (lock 13) and 2 lots from B at 70 (lock 17).
    assert result.net == {USD.code: 60 + 140, XYZ.product_id: -1 - 2}


def test_export_pulls_in_the_trades_a_statement_lists() -> None:
    wire = Wire()
    wire.trade(B, A, 11, XYZ, Side.BUY, 100, 1)
    start = wire.time_ms + 1
    net = ((USD.code, 100), (XYZ.product_id, -1))
    proposal = statement_of("n000", "n001", 1, (11,), net)
    wire.send(A, B, proposal)
    wire.send(B, A, StatementAnswer(1, statement_hash(proposal.statement), ""))
    data = export_bundle(wire.log, B, party(B), party(A), PRODUCTS, start)
    result = verify_bundle(data)
    assert result.ok, result.problems
    assert result.exporter == "n001"
    assert [(t.lock_id, t.in_period) for t in result.trades] == [(11, False)]
    assert (result.agreed, result.net, result.unsettled) == (1, {}, {})


def test_export_refuses_to_seal_for_another_node() -> None:
    with pytest.raises(ValueError, match="cannot seal"):
        export_bundle([], B, party(A), party(B), PRODUCTS)
    with pytest.raises(ValueError, match="two different nodes"):
        export_bundle([], A, party(A), party(A), PRODUCTS)
