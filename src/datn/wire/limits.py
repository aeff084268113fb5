"""Named bounds on everything a peer can make the wire layer hold or parse.

A frame is parsed only up to these bounds, so a hostile peer can cost a node at
most one frame's worth of memory and one signature check per frame.
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
