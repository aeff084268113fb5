"""The wire: message codec, signed batches and per-link replay protection.

The strategies at the top build every peer message over its whole valid range;
test_wire_fuzz.py reuses them to build valid frames that it then damages.
"""

from __future__ import annotations

import hashlib
import typing

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datn.domain.limits import MAX_PRICE_TICKS, MAX_QUANTITY_LOTS
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
from datn.wire import (
    Batch,
    Envelope,
    InboundLink,
    InboundLinks,
    LocalProtocolError,
    NodeKey,
    OutboundLink,
    ProtocolError,
    Purpose,
    RemoteProtocolError,
    ReplayWindow,
    check_node_id,
    decode_message,
    encode_message,
    open_frame,
    read_header,
    seal,
    sign_frame,
    verify,
)
from datn.wire.frame import HEADER_BYTES, MIN_FRAME_BYTES
from datn.wire.keys import SIGNATURE_BYTES
from datn.wire.limits import (
    MAX_ASSETS_PER_STATEMENT,
    MAX_BATCH_ENVELOPES,
    MAX_FRAME_BYTES,
    MAX_INT64,
    MAX_LOCKS_PER_STATEMENT,
    MAX_NODE_NAME_LENGTH,
    MAX_OFFERS_PER_REPLY,
    MAX_PRODUCT_ID_LENGTH,
    MAX_REASON_LENGTH,
)

ALICE = NodeKey(bytes([1]) * 32)
BOB = NodeKey(bytes([2]) * 32)
CAROL = NodeKey(bytes([3]) * 32)
NOW = Hlc(1_764_000_000_000, 3)
PRODUCT = "p1" + "ab" * 32  # the shape of a content-addressed product id
LOW, HIGH = sorted([ALICE.node_id, BOB.node_id])
HASH = hashlib.sha256(b"statement").hexdigest()

# --- strategies -------------------------------------------------------------

ids = st.integers(0, MAX_INT64)
positive_ms = st.integers(1, MAX_INT64)
lots = st.integers(1, MAX_QUANTITY_LOTS)
ticks = st.integers(1, MAX_PRICE_TICKS)
sides = st.sampled_from(Side)
hlcs = st.builds(Hlc, ids, ids)
product_ids = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=80
)
reasons = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=64)
reasons_or_none = st.just("") | reasons
offers = st.builds(Offer, ids, ticks, lots, hlcs, positive_ms)
amounts = st.integers(1, MAX_INT64)
net_amounts = st.integers(-MAX_INT64, MAX_INT64).filter(bool)
hex_64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
# A node in a message body: its id, or any printable name (the simulator's n000).
node_names = hex_64 | st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64
)


@st.composite
def statements(draw: st.DrawFn) -> Statement:
    low, high = sorted(draw(st.lists(node_names, min_size=2, max_size=2, unique=True)))
    lock_ids = tuple(sorted(draw(st.sets(ids, max_size=8))))
    net = tuple(sorted(draw(st.dictionaries(product_ids, net_amounts, max_size=4)).items()))
    return Statement(NodeId(low), NodeId(high), draw(ids), lock_ids, net)


MESSAGE_STRATEGIES: dict[type, st.SearchStrategy[Message]] = {
    OrderBroadcast: st.builds(
        OrderBroadcast, ids, ids, product_ids, sides, lots, st.none() | ticks, st.booleans()
    ),
    PotentialTrades: st.builds(
        PotentialTrades, ids, ids, st.lists(offers, max_size=4).map(tuple), reasons_or_none
    ),
    Acceptance: st.builds(Acceptance, ids, lots),
    Release: st.builds(Release, ids),
    Confirmation: st.builds(Confirmation, ids, ids, product_ids, sides, ticks, lots),
    Refusal: st.builds(Refusal, ids, reasons),
    Advert: st.builds(
        Advert, ids, product_ids, sides, ticks, st.integers(0, MAX_QUANTITY_LOTS), hlcs, ids
    ),
    TradePrint: st.builds(TradePrint, product_ids, ticks, lots, hlcs),
    Heartbeat: st.builds(Heartbeat, ids, st.none() | ids, ids, ids),
    BondRequest: st.builds(BondRequest, ids, product_ids, amounts, st.booleans()),
    BondAnswer: st.builds(BondAnswer, ids, reasons_or_none),
    StatementProposal: st.builds(StatementProposal, statements()),
    StatementAnswer: st.builds(StatementAnswer, ids, hex_64, reasons_or_none),
    DefaultNotice: st.builds(DefaultNotice, node_names, ids, ids),
}
messages = st.one_of(*MESSAGE_STRATEGIES.values())


@st.composite
def batches(draw: st.DrawFn, sender: NodeKey = ALICE, receiver: NodeKey = BOB) -> Batch:
    """A batch of new envelopes with distinct, positive sequence numbers."""
    seqs = draw(st.lists(st.integers(1, MAX_INT64), min_size=1, max_size=6, unique=True))
    envelopes = tuple(
        Envelope(sender.node_id, receiver.node_id, seq, draw(hlcs), draw(messages)) for seq in seqs
    )
    return Batch(sender.node_id, receiver.node_id, envelopes)


def one(message: Message, seq: int = 1, sender: NodeKey = ALICE, receiver: NodeKey = BOB) -> Batch:
    envelope = Envelope(sender.node_id, receiver.node_id, seq, NOW, message)
    return Batch(sender.node_id, receiver.node_id, (envelope,))


def of_seqs(*seqs: int, sender: NodeKey = ALICE, receiver: NodeKey = BOB) -> Batch:
    envelopes = tuple(
        Envelope(sender.node_id, receiver.node_id, seq, NOW, Release(seq)) for seq in seqs
    )
    return Batch(sender.node_id, receiver.node_id, envelopes)


def frame_of(*seqs: int, sender: NodeKey = ALICE, receiver: NodeKey = BOB) -> bytes:
    return seal(sender, of_seqs(*seqs, sender=sender, receiver=receiver))


def bob_links() -> InboundLinks:
    """Bob's inbound side, with Alice as his only peer."""
    return InboundLinks(BOB.node_id, [ALICE.node_id])


def typical(kind: type) -> Message:
    """A realistic message of each kind: large random ids, a real product id."""
    lock = 2**62 + 12345
    return {
        OrderBroadcast: OrderBroadcast(lock, 0, PRODUCT, Side.BUY, 100, 5_000, False),
        PotentialTrades: PotentialTrades(lock, 0, (Offer(lock, 5_000, 100, NOW, 250),)),
        Acceptance: Acceptance(lock, 100),
        Release: Release(lock),
        Confirmation: Confirmation(lock, lock, PRODUCT, Side.SELL, 5_000, 100),
        Refusal: Refusal(lock, "lock_expired"),
        Advert: Advert(lock, PRODUCT, Side.SELL, 5_000, 100, NOW, 12),
        TradePrint: TradePrint(PRODUCT, 5_000, 100, NOW),
        Heartbeat: Heartbeat(123_456_789, 123_456_000, 1_764_000_000_000, 12),
        BondRequest: BondRequest(lock, "USD", 5_000_000, False),
        BondAnswer: BondAnswer(lock, ""),
        StatementProposal: StatementProposal(
            Statement(LOW, HIGH, 42, (lock, lock + 7), (("USD", -500_000), (PRODUCT, 100)))
        ),
        StatementAnswer: StatementAnswer(42, HASH, ""),
        DefaultNotice: DefaultNotice(LOW, 5_000_000, 12_345),
    }[kind]


# --- codec ------------------------------------------------------------------


def test_strategies_cover_every_message_type() -> None:
    assert set(MESSAGE_STRATEGIES) == set(typing.get_args(Message))


@pytest.mark.parametrize("kind", list(MESSAGE_STRATEGIES), ids=lambda k: k.__name__)
@settings(max_examples=150)
@given(data=st.data())
def test_every_message_round_trips(kind: type, data: st.DataObject) -> None:
    message = data.draw(MESSAGE_STRATEGIES[kind])
    assert decode_message(encode_message(message)) == message


def test_largest_values_round_trip() -> None:
    many = tuple(
        Offer(MAX_INT64, MAX_PRICE_TICKS, MAX_QUANTITY_LOTS, Hlc(MAX_INT64, MAX_INT64), MAX_INT64)
        for _ in range(MAX_OFFERS_PER_REPLY)
    )
    for message in (
        PotentialTrades(MAX_INT64, MAX_INT64, many),
        Refusal(0, "x" * MAX_REASON_LENGTH),
        TradePrint("P" * MAX_PRODUCT_ID_LENGTH, 1, 1, Hlc(0, 0)),
        Advert(0, "P", Side.BUY, 1, 0, Hlc(0, 0), 0),
        PotentialTrades(0, 0, (), "q" * MAX_REASON_LENGTH),
        BondRequest(MAX_INT64, "A" * MAX_PRODUCT_ID_LENGTH, MAX_INT64, True),
        BondRequest(0, "A", 1, False),
        BondAnswer(MAX_INT64, "r" * MAX_REASON_LENGTH),
        StatementAnswer(MAX_INT64, "f" * 64, "r" * MAX_REASON_LENGTH),
        StatementAnswer(0, "0" * 64, ""),
        StatementProposal(Statement(NodeId("0" * 64), NodeId("0" * 63 + "1"), 0, (), ())),
        StatementProposal(largest_statement()),
        StatementProposal(Statement(NodeId("n000"), NodeId("n001"), 1, (7,), (("USD", 5),))),
        StatementProposal(
            Statement(NodeId("!"), NodeId("~" * MAX_NODE_NAME_LENGTH), 1, (7,), (("USD", 5),))
        ),
        DefaultNotice(NodeId("n007"), 0, 0),
        DefaultNotice(NodeId("f" * 64), MAX_INT64, MAX_INT64),
    ):
        assert decode_message(encode_message(message)) == message
        assert open_frame(seal(ALICE, one(message))) == one(message)


def largest_statement() -> Statement:
    """As many lock ids and assets as a statement may hold; the ids are small, as
    10,000 random 64-bit ids would not fit one frame."""
    lock_ids = (*range(MAX_LOCKS_PER_STATEMENT - 1), MAX_INT64)
    net = tuple(
        (f"{i:02d}" + "A" * (MAX_PRODUCT_ID_LENGTH - 2), MAX_INT64 if i % 2 else -MAX_INT64)
        for i in range(MAX_ASSETS_PER_STATEMENT)
    )
    return Statement(NodeId("0" * 64), NodeId("f" * 64), MAX_INT64, lock_ids, net)


def statement(
    low: str = LOW,
    high: str = HIGH,
    cycle: int = 1,
    lock_ids: tuple[int, ...] = (1, 2),
    net: tuple[tuple[str, int], ...] = (("USD", 5),),
) -> StatementProposal:
    return StatementProposal(Statement(NodeId(low), NodeId(high), cycle, lock_ids, net))


def test_a_reply_from_before_limited_existed_still_decodes() -> None:
    old = msgspec.msgpack.encode([2, 7, 0, []])
    assert decode_message(old) == PotentialTrades(7, 0, (), "")


@pytest.mark.parametrize(
    "message",
    [
        Acceptance(1, 0),
        Acceptance(-1, 1),
        Acceptance(MAX_INT64 + 1, 1),
        Acceptance(1, MAX_QUANTITY_LOTS + 1),
        Acceptance(2**64, 1),  # not even representable in MessagePack
        Release(True),  # a bool is not an id
        Confirmation(1, 1, PRODUCT, Side.BUY, 0, 1),
        Advert(1, PRODUCT, Side.BUY, 1, -1, NOW, 0),
        OrderBroadcast(1, 0, "", Side.BUY, 1, None, False),
        OrderBroadcast(1, 0, "P" * (MAX_PRODUCT_ID_LENGTH + 1), Side.BUY, 1, None, False),
        OrderBroadcast(1, 0, "XYZ\n", Side.BUY, 1, None, False),
        OrderBroadcast(1, 0, "XYZ", "buy", 1, None, False),  # type: ignore[arg-type]
        Refusal(1, "r" * (MAX_REASON_LENGTH + 1)),
        PotentialTrades(1, 0, (Offer(1, 1, 1, NOW, 1),) * (MAX_OFFERS_PER_REPLY + 1)),
        PotentialTrades(1, 0, (Offer(1, 1, 1, NOW, 0),)),
        TradePrint(PRODUCT, 1, 1, Hlc(-1, 0)),
        Heartbeat(0, -5, 0, 0),
        PotentialTrades(1, 0, (), "limited\n"),
        PotentialTrades(1, 0, (), "q" * (MAX_REASON_LENGTH + 1)),
        BondRequest(1, "USD", 0, False),
        BondRequest(1, "USD", -5, True),
        BondRequest(1, "USD", MAX_INT64 + 1, False),
        BondRequest(1, "", 5, False),
        BondRequest(1, "US D", 5, False),
        BondRequest(1, "USD", 5, 1),  # type: ignore[arg-type]
        BondRequest(True, "USD", 5, False),
        BondAnswer(1, "r" * (MAX_REASON_LENGTH + 1)),
        BondAnswer(-1, ""),
        StatementAnswer(1, HASH.upper(), ""),
        StatementAnswer(1, HASH[:-1], ""),
        StatementAnswer(1, HASH + "0", ""),
        StatementAnswer(1, "", ""),
        StatementAnswer(True, HASH, ""),
        statement(low=HIGH, high=LOW),
        statement(high=LOW),
        statement(low="n001", high="n000"),
        statement(low="", high="n001"),
        statement(low="n 000", high="n001"),
        statement(low="n000", high="n\u00e9"),
        statement(high="~" * (MAX_NODE_NAME_LENGTH + 1)),
        statement(cycle=-1),
        statement(lock_ids=(2, 1)),
        statement(lock_ids=(1, 1)),
        statement(lock_ids=(True, 2)),
        statement(lock_ids=(-1, 2)),
        statement(lock_ids=tuple(range(MAX_LOCKS_PER_STATEMENT + 1))),
        statement(net=(("USD", 0),)),
        statement(net=(("USD", 1), ("EUR", 1))),
        statement(net=(("USD", 1), ("USD", 2))),
        statement(net=(("", 1),)),
        statement(net=(("USD", -MAX_INT64 - 1),)),
        statement(net=(("USD", MAX_INT64 + 1),)),
        statement(net=(("USD", 1, 2),)),  # type: ignore[arg-type]
        statement(net=tuple((f"A{i:02d}", 1) for i in range(MAX_ASSETS_PER_STATEMENT + 1))),
        DefaultNotice(NodeId(""), 0, 0),
        DefaultNotice(NodeId("n 1"), 0, 0),
        DefaultNotice(NodeId("n1"), -1, 0),
        DefaultNotice(NodeId("n1"), 0, MAX_INT64 + 1),
        "not a message",
    ],
    ids=lambda message: repr(message)[:100],
)
def test_out_of_range_messages_are_refused_at_the_sender(message: Message) -> None:
    with pytest.raises(LocalProtocolError) as error:
        encode_message(message)
    assert error.value.code == "bad_message"
    with pytest.raises(LocalProtocolError):
        seal(ALICE, one(message))


def raw_statement(**fields: object) -> list[object]:
    """A statement proposal as a peer could encode it, with ``fields`` replaced."""
    base: dict[str, object] = {
        "low": LOW,
        "high": HIGH,
        "cycle": 1,
        "lock_ids": [1, 2],
        "net": [["USD", 5]],
    }
    return [12, list({**base, **fields}.values())]


@pytest.mark.parametrize(
    ("sent", "code"),
    [
        pytest.param([10, 1, "USD", 0, False], "malformed", id="bond-zero"),
        pytest.param([10, 1, "USD", MAX_INT64 + 1, False], "malformed", id="bond-too-large"),
        pytest.param([10, 1, "", 5, False], "malformed", id="bond-empty-asset"),
        pytest.param([10, 1, "USD", 5, 1], "malformed", id="bond-int-for-bool"),
        pytest.param([10, True, "USD", 5, False], "malformed", id="bond-bool-for-id"),
        pytest.param([10, 1, "USD", 5], "malformed", id="bond-short"),
        pytest.param([10, 1, "USD", 5, False, 0], "malformed", id="bond-long"),
        pytest.param([11, 1, "r" * (MAX_REASON_LENGTH + 1)], "malformed", id="answer-reason"),
        pytest.param([11, 1, None], "malformed", id="answer-no-reason"),
        pytest.param([13, 1, HASH.upper(), ""], "malformed", id="hash-upper"),
        pytest.param([13, 1, HASH + "\n", ""], "malformed", id="hash-newline"),
        pytest.param([13, 1, HASH[:-1], ""], "malformed", id="hash-short"),
        pytest.param([13, 1, bytes.fromhex(HASH), ""], "malformed", id="hash-bytes"),
        pytest.param([2, 1, 0, [], "a\tb"], "malformed", id="limited-tab"),
        pytest.param([2, 1, 0, [], "", ""], "malformed", id="reply-long"),
        pytest.param(raw_statement(low="", high="n001"), "malformed", id="empty-name"),
        pytest.param(raw_statement(low="n\t0", high="n001"), "malformed", id="name-tab"),
        pytest.param(raw_statement(high="~" * 65), "malformed", id="name-too-long"),
        pytest.param(raw_statement(low=1, high="n001"), "malformed", id="name-int"),
        pytest.param(raw_statement(low="n001", high="n000"), "bad_statement", id="names-reversed"),
        pytest.param([14, "", 0, 0], "malformed", id="notice-empty-name"),
        pytest.param([14, "n1", -1, 0], "malformed", id="notice-negative"),
        pytest.param([14, "n1", 0], "malformed", id="notice-short"),
        pytest.param(raw_statement(cycle=True), "malformed", id="bool-cycle"),
        pytest.param(
            raw_statement(lock_ids=list(range(MAX_LOCKS_PER_STATEMENT + 1))),
            "malformed",
            id="too-many-locks",
        ),
        pytest.param(
            raw_statement(net=[[f"A{i:02d}", 1] for i in range(MAX_ASSETS_PER_STATEMENT + 1)]),
            "malformed",
            id="too-many-assets",
        ),
        pytest.param(raw_statement(net=[["USD", -(2**63)]]), "malformed", id="net-min"),
        pytest.param(raw_statement(net=[["USD"]]), "malformed", id="net-short-pair"),
        pytest.param(raw_statement(net={"USD": 5}), "malformed", id="net-map"),
        pytest.param(raw_statement(low=HIGH, high=LOW), "bad_statement", id="low-above-high"),
        pytest.param(raw_statement(high=LOW), "bad_statement", id="low-is-high"),
        pytest.param(raw_statement(lock_ids=[2, 1]), "bad_statement", id="unsorted-locks"),
        pytest.param(raw_statement(lock_ids=[1, 1]), "bad_statement", id="repeated-lock"),
        pytest.param(raw_statement(net=[["USD", 0]]), "bad_statement", id="zero-net"),
        pytest.param(
            raw_statement(net=[["USD", 1], ["EUR", 1]]), "bad_statement", id="unsorted-assets"
        ),
        pytest.param(
            raw_statement(net=[["USD", 1], ["USD", -1]]), "bad_statement", id="repeated-asset"
        ),
    ],
)
def test_bad_values_from_a_peer_are_refused(sent: list[object], code: str) -> None:
    data = msgspec.msgpack.encode(sent)
    with pytest.raises(RemoteProtocolError) as error:
        decode_message(data)
    assert error.value.code == code
    # The same message in a frame a known peer signed.
    body = msgspec.msgpack.encode([[1, [NOW.wall_ms, NOW.logical], sent]])
    with pytest.raises(RemoteProtocolError) as error:
        open_frame(sign_frame(ALICE, BOB.node_id, body))
    assert error.value.code == code


def test_the_valid_raw_statement_is_accepted() -> None:
    """The base the refusals above each change in one place."""
    assert decode_message(msgspec.msgpack.encode(raw_statement())) == statement()


def test_a_statement_may_name_its_nodes_as_the_core_does() -> None:
    """A simulated node calls itself ``n000`` in a statement; only frame headers
    carry keys. Names are any printable text up to the length of a node id."""
    sim = raw_statement(low="n000", high="n001")
    assert decode_message(msgspec.msgpack.encode(sim)) == statement(low="n000", high="n001")
    longest = "~" * MAX_NODE_NAME_LENGTH
    assert decode_message(msgspec.msgpack.encode(raw_statement(high=longest))) == statement(
        high=longest
    )


def test_oversized_message_bytes_are_refused_before_parsing() -> None:
    with pytest.raises(RemoteProtocolError) as error:
        decode_message(b"\x00" * (MAX_FRAME_BYTES + 1))
    assert error.value.code == "frame_too_large"


# --- keys and signatures ----------------------------------------------------


def test_node_key_is_derived_from_its_seed_alone() -> None:
    # RFC 8032, section 7.1, test 1: secret key -> public key.
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    key = NodeKey(seed)
    assert key.node_id == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert NodeKey(seed).sign(Purpose.BATCH, b"x") == key.sign(Purpose.BATCH, b"x")
    assert seed.hex() not in repr(key)


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33), "0" * 32])
def test_node_key_needs_a_32_byte_seed(seed: bytes) -> None:
    with pytest.raises(LocalProtocolError) as error:
        NodeKey(seed)
    assert error.value.code == "bad_seed"


def test_verify_accepts_the_signer_only() -> None:
    signature = ALICE.sign(Purpose.BATCH, b"data")
    verify(ALICE.node_id, Purpose.BATCH, b"data", signature)
    for node, data, sig in [
        (BOB.node_id, b"data", signature),
        (ALICE.node_id, b"date", signature),
        (ALICE.node_id, b"data", signature[:-1]),
        (ALICE.node_id, b"data", bytes(SIGNATURE_BYTES)),
    ]:
        with pytest.raises(RemoteProtocolError) as error:
            verify(node, Purpose.BATCH, data, sig)
        assert error.value.code == "bad_signature"


@pytest.mark.parametrize("text", ["", "ab", ALICE.node_id.upper(), ALICE.node_id + "0", "g" * 64])
def test_node_ids_are_64_lowercase_hex_digits(text: str) -> None:
    with pytest.raises(LocalProtocolError) as error:
        check_node_id(NodeId(text))
    assert error.value.code == "bad_node_id"


# --- frames -----------------------------------------------------------------


@settings(max_examples=100)
@given(batches())
def test_signed_batches_round_trip(batch: Batch) -> None:
    frame = seal(ALICE, batch)
    assert open_frame(frame) == batch
    header = read_header(frame)
    assert (header.sender, header.receiver) == (ALICE.node_id, BOB.node_id)


def test_flipping_any_byte_of_a_frame_is_caught() -> None:
    frame = seal(ALICE, one(typical(Confirmation)))
    for index in range(len(frame)):
        for mask in (0x01, 0x80, 0xFF):
            damaged = bytearray(frame)
            damaged[index] ^= mask
            with pytest.raises(RemoteProtocolError) as error:
                open_frame(bytes(damaged))
            assert error.value.code in {"unsupported_version", "bad_signature"}


def test_a_frame_signed_by_another_key_is_refused() -> None:
    # Carol signs a frame and puts Alice's key in its header.
    forged = sign_frame(CAROL, BOB.node_id, encode_body(one(Release(7))))
    forged = forged[:1] + ALICE.public_key + forged[1 + len(ALICE.public_key) :]
    with pytest.raises(RemoteProtocolError) as error:
        open_frame(forged)
    assert error.value.code == "bad_signature"


def test_a_node_cannot_seal_for_another_sender() -> None:
    with pytest.raises(LocalProtocolError) as error:
        seal(CAROL, one(Release(7)))
    assert error.value.code == "wrong_key"


def encode_body(batch: Batch) -> bytes:
    frame = seal(ALICE, batch)
    return frame[HEADER_BYTES:-SIGNATURE_BYTES]


def test_frames_with_another_version_are_refused() -> None:
    frame = frame_of(1)
    with pytest.raises(RemoteProtocolError) as error:
        read_header(b"\x02" + frame[1:])
    assert error.value.code == "unsupported_version"


def test_frame_size_limits() -> None:
    for frame, code in [
        (bytes(MIN_FRAME_BYTES - 1), "frame_too_short"),
        (bytes(MAX_FRAME_BYTES + 1), "frame_too_large"),
    ]:
        with pytest.raises(RemoteProtocolError) as error:
            open_frame(frame)
        assert error.value.code == code


def test_a_batch_too_large_for_one_frame_must_be_split_by_the_sender() -> None:
    full_reply = typical(PotentialTrades)
    assert isinstance(full_reply, PotentialTrades)
    full_reply = PotentialTrades(1, 0, full_reply.offers * MAX_OFFERS_PER_REPLY)
    replies = [(NOW, full_reply)] * 50
    batch = OutboundLink(ALICE.node_id, BOB.node_id).batch(replies)
    with pytest.raises(LocalProtocolError) as error:
        seal(ALICE, batch)
    assert error.value.code == "frame_too_large"


def test_batches_hold_one_to_the_limit_envelopes_of_one_link() -> None:
    with pytest.raises(LocalProtocolError, match="empty_batch"):
        Batch(ALICE.node_id, BOB.node_id, ())
    with pytest.raises(LocalProtocolError, match="too_many_envelopes"):
        of_seqs(*range(1, MAX_BATCH_ENVELOPES + 2))
    stray = Envelope(ALICE.node_id, CAROL.node_id, 2, NOW, Release(2))
    with pytest.raises(LocalProtocolError, match="mixed_link"):
        Batch(ALICE.node_id, BOB.node_id, (*of_seqs(1).envelopes, stray))
    full = of_seqs(*range(1, MAX_BATCH_ENVELOPES + 1))
    assert open_frame(seal(ALICE, full)) == full


@pytest.mark.parametrize("kind", list(MESSAGE_STRATEGIES), ids=lambda k: k.__name__)
def test_frames_are_compact(kind: type) -> None:
    frame = seal(ALICE, one(typical(kind), seq=2**40))
    overhead = HEADER_BYTES + SIGNATURE_BYTES
    assert len(frame) - overhead <= 2 * len(encode_message(typical(kind))) + 24
    if kind is Acceptance:
        assert len(frame) < 200


# --- inbound links ----------------------------------------------------------


def test_a_fresh_batch_from_a_peer_is_delivered() -> None:
    links = bob_links()
    batch = of_seqs(1, 2, 3)
    assert links.receive(seal(ALICE, batch)) == batch.envelopes
    assert links.link(ALICE.node_id).window == ReplayWindow(3)


def test_frames_from_unknown_keys_are_dropped_before_verifying() -> None:
    links = bob_links()
    with pytest.raises(RemoteProtocolError) as error:
        links.receive(frame_of(1, sender=CAROL))
    assert error.value.code == "unknown_sender"
    # The check needs no valid signature: an unknown key costs no verification.
    unsigned = frame_of(1, sender=CAROL)[:-SIGNATURE_BYTES] + bytes(SIGNATURE_BYTES)
    with pytest.raises(RemoteProtocolError, match="unknown_sender"):
        links.receive(unsigned)


def test_frames_for_another_node_are_refused() -> None:
    links = bob_links()
    with pytest.raises(RemoteProtocolError) as error:
        links.receive(frame_of(1, receiver=CAROL))
    assert error.value.code == "wrong_receiver"
    link = InboundLink(BOB.node_id, ALICE.node_id)
    with pytest.raises(RemoteProtocolError, match="wrong_receiver"):
        link.accept(of_seqs(1, receiver=CAROL))
    assert link.window == ReplayWindow()


def test_a_link_accepts_its_own_peer_only() -> None:
    link = InboundLink(BOB.node_id, ALICE.node_id)
    with pytest.raises(RemoteProtocolError) as error:
        link.accept(of_seqs(1, sender=CAROL))
    assert error.value.code == "wrong_sender"
    assert link.window == ReplayWindow()


def test_a_replayed_frame_is_refused_and_changes_nothing() -> None:
    links = bob_links()
    frame = frame_of(1, 2)
    links.receive(frame)
    before = links.link(ALICE.node_id).window
    with pytest.raises(RemoteProtocolError) as error:
        links.receive(frame)
    assert error.value.code == "replayed"
    assert links.link(ALICE.node_id).window == before


def test_one_replayed_envelope_refuses_the_whole_batch() -> None:
    link = InboundLink(BOB.node_id, ALICE.node_id)
    link.accept(of_seqs(1, 5))
    before = link.window
    for seqs in [(6, 5), (2, 3, 1), (7, 7)]:
        with pytest.raises(RemoteProtocolError, match="replayed"):
            link.accept(of_seqs(*seqs))
        assert link.window == before
    # The new numbers of the refused batches were not recorded.
    link.accept(of_seqs(2, 3, 4, 6, 7))
    assert link.window == ReplayWindow(7)


def test_new_numbers_out_of_order_are_accepted_within_the_window() -> None:
    link = InboundLink(BOB.node_id, ALICE.node_id, ReplayWindow(size=4))
    link.accept(of_seqs(3))
    link.accept(of_seqs(4, 2))
    assert link.window == ReplayWindow(0, frozenset({2, 3, 4}), 4)
    with pytest.raises(RemoteProtocolError) as error:
        link.accept(of_seqs(5))
    assert error.value.code == "seq_beyond_window"
    link.accept(of_seqs(1))
    assert link.window == ReplayWindow(4, size=4)
    link.accept(of_seqs(5, 8))
    assert link.window == ReplayWindow(5, frozenset({8}), 4)


def test_a_long_in_order_batch_slides_the_window() -> None:
    link = InboundLink(BOB.node_id, ALICE.node_id, ReplayWindow(size=8))
    link.accept(of_seqs(*range(1, 101)))
    assert link.window == ReplayWindow(100, size=8)


@settings(max_examples=200)
@given(st.lists(st.lists(st.integers(1, 40), min_size=1, max_size=5), max_size=30))
def test_no_sequence_number_is_ever_delivered_twice(deliveries: list[list[int]]) -> None:
    link = InboundLink(BOB.node_id, ALICE.node_id, ReplayWindow(size=8))
    delivered: list[int] = []
    for seqs in deliveries:
        before = link.window
        try:
            delivered += [e.seq for e in link.accept(of_seqs(*seqs))]
        except RemoteProtocolError:
            assert link.window == before
    assert len(delivered) == len(set(delivered))
    window = link.window
    assert set(range(1, window.contiguous + 1)) | window.above == set(delivered)


@settings(max_examples=100)
@given(st.permutations(range(1, 17)))
def test_any_order_within_the_window_delivers_everything(order: list[int]) -> None:
    link = InboundLink(BOB.node_id, ALICE.node_id, ReplayWindow(size=16))
    for seq in order:
        link.accept(of_seqs(seq))
    assert link.window == ReplayWindow(16, size=16)


# --- outbound links ---------------------------------------------------------


def test_outbound_links_number_envelopes_from_where_they_left_off() -> None:
    link = OutboundLink(ALICE.node_id, BOB.node_id, last_seq=41)
    assert link.envelope(NOW, Release(1)).seq == 42
    batch = link.batch([(NOW, Release(2)), (NOW, Release(3))])
    assert [e.seq for e in batch.envelopes] == [43, 44]
    assert {(e.sender, e.receiver) for e in batch.envelopes} == {(ALICE.node_id, BOB.node_id)}


def test_a_refused_outbound_batch_uses_up_no_numbers() -> None:
    link = OutboundLink(ALICE.node_id, BOB.node_id)
    with pytest.raises(LocalProtocolError, match="empty_batch"):
        link.batch([])
    assert link.last_seq == 0
    exhausted = OutboundLink(ALICE.node_id, BOB.node_id, last_seq=MAX_INT64)
    with pytest.raises(LocalProtocolError, match="seq_exhausted"):
        exhausted.envelope(NOW, Release(1))
    assert exhausted.last_seq == MAX_INT64


def test_what_one_node_sends_the_other_receives_once() -> None:
    outbound = OutboundLink(ALICE.node_id, BOB.node_id)
    inbound = bob_links()
    sent = [typical(kind) for kind in MESSAGE_STRATEGIES]
    frames = [seal(ALICE, outbound.batch([(NOW, m)])) for m in sent]
    received = [e.message for frame in reversed(frames) for e in inbound.receive(frame)]
    assert received == list(reversed(sent))
    for frame in frames:
        with pytest.raises(ProtocolError):
            inbound.receive(frame)
