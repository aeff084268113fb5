"""The wire: how peer messages travel between nodes.

``schema`` and ``codec`` map the protocol's messages to compact MessagePack and
back, validating every field on the way in; ``keys`` holds node identity and
Ed25519 signatures; ``frame`` packs envelopes into batches, one signed frame
each; ``link`` numbers envelopes on the way out and refuses replays on the way
in. ``journal`` and ``snapshot`` give a node's journal entries and snapshots
their stored form, versioned, and read them back exactly. All of it is pure:
bytes and values in, bytes and values out. Whatever a peer sends, the only
error it can cause is a :class:`RemoteProtocolError`; our own misuse raises
:class:`LocalProtocolError`; whatever a store hands back, the only error
reading it can cause is a :class:`JournalError` (a :class:`SnapshotError` for a
snapshot).
"""

from __future__ import annotations

from datn.wire.codec import decode_message, encode_message, from_wire, to_wire
from datn.wire.errors import (
    JournalError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    SnapshotError,
    WireError,
)
from datn.wire.frame import (
    FRAME_VERSION,
    Batch,
    Envelope,
    FrameHeader,
    open_frame,
    read_header,
    seal,
    sign_frame,
)
from datn.wire.journal import JOURNAL_VERSION, decode_entry, encode_entry
from datn.wire.keys import (
    NodeKey,
    Purpose,
    check_node_id,
    node_id_from_public_key,
    public_key_from_node_id,
    verify,
)
from datn.wire.link import InboundLink, InboundLinks, OutboundLink, ReplayWindow
from datn.wire.recovery import recover_node
from datn.wire.snapshot import SNAPSHOT_FORMAT_VERSION, decode_snapshot, encode_snapshot

__all__ = [
    "FRAME_VERSION",
    "JOURNAL_VERSION",
    "SNAPSHOT_FORMAT_VERSION",
    "Batch",
    "Envelope",
    "FrameHeader",
    "InboundLink",
    "InboundLinks",
    "JournalError",
    "LocalProtocolError",
    "NodeKey",
    "OutboundLink",
    "ProtocolError",
    "Purpose",
    "RemoteProtocolError",
    "ReplayWindow",
    "SnapshotError",
    "WireError",
    "check_node_id",
    "decode_entry",
    "decode_message",
    "decode_snapshot",
    "encode_entry",
    "encode_message",
    "encode_snapshot",
    "from_wire",
    "node_id_from_public_key",
    "open_frame",
    "public_key_from_node_id",
    "read_header",
    "recover_node",
    "seal",
    "sign_frame",
    "to_wire",
    "verify",
]
