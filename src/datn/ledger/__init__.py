"""Double-entry ledger with holds (pure).

Accounts are keyed by (owner, asset) and hold integer amounts in the asset's
smallest unit. Money and positions move only by entries whose postings balance
per asset, so per asset the balances of all accounts always sum to zero:
deposits come from external accounts, whose negative balances are what the
node has issued. A hold reserves part of an account's available amount for an
open order or a pending withdrawal and later either is consumed by an entry
(in the same atomic step as the movement) or released. A snapshot holds the
whole state as one immutable value, from which a ledger is restored.
"""

from datn.ledger.accounts import (
    BOUNDED,
    EXTERNAL,
    UNBOUNDED,
    AccountKey,
    AccountKind,
    AccountRule,
)
from datn.ledger.entries import Entry, EntryId, Hold, HoldId, HoldUse, Posting
from datn.ledger.errors import LedgerError
from datn.ledger.ledger import EXTERNAL_OWNER, Ledger, Outcome
from datn.ledger.snapshot import (
    AccountSnapshot,
    EntrySnapshot,
    HoldSnapshot,
    HoldUseSnapshot,
    LedgerSnapshot,
    PostingSnapshot,
)

__all__ = [
    "BOUNDED",
    "EXTERNAL",
    "EXTERNAL_OWNER",
    "UNBOUNDED",
    "AccountKey",
    "AccountKind",
    "AccountRule",
    "AccountSnapshot",
    "Entry",
    "EntryId",
    "EntrySnapshot",
    "Hold",
    "HoldId",
    "HoldSnapshot",
    "HoldUse",
    "HoldUseSnapshot",
    "Ledger",
    "LedgerError",
    "LedgerSnapshot",
    "Outcome",
    "Posting",
    "PostingSnapshot",
]
