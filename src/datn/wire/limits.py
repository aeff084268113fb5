"""Named bounds on everything a peer, or a store, can make the wire layer hold or parse.

A frame is parsed only up to these bounds, so a hostile peer can cost a node at
most one frame's worth of memory and one signature check per frame. Journal
entries and snapshots are the node's own data, but a damaged store must not be
able to make recovery take unbounded memory either.
"""

from __future__ import annotations

from typing import Final

MAX_INT64: Final = 2**63 - 1
"""Largest integer on the wire: every id, count and clock fits a signed 64-bit
integer, so it fits every store and every peer's language."""

MAX_FRAME_BYTES: Final = 64 * 1024
"""Largest frame, header and signature included. A sender splits larger batches."""

MAX_BATCH_ENVELOPES: Final = 512
"""Most envelopes in one frame."""

MAX_OFFERS_PER_REPLY: Final = 100
"""Most offers in one PotentialTrades (an originator takes at most 100 anyway)."""

MAX_PRODUCT_ID_LENGTH: Final = 80
"""Longest product id; a content-addressed id is 66 characters."""

MAX_NODE_NAME_LENGTH: Final = 64
"""Longest node name in a message body: a node id (its public key in hex) is
64 characters, the simulator's names are shorter."""

MAX_REASON_LENGTH: Final = 64
"""Longest refusal reason; reasons are short machine-readable codes."""

MAX_LOCKS_PER_STATEMENT: Final = 10_000
"""Most trades (lock ids) one settlement statement covers. A random lock id
takes 9 bytes on the wire, so a frame has room for only about 7,000 of them:
a statement of random ids meets the frame limit before this one."""

MAX_ASSETS_PER_STATEMENT: Final = 64
"""Most assets one settlement statement nets."""

REPLAY_WINDOW: Final = 1024
"""How far above the highest contiguous sequence number an inbound link accepts
(and so remembers) out-of-order envelopes."""

MIN_INT64: Final = -(2**63)
"""Smallest integer a journal entry carries: the signed 64-bit floor."""

MAX_JOURNAL_ENTRY_BYTES: Final = 16 * 1024 * 1024
"""Largest journal entry, written or read. A genesis with every product and
peer a node may list fits well inside; a store that hands back more is
damaged, and the reader refuses before it parses."""

MAX_JOURNAL_TEXT_LENGTH: Final = 256
"""Longest id or code in a journal entry (trader id, client order id, asset,
node id). The core refuses ids longer than 64 characters itself, after the
input that carried one was journaled, so the journal bound is looser than the
core's: it only keeps a damaged entry from holding a huge string."""

MAX_NODE_PRODUCTS: Final = 10_000
"""Most products (and opening reference prices) a node's genesis lists."""

MAX_NODE_PEERS: Final = 10_000
"""Most peers a node's genesis lists."""

MAX_SECRET_BYTES: Final = 64
"""Longest genesis secret: it keys BLAKE2b, whose key is at most 64 bytes."""

MAX_SNAPSHOT_BYTES: Final = 1024 * 1024 * 1024
"""Largest snapshot, header included, written or read. A snapshot decodes into
several times its size in objects, so this bounds the memory a store's bytes
can make the reader take."""
