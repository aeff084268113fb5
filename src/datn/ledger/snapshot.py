"""The whole state of a ledger as one immutable value.

A snapshot is what a node hands to its store instead of keeping its history
in memory, and what :meth:`Ledger.restore` rebuilds a ledger from. It holds
only state: accounts with their balances and rules, open holds, and the entry
ids and ended hold ids the ledger still remembers. Totals the ledger derives
from these (issued and held per asset, held per account, accounts per owner)
are recomputed on restore, so a snapshot cannot contradict itself through them.

The order of every sequence is canonical, so that equal states give equal
snapshots, equal bytes and equal state hashes: accounts sorted by owner and
asset, open holds by id. Remembered entries and ended holds are sorted by id
when the ledger remembers all of them; when its memory is bounded they are
listed oldest first instead, because that order decides which id is forgotten
next and so is part of how the ledger will behave.

The structs encode as msgpack arrays (``array_like``), so
``msgspec.msgpack.decode(data, type=LedgerSnapshot)`` reads back an equal
value, and they hold no cycles (``gc=False``). Those bytes are what
:meth:`LedgerSnapshot.digest` hashes.
"""

from __future__ import annotations

import hashlib
from operator import attrgetter

import msgspec

from datn.domain.assets import AssetCode
from datn.ledger.accounts import AccountKind
from datn.ledger.entries import EntryId, HoldId
from datn.ledger.errors import LedgerError


class AccountSnapshot(
    msgspec.Struct, frozen=True, array_like=True, gc=False, forbid_unknown_fields=True
):
    """One open account: its key, its rule and its amounts."""

    owner: str
    asset: AssetCode
    kind: AccountKind
    credit_limit: int
    balance: int
    held: int


class HoldSnapshot(
    msgspec.Struct, frozen=True, array_like=True, gc=False, forbid_unknown_fields=True
):
    """One open hold with what remains of it. ``account`` is the index of
    its account in the snapshot's ``accounts``: a node holds for every open
    order, and naming the account (a product id is 66 characters) in each
    would be most of the snapshot."""

    hold_id: HoldId
    account: int
    amount: int


class PostingSnapshot(
    msgspec.Struct, frozen=True, array_like=True, gc=False, forbid_unknown_fields=True
):
    """One posting of a remembered entry."""

    owner: str
    asset: AssetCode
    amount: int


class HoldUseSnapshot(
    msgspec.Struct, frozen=True, array_like=True, gc=False, forbid_unknown_fields=True
):
    """What a remembered entry consumed from one hold."""

    hold_id: HoldId
    amount: int


class EntrySnapshot(
    msgspec.Struct, frozen=True, array_like=True, gc=False, forbid_unknown_fields=True
):
    """A remembered entry, complete, so that a retry can be told from a conflict."""

    entry_id: EntryId
    postings: tuple[PostingSnapshot, ...]
    hold_uses: tuple[HoldUseSnapshot, ...]


class LedgerSnapshot(
    msgspec.Struct, frozen=True, array_like=True, gc=False, forbid_unknown_fields=True
):
    """Everything a ledger needs to go on exactly where it was.

    ``max_open_holds`` and ``id_memory`` are the ledger's bounds: they decide
    later refusals and what is forgotten, so they belong to its state.
    """

    max_open_holds: int
    id_memory: int | None
    accounts: tuple[AccountSnapshot, ...]
    holds: tuple[HoldSnapshot, ...]
    ended_holds: tuple[HoldId, ...]
    entries: tuple[EntrySnapshot, ...]

    def digest(self) -> str:
        """SHA-256 (hex) of the snapshot's msgpack encoding: the ledger's state hash.

        Storing and sending snapshots is for the adapters that do encoding;
        the core only needs the bytes to hash them.
        """
        return hashlib.sha256(msgspec.msgpack.encode(self)).hexdigest()

    def check_shape(self) -> None:
        """Refuse sequences that are not tuples and amounts that are not ints.

        A snapshot the decoder read has this shape already; one built by
        hand may not. This runs as interpreted code, before the compiled
        ledger reads the fields: compiled code would reject a wrong type
        with a TypeError, or read ``True`` as the int 1, where the ledger
        owes a :class:`LedgerError` naming the field."""
        kinds = {
            "accounts": AccountSnapshot,
            "holds": HoldSnapshot,
            "ended_holds": str,
            "entries": EntrySnapshot,
        }
        for field, kind in kinds.items():
            items = getattr(self, field)
            if type(items) is not tuple:
                raise LedgerError(field, "not_tuple", f"{field} must be a tuple")
            if any(type(item) is not kind for item in items):
                raise LedgerError(field, "wrong_type", f"{field} must hold {kind.__name__}")
        for field, names in (
            ("accounts", ("credit_limit", "balance", "held")),
            ("holds", ("account", "amount")),
        ):
            items = getattr(self, field)
            for name in names:
                if any(type(value) is not int for value in map(attrgetter(name), items)):
                    raise LedgerError(name, "not_integer", f"every {name} must be an integer")
