"""Hostile input to the wire: whatever a peer sends, only a ProtocolError comes out.

Random bytes mostly fail the size, version or signature check, so the fuzzers
that aim at the decoder sign their bodies first (as a peer with a valid key
would) and reach the MessagePack parser and the validation behind it.
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_wire import ALICE, BOB, CAROL, batches, bob_links, messages

from datn.wire import (
    Batch,
    InboundLinks,
    ProtocolError,
    RemoteProtocolError,
    decode_message,
    encode_message,
    open_frame,
    seal,
    sign_frame,
)
from datn.wire.frame import HEADER_BYTES
from datn.wire.keys import SIGNATURE_BYTES
from datn.wire.limits import MAX_FRAME_BYTES, MAX_INT64

# Values MessagePack can carry, nested: the raw material of wrong shapes.
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=90),
    st.binary(max_size=40),
)
trees = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)
# Integers that no field accepts: every wire int is in [0, 2**63 - 1], except a
# statement's net amounts, which are in [-(2**63 - 1), 2**63 - 1].
out_of_range_ints = st.sampled_from([-1, -(2**63), MAX_INT64 + 1, 2**64 - 1])
out_of_range_net_amounts = st.sampled_from([-(2**63), MAX_INT64 + 1, 2**64 - 1])


def body_of(batch: Batch) -> bytes:
    return seal(ALICE, batch)[HEADER_BYTES:-SIGNATURE_BYTES]


def signed(body: bytes) -> bytes:
    """A frame from Alice to Bob around ``body``, signed as Alice would sign it."""
    return sign_frame(ALICE, BOB.node_id, body)


def only_protocol_errors(frame: bytes) -> Batch | None:
    """Open ``frame``; a refusal must be a RemoteProtocolError and nothing else."""
    try:
        return open_frame(frame)
    except RemoteProtocolError:
        return None


def int_paths(tree: Any, path: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    """Where the ints (not bools) are in a tree of lists."""
    if isinstance(tree, list):
        return [p for i, child in enumerate(tree) for p in int_paths(child, (*path, i))]
    return [path] if type(tree) is int else []


def is_net_amount(tree: Any, path: tuple[int, ...]) -> bool:
    """Whether ``path`` leads to the amount of an ``[asset, amount]`` pair: no
    other array on the wire starts with a string and has two elements."""
    parent = tree
    for index in path[:-1]:
        parent = parent[index]
    return path[-1] == 1 and len(parent) == 2 and isinstance(parent[0], str)


def replace(tree: Any, path: tuple[int, ...], value: object) -> Any:
    if not path:
        return value
    copy = list(tree)
    copy[path[0]] = replace(copy[path[0]], path[1:], value)
    return copy


def leaf_paths(tree: Any, path: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    if isinstance(tree, list):
        inner = [p for i, child in enumerate(tree) for p in leaf_paths(child, (*path, i))]
        return [path, *inner]
    return [path]


@settings(max_examples=600)
@given(st.binary(max_size=400))
def test_arbitrary_bytes(data: bytes) -> None:
    links = bob_links()
    for attempt in (open_frame, decode_message, links.receive):
        with pytest.raises(ProtocolError):
            attempt(data)


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=300))
def test_arbitrary_bodies_signed_by_a_peer(body: bytes) -> None:
    only_protocol_errors(signed(body))
    with pytest.raises(ProtocolError):
        bob_links().receive(signed(body) + b"\x00")


@settings(max_examples=400)
@given(trees)
def test_well_formed_msgpack_of_the_wrong_shape(tree: Any) -> None:
    data = msgspec.msgpack.encode(tree)
    only_protocol_errors(signed(data))
    with contextlib.suppress(RemoteProtocolError):
        decode_message(data)


@settings(max_examples=300)
@given(batches(), st.data())
def test_valid_frames_with_one_part_replaced(batch: Batch, data: st.DataObject) -> None:
    tree = msgspec.msgpack.decode(body_of(batch))
    path = data.draw(st.sampled_from(leaf_paths(tree)))
    damaged = msgspec.msgpack.encode(replace(tree, path, data.draw(trees)))
    opened = only_protocol_errors(signed(damaged))
    if opened is not None:
        # A replacement that happens to be valid still decodes to a sound batch.
        assert open_frame(seal(ALICE, opened)) == opened


@settings(max_examples=300)
@given(batches(), st.data())
def test_out_of_range_integers_are_always_refused(batch: Batch, data: st.DataObject) -> None:
    tree = msgspec.msgpack.decode(body_of(batch))
    path = data.draw(st.sampled_from(int_paths(tree)))
    signed_slot = is_net_amount(tree, path)
    value = data.draw(out_of_range_net_amounts if signed_slot else out_of_range_ints)
    with pytest.raises(RemoteProtocolError) as error:
        open_frame(signed(msgspec.msgpack.encode(replace(tree, path, value))))
    assert error.value.code == "malformed"


@settings(max_examples=100)
@given(batches())
def test_every_truncation_of_a_valid_frame(batch: Batch) -> None:
    frame = seal(ALICE, batch)
    body = body_of(batch)
    for end in range(len(frame)):
        with pytest.raises(RemoteProtocolError):
            open_frame(frame[:end])
    for end in range(len(body)):
        with pytest.raises(RemoteProtocolError) as error:
            open_frame(signed(body[:end]))
        assert error.value.code in {"frame_too_short", "malformed"}


@settings(max_examples=200)
@given(messages, st.data())
def test_every_truncation_of_a_message(message: Any, data: st.DataObject) -> None:
    encoded = encode_message(message)
    end = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(RemoteProtocolError):
        decode_message(encoded[:end])


@settings(max_examples=30)
@given(st.integers(MAX_FRAME_BYTES + 1, 4 * MAX_FRAME_BYTES), st.binary(min_size=1, max_size=1))
def test_oversized_frames(size: int, fill: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as error:
        open_frame(fill * size)
    assert error.value.code == "frame_too_large"
    with pytest.raises(RemoteProtocolError, match="frame_too_large"):
        bob_links().receive(fill * size)


@settings(max_examples=200)
@given(batches(), st.binary(min_size=1, max_size=8), st.integers(0, 10_000))
def test_bytes_spliced_into_a_valid_frame(batch: Batch, junk: bytes, at: int) -> None:
    frame = seal(ALICE, batch)
    at %= len(frame)
    links = InboundLinks(BOB.node_id, [ALICE.node_id, CAROL.node_id])
    for damaged in (frame[:at] + junk + frame[at:], frame[:at] + junk + frame[at + len(junk) :]):
        if damaged == frame:
            continue
        with pytest.raises(RemoteProtocolError):
            links.receive(damaged)
