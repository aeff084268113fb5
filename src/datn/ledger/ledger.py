"""The double-entry ledger with holds.

State is a map from account to (balance, held). ``available = balance - held``
is what the owner may still commit; a bounded account keeps it at or above its
floor (zero, or minus its credit limit). A hold reserves part of the available
amount, as an open order's cash or position, and ends by being consumed by
entries, released, or a mix of both, like a two-phase pending transfer.

Every command either applies completely or raises :class:`LedgerError` and
changes nothing. Commands first compute the full set of changes without
touching state (the plan), then write them; all refusals happen while planning.

Entries are idempotent by ``entry_id``: posting an entry again with the same
content is a no-op that reports :attr:`Outcome.DUPLICATE`; with other content
it is refused. Hold ids are never reused, not even after the hold ended, so a
late retry cannot consume a new hold that happens to share an old id.

The ledger does no I/O and reads no clock; ids come in as arguments.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final

from datn.domain.assets import AssetCode
from datn.ledger._checks import check_amount, check_name, check_range
from datn.ledger.accounts import BOUNDED, EXTERNAL, AccountKey, AccountKind, AccountRule
from datn.ledger.entries import Entry, EntryId, Hold, HoldId, HoldUse, Posting
from datn.ledger.errors import LedgerError
from datn.ledger.limits import MAX_BALANCE, MAX_OPEN_HOLDS, MIN_BALANCE

EXTERNAL_OWNER: Final = "external:bank"
"""Default counterpart of deposits and withdrawals: the world outside the node."""


class Outcome(enum.Enum):
    """What :meth:`Ledger.post` did with an entry."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    """The same entry was posted before; nothing changed this time."""


class _Account:
    """Mutable state of one account; private, so only the ledger changes it."""

    __slots__ = ("balance", "held", "rule")

    def __init__(self, rule: AccountRule) -> None:
        self.rule = rule
        self.balance = 0
        self.held = 0


_EMPTY_BOUNDED: Final = _Account(BOUNDED)
"""Stands for an account that was never opened; never written to."""


@dataclass(frozen=True, slots=True)
class _Change:
    """The planned new state of one account."""

    account: AccountKey
    rule: AccountRule
    balance: int
    held: int


class Ledger:
    """Accounts keyed by (owner, asset), balanced entries and holds.

    An account that was never opened reads as an empty bounded account, and an
    entry that credits it opens it as one: a bounded account cannot go below
    its floor, so opening one implicitly can never break an invariant. Accounts
    that may go negative must be opened explicitly.
    """

    def __init__(self, *, max_open_holds: int = MAX_OPEN_HOLDS) -> None:
        self._max_open_holds = check_range("max_open_holds", max_open_holds, 1, MAX_OPEN_HOLDS)
        self._accounts: dict[AccountKey, _Account] = {}
        self._owners: dict[str, list[AccountKey]] = {}
        self._holds: dict[HoldId, Hold] = {}
        self._held_on: dict[AccountKey, int] = {}
        """What the open holds of each account add up to, kept apart from the
        accounts' ``held``: checking one account compares the two instead of
        scanning every hold (the full check recomputes it from the holds)."""
        self._ended_holds: dict[HoldId, None] = {}
        self._entries: dict[EntryId, Entry] = {}
        # Running per-asset totals, so the figures a checker polls after every
        # step cost O(1); check_invariants recomputes them from scratch.
        self._issued: dict[AssetCode, int] = {}
        self._held_by_asset: dict[AssetCode, int] = {}
        self._version = 0
        self._changed: list[AccountKey] | None = None

    # Accounts -----------------------------------------------------------------

    def open_account(self, owner: str, asset: str, rule: AccountRule = BOUNDED) -> AccountKey:
        """Open ``owner``'s account of ``asset``; a no-op if it is open with ``rule``."""
        account = AccountKey(owner, AssetCode(asset))
        _check_rule(rule)
        existing = self._accounts.get(account)
        if existing is None:
            self._open(account, rule)
        elif existing.rule != rule:
            raise LedgerError(
                "rule", "account_exists", f"{account} is open with {existing.rule}, not {rule}"
            )
        return account

    def set_rule(self, account: AccountKey, rule: AccountRule) -> None:
        """Change an open account's credit limit or boundedness.

        Refused if the account's current available would be below the new
        floor, and for external accounts, whose kind decides what counts as
        issued and so never changes.
        """
        state = self._existing(account)
        _check_rule(rule)
        if rule == state.rule:
            return
        if state.rule.is_external or rule.is_external:
            raise LedgerError(
                "rule", "external_fixed", f"{account} cannot change to or from external"
            )
        _check_floor(account, rule, state.balance, state.held)
        state.rule = rule
        self._version += 1
        self._note(account)

    def has_account(self, account: AccountKey) -> bool:
        return account in self._accounts

    def rule(self, account: AccountKey) -> AccountRule:
        return self._accounts.get(account, _EMPTY_BOUNDED).rule

    def balance(self, account: AccountKey) -> int:
        """What the account holds, in the asset's smallest unit, holds included."""
        return self._accounts.get(account, _EMPTY_BOUNDED).balance

    def held(self, account: AccountKey) -> int:
        """The sum of the account's open holds."""
        return self._accounts.get(account, _EMPTY_BOUNDED).held

    def available(self, account: AccountKey) -> int:
        """``balance - held``: what the owner may still commit."""
        state = self._accounts.get(account, _EMPTY_BOUNDED)
        return state.balance - state.held

    @property
    def version(self) -> int:
        """Grows with every change of balances, holds or accounts, so a checker
        can skip a ledger that did not change since it last looked."""
        return self._version

    def accounts(self) -> tuple[AccountKey, ...]:
        """Every open account, sorted by owner and asset."""
        return tuple(sorted(self._accounts))

    def accounts_of(self, owner: str) -> tuple[AccountKey, ...]:
        """The open accounts of ``owner``, sorted by asset."""
        return tuple(sorted(self._owners.get(owner, ())))

    # Entries ------------------------------------------------------------------

    def post(self, entry: Entry) -> Outcome:
        """Apply a balanced entry atomically, consuming from its holds."""
        return self._post(entry, {})

    def deposit(
        self,
        entry_id: str,
        owner: str,
        asset: str,
        amount: object,
        *,
        source: str = EXTERNAL_OWNER,
    ) -> Outcome:
        """Bring ``amount`` of ``asset`` in from the external account of ``source``."""
        amount = check_amount("amount", amount)
        account = AccountKey(owner, AssetCode(asset))
        outside = AccountKey(source, AssetCode(asset))
        entry = Entry.transfer(entry_id, outside, account, amount)
        return self._post(entry, self._external_opening("source", outside))

    def withdraw(
        self,
        entry_id: str,
        owner: str,
        asset: str,
        amount: object,
        *,
        sink: str = EXTERNAL_OWNER,
        hold_id: str | None = None,
    ) -> Outcome:
        """Send ``amount`` of ``asset`` out to ``sink``, consuming ``hold_id`` if given."""
        amount = check_amount("amount", amount)
        account = AccountKey(owner, AssetCode(asset))
        outside = AccountKey(sink, AssetCode(asset))
        entry = Entry.transfer(entry_id, account, outside, amount, hold_id)
        return self._post(entry, self._external_opening("sink", outside))

    def find_entry(self, entry_id: str) -> Entry | None:
        return self._entries.get(EntryId(entry_id))

    def _post(self, entry: Entry, opening: dict[AccountKey, AccountRule]) -> Outcome:
        if not isinstance(entry, Entry):
            raise LedgerError("entry", "not_entry", f"must be an Entry, got {entry!r}")
        previous = self._entries.get(entry.entry_id)
        if previous is not None:
            if previous != entry:
                raise LedgerError(
                    "entry_id",
                    "entry_id_conflict",
                    f"entry {entry.entry_id} was posted before with other content",
                )
            return Outcome.DUPLICATE
        changes, hold_updates = self._plan_entry(entry, opening)
        self._write(changes)
        self._write_holds(hold_updates)
        self._entries[entry.entry_id] = entry
        return Outcome.APPLIED

    def _plan_entry(
        self, entry: Entry, opening: dict[AccountKey, AccountRule]
    ) -> tuple[list[_Change], list[tuple[Hold, int]]]:
        deltas = _net_deltas(entry.postings)
        taken, hold_updates = self._plan_hold_uses(entry.hold_uses)
        for account, amount in taken.items():
            debited = -deltas.get(account, 0)
            if amount > debited:
                raise LedgerError(
                    "hold_uses",
                    "consumption_exceeds_debit",
                    f"entry consumes {amount} from holds on {account} but takes {debited}",
                )
        changes = [
            self._plan_account(account, delta, taken.get(account, 0), opening)
            for account, delta in deltas.items()
        ]
        return changes, hold_updates

    def _plan_hold_uses(
        self, uses: tuple[HoldUse, ...]
    ) -> tuple[dict[AccountKey, int], list[tuple[Hold, int]]]:
        """Per account, how much the entry takes from its holds; and the holds' new state."""
        taken: dict[AccountKey, int] = {}
        updates: list[tuple[Hold, int]] = []
        for use in uses:
            hold = self._open_hold(use.hold_id)
            _check_within_hold(hold, use.amount)
            taken[hold.account] = taken.get(hold.account, 0) + use.amount
            updates.append(_reduced(hold, use.amount))
        return taken, updates

    def _plan_account(
        self,
        account: AccountKey,
        delta: int,
        taken_from_holds: int,
        opening: dict[AccountKey, AccountRule],
    ) -> _Change:
        state = self._accounts.get(account)
        if state is None:
            state = _Account(opening.get(account, BOUNDED))
        balance = state.balance + delta
        held = state.held - taken_from_holds
        # Held is the sum of the account's open holds, and no use exceeds its hold.
        assert held >= 0, f"{account}: held would become {held}"
        if not MIN_BALANCE <= balance <= MAX_BALANCE:
            raise LedgerError("postings", "balance_out_of_range", f"{account} would hold {balance}")
        _check_floor(account, state.rule, balance, held)
        return _Change(account, state.rule, balance, held)

    def _write(self, changes: list[_Change]) -> None:
        self._version += 1
        for change in changes:
            state = self._accounts.get(change.account)
            if state is None:
                state = self._open(change.account, change.rule)
            asset = change.account.asset
            if state.rule.is_external:
                # What leaves the outside world has been issued into the ledger.
                self._add(self._issued, asset, state.balance - change.balance)
            self._add(self._held_by_asset, asset, change.held - state.held)
            state.balance = change.balance
            state.held = change.held
            self._note(change.account)

    def _external_opening(self, field: str, outside: AccountKey) -> dict[AccountKey, AccountRule]:
        """Open the outside account of a deposit or withdrawal on first use."""
        state = self._accounts.get(outside)
        if state is None:
            return {outside: EXTERNAL}
        if not state.rule.is_external:
            raise LedgerError(field, "not_external", f"{outside} is not an external account")
        return {}

    # Holds --------------------------------------------------------------------

    def place_hold(self, hold_id: str, account: AccountKey, amount: object) -> Hold:
        """Reserve ``amount`` of the account's available under a new, unique ``hold_id``."""
        amount = check_amount("amount", amount)
        hold = Hold(HoldId(hold_id), account, amount)
        if hold.hold_id in self._holds or hold.hold_id in self._ended_holds:
            raise LedgerError("hold_id", "duplicate_hold", f"hold {hold_id} was used before")
        if len(self._holds) >= self._max_open_holds:
            raise LedgerError(
                "hold_id", "too_many_holds", f"at most {self._max_open_holds} holds may be open"
            )
        state = self._accounts.get(account, _EMPTY_BOUNDED)
        held = state.held + amount
        if held > MAX_BALANCE:
            raise LedgerError("amount", "held_out_of_range", f"{account} would hold {held} held")
        _check_floor(account, state.rule, state.balance, held)
        # A hold always succeeds against an opened account: an empty bounded
        # one has no available amount, so the check above refused it.
        assert state is not _EMPTY_BOUNDED
        self._set_held(account, state, held)
        self._holds[hold.hold_id] = hold
        self._held_on[account] = self._held_on.get(account, 0) + amount
        return hold

    def release_hold(self, hold_id: str, amount: object = None) -> int:
        """Give back ``amount`` (default: all that remains) of a hold; return the amount.

        Amounts are typed ``object`` here and in the other public methods and
        checked first, so that a compiled ledger refuses a wrong type with the
        same LedgerError as the pure one, not a TypeError."""
        check_name("hold_id", hold_id)
        asked = None if amount is None else check_amount("amount", amount)
        hold = self._open_hold(HoldId(hold_id))
        released = hold.amount if asked is None else asked
        _check_within_hold(hold, released)
        state = self._accounts[hold.account]
        self._set_held(hold.account, state, state.held - released)
        self._write_holds([_reduced(hold, released)])
        return released

    def find_hold(self, hold_id: str) -> Hold | None:
        """The open hold ``hold_id`` with what remains of it, or ``None``."""
        return self._holds.get(HoldId(hold_id))

    def open_holds(self) -> tuple[Hold, ...]:
        """Every open hold, sorted by id."""
        return tuple(self._holds[hold_id] for hold_id in sorted(self._holds))

    def _open_hold(self, hold_id: HoldId) -> Hold:
        hold = self._holds.get(hold_id)
        if hold is not None:
            return hold
        if hold_id in self._ended_holds:
            raise LedgerError("hold_id", "hold_ended", f"hold {hold_id} was consumed or released")
        raise LedgerError("hold_id", "unknown_hold", f"no hold {hold_id}")

    def _set_held(self, account: AccountKey, state: _Account, held: int) -> None:
        self._version += 1
        self._add(self._held_by_asset, account.asset, held - state.held)
        state.held = held
        self._note(account)

    def _write_holds(self, updates: list[tuple[Hold, int]]) -> None:
        """Store what remains of each hold; a hold reduced to nothing has ended."""
        for hold, remaining in updates:
            held_on = self._held_on[hold.account] + remaining - hold.amount
            if held_on:
                self._held_on[hold.account] = held_on
            else:
                del self._held_on[hold.account]
            if remaining:
                self._holds[hold.hold_id] = replace(hold, amount=remaining)
            else:
                del self._holds[hold.hold_id]
                self._ended_holds[hold.hold_id] = None

    # Totals, invariants, state hash ------------------------------------------

    def assets(self) -> tuple[AssetCode, ...]:
        """Every asset some open account holds, sorted."""
        return tuple(sorted({account.asset for account in self._accounts}))

    def issued(self, asset: str) -> int:
        """What came in from external accounts minus what went out to them."""
        return self._issued.get(AssetCode(asset), 0)

    def total_held(self, asset: str) -> int:
        """The sum of all open holds of ``asset``."""
        return self._held_by_asset.get(AssetCode(asset), 0)

    def watch_changes(self) -> None:
        """Start recording which accounts change, for :meth:`drain_changes`.
        Off by default: a ledger nobody drains keeps no record."""
        if self._changed is None:
            self._changed = []

    def drain_changes(self) -> list[AccountKey]:
        """The accounts opened or changed since the last drain (repeats
        possible), once :meth:`watch_changes` was called."""
        changed = self._changed
        if changed is None:
            return []
        self._changed = []
        return changed

    def _note(self, account: AccountKey) -> None:
        if self._changed is not None:
            self._changed.append(account)

    def check_accounts(self, accounts: Iterable[AccountKey]) -> list[str]:
        """What :meth:`check_invariants` checks of single accounts, for
        ``accounts`` only: 64-bit range, floor, and held equal to the
        per-account hold total the ledger keeps apart (recounting the holds
        themselves is the full check's); the per-asset sums are the caller's
        to keep."""
        wanted = set(accounts)
        held = self._held_on
        problems: list[str] = []
        bounded = AccountKind.BOUNDED
        for account in wanted:
            state = self._accounts.get(account)
            if state is None:
                problems.append(f"{account} changed but is not open")
                continue
            balance, on_hold, rule = state.balance, state.held, state.rule
            if on_hold != held.get(account, 0):
                problems.append(
                    f"{account}: held {on_hold} but its holds sum to {held.get(account, 0)}"
                )
            if not MIN_BALANCE <= balance <= MAX_BALANCE:
                problems.append(f"{account}: balance {balance} outside the 64-bit range")
            if rule.kind is bounded and balance - on_hold < -rule.credit_limit:
                problems.append(
                    f"{account}: available {balance - on_hold} below floor {-rule.credit_limit}"
                )
        return problems

    def check_invariants(self) -> list[str]:
        """Recompute everything that must hold; return the violations, if any."""
        return [
            *self._conservation_violations(),
            *self._account_violations(),
            *self._hold_violations(),
        ]

    def state_hash(self) -> str:
        """SHA-256 (hex) of a canonical, sorted serialization of the whole state.

        It covers balances, rules and open holds, and also the ids of past
        entries and ended holds: they decide how a retried command is answered,
        so two ledgers that differ in them do not behave alike.
        """
        doc = {
            "accounts": [_account_doc(key, self._accounts[key]) for key in self.accounts()],
            "holds": [_hold_doc(hold) for hold in self.open_holds()],
            "ended_holds": sorted(self._ended_holds),
            "entries": [_entry_doc(self._entries[key]) for key in sorted(self._entries)],
        }
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def _conservation_violations(self) -> Iterable[str]:
        totals: dict[AssetCode, int] = {}
        issued: dict[AssetCode, int] = {}
        external = AccountKind.EXTERNAL
        for account, state in self._accounts.items():
            asset, balance = account.asset, state.balance
            totals[asset] = totals.get(asset, 0) + balance
            if state.rule.kind is external:
                issued[asset] = issued.get(asset, 0) - balance
        for asset, total in totals.items():
            if total:
                yield f"{asset}: balances sum to {total}, not zero"
        if _nonzero(issued) != _nonzero(self._issued):
            yield f"issued totals {self._issued} do not match the accounts' {issued}"

    def _account_violations(self) -> Iterable[str]:
        held: dict[AccountKey, int] = {}
        for hold in self._holds.values():
            held[hold.account] = held.get(hold.account, 0) + hold.amount
        if held != self._held_on:
            yield "the holds kept per account do not add up to the open holds"
        bounded = AccountKind.BOUNDED
        for account, state in self._accounts.items():
            balance, on_hold, rule = state.balance, state.held, state.rule
            if on_hold != held.get(account, 0):
                yield f"{account}: held {on_hold} but its holds sum to {held.get(account, 0)}"
            if not MIN_BALANCE <= balance <= MAX_BALANCE:
                yield f"{account}: balance {balance} outside the 64-bit range"
            if rule.kind is bounded and balance - on_hold < -rule.credit_limit:
                yield f"{account}: available {balance - on_hold} below floor {-rule.credit_limit}"

    def _hold_violations(self) -> Iterable[str]:
        by_asset: dict[AssetCode, int] = {}
        for hold_id, hold in self._holds.items():
            self._add(by_asset, hold.account.asset, hold.amount)
            if hold.account not in self._accounts:
                yield f"hold {hold_id} is on {hold.account}, which is not open"
            if hold_id in self._ended_holds:
                yield f"hold {hold_id} is both open and ended"
        if _nonzero(by_asset) != _nonzero(self._held_by_asset):
            yield f"held totals {self._held_by_asset} do not match the holds' {by_asset}"

    # Helpers ------------------------------------------------------------------

    def _existing(self, account: AccountKey) -> _Account:
        state = self._accounts.get(account)
        if state is None:
            raise LedgerError("account", "unknown_account", f"{account} is not open")
        return state

    def _open(self, account: AccountKey, rule: AccountRule) -> _Account:
        self._version += 1
        self._note(account)
        state = _Account(rule)
        self._accounts[account] = state
        self._owners.setdefault(account.owner, []).append(account)
        return state

    @staticmethod
    def _add(totals: dict[AssetCode, int], asset: AssetCode, amount: int) -> None:
        totals[asset] = totals.get(asset, 0) + amount


def _check_rule(rule: object) -> None:
    if not isinstance(rule, AccountRule):
        raise LedgerError("rule", "not_rule", f"must be an AccountRule, got {rule!r}")


def _check_floor(account: AccountKey, rule: AccountRule, balance: int, held: int) -> None:
    floor = rule.floor
    if floor is not None and balance - held < floor:
        raise LedgerError(
            "amount",
            "insufficient_available",
            f"{account} would have {balance - held} available, below its floor {floor}",
        )


def _check_within_hold(hold: Hold, amount: int) -> None:
    if amount > hold.amount:
        raise LedgerError(
            "amount", "exceeds_hold", f"hold {hold.hold_id} has {hold.amount} left, not {amount}"
        )


def _reduced(hold: Hold, amount: int) -> tuple[Hold, int]:
    """A hold paired with what remains of it once ``amount`` is gone."""
    return hold, hold.amount - amount


def _net_deltas(postings: tuple[Posting, ...]) -> dict[AccountKey, int]:
    deltas: dict[AccountKey, int] = {}
    for posting in postings:
        deltas[posting.account] = deltas.get(posting.account, 0) + posting.amount
    return deltas


def _nonzero(totals: dict[AssetCode, int]) -> dict[AssetCode, int]:
    return {asset: total for asset, total in totals.items() if total}


def _account_doc(account: AccountKey, state: _Account) -> list[object]:
    rule = state.rule
    return [
        account.owner,
        account.asset,
        rule.kind.value,
        rule.credit_limit,
        state.balance,
        state.held,
    ]


def _hold_doc(hold: Hold) -> list[object]:
    return [hold.hold_id, hold.account.owner, hold.account.asset, hold.amount]


def _entry_doc(entry: Entry) -> list[object]:
    postings = [[p.account.owner, p.account.asset, p.amount] for p in entry.postings]
    uses = [[use.hold_id, use.amount] for use in entry.hold_uses]
    return [entry.entry_id, postings, uses]
