"""The journal's stored form: one versioned, tagged MessagePack array per entry.

A node's state is a function of its journal, so an entry must read back as
exactly the input it recorded, in every process and in every later version
that still reads this format. An entry is the array

    [JOURNAL_VERSION, [tag, mono_ms, wall_ms, *fields]]

The version comes first and is checked before anything after it is parsed, so
a later format may change everything behind it. The inner array is one of the
tagged structs below: the tag names the input kind, ``mono_ms`` and
``wall_ms`` are the entry's ``now``, and the input's fields follow in the
order of its struct. The peer message inside a ReceiveInput is written with
the message schema of :mod:`datn.wire.schema` as it is, so the journal and the
wire can never disagree on what a message looks like.

Tags (never reuse or renumber one; a new input kind takes the next number):

    ==  =================  ==  =================  ==  =================
     1  GenesisInput        6  FundInput          11  AddProductInput
     2  PlaceInput          7  BondInput          12  ConfigInput
     3  CancelInput         8  BondReceivedInput  13  ReceiveInput
     4  CancelAllInput      9  ReinstateInput     14  TickInput
     5  DepositInput       10  AddPeerInput       15  RestartInput
                                                  16  WithdrawInput
    ==  =================  ==  =================  ==  =================

The bounds are the journal's, not the core's. The core journals an input
before it judges it, and refuses a bad deposit or order afterwards with a
reason, so the journal must carry an invalid amount or id as faithfully as a
valid one: integers span the signed 64-bit range and ids are bounded in
length only. What the bounds rule out is what no edge could have handed the
core, so only a damaged store holds it.

Configs and product specs are the protocol's frozen dataclasses, which msgspec
writes as maps and reads back through their own ``__post_init__`` checks, so a
value out of range is refused naming its field. A map may lack a key whose
field has a default (a knob added later reads as its default). But msgspec
skips keys a dataclass does not have, which would silently drop a knob that a
newer version wrote; so an entry that carries a dataclass is checked to read
back as it was stored.

Writing checks its own output with the reader, and refuses an entry that would
not read back exactly: better refused before it is durable than found at
recovery.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import reprlib
from collections.abc import Mapping
from typing import Annotated, Any, Final, TypeVar, get_args

import msgspec

from datn.domain import ProductSpec, Side, TimeInForce
from datn.protocol.clock import Now
from datn.protocol.config import NodeConfig
from datn.protocol.effects import (
    AddPeerInput,
    AddProductInput,
    BondInput,
    BondReceivedInput,
    CancelAllInput,
    CancelInput,
    ConfigInput,
    DepositInput,
    FundInput,
    Genesis,
    GenesisInput,
    Input,
    JournalEntry,
    PlaceInput,
    ReceiveInput,
    ReinstateInput,
    RestartInput,
    TickInput,
    WithdrawInput,
)
from datn.protocol.messages import NodeId
from datn.protocol.venue import OrderRequest
from datn.wire.codec import from_wire, hlc_from_wire, hlc_to_wire, to_wire
from datn.wire.errors import JournalError, ProtocolError
from datn.wire.limits import (
    MAX_INT64,
    MAX_JOURNAL_ENTRY_BYTES,
    MAX_JOURNAL_TEXT_LENGTH,
    MAX_NODE_PEERS,
    MAX_NODE_PRODUCTS,
    MAX_SECRET_BYTES,
    MIN_INT64,
)
from datn.wire.schema import Millis, WireHlc, WireMessage, WireSide

T = TypeVar("T")

JOURNAL_VERSION: Final = 1
"""The format of an entry; the first element of every entry's array."""

Int64 = Annotated[int, msgspec.Meta(ge=MIN_INT64, le=MAX_INT64)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_JOURNAL_TEXT_LENGTH)]


class WireTimeInForce(enum.IntEnum):
    """Time in force as one small integer, independent of how the domain spells it."""

    GTC = 1
    IOC = 2
    FOK = 3


class _Stored(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """Common options: positional arrays, and no extra trailing elements accepted.
    Subclasses repeat ``frozen=True`` only because mypy does not inherit it."""


class WireOrderRequest(_Stored, frozen=True):
    trader_id: Text
    client_order_id: Text
    product_id: Text
    side: WireSide
    quantity_lots: Int64
    price_ticks: Int64 | None
    time_in_force: WireTimeInForce


class WireGenesis(_Stored, frozen=True):
    node_id: Text
    config: NodeConfig
    products: Annotated[tuple[ProductSpec, ...], msgspec.Meta(max_length=MAX_NODE_PRODUCTS)]
    peers: Annotated[tuple[Text, ...], msgspec.Meta(max_length=MAX_NODE_PEERS)]
    secret: Annotated[bytes, msgspec.Meta(max_length=MAX_SECRET_BYTES)]
    reference_prices: Annotated[
        tuple[tuple[Text, Int64], ...], msgspec.Meta(max_length=MAX_NODE_PRODUCTS)
    ]


class _WireInput(_Stored, frozen=True):
    """The entry's ``now``, ahead of every input's own fields."""

    mono_ms: Millis
    wall_ms: Millis


class WireGenesisInput(_WireInput, frozen=True, tag=1):
    genesis: WireGenesis
    logic_version: Int64 = 1
    """Absent from entries written before core logic versions were kept."""


class WirePlaceInput(_WireInput, frozen=True, tag=2):
    request: WireOrderRequest


class WireCancelInput(_WireInput, frozen=True, tag=3):
    trader_id: Text
    order_id: Int64


class WireCancelAllInput(_WireInput, frozen=True, tag=4):
    trader_id: Text
    product_id: Text | None


class WireDepositInput(_WireInput, frozen=True, tag=5):
    trader_id: Text
    asset: Text
    amount: Int64


class WireWithdrawInput(_WireInput, frozen=True, tag=16):
    trader_id: Text
    asset: Text
    amount: Int64


class WireFundInput(_WireInput, frozen=True, tag=6):
    asset: Text
    amount: Int64


class WireBondInput(_WireInput, frozen=True, tag=7):
    peer: Text
    amount: Int64
    withdraw: bool


class WireBondReceivedInput(_WireInput, frozen=True, tag=8):
    peer: Text
    bond_id: Int64
    asset: Text
    amount: Int64


class WireReinstateInput(_WireInput, frozen=True, tag=9):
    peer: Text


class WireAddPeerInput(_WireInput, frozen=True, tag=10):
    peer: Text


class WireAddProductInput(_WireInput, frozen=True, tag=11):
    product: ProductSpec
    reference_price_ticks: Int64 | None


class WireConfigInput(_WireInput, frozen=True, tag=12):
    config: NodeConfig


class WireReceiveInput(_WireInput, frozen=True, tag=13):
    sender: Text
    hlc: WireHlc
    message: WireMessage


class WireTickInput(_WireInput, frozen=True, tag=14):
    pass


class WireRestartInput(_WireInput, frozen=True, tag=15):
    logic_version: Int64 = 1
    """Absent from entries written before core logic versions were kept."""


WireInput = (
    WireGenesisInput
    | WirePlaceInput
    | WireCancelInput
    | WireCancelAllInput
    | WireDepositInput
    | WireFundInput
    | WireBondInput
    | WireBondReceivedInput
    | WireReinstateInput
    | WireAddPeerInput
    | WireAddProductInput
    | WireConfigInput
    | WireReceiveInput
    | WireTickInput
    | WireRestartInput
    | WireWithdrawInput
)


class _TagProbe(msgspec.Struct, array_like=True):
    """The first element of an input's array, the rest skipped: read only to
    say why an input that failed to decode failed."""

    tag: int


_ENCODER: Final = msgspec.msgpack.Encoder(order="deterministic")
_ENTRY_DECODER: Final[msgspec.msgpack.Decoder[tuple[int, msgspec.Raw]]] = msgspec.msgpack.Decoder(
    tuple[int, msgspec.Raw]
)
_INPUT_DECODER: Final[msgspec.msgpack.Decoder[WireInput]] = msgspec.msgpack.Decoder(WireInput)
_TAG_DECODER: Final = msgspec.msgpack.Decoder(_TagProbe)
_ANY_DECODER: Final = msgspec.msgpack.Decoder()

_WIRE_BY_TAG: Final[dict[int, type[_WireInput]]] = {
    kind.__struct_config__.tag: kind for kind in get_args(WireInput)
}
_WITH_DATACLASSES: Final = (WireGenesisInput, WireAddProductInput, WireConfigInput)
"""The inputs whose fields msgspec reads leniently (see the module docstring)."""

DECODE_ERRORS: Final = (msgspec.MsgspecError, UnicodeDecodeError, RecursionError)
"""What msgspec raises on bad bytes: its own errors; UnicodeDecodeError for
invalid UTF-8 in a string; and RecursionError for arrays nested deeper than
it will descend, which it meets while skipping a value it does not read."""

_AT_INDEX: Final = re.compile(r" - at `\$\[(\d+)\]")
"""Where msgspec says a value failed: its index in the input's array."""

_SIDE_TO_WIRE: Final = {Side.BUY: WireSide.BUY, Side.SELL: WireSide.SELL}
_SIDE_FROM_WIRE: Final = {WireSide.BUY: Side.BUY, WireSide.SELL: Side.SELL}
_TIF_TO_WIRE: Final = {
    TimeInForce.GTC: WireTimeInForce.GTC,
    TimeInForce.IOC: WireTimeInForce.IOC,
    TimeInForce.FOK: WireTimeInForce.FOK,
}
_TIF_FROM_WIRE: Final = {wire: tif for tif, wire in _TIF_TO_WIRE.items()}

_SHORT: Final = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60


# ------------------------------------------------------------------ entries


def encode_entry(entry: JournalEntry) -> bytes:
    """The stored form of ``entry``; JournalError (``bad_entry``) if it cannot
    be written or would not read back exactly."""
    kind = type(entry.input).__name__
    try:
        data = _ENCODER.encode((JOURNAL_VERSION, _input_to_wire(entry.input, entry.now)))
    # Values are not type-checked when they are built, so a field can hold
    # anything: what msgspec cannot encode, and an attribute a field of the
    # wrong type lacks, are an entry that cannot be written.
    except (
        msgspec.MsgspecError,
        ProtocolError,
        AttributeError,
        TypeError,
        ValueError,
        OverflowError,
    ) as error:
        raise JournalError("bad_entry", f"{kind}: {error}") from None
    try:
        read = decode_entry(data)
    except JournalError as error:
        raise JournalError("bad_entry", f"{kind} would not read back: {error}") from None
    if read != entry:
        where = read_back_difference(entry, read, "entry") or "entry"
        raise JournalError("bad_entry", f"{kind} would not read back as written: {where}")
    return data


def decode_entry(data: bytes) -> JournalEntry:
    """The entry stored as ``data``. Whatever the bytes, the only error is a
    :class:`JournalError` naming what is wrong."""
    if len(data) > MAX_JOURNAL_ENTRY_BYTES:
        raise JournalError("too_large", f"{len(data)} > {MAX_JOURNAL_ENTRY_BYTES} bytes")
    version, body = _read(_ENTRY_DECODER, data, "not a journal entry")
    if version != JOURNAL_VERSION:
        raise JournalError(
            "unsupported_version", f"journal version {version}; this code reads {JOURNAL_VERSION}"
        )
    wire = _decode_input(body)
    entry = _entry_from_wire(wire)
    if isinstance(wire, _WITH_DATACLASSES):
        _check_as_stored(data, wire)
    return entry


def _read(decoder: msgspec.msgpack.Decoder[T], data: bytes | msgspec.Raw, what: str) -> T:
    try:
        return decoder.decode(data)
    except DECODE_ERRORS as error:
        raise JournalError("malformed", f"{what}: {error}") from None


def _decode_input(body: msgspec.Raw) -> WireInput:
    try:
        return _INPUT_DECODER.decode(body)
    except DECODE_ERRORS as error:
        raise _input_error(body, str(error)) from None


def _input_error(body: msgspec.Raw, error: str) -> JournalError:
    """Why an input did not decode: not an input at all, a tag this version
    does not know, or a bad field of a known input (named)."""
    try:
        tag = _TAG_DECODER.decode(body).tag
    except DECODE_ERRORS:
        return JournalError("malformed", f"not an input: {error}")
    kind = _WIRE_BY_TAG.get(tag)
    if kind is None:
        return JournalError("unknown_tag", f"input tag {tag} is not one this version knows")
    return JournalError("bad_field", f"{_field_name(kind, error)}: {error}")


def _field_name(kind: type[_WireInput], error: str) -> str:
    """``Input.field`` for the array index an error names (index 0 is the tag)."""
    name = _input_name(kind)
    found = _AT_INDEX.search(error)
    fields = kind.__struct_fields__
    if found is None or not 1 <= int(found.group(1)) <= len(fields):
        return name
    return f"{name}.{fields[int(found.group(1)) - 1]}"


def _input_name(kind: type[_WireInput]) -> str:
    return kind.__name__.removeprefix("Wire")


def _check_as_stored(data: bytes, wire: WireInput) -> None:
    """Refuse an entry holding a key or value that what it decoded to does not
    reproduce. The encoding may differ (an integer written wider); a stored
    key unknown here, or a value read back otherwise, may not."""
    rebuilt = _ENCODER.encode((JOURNAL_VERSION, wire))
    if rebuilt == data:
        return
    stored_body = _read(_ANY_DECODER, data, "not a journal entry")[1]
    rebuilt_body = _ANY_DECODER.decode(rebuilt)[1]
    name = _input_name(type(wire))
    for index, field in enumerate(type(wire).__struct_fields__, start=1):
        if index >= len(stored_body):
            break
        fault = stored_surplus(stored_body[index], rebuilt_body[index], f"{name}.{field}")
        if fault is not None:
            raise JournalError(*fault)


# ------------------------------------------------------------- read-back checks


def stored_surplus(stored: object, rebuilt: object, path: str) -> tuple[str, str] | None:
    """What ``stored`` (a decoded MessagePack tree) holds that ``rebuilt`` (the
    re-encoding of the value it was read as, decoded alike) does not, as a
    JournalError's code and message; None if nothing. A map key missing from
    ``stored``, or trailing array elements, are fields read as their
    defaults, and allowed."""
    if isinstance(stored, dict) and isinstance(rebuilt, dict):
        for key, value in stored.items():
            if key not in rebuilt:
                return "unknown_field", f"{path}.{key}: not a field this version knows"
            fault = stored_surplus(value, rebuilt[key], f"{path}.{key}")
            if fault is not None:
                return fault
        return None
    if isinstance(stored, list) and isinstance(rebuilt, list) and len(stored) <= len(rebuilt):
        for index, value in enumerate(stored):
            fault = stored_surplus(value, rebuilt[index], f"{path}[{index}]")
            if fault is not None:
                return fault
        return None
    if type(stored) is type(rebuilt) and stored == rebuilt:
        return None
    shown = f"{_SHORT.repr(stored)} reads back as {_SHORT.repr(rebuilt)}"
    return "not_as_stored", f"{path}: {shown}"


def read_back_difference(written: object, read: object, path: str) -> str | None:
    """The first place where ``read`` is not exactly ``written``, type or
    value, through structs, dataclasses and sequences; None if nowhere."""
    if type(written) is not type(read):
        return f"{path}: {type(written).__name__} reads back as {type(read).__name__}"
    children: list[tuple[object, object, str]]
    if isinstance(written, msgspec.Struct):
        names = written.__struct_fields__
        children = [(getattr(written, n), getattr(read, n), f"{path}.{n}") for n in names]
    elif dataclasses.is_dataclass(written):
        names = tuple(f.name for f in dataclasses.fields(written))
        children = [(getattr(written, n), getattr(read, n), f"{path}.{n}") for n in names]
    elif isinstance(written, tuple | list) and isinstance(read, tuple | list):
        if len(written) != len(read):
            return f"{path}: {len(written)} items read back as {len(read)}"
        pairs = enumerate(zip(written, read, strict=True))
        children = [(w, r, f"{path}[{i}]") for i, (w, r) in pairs]
    elif written == read:
        return None
    else:
        return f"{path}: {_SHORT.repr(written)} reads back as {_SHORT.repr(read)}"
    for child_written, child_read, child_path in children:
        found = read_back_difference(child_written, child_read, child_path)
        if found is not None:
            return found
    return None


# ------------------------------------------------------------------ to wire


def _input_to_wire(event: Input, now: Now) -> WireInput:
    m, w = now.mono_ms, now.wall_ms
    match event:
        case GenesisInput():
            return WireGenesisInput(m, w, _genesis_to_wire(event.genesis), event.logic_version)
        case PlaceInput():
            return WirePlaceInput(m, w, _request_to_wire(event.request))
        case CancelInput():
            return WireCancelInput(m, w, event.trader_id, event.order_id)
        case CancelAllInput():
            return WireCancelAllInput(m, w, event.trader_id, event.product_id)
        case DepositInput():
            return WireDepositInput(m, w, event.trader_id, event.asset, event.amount)
        case WithdrawInput():
            return WireWithdrawInput(m, w, event.trader_id, event.asset, event.amount)
        case FundInput():
            return WireFundInput(m, w, event.asset, event.amount)
        case BondInput():
            return WireBondInput(m, w, event.peer, event.amount, event.withdraw)
        case BondReceivedInput():
            return _bond_received_to_wire(event, m, w)
        case ReinstateInput():
            return WireReinstateInput(m, w, event.peer)
        case AddPeerInput():
            return WireAddPeerInput(m, w, event.peer)
        case AddProductInput():
            return WireAddProductInput(m, w, event.product, event.reference_price_ticks)
        case ConfigInput():
            return WireConfigInput(m, w, event.config)
        case ReceiveInput():
            return WireReceiveInput(m, w, event.sender, hlc_to_wire(event.hlc), _message(event))
        case TickInput():
            return WireTickInput(m, w)
        case RestartInput():
            return WireRestartInput(m, w, event.logic_version)
    raise JournalError("bad_entry", f"not a journal input: {type(event).__name__}")


def _genesis_to_wire(g: Genesis) -> WireGenesis:
    return WireGenesis(g.node_id, g.config, g.products, g.peers, g.secret, g.reference_prices)


def _request_to_wire(r: OrderRequest) -> WireOrderRequest:
    side = _lookup(_SIDE_TO_WIRE, r.side, "side")
    tif = _lookup(_TIF_TO_WIRE, r.time_in_force, "time_in_force")
    return WireOrderRequest(
        r.trader_id, r.client_order_id, r.product_id, side, r.quantity_lots, r.price_ticks, tif
    )


def _bond_received_to_wire(e: BondReceivedInput, m: int, w: int) -> WireBondReceivedInput:
    return WireBondReceivedInput(m, w, e.peer, e.bond_id, e.asset, e.amount)


def _message(event: ReceiveInput) -> WireMessage:
    try:
        return to_wire(event.message)
    except ProtocolError as error:
        raise JournalError("bad_entry", f"ReceiveInput.message: {error}") from None


def _lookup(table: Mapping[Any, T], value: object, field: str) -> T:
    try:
        return table[value]
    except (KeyError, TypeError):
        raise JournalError("bad_entry", f"OrderRequest.{field}: {value!r}") from None


# ---------------------------------------------------------------- from wire


def _entry_from_wire(wire: WireInput) -> JournalEntry:
    return JournalEntry(Now(wire.mono_ms, wire.wall_ms), _input_from_wire(wire))


def _input_from_wire(wire: WireInput) -> Input:
    match wire:
        case WireGenesisInput():
            return GenesisInput(_genesis_from_wire(wire.genesis), wire.logic_version)
        case WirePlaceInput():
            return PlaceInput(_request_from_wire(wire.request))
        case WireCancelInput():
            return CancelInput(wire.trader_id, wire.order_id)
        case WireCancelAllInput():
            return CancelAllInput(wire.trader_id, wire.product_id)
        case WireDepositInput():
            return DepositInput(wire.trader_id, wire.asset, wire.amount)
        case WireWithdrawInput():
            return WithdrawInput(wire.trader_id, wire.asset, wire.amount)
        case WireFundInput():
            return FundInput(wire.asset, wire.amount)
        case WireBondInput():
            return BondInput(NodeId(wire.peer), wire.amount, wire.withdraw)
        case WireBondReceivedInput():
            return BondReceivedInput(NodeId(wire.peer), wire.bond_id, wire.asset, wire.amount)
        case WireReinstateInput():
            return ReinstateInput(NodeId(wire.peer))
        case WireAddPeerInput():
            return AddPeerInput(NodeId(wire.peer))
        case WireAddProductInput():
            return AddProductInput(wire.product, wire.reference_price_ticks)
        case WireConfigInput():
            return ConfigInput(wire.config)
        case WireReceiveInput():
            return _receive_from_wire(wire)
        case WireTickInput():
            return TickInput()
        case WireRestartInput():
            return RestartInput(wire.logic_version)


def _genesis_from_wire(w: WireGenesis) -> Genesis:
    peers = tuple(NodeId(peer) for peer in w.peers)
    return Genesis(NodeId(w.node_id), w.config, w.products, peers, w.secret, w.reference_prices)


def _request_from_wire(w: WireOrderRequest) -> OrderRequest:
    side, tif = _SIDE_FROM_WIRE[w.side], _TIF_FROM_WIRE[w.time_in_force]
    return OrderRequest(
        w.trader_id, w.client_order_id, w.product_id, side, w.quantity_lots, w.price_ticks, tif
    )


def _receive_from_wire(w: WireReceiveInput) -> ReceiveInput:
    try:
        message = from_wire(w.message)
    except ProtocolError as error:
        # Rules between a message's fields (a statement's order) are checked
        # by the message codec, and fail as the peer's; here they are ours.
        raise JournalError("bad_field", f"ReceiveInput.message: {error}") from None
    return ReceiveInput(NodeId(w.sender), hlc_from_wire(w.hlc), message)
