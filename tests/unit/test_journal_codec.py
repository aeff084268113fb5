"""Journal entries and node snapshots: written, read back exactly, and refused
with a clear JournalError when what a store hands back is damaged.

The values at the top are realistic and hand-built: a genesis whose config
changes knobs at every level of nesting, two product specs with attributes,
and one entry of every input kind. Two nodes then trade through their cores,
and their real journals and snapshots are stored and restored.
"""

from __future__ import annotations

import hashlib
import typing
from collections import deque
from dataclasses import fields, replace
from functools import cache
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_wire import MESSAGE_STRATEGIES, hlcs, messages, typical

from datn.clearing.config import ClearingConfig
from datn.clearing.quota import QuotaConfig
from datn.domain import USD, ProductKind, ProductSpec, Side, TimeInForce
from datn.protocol.clock import Hlc, Now
from datn.protocol.config import NodeConfig
from datn.protocol.effects import (
    CORE_LOGIC_VERSION,
    AddPeerInput,
    AddProductInput,
    BondInput,
    BondReceivedInput,
    CancelAllInput,
    CancelInput,
    ConfigInput,
    DepositInput,
    Effect,
    FundInput,
    Genesis,
    GenesisInput,
    Input,
    Journal,
    JournalEntry,
    Pay,
    PlaceInput,
    ReceiveInput,
    ReinstateInput,
    RestartInput,
    Send,
    TickInput,
    WithdrawInput,
)
from datn.protocol.messages import (
    Heartbeat,
    Message,
    NodeId,
    Release,
    StatementProposal,
)
from datn.protocol.node import NodeCore, NodeSnapshot
from datn.protocol.venue import OrderRequest
from datn.risk import RiskConfig
from datn.wire import (
    JOURNAL_VERSION,
    SNAPSHOT_FORMAT_VERSION,
    JournalError,
    SnapshotError,
    decode_entry,
    decode_snapshot,
    encode_entry,
    encode_snapshot,
)
from datn.wire import snapshot as snapshot_module
from datn.wire.journal import read_back_difference
from datn.wire.limits import (
    MAX_INT64,
    MAX_JOURNAL_ENTRY_BYTES,
    MAX_JOURNAL_TEXT_LENGTH,
    MAX_SECRET_BYTES,
    MIN_INT64,
)
from datn.wire.snapshot import SNAPSHOT_HEADER_BYTES, SNAPSHOT_MAGIC

A, B, C = NodeId("node-a"), NodeId("node-b"), NodeId("node-c")
NOW = Now(86_400_123, 1_764_000_000_000)
NOW_HLC = Hlc(1_764_000_000_000, 0)

XYZ = ProductSpec("XYZ", ProductKind.SHARE, USD.code, 5, 10, (("isin", "US0000000001"),))
XYZ_CALL = ProductSpec(
    "XYZ-C-100", ProductKind.OPTION, USD.code, 1, 100, (("expiry", "2026-12-18"), ("strike", "100"))
)
LATER = ProductSpec("BND.2030", ProductKind.BOND, USD.code, attributes=(("coupon", "4.5"),))

RISK = RiskConfig(
    listed_products=frozenset({XYZ.product_id, XYZ_CALL.product_id}),
    max_quantity_lots=50_000,
    max_notional_minor=10**12,
    price_band_bps=2_000,
    market_protection_bps=300,
    max_open_orders=500,
    max_orders_per_window=100,
    order_rate_window_ms=2_000,
    position_cover=False,
    short_margin_bps=5_000,
)
CLEARING = ClearingConfig(
    exposure_multiple_percent=150,
    quota=QuotaConfig(max_open_locks=64, broadcast_burst=20, ratio_min_offered_minor=1_000),
    bond_resend_ms=300,
    settlement_cycle_ms=2_000,
    settlement_deadline_ms=120_000,
    default_notice_quorum=3,
)
CONFIG = NodeConfig(
    RISK,
    lock_ttl_ms=400,
    collection_window_ms=80,
    heartbeat_peers=3,
    max_rounds=5,
    targeted_routing=False,
    unreliable_permille=250,
    max_violations_kept=16,
    clearing=CLEARING,
)
GENESIS = Genesis(
    A,
    CONFIG,
    (XYZ, XYZ_CALL),
    (B, C),
    bytes(range(32)),
    ((XYZ.product_id, 5_000), (XYZ_CALL.product_id, 120)),
)
DEPOSIT_AMOUNT = 10_000_000
REQUEST = OrderRequest(
    "trader-7", "client-0001", XYZ.product_id, Side.BUY, 40, 5_010, TimeInForce.IOC
)

INPUTS: dict[type, Input] = {
    GenesisInput: GenesisInput(GENESIS),
    PlaceInput: PlaceInput(REQUEST),
    CancelInput: CancelInput("trader-7", 2**62 + 17),
    CancelAllInput: CancelAllInput("trader-7", XYZ.product_id),
    DepositInput: DepositInput("trader-7", USD.code, DEPOSIT_AMOUNT),
    FundInput: FundInput(USD.code, 50_000_000),
    BondInput: BondInput(B, 5_000_000, True),
    BondReceivedInput: BondReceivedInput(C, 3, USD.code, 5_000_000),
    ReinstateInput: ReinstateInput(C),
    AddPeerInput: AddPeerInput(NodeId("node-d")),
    AddProductInput: AddProductInput(LATER, 9_950),
    ConfigInput: ConfigInput(replace(CONFIG, decision_timeout_ms=7_000)),
    ReceiveInput: ReceiveInput(B, Hlc(1_764_000_000_000, 4), typical(StatementProposal)),
    TickInput: TickInput(),
    RestartInput: RestartInput(),
    WithdrawInput: WithdrawInput("trader-7", USD.code, 2_500_000),
}

TAGS: dict[type, int] = {
    GenesisInput: 1,
    PlaceInput: 2,
    CancelInput: 3,
    CancelAllInput: 4,
    DepositInput: 5,
    FundInput: 6,
    BondInput: 7,
    BondReceivedInput: 8,
    ReinstateInput: 9,
    AddPeerInput: 10,
    AddProductInput: 11,
    ConfigInput: 12,
    ReceiveInput: 13,
    TickInput: 14,
    RestartInput: 15,
    WithdrawInput: 16,
}
"""The documented tag table: these numbers are the stored format."""

ENTRIES = [JournalEntry(NOW, event) for event in INPUTS.values()]


def assert_exact(written: object, read: object) -> None:
    """Equal, and of the same type all the way down."""
    assert read == written
    assert read_back_difference(written, read, "value") is None


def raw(data: bytes) -> Any:
    return msgspec.msgpack.decode(data)


def packed(tree: Any) -> bytes:
    return msgspec.msgpack.encode(tree)


def refusal(data: bytes) -> JournalError:
    with pytest.raises(JournalError) as caught:
        decode_entry(data)
    return caught.value


def decodes_or_refuses(data: bytes) -> JournalEntry | None:
    """Decode ``data``; a refusal must be a JournalError and nothing else. An
    entry that is accepted must be one the writer can write again."""
    try:
        entry = decode_entry(data)
    except JournalError:
        return None
    assert_exact(entry, decode_entry(encode_entry(entry)))
    return entry


# --- round trips ----------------------------------------------------------


def test_the_examples_cover_every_input_kind_and_the_tag_table_too() -> None:
    assert set(INPUTS) == set(typing.get_args(Input)) == set(TAGS)
    assert sorted(TAGS.values()) == list(range(1, len(TAGS) + 1))


def test_the_config_changes_knobs_at_every_level() -> None:
    for value, default in (
        (CONFIG, NodeConfig(RiskConfig())),
        (RISK, RiskConfig()),
        (CLEARING, ClearingConfig()),
        (CLEARING.quota, QuotaConfig()),
    ):
        changed = [
            f.name for f in fields(value) if getattr(value, f.name) != getattr(default, f.name)
        ]
        assert len(changed) >= 3, type(value).__name__


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: type(e.input).__name__)
def test_every_input_kind_reads_back_exactly(entry: JournalEntry) -> None:
    data = encode_entry(entry)
    assert_exact(entry, decode_entry(data))
    assert encode_entry(decode_entry(data)) == data


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: type(e.input).__name__)
def test_an_entry_is_the_version_then_the_tag_then_now_then_the_fields(
    entry: JournalEntry,
) -> None:
    version, body = raw(encode_entry(entry))
    assert version == JOURNAL_VERSION == 1
    assert body[:3] == [TAGS[type(entry.input)], NOW.mono_ms, NOW.wall_ms]
    assert len(body) == 3 + len(entry.input.__struct_fields__)


@pytest.mark.parametrize("kind", list(MESSAGE_STRATEGIES), ids=lambda k: k.__name__)
def test_every_peer_message_reads_back_inside_a_receive_input(kind: type) -> None:
    entry = JournalEntry(NOW, ReceiveInput(B, Hlc(1_764_000_000_001, 2), typical(kind)))
    assert_exact(entry, decode_entry(encode_entry(entry)))


def test_the_genesis_reads_back_with_its_dataclasses_enums_and_frozenset() -> None:
    read = decode_entry(encode_entry(JournalEntry(NOW, GenesisInput(GENESIS)))).input
    assert isinstance(read, GenesisInput)
    genesis = read.genesis
    assert_exact(GENESIS, genesis)
    assert type(genesis.config.risk.listed_products) is frozenset
    assert genesis.products[1].kind is ProductKind.OPTION
    assert [p.product_id for p in genesis.products] == [XYZ.product_id, XYZ_CALL.product_id]
    assert genesis.config.clearing.quota == CLEARING.quota


def test_a_set_and_its_order_of_insertion_give_the_same_bytes() -> None:
    ids = [XYZ.product_id, XYZ_CALL.product_id, LATER.product_id]
    one = replace(RISK, listed_products=frozenset(ids))
    other = replace(RISK, listed_products=frozenset(reversed(ids)))
    first, second = (
        encode_entry(JournalEntry(NOW, ConfigInput(replace(CONFIG, risk=risk))))
        for risk in (one, other)
    )
    assert first == second


def test_invalid_inputs_are_journaled_as_faithfully_as_valid_ones() -> None:
    # The core journals an input before it judges it, so the journal carries
    # values the core will refuse: a negative deposit, an empty id, a zero
    # quantity, an id longer than the core allows.
    for event in (
        DepositInput("trader-7", USD.code, MIN_INT64),
        DepositInput("", "", MAX_INT64),
        WithdrawInput("trader-7", USD.code, MIN_INT64),
        CancelInput("x" * MAX_JOURNAL_TEXT_LENGTH, -1),
        PlaceInput(replace(REQUEST, quantity_lots=0, price_ticks=-5)),
        PlaceInput(replace(REQUEST, trader_id="bad\nid", price_ticks=None)),
        AddProductInput(LATER, None),
        CancelAllInput("trader-7", None),
    ):
        entry = JournalEntry(Now(0, 0), event)
        assert_exact(entry, decode_entry(encode_entry(entry)))


order_requests = st.builds(
    OrderRequest,
    st.text(max_size=MAX_JOURNAL_TEXT_LENGTH),
    st.text(max_size=MAX_JOURNAL_TEXT_LENGTH),
    st.text(max_size=MAX_JOURNAL_TEXT_LENGTH),
    st.sampled_from(Side),
    st.integers(MIN_INT64, MAX_INT64),
    st.none() | st.integers(MIN_INT64, MAX_INT64),
    st.sampled_from(TimeInForce),
)
nows = st.builds(Now, st.integers(0, MAX_INT64), st.integers(0, MAX_INT64))


@given(nows, order_requests)
def test_any_order_request_reads_back_exactly(now: Now, request: OrderRequest) -> None:
    entry = JournalEntry(now, PlaceInput(request))
    assert_exact(entry, decode_entry(encode_entry(entry)))


@given(nows, st.text(min_size=1, max_size=64), hlcs, messages)
def test_any_peer_message_reads_back_exactly(
    now: Now, sender: str, hlc: Hlc, message: Message
) -> None:
    entry = JournalEntry(now, ReceiveInput(NodeId(sender), hlc, message))
    assert_exact(entry, decode_entry(encode_entry(entry)))


# --- what the writer refuses ----------------------------------------------


@pytest.mark.parametrize(
    "entry",
    [
        JournalEntry(NOW, DepositInput("trader-7", USD.code, MAX_INT64 + 1)),
        JournalEntry(NOW, DepositInput("trader-7", USD.code, MIN_INT64 - 1)),
        JournalEntry(NOW, DepositInput("t" * (MAX_JOURNAL_TEXT_LENGTH + 1), USD.code, 1)),
        JournalEntry(NOW, DepositInput("trader-7", USD.code, 2**70)),
        JournalEntry(Now(-1, 0), TickInput()),
        JournalEntry(
            NOW, GenesisInput(msgspec.structs.replace(GENESIS, secret=bytes(MAX_SECRET_BYTES + 1)))
        ),
        JournalEntry(NOW, ReceiveInput(B, Hlc(-1, 0), Release(1))),
        JournalEntry(NOW, ReceiveInput(B, NOW, Release(1))),  # type: ignore[arg-type]
    ],
    ids=[
        "above_int64",
        "below_int64",
        "long_id",
        "beyond_uint64",
        "negative_time",
        "long_secret",
        "negative_hlc",
        "not_an_hlc",
    ],
)
def test_the_writer_refuses_what_it_could_not_read_back(entry: JournalEntry) -> None:
    with pytest.raises(JournalError) as caught:
        encode_entry(entry)
    assert caught.value.code == "bad_entry"


def test_the_writer_refuses_an_entry_that_would_read_back_as_another_type() -> None:
    # A list where the value has a tuple would read back as a tuple: not exact.
    genesis = msgspec.structs.replace(GENESIS, peers=[B, C])
    with pytest.raises(JournalError) as caught:
        encode_entry(JournalEntry(NOW, GenesisInput(genesis)))
    assert caught.value.code == "bad_entry"
    assert "genesis.peers: list reads back as tuple" in caught.value.message


def test_the_writer_refuses_what_is_not_an_input_or_not_a_message() -> None:
    for event in (Release(1), ReceiveInput(B, NOW_HLC, TickInput())):  # type: ignore[arg-type]
        with pytest.raises(JournalError) as caught:
            encode_entry(JournalEntry(NOW, event))  # type: ignore[arg-type]
        assert caught.value.code == "bad_entry"


def test_a_request_whose_side_is_not_a_side_is_refused() -> None:
    # Compiled by mypyc, the request itself refuses the field; in pure
    # Python it can be built, and the writer refuses it. CI runs both.
    try:
        request = replace(REQUEST, side="buy")  # type: ignore[arg-type]
    except TypeError as error:
        assert "Side" in str(error)
        return
    with pytest.raises(JournalError, match=r"OrderRequest\.side"):
        encode_entry(JournalEntry(NOW, PlaceInput(request)))


# --- what the reader refuses ----------------------------------------------

DEPOSIT = encode_entry(JournalEntry(NOW, INPUTS[DepositInput]))
CONFIG_ENTRY = encode_entry(JournalEntry(NOW, INPUTS[ConfigInput]))
PRODUCT_ENTRY = encode_entry(JournalEntry(NOW, INPUTS[AddProductInput]))


def with_body(data: bytes, change: typing.Callable[[list[Any]], None]) -> bytes:
    """``data`` with its input's array changed in place by ``change``."""
    version, body = raw(data)
    change(body)
    return packed([version, body])


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: type(e.input).__name__)
def test_every_truncation_of_an_entry_is_refused(entry: JournalEntry) -> None:
    data = encode_entry(entry)
    for end in range(len(data)):
        error = refusal(data[:end])
        assert error.code in {"malformed", "bad_field"}, (end, error)


def test_trailing_bytes_are_refused() -> None:
    assert refusal(DEPOSIT + b"\x00").code == "malformed"


@pytest.mark.parametrize("version", [0, 2, 255, MAX_INT64])
def test_another_version_is_refused_before_anything_after_it_is_read(version: int) -> None:
    error = refusal(packed([version, "whatever follows"]))
    assert error.code == "unsupported_version"
    assert str(version) in error.message


def test_a_version_that_is_not_a_number_is_malformed() -> None:
    assert refusal(packed(["1", raw(DEPOSIT)[1]])).code == "malformed"
    assert refusal(packed([1])).code == "malformed"
    assert refusal(packed({"version": 1})).code == "malformed"


@pytest.mark.parametrize("tag", [0, 17, 99, MAX_INT64])
def test_an_unknown_tag_is_refused_and_named(tag: int) -> None:
    error = refusal(packed([JOURNAL_VERSION, [tag, 1, 2, "x"]]))
    assert error.code == "unknown_tag"
    assert f"tag {tag}" in error.message


def test_an_input_that_is_not_an_array_with_a_tag_is_malformed() -> None:
    for body in ([], "deposit", ["5", 1, 2], {"tag": 5}):
        assert refusal(packed([JOURNAL_VERSION, body])).code == "malformed"


@pytest.mark.parametrize(
    ("index", "value", "field"),
    [
        (1, -1, "DepositInput.mono_ms"),
        (2, MAX_INT64 + 1, "DepositInput.wall_ms"),
        (3, 7, "DepositInput.trader_id"),
        (4, "U" * (MAX_JOURNAL_TEXT_LENGTH + 1), "DepositInput.asset"),
        (5, "100", "DepositInput.amount"),
        (5, True, "DepositInput.amount"),
        (5, 1.5, "DepositInput.amount"),
    ],
)
def test_a_bad_field_is_refused_and_named(index: int, value: object, field: str) -> None:
    def change(body: list[Any]) -> None:
        body[index] = value

    error = refusal(with_body(DEPOSIT, change))
    assert error.code == "bad_field"
    assert error.message.startswith(f"{field}: ")


def test_a_missing_or_extra_field_is_refused() -> None:
    assert refusal(with_body(DEPOSIT, lambda body: body.pop())).code == "bad_field"
    assert refusal(with_body(DEPOSIT, lambda body: body.append(0))).code == "bad_field"


def test_a_bad_field_deep_inside_a_message_names_the_message() -> None:
    entry = JournalEntry(NOW, ReceiveInput(B, NOW_HLC, typical(Heartbeat)))

    def change(body: list[Any]) -> None:
        body[5][1] = -1  # the heartbeat's sent_mono_ms

    error = refusal(with_body(encode_entry(entry), change))
    assert error.code == "bad_field"
    assert error.message.startswith("ReceiveInput.message: ")


def test_a_statement_out_of_order_inside_a_message_is_refused() -> None:
    entry = JournalEntry(NOW, ReceiveInput(B, NOW_HLC, typical(StatementProposal)))

    def change(body: list[Any]) -> None:
        body[5][1][3].reverse()  # lock ids, now decreasing

    error = refusal(with_body(encode_entry(entry), change))
    assert error.code == "bad_field"
    assert "ReceiveInput.message" in error.message
    assert "lock ids" in error.message


def test_an_entry_beyond_the_size_limit_is_refused_before_it_is_parsed() -> None:
    error = refusal(b"\x00" * (MAX_JOURNAL_ENTRY_BYTES + 1))
    assert error.code == "too_large"


# --- configs and product specs: their own validation, and exactness --------


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("lock_ttl_ms",), 1, "lock_ttl_ms: must be at least 2"),
        (("collection_window_ms",), 400, "collection_window_ms: must be inside the lock TTL"),
        (("unreliable_permille",), 1_001, "unreliable_permille: must be at most 1000"),
        (("risk", "price_band_bps"), -1, "price_band_bps"),
        (("risk", "listed_products"), ["p1" + "0" * 200], "listed_products"),
        (("clearing", "quota", "max_open_locks"), 0, "max_open_locks"),
        (("clearing", "settlement_deadline_ms"), 2_000, "settlement_deadline_ms"),
        (("targeted_routing",), 1, "targeted_routing"),
        (("max_rounds",), True, "max_rounds"),
    ],
)
def test_a_config_value_out_of_range_is_refused_naming_it(
    path: tuple[str, ...], value: object, named: str
) -> None:
    def change(body: list[Any]) -> None:
        target = body[3]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    error = refusal(with_body(CONFIG_ENTRY, change))
    assert error.code == "bad_field"
    assert error.message.startswith("ConfigInput.config: ")
    assert named in error.message


def test_a_config_key_this_version_does_not_know_is_refused() -> None:
    def change(body: list[Any]) -> None:
        body[3]["clearing"]["quota"]["new_knob"] = 5

    error = refusal(with_body(CONFIG_ENTRY, change))
    assert error.code == "unknown_field"
    assert error.message.startswith("ConfigInput.config.clearing.quota.new_knob: ")


@pytest.mark.parametrize("kind", [GenesisInput, RestartInput])
def test_a_start_entry_written_before_logic_versions_reads_as_version_one(kind: type) -> None:
    """Genesis and restart entries record the core logic that wrote the
    journal after them; one written before that was kept reads as version 1,
    and one written now as this code's version."""
    written = encode_entry(JournalEntry(NOW, INPUTS[kind]))
    assert decode_entry(written).input.logic_version == CORE_LOGIC_VERSION > 1
    older = decode_entry(with_body(written, lambda body: body.pop()))
    assert type(older.input) is kind and older.input.logic_version == 1


def test_a_config_key_missing_reads_as_its_default() -> None:
    # How a knob added in a later version reads in an entry written before it.
    def change(body: list[Any]) -> None:
        del body[3]["max_violations_kept"]

    read = decode_entry(with_body(CONFIG_ENTRY, change)).input
    assert isinstance(read, ConfigInput)
    assert read.config.max_violations_kept == NodeConfig(RISK).max_violations_kept != 16


def test_a_set_stored_with_a_duplicate_does_not_read_back_as_stored() -> None:
    def change(body: list[Any]) -> None:
        listed = body[3]["risk"]["listed_products"]
        listed.append(listed[0])

    assert refusal(with_body(CONFIG_ENTRY, change)).code == "not_as_stored"


def test_a_product_spec_whose_id_no_longer_matches_is_refused() -> None:
    # The id is the hash of the spec's canonical form: a stored id that the
    # spec does not hash to means the spec, or the form, changed.
    def change(body: list[Any]) -> None:
        body[3]["product_id"] = XYZ.product_id

    error = refusal(with_body(PRODUCT_ENTRY, change))
    assert error.code == "not_as_stored"
    assert error.message.startswith("AddProductInput.product.product_id: ")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("symbol", "lower"),
        ("kind", "swap"),
        ("quote_currency", "usd"),
        ("tick_size_minor", 0),
        ("attributes", [["b", "1"], ["a", "2"]]),
    ],
)
def test_a_product_spec_out_of_range_is_refused(key: str, value: object) -> None:
    def change(body: list[Any]) -> None:
        body[3][key] = value

    error = refusal(with_body(PRODUCT_ENTRY, change))
    assert error.code == "bad_field"
    assert error.message.startswith("AddProductInput.product: ")


# --- whatever the bytes: a JournalError or an entry, nothing else ----------


@st.composite
def damaged(draw: st.DrawFn, originals: list[bytes]) -> bytes:
    """A valid stored value, damaged the ways storage damages bytes."""
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        match draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"])):
            case "flip" if data:
                data[at] ^= 1 << draw(st.integers(0, 7))
            case "set" if data:
                data[at] = draw(st.integers(0, 255))
            case "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=9))
            case "delete" if data:
                del data[at]
            case "truncate":
                del data[at:]
    return bytes(data)


STORED_ENTRIES = [encode_entry(entry) for entry in ENTRIES]


@settings(max_examples=2_000)
@given(damaged(STORED_ENTRIES))
def test_a_damaged_entry_raises_only_a_journal_error(data: bytes) -> None:
    decodes_or_refuses(data)


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_a_journal_error(data: bytes) -> None:
    decodes_or_refuses(data)


leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(),
    st.text(max_size=40),
    st.binary(max_size=40),
)
trees = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def replaced(tree: Any, path: list[int], value: Any) -> Any:
    """``tree`` with the node that ``path`` picks (an index into each list,
    a key's position in each map) replaced by ``value``."""
    if not path or not isinstance(tree, list | dict) or not tree:
        return value
    if isinstance(tree, list):
        at = path[0] % len(tree)
        return [replaced(v, path[1:], value) if i == at else v for i, v in enumerate(tree)]
    key = list(tree)[path[0] % len(tree)]
    return {k: replaced(v, path[1:], value) if k == key else v for k, v in tree.items()}


@settings(max_examples=2_000)
@given(st.sampled_from(STORED_ENTRIES), st.lists(st.integers(0, 50), min_size=1, max_size=6), trees)
def test_a_well_formed_entry_with_any_value_anywhere_raises_only_a_journal_error(
    data: bytes, path: list[int], value: Any
) -> None:
    # Replaced inside the input's array: the version and the envelope around
    # it are tested above, and mostly the value lands in some field.
    version, body = raw(data)
    decodes_or_refuses(packed([version, replaced(body, path, value)]))


# --- snapshots: header, checksum, body ---------------------------------------


class TwoNodes:
    """Two node cores wired by hand: every message and rail payment is
    delivered in order, and every journal entry kept."""

    def __init__(self) -> None:
        self.mono_ms = 1_000
        self.queue: deque[tuple[NodeId, Send | Pay]] = deque()
        self.journals: dict[NodeId, list[JournalEntry]] = {A: [], B: []}
        self.cores: dict[NodeId, NodeCore] = {}
        self.midway: dict[NodeId, tuple[bytes, int]] = {}
        """Per node, a stored snapshot and how many journal entries it covers."""
        for node_id, peer in ((A, B), (B, A)):
            genesis = msgspec.structs.replace(
                GENESIS, node_id=node_id, peers=(peer,), secret=node_id.encode()
            )
            self.cores[node_id], effects = NodeCore.start(genesis, self.now())
            self.run(node_id, effects)

    def now(self) -> Now:
        return Now(self.mono_ms, 1_764_000_000_000 + self.mono_ms)

    def run(self, node_id: NodeId, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Journal):
                self.journals[node_id].append(effect.entry)
            elif isinstance(effect, Send | Pay):
                self.queue.append((node_id, effect))

    def deliver(self) -> None:
        while self.queue:
            sender, effect = self.queue.popleft()
            core, now = self.cores[effect.peer], self.now()
            if isinstance(effect, Send):
                self.run(effect.peer, core.receive(sender, effect.hlc, effect.message, now))
            elif effect.purpose == "bond":
                received = core.bond_received(sender, effect.ref, effect.asset, effect.amount, now)
                self.run(effect.peer, received)

    def tick(self, advance_ms: int) -> None:
        self.mono_ms += advance_ms
        for node_id, core in self.cores.items():
            self.run(node_id, core.tick(self.now()))
        self.deliver()


@cache
def two_nodes() -> TwoNodes:
    """Two nodes that deposited, funded, bonded with each other, traded once
    across the link and left an order resting: state in every part."""
    nodes = TwoNodes()
    for node_id, core in nodes.cores.items():
        peer = B if node_id == A else A
        nodes.run(node_id, core.deposit("trader-7", USD.code, 100_000_000, nodes.now()))
        nodes.run(node_id, core.deposit("trader-7", XYZ.product_id, 1_000, nodes.now()))
        nodes.run(node_id, core.fund(USD.code, 50_000_000, nodes.now()))
        nodes.run(node_id, core.post_bond(peer, 10_000_000, nodes.now()))
    nodes.deliver()
    for node_id, core in nodes.cores.items():
        nodes.midway[node_id] = (encode_snapshot(core.snapshot()), len(nodes.journals[node_id]))
    sell = OrderRequest("trader-7", "s1", XYZ.product_id, Side.SELL, 30, 5_000, TimeInForce.GTC)
    nodes.run(B, nodes.cores[B].place(sell, nodes.now()))
    nodes.deliver()
    nodes.tick(100)
    buy = replace(sell, client_order_id="b1", side=Side.BUY, quantity_lots=10, price_ticks=5_010)
    nodes.run(A, nodes.cores[A].place(buy, nodes.now()))
    nodes.deliver()
    for _ in range(5):
        nodes.tick(100)
    return nodes


def test_the_two_nodes_traded_so_their_state_is_not_trivial() -> None:
    nodes = two_nodes()
    assert nodes.cores[A].status()["unsettled_trades"] == {B: 1}
    assert nodes.cores[B].status()["resting_orders"] == 1
    kinds = {type(entry.input) for entry in nodes.journals[A]}
    assert kinds == {
        GenesisInput,
        DepositInput,
        FundInput,
        BondInput,
        BondReceivedInput,
        PlaceInput,
        ReceiveInput,
        TickInput,
    }


def test_a_real_journal_reads_back_exactly_and_replays_to_the_same_state() -> None:
    for node_id, journal in two_nodes().journals.items():
        stored = [encode_entry(entry) for entry in journal]
        read = [decode_entry(data) for data in stored]
        for entry, back in zip(journal, read, strict=True):
            assert_exact(entry, back)
        recovered = NodeCore.recover(read)
        assert recovered.state_hash() == two_nodes().cores[node_id].state_hash()


@pytest.mark.parametrize("node_id", [A, B])
def test_a_real_snapshot_reads_back_and_restores_the_same_state(node_id: NodeId) -> None:
    core = two_nodes().cores[node_id]
    snapshot = core.snapshot()
    data = encode_snapshot(snapshot)
    assert data.startswith(SNAPSHOT_MAGIC + bytes([SNAPSHOT_FORMAT_VERSION]))
    read = decode_snapshot(data)
    assert_exact(snapshot, read)
    assert NodeCore.from_snapshot(read).state_hash() == core.state_hash()
    assert encode_snapshot(read) == data


@pytest.mark.parametrize("node_id", [A, B])
def test_a_stored_snapshot_and_the_stored_journal_after_it_recover_the_node(
    node_id: NodeId,
) -> None:
    # Restart is: load the snapshot, replay the journal's tail (DESIGN.md 9).
    nodes = two_nodes()
    stored, covered = nodes.midway[node_id]
    tail = [encode_entry(entry) for entry in nodes.journals[node_id][covered:]]
    assert tail
    recovered = NodeCore.recover(map(decode_entry, tail), decode_snapshot(stored))
    assert recovered.state_hash() == nodes.cores[node_id].state_hash()


@cache
def stored_snapshot() -> bytes:
    return encode_snapshot(two_nodes().cores[A].snapshot())


def with_snapshot_body(body: bytes) -> bytes:
    """A header that passes, around any body."""
    version = bytes([SNAPSHOT_FORMAT_VERSION])
    return SNAPSHOT_MAGIC + version + hashlib.sha256(body).digest() + body


def snapshot_refusal(data: bytes) -> SnapshotError:
    with pytest.raises(SnapshotError) as caught:
        decode_snapshot(data)
    assert isinstance(caught.value, JournalError)
    return caught.value


def test_a_snapshot_header_is_checked_before_the_body() -> None:
    data = stored_snapshot()
    magic_end = len(SNAPSHOT_MAGIC)
    assert snapshot_refusal(b"datn-jrnl" + data[magic_end:]).code == "bad_magic"
    wrong_version = data[:magic_end] + bytes([2]) + data[magic_end + 1 :]
    assert snapshot_refusal(wrong_version).code == "unsupported_version"
    flipped = bytearray(data)
    flipped[-1] ^= 0x01
    assert snapshot_refusal(bytes(flipped)).code == "bad_checksum"
    assert snapshot_refusal(data[:-1]).code == "bad_checksum"
    assert snapshot_refusal(data[: SNAPSHOT_HEADER_BYTES - 1]).code == "too_short"
    assert snapshot_refusal(b"").code == "too_short"


def test_a_snapshot_beyond_the_size_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot_module, "MAX_SNAPSHOT_BYTES", 1_000)
    assert snapshot_refusal(stored_snapshot()).code == "too_large"
    with pytest.raises(SnapshotError) as caught:
        encode_snapshot(two_nodes().cores[A].snapshot())
    assert caught.value.code == "bad_snapshot"


def test_a_snapshot_of_another_state_version_says_so() -> None:
    body = raw(stored_snapshot()[SNAPSHOT_HEADER_BYTES:])
    # A snapshot's structs are arrays in field order: version first, then context.
    body[0] = 2
    body[1] = "a shape this version does not know"
    error = snapshot_refusal(with_snapshot_body(packed(body)))
    assert error.code == "unsupported_state_version"
    assert "2" in error.message


def test_a_snapshot_body_that_does_not_decode_names_the_field() -> None:
    body = raw(stored_snapshot()[SNAPSHOT_HEADER_BYTES:])
    body[1][1]["lock_ttl_ms"] = 1  # the context's config, a map of knobs
    error = snapshot_refusal(with_snapshot_body(packed(body)))
    assert error.code == "bad_field"
    assert "lock_ttl_ms" in error.message
    assert snapshot_refusal(with_snapshot_body(packed({"version": 1}))).code == "malformed"
    assert snapshot_refusal(with_snapshot_body(packed([1, 2]))).code == "bad_field"
    assert snapshot_refusal(with_snapshot_body(b"\xc1")).code == "malformed"


def test_a_snapshot_key_this_version_does_not_know_is_refused() -> None:
    body = raw(stored_snapshot()[SNAPSHOT_HEADER_BYTES:])
    body[4].append([])  # the holder's state, with one field more than this version has
    error = snapshot_refusal(with_snapshot_body(packed(body)))
    assert error.code == "bad_field"  # the state's structs refuse what they do not know
    assert "$[4]" in error.message
    body = raw(stored_snapshot()[SNAPSHOT_HEADER_BYTES:])
    body[1][1]["new_knob"] = 1  # a knob a later version added
    error = snapshot_refusal(with_snapshot_body(packed(body)))
    assert error.code == "unknown_field"
    assert "new_knob" in error.message


def test_the_snapshot_writer_refuses_a_snapshot_it_could_not_read_back() -> None:
    snapshot = two_nodes().cores[A].snapshot()
    for bad in (
        msgspec.structs.replace(snapshot, strategy="not bytes"),
        msgspec.structs.replace(snapshot, version=99),
    ):
        with pytest.raises(SnapshotError) as caught:
            encode_snapshot(bad)
        assert caught.value.code == "bad_snapshot"


@settings(max_examples=300)
@given(st.data())
def test_a_damaged_snapshot_raises_only_a_snapshot_error(data: st.DataObject) -> None:
    stored = data.draw(damaged([stored_snapshot()]))
    try:
        decode_snapshot(stored)
    except SnapshotError:
        return
    assert stored == stored_snapshot()


@settings(max_examples=500)
@given(st.lists(st.integers(0, 50), max_size=8), trees)
def test_a_checksummed_body_with_any_value_anywhere_raises_only_a_snapshot_error(
    path: list[int], value: Any
) -> None:
    body = replaced(raw(stored_snapshot()[SNAPSHOT_HEADER_BYTES:]), path, value)
    try:
        snapshot = decode_snapshot(with_snapshot_body(packed(body)))
    except SnapshotError:
        return
    assert isinstance(snapshot, NodeSnapshot)
    assert_exact(snapshot, decode_snapshot(encode_snapshot(snapshot)))


@pytest.mark.parametrize("depth", [10_000, 1_000_000])
def test_arrays_nested_too_deep_to_parse_are_refused_not_a_crash(depth: int) -> None:
    deep = b"\x91" * depth + b"\x00"  # [[[...[0]...]]]
    amount = packed(DEPOSIT_AMOUNT)
    assert DEPOSIT.endswith(amount)
    for data in (b"\x92" + packed(JOURNAL_VERSION) + deep, DEPOSIT[: -len(amount)] + deep):
        assert refusal(data).code == "malformed"
    body = b"\x82" + packed("version") + packed(1) + packed("extra") + deep
    assert snapshot_refusal(with_snapshot_body(body)).code == "malformed"
