"""Named bounds of the ledger.

Every balance and every amount has to travel over the wire and into storage as
a signed 64-bit integer, so the ledger refuses any operation that would leave
that range instead of relying on Python's unbounded integers.
"""

from __future__ import annotations

from typing import Final

from datn.domain.limits import MAX_AMOUNT_MINOR

MAX_BALANCE: Final = MAX_AMOUNT_MINOR
"""Highest balance (or total held) an account may reach, in the asset's smallest unit."""

MIN_BALANCE: Final = -MAX_AMOUNT_MINOR - 1
"""Lowest balance an account may reach: the bottom of the signed 64-bit range."""

MAX_LEDGER_ID_LENGTH: Final = 128
"""Longest owner, entry id or hold id, in characters; ids are often composite."""

MAX_ASSET_CODE_LENGTH: Final = 80
"""Longest asset code: a currency code or a product id (``p1`` + 64 hex digits)."""

MAX_POSTINGS_PER_ENTRY: Final = 256
"""A trade needs four postings; a settlement nets many assets into one entry."""

MAX_HOLD_USES_PER_ENTRY: Final = 64
"""How many holds one entry may consume from."""

MAX_OPEN_HOLDS: Final = 1_000_000
"""Most holds open at once in one ledger (about one per open order); the
default, and the ceiling of what ``Ledger(max_open_holds=...)`` accepts."""

MAX_ID_MEMORY: Final = 1_000_000
"""Most entry ids, and separately most ended hold ids, that a ledger built with
``Ledger(id_memory=...)`` may be asked to remember: hours of fills at the rate
one node sustains, far longer than any retry stays in flight."""
