"""Entries, postings and holds: the immutable records the ledger is made of.

An entry is a set of postings that moves amounts between accounts and balances
per asset: for every asset it touches, its postings sum to zero. So a trade is
one entry with four postings (cash one way, the product the other), and it is
booked in full or not at all. An entry may also consume from holds, which is
how a reservation turns into a movement in one atomic step.

Every amount is an integer in the asset's smallest unit: minor units of a
currency, lots of a product. Validation happens when a record is built, so an
unbalanced entry or a zero posting cannot exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NewType

import msgspec

from datn.domain.assets import AssetCode
from datn.domain.limits import MAX_AMOUNT_MINOR
from datn.ledger._checks import check_amount, check_name, check_range
from datn.ledger.accounts import AccountKey
from datn.ledger.errors import LedgerError
from datn.ledger.limits import (
    MAX_HOLD_USES_PER_ENTRY,
    MAX_LEDGER_ID_LENGTH,
    MAX_POSTINGS_PER_ENTRY,
)

EntryId = NewType("EntryId", str)
HoldId = NewType("HoldId", str)


@dataclass(frozen=True, slots=True)
class Posting:
    """One line of an entry: ``amount`` is added to the account's balance.

    A negative amount takes from the account; ``amount`` is in the asset's
    smallest unit and never zero.
    """

    account: AccountKey
    amount: int

    def __post_init__(self) -> None:
        amount = self.amount
        # The common case inline, as in Hold: a node builds two to four
        # postings for every trade and bond; a refusal takes the checks that
        # give its reason code.
        if (
            type(self.account) is AccountKey
            and type(amount) is int
            and -MAX_AMOUNT_MINOR <= amount <= MAX_AMOUNT_MINOR
            and amount != 0
        ):
            return
        _check_account("account", self.account)
        check_range("amount", amount, -MAX_AMOUNT_MINOR, MAX_AMOUNT_MINOR)
        if amount == 0:
            raise LedgerError("amount", "zero_amount", "a posting must move something")


@dataclass(frozen=True, slots=True)
class HoldUse:
    """Consume ``amount`` (positive, the asset's smallest unit) from hold ``hold_id``."""

    hold_id: HoldId
    amount: int

    def __post_init__(self) -> None:
        check_name("hold_id", self.hold_id)
        check_amount("amount", self.amount)


class Hold(msgspec.Struct, frozen=True, gc=False):
    """An open reservation: ``amount`` of ``account`` that is no longer available.

    A frozen msgspec struct rather than a dataclass, like :class:`AccountKey`:
    every partial fill builds a new one, and a restore builds one per open
    hold, so its construction cost counts.
    """

    hold_id: HoldId
    account: AccountKey
    amount: int

    def __post_init__(self) -> None:
        hold_id, amount = self.hold_id, self.amount
        # The common case inline, as in AccountKey; a refusal takes the checks
        # that give its reason code.
        if not (
            type(hold_id) is str
            and 0 < len(hold_id) <= MAX_LEDGER_ID_LENGTH
            and hold_id.isprintable()
            and type(self.account) is AccountKey
            and type(amount) is int
            and 0 < amount <= MAX_AMOUNT_MINOR
        ):
            check_name("hold_id", hold_id)
            _check_account("account", self.account)
            check_amount("amount", amount)


@dataclass(frozen=True, slots=True)
class Entry:
    """A balanced movement between accounts, identified by ``entry_id``.

    Consuming from a hold means the held amount is what moves: the entry must
    take at least that much from the hold's account. A hold is therefore never
    released silently by an entry; releasing is :meth:`Ledger.release_hold`.
    """

    entry_id: EntryId
    postings: tuple[Posting, ...]
    hold_uses: tuple[HoldUse, ...] = ()

    def __post_init__(self) -> None:
        entry_id, postings, uses = self.entry_id, self.postings, self.hold_uses
        # The common case in one pass, as in Hold: every posting a Posting,
        # each asset summing to zero, at most one hold use of one hold; a
        # refusal (or anything unusual) takes the checks that give its reason.
        if (
            type(entry_id) is str
            and 0 < len(entry_id) <= MAX_LEDGER_ID_LENGTH
            and entry_id.isprintable()
            and type(postings) is tuple
            and 1 <= len(postings) <= MAX_POSTINGS_PER_ENTRY
            and type(uses) is tuple
            and (not uses or (len(uses) == 1 and type(uses[0]) is HoldUse))
        ):
            sums: dict[str, int] = {}
            for posting in postings:
                if type(posting) is not Posting:
                    break
                asset = posting.account.asset
                sums[asset] = sums.get(asset, 0) + posting.amount
            else:
                if not any(sums.values()):
                    return
        check_name("entry_id", entry_id)
        self._check_postings()
        self._check_hold_uses()
        _check_balanced(postings)

    @classmethod
    def transfer(
        cls,
        entry_id: str,
        debit: AccountKey,
        credit: AccountKey,
        amount: int,
        hold_id: str | None = None,
    ) -> Entry:
        """Move ``amount`` from ``debit`` to ``credit``, consuming it from ``hold_id`` if given."""
        _check_account("debit", debit)
        _check_account("credit", credit)
        if debit.asset != credit.asset:
            raise LedgerError("credit", "asset_mismatch", f"{debit} and {credit} differ in asset")
        if debit == credit:
            raise LedgerError("credit", "same_account", f"{debit} cannot pay itself")
        check_amount("amount", amount)
        uses = () if hold_id is None else (HoldUse(HoldId(hold_id), amount),)
        postings = (Posting(debit, -amount), Posting(credit, amount))
        return cls(EntryId(entry_id), postings, uses)

    def _check_postings(self) -> None:
        if not isinstance(self.postings, tuple):
            raise LedgerError("postings", "not_tuple", "postings must be a tuple")
        if not 1 <= len(self.postings) <= MAX_POSTINGS_PER_ENTRY:
            raise LedgerError(
                "postings",
                "bad_posting_count",
                f"an entry has 1 to {MAX_POSTINGS_PER_ENTRY} postings, got {len(self.postings)}",
            )
        for posting in self.postings:
            if not isinstance(posting, Posting):
                raise LedgerError("postings", "not_posting", f"got {posting!r}")

    def _check_hold_uses(self) -> None:
        if not isinstance(self.hold_uses, tuple):
            raise LedgerError("hold_uses", "not_tuple", "hold uses must be a tuple")
        if len(self.hold_uses) > MAX_HOLD_USES_PER_ENTRY:
            raise LedgerError(
                "hold_uses",
                "too_many_hold_uses",
                f"an entry consumes at most {MAX_HOLD_USES_PER_ENTRY} holds",
            )
        seen: set[HoldId] = set()
        for use in self.hold_uses:
            if not isinstance(use, HoldUse):
                raise LedgerError("hold_uses", "not_hold_use", f"got {use!r}")
            # One use per hold keeps "how much did this entry take from H" a single number.
            if use.hold_id in seen:
                raise LedgerError("hold_uses", "duplicate_hold_use", f"hold {use.hold_id} twice")
            seen.add(use.hold_id)


def _check_account(field: str, account: object) -> None:
    if not isinstance(account, AccountKey):
        raise LedgerError(field, "not_account", f"must be an AccountKey, got {account!r}")


def _check_balanced(postings: tuple[Posting, ...]) -> None:
    sums: dict[AssetCode, int] = {}
    for posting in postings:
        asset = posting.account.asset
        sums[asset] = sums.get(asset, 0) + posting.amount
    if any(sums.values()):
        off = {asset: total for asset, total in sums.items() if total != 0}
        detail = ", ".join(f"{asset} by {total:+d}" for asset, total in off.items())
        raise LedgerError("postings", "unbalanced", f"postings do not sum to zero: {detail}")
