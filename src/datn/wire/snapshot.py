"""The stored form of a node snapshot: a short header, then the state.

    magic b"datn-snap" (9 bytes) | format version (1 byte) | SHA-256 of the body (32) | body

The body is the MessagePack of the :class:`~datn.protocol.node.NodeSnapshot`
tree, maps with field names, written in deterministic order so the same state
gives the same bytes in every process. A reader checks the header before it
parses anything: the magic says the bytes are a snapshot at all, the version
that this code reads its format, and the checksum that the body is what was
written (a snapshot is large and read back rarely, so damage in it must not
pass for state). Then it checks the state's own ``version`` (the shape of the
node's state, which the core also checks) so that a snapshot of another shape
says so, instead of failing on whichever field changed first.

The state's structs and the configs inside it decode leniently: msgspec skips
map keys it does not know, and a snapshot written by a newer version could
lose a field that way. So a snapshot must also read back as it was stored,
as journal entries carrying configs must (see :mod:`datn.wire.journal`).
Writing checks that the snapshot reads back exactly; snapshots are taken
rarely, and one that cannot be restored is worse than none.
"""

from __future__ import annotations

import hashlib
from typing import Final, TypeVar

import msgspec

from datn.domain.bulk import collector_paused
from datn.protocol.node import SNAPSHOT_VERSION, NodeSnapshot
from datn.wire.errors import SnapshotError
from datn.wire.journal import DECODE_ERRORS, read_back_difference, stored_surplus
from datn.wire.limits import MAX_SNAPSHOT_BYTES

SNAPSHOT_MAGIC: Final = b"datn-snap"
SNAPSHOT_FORMAT_VERSION: Final = 1
"""The layout of the header and body; the node state's shape is versioned
apart, by ``NodeSnapshot.version``."""

T = TypeVar("T")

_CHECKSUM_BYTES: Final = 32
SNAPSHOT_HEADER_BYTES: Final = len(SNAPSHOT_MAGIC) + 1 + _CHECKSUM_BYTES


class _StateVersion(msgspec.Struct, array_like=True):
    """The body's ``version`` alone, every other field skipped."""

    version: int


_ENCODER: Final = msgspec.msgpack.Encoder(order="deterministic")
_DECODER: Final = msgspec.msgpack.Decoder(NodeSnapshot)
_VERSION_DECODER: Final = msgspec.msgpack.Decoder(_StateVersion)
_ANY_DECODER: Final = msgspec.msgpack.Decoder()


def encode_snapshot(snapshot: NodeSnapshot, *, verify: bool = True) -> bytes:
    """The stored form of ``snapshot``; SnapshotError (``bad_snapshot``) if it
    cannot be written or (``verify``, the default) would not read back
    exactly. A caller that reads every snapshot back anyway (the simulator,
    which recovers crashed nodes from them and checks their state) may skip
    the check."""
    try:
        body = _ENCODER.encode(snapshot)
    except (msgspec.MsgspecError, TypeError, ValueError, OverflowError) as error:
        raise SnapshotError("bad_snapshot", str(error)) from None
    header = SNAPSHOT_MAGIC + bytes([SNAPSHOT_FORMAT_VERSION]) + hashlib.sha256(body).digest()
    data = header + body
    if not verify:
        return data
    try:
        read = decode_snapshot(data)
    except SnapshotError as error:
        raise SnapshotError("bad_snapshot", f"would not read back: {error}") from None
    if read != snapshot:
        where = read_back_difference(snapshot, read, "snapshot") or "snapshot"
        raise SnapshotError("bad_snapshot", f"would not read back as written: {where}")
    return data


def decode_snapshot(data: bytes) -> NodeSnapshot:
    """The snapshot stored as ``data``. Whatever the bytes, the only error is
    a :class:`SnapshotError` naming what is wrong."""
    body = _checked_body(data)
    version = _read(_VERSION_DECODER, body, "malformed", "not a node snapshot").version
    if version != SNAPSHOT_VERSION:
        raise SnapshotError(
            "unsupported_state_version",
            f"node state version {version}; this code reads {SNAPSHOT_VERSION}",
        )
    with collector_paused():
        snapshot = _read(_DECODER, body, "bad_field", "snapshot")
    _check_as_stored(body, snapshot)
    return snapshot


def _checked_body(data: bytes) -> bytes:
    """The body of ``data`` once its size, magic, version and checksum pass."""
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise SnapshotError("too_large", f"{len(data)} > {MAX_SNAPSHOT_BYTES} bytes")
    if len(data) < SNAPSHOT_HEADER_BYTES:
        raise SnapshotError(
            "too_short", f"{len(data)} bytes; the header alone is {SNAPSHOT_HEADER_BYTES}"
        )
    magic_end = len(SNAPSHOT_MAGIC)
    if data[:magic_end] != SNAPSHOT_MAGIC:
        raise SnapshotError("bad_magic", f"not a snapshot: starts {bytes(data[:magic_end])!r}")
    if data[magic_end] != SNAPSHOT_FORMAT_VERSION:
        raise SnapshotError(
            "unsupported_version",
            f"snapshot format {data[magic_end]}; this code reads {SNAPSHOT_FORMAT_VERSION}",
        )
    checksum, body = data[magic_end + 1 : SNAPSHOT_HEADER_BYTES], data[SNAPSHOT_HEADER_BYTES:]
    if hashlib.sha256(body).digest() != checksum:
        raise SnapshotError("bad_checksum", "the body is not what was written (damaged store?)")
    return body


def _read(decoder: msgspec.msgpack.Decoder[T], body: bytes, code: str, what: str) -> T:
    try:
        return decoder.decode(body)
    except DECODE_ERRORS as error:
        raise SnapshotError(code, f"{what}: {error}") from None


def _check_as_stored(body: bytes, snapshot: NodeSnapshot) -> None:
    """Refuse a body holding a key or value the decoded snapshot does not
    reproduce (see :func:`datn.wire.journal.stored_surplus`)."""
    rebuilt = _ENCODER.encode(snapshot)
    if rebuilt == body:
        return
    stored = _read(_ANY_DECODER, body, "malformed", "snapshot")
    fault = stored_surplus(stored, _ANY_DECODER.decode(rebuilt), "snapshot")
    if fault is not None:
        raise SnapshotError(*fault)
