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
late retry cannot consume a new hold that happens to share an old id. Both
rules need the ledger to remember past ids; by default it remembers all of
them, and with ``id_memory`` only the most recent ones, so that a long-running
node keeps in memory what is live and leaves its history to a store.

:meth:`Ledger.snapshot` captures the whole state as one immutable value and
:meth:`Ledger.restore` checks one and rebuilds a ledger from it; the state hash
is the digest of the snapshot.

The ledger does no I/O and reads no clock; ids come in as arguments.
"""

from __future__ import annotations

import enum
import operator
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import compress, islice, repeat
from typing import Final, NoReturn, TypeVar

from datn.domain.assets import AssetCode
from datn.ledger._checks import check_amount, check_ints, check_name, check_range
from datn.ledger.accounts import BOUNDED, EXTERNAL, AccountKey, AccountKind, AccountRule
from datn.ledger.entries import Entry, EntryId, Hold, HoldId, HoldUse, Posting
from datn.ledger.errors import LedgerError
from datn.ledger.limits import MAX_BALANCE, MAX_ID_MEMORY, MAX_OPEN_HOLDS, MIN_BALANCE
from datn.ledger.snapshot import (
    AccountSnapshot,
    EntrySnapshot,
    HoldSnapshot,
    HoldUseSnapshot,
    LedgerSnapshot,
    PostingSnapshot,
)

_Sortable = TypeVar("_Sortable", AccountKey, str)

_NO_FLOOR: Final = MIN_BALANCE - MAX_BALANCE - 1
"""Below the lowest available amount any account can have: the floor a
restore compares unbounded accounts with."""

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

    def __init__(self, rule: AccountRule, balance: int = 0, held: int = 0) -> None:
        self.rule = rule
        self.balance = balance
        self.held = held


_EMPTY_BOUNDED: Final = _Account(BOUNDED)
"""Stands for an account that was never opened; never written to."""


@dataclass(frozen=True, slots=True)
class _Change:
    """The planned new state of one account."""

    account: AccountKey
    rule: AccountRule
    balance: int
    held: int

    def __init__(self, account: AccountKey, rule: AccountRule, balance: int, held: int) -> None:
        # Written out, not generated, for speed, as Order.__init__ is
        # (datn.domain.orders): one is built for every account an entry moves.
        object.__setattr__(self, "account", account)
        object.__setattr__(self, "rule", rule)
        object.__setattr__(self, "balance", balance)
        object.__setattr__(self, "held", held)


class Ledger:
    """Accounts keyed by (owner, asset), balanced entries and holds.

    An account that was never opened reads as an empty bounded account, and an
    entry that credits it opens it as one: a bounded account cannot go below
    its floor, so opening one implicitly can never break an invariant. Accounts
    that may go negative must be opened explicitly.

    ``id_memory`` bounds what the ledger remembers of its past. ``None`` (the
    default) remembers every entry and every ended hold id. An integer N keeps
    the N most recently posted entries and, apart from them, the N most
    recently ended hold ids, forgetting the oldest first. Within that window
    nothing changes: a repeated entry is a duplicate, a conflicting one is
    refused, an ended hold id cannot be placed again. Beyond it the ledger can
    no longer tell: a forgotten entry posted again is applied again, and a
    forgotten hold id may be placed anew. So a caller that sets a bound must
    guarantee that it never reuses an entry id or a hold id older than the
    window, nor retries a command that old. The node core derives its ids from
    counters that only grow, so it never does. Open holds and accounts are live
    state and are always kept, whatever the bound.
    """

    def __init__(self, *, max_open_holds: int = MAX_OPEN_HOLDS, id_memory: object = None) -> None:
        # ``id_memory`` is typed ``object`` and checked first: compiled, an
        # ``int`` parameter would take ``True`` as 1 before the check saw it.
        self._max_open_holds = check_range("max_open_holds", max_open_holds, 1, MAX_OPEN_HOLDS)
        self._id_memory = (
            None if id_memory is None else check_range("id_memory", id_memory, 1, MAX_ID_MEMORY)
        )
        self._accounts: dict[AccountKey, _Account] = {}
        self._owners: dict[str, list[AccountKey]] | None = {}
        """Each owner's accounts, for :meth:`accounts_of`; ``None`` until first
        asked for after a restore, which thereby skips one pass over every
        account for an index the node itself never reads."""
        self._holds: dict[HoldId, Hold] = {}
        self._held_on: dict[AccountKey, int] = {}
        """What the open holds of each account add up to, kept apart from the
        accounts' ``held``: checking one account compares the two instead of
        scanning every hold (the full check recomputes it from the holds)."""
        self._ended_holds: dict[HoldId, None] = {}
        self._entries: dict[EntryId, Entry] = {}
        # With a bounded memory, the ids in the order they were remembered, so
        # that the oldest is found in O(1): a dict finds its first key only by
        # skipping the slots its deletions left behind.
        self._ended_order: deque[HoldId] = deque()
        self._entry_order: deque[EntryId] = deque()
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
        owners = self._owners
        if owners is None:
            owners = self._owners = {}
            for account in self._accounts:
                owners.setdefault(account.owner, []).append(account)
        return tuple(sorted(owners.get(owner, ())))

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
        """The remembered entry ``entry_id``, or ``None`` (also once it is forgotten)."""
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
        self._remember_entry(entry)
        return Outcome.APPLIED

    def _remember_entry(self, entry: Entry) -> None:
        """Remember a posted entry, forgetting the oldest beyond ``id_memory``."""
        self._entries[entry.entry_id] = entry
        memory = self._id_memory
        if memory is not None:
            self._entry_order.append(entry.entry_id)
            if len(self._entry_order) > memory:
                del self._entries[self._entry_order.popleft()]

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
                self._holds[hold.hold_id] = Hold(hold.hold_id, hold.account, remaining)
            else:
                del self._holds[hold.hold_id]
                self._remember_ended(hold.hold_id)

    def _remember_ended(self, hold_id: HoldId) -> None:
        """Remember an ended hold id, forgetting the oldest beyond ``id_memory``."""
        self._ended_holds[hold_id] = None
        memory = self._id_memory
        if memory is not None:
            self._ended_order.append(hold_id)
            if len(self._ended_order) > memory:
                del self._ended_holds[self._ended_order.popleft()]

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
            *self._memory_violations(),
        ]

    def state_hash(self) -> str:
        """SHA-256 (hex) of the canonical encoding of :meth:`snapshot`.

        It covers balances, rules, open holds and bounds, and also the
        remembered entries and ended hold ids: they decide how a retried
        command is answered, so two ledgers that differ in them do not behave
        alike. Ids the ledger has forgotten are not state and are not covered.
        """
        return self.snapshot().digest()

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

    def _memory_violations(self) -> Iterable[str]:
        memory = self._id_memory
        if memory is None:
            return
        for name, remembered, queued in (
            ("entries", len(self._entries), len(self._entry_order)),
            ("ended holds", len(self._ended_holds), len(self._ended_order)),
        ):
            if remembered > memory:
                yield f"{remembered} {name} remembered, more than id_memory {memory}"
            if remembered != queued:
                yield f"{remembered} {name} remembered but {queued} queued to be forgotten"

    # Snapshot and restore -----------------------------------------------------

    def snapshot(self) -> LedgerSnapshot:
        """The whole state as one immutable value, in canonical order.

        Accounts are sorted by key and open holds by id. Remembered entries and
        ended hold ids are sorted by id when the ledger remembers them all, and
        listed oldest first when its memory is bounded, since that order
        decides what it forgets next. The version and change watching are not
        state and are left out.
        """
        ended: Iterable[HoldId] = self._ended_holds
        entry_ids: Iterable[EntryId] = self._entries
        if self._id_memory is None:
            ended, entry_ids = sorted(self._ended_holds), sorted(self._entries)
        accounts = self._accounts
        holds = self._holds
        entries = self._entries
        keys = sorted(accounts)
        index = {key: position for position, key in enumerate(keys)}
        return LedgerSnapshot(
            self._max_open_holds,
            self._id_memory,
            tuple([_account_snapshot(key, accounts[key]) for key in keys]),
            tuple([_hold_snapshot(holds[hold_id], index) for hold_id in sorted(holds)]),
            tuple(ended),
            tuple([_entry_snapshot(entries[entry_id]) for entry_id in entry_ids]),
        )

    @classmethod
    def restore(cls, snapshot: LedgerSnapshot) -> Ledger:
        """A new ledger in the state ``snapshot`` describes, once it is checked.

        Refuses with :class:`LedgerError` a snapshot that no ledger could have
        taken: an invalid name or amount, a sequence out of canonical order or
        with repeats, balances of an asset that do not sum to zero, an account
        below its floor, a hold on an account that is not open, held amounts
        that differ from the sum of their holds, an id both open and ended, an
        unbalanced entry or one on an account that is not open, and more holds
        or remembered ids than the bounds allow. The totals the ledger derives
        are recomputed here. The new ledger's version starts at zero and it
        watches no changes: neither is state.
        """
        if not isinstance(snapshot, LedgerSnapshot):
            raise LedgerError(
                "snapshot", "not_snapshot", f"must be a LedgerSnapshot, got {snapshot!r}"
            )
        snapshot.check_shape()
        ledger = cls(max_open_holds=snapshot.max_open_holds, id_memory=snapshot.id_memory)
        ledger._restore_accounts(snapshot.accounts)
        ledger._restore_holds(snapshot.holds)
        ledger._restore_ended_holds(snapshot.ended_holds)
        ledger._restore_entries(snapshot.entries)
        return ledger

    # Restore checks and builds column by column with builtins (map, zip, set,
    # min, max) where it can, rather than account by account: in pure Python
    # every step of a loop body costs about what a whole column pass costs per
    # item, and a node restores hundreds of thousands of accounts and holds
    # each time it starts.

    def _restore_accounts(self, items: tuple[AccountSnapshot, ...]) -> None:
        _check_items("accounts", items, AccountSnapshot)
        keys = [AccountKey(item.owner, item.asset) for item in items]
        _check_ascending("accounts", keys)
        balances = [item.balance for item in items]
        helds = [item.held for item in items]
        check_ints("balance", balances, MIN_BALANCE, MAX_BALANCE)
        check_ints("held", helds, 0, MAX_BALANCE)
        kinds = [item.kind for item in items]
        rules, floors = _restored_rules(kinds, [item.credit_limit for item in items])
        _check_floors(keys, balances, helds, floors)
        self._accounts.update(zip(keys, map(_Account, rules, balances, helds), strict=True))
        self._owners = None
        # What the accounts say they hold; the holds must add up to exactly this.
        self._held_on = dict(compress(zip(keys, helds, strict=True), helds))
        self._restore_totals([item.asset for item in items], kinds, balances, helds)

    def _restore_totals(
        self,
        assets: list[AssetCode],
        kinds: list[AccountKind],
        balances: list[int],
        helds: list[int],
    ) -> None:
        """Recompute the per-asset totals, refusing balances that do not sum to zero."""
        totals: dict[AssetCode, int] = {}
        for asset, balance in zip(assets, balances, strict=True):
            totals[asset] = totals.get(asset, 0) + balance
        for asset, total in totals.items():
            if total:
                raise LedgerError("accounts", "unbalanced", f"{asset}: balances sum to {total}")
        external = map(operator.is_, kinds, repeat(AccountKind.EXTERNAL))
        for asset, balance in compress(zip(assets, balances, strict=True), external):
            self._add(self._issued, asset, -balance)
        for asset, held in compress(zip(assets, helds, strict=True), helds):
            self._add(self._held_by_asset, asset, held)

    def _restore_holds(self, items: tuple[HoldSnapshot, ...]) -> None:
        _check_items("holds", items, HoldSnapshot)
        if len(items) > self._max_open_holds:
            raise LedgerError(
                "holds",
                "too_many_holds",
                f"{len(items)} open, max_open_holds is {self._max_open_holds}",
            )
        hold_ids = [item.hold_id for item in items]
        # A hold names its account by its place in the snapshot's accounts
        # (sorted like the ledger's keys), so it shares that account's key.
        keys = sorted(self._accounts)
        positions = [item.account for item in items]
        if positions and (
            set(map(type, positions)) != {int} or min(positions) < 0 or max(positions) >= len(keys)
        ):
            item = next(
                i for i in items if type(i.account) is not int or not 0 <= i.account < len(keys)
            )
            raise LedgerError(
                "holds",
                "account_not_open",
                f"hold {item.hold_id} is on account {item.account!r}, which is not open",
            )
        accounts = [keys[position] for position in positions]
        amounts = [item.amount for item in items]
        holds = list(map(Hold, hold_ids, accounts, amounts))
        _check_ascending("holds", hold_ids)
        sums: dict[AccountKey, int] = {}
        for account, amount in zip(accounts, amounts, strict=True):
            sums[account] = sums.get(account, 0) + amount
        if sums != self._held_on:
            self._refuse_holds(holds, sums)
        self._holds.update(zip(hold_ids, holds, strict=True))

    def _refuse_holds(self, holds: list[Hold], sums: dict[AccountKey, int]) -> NoReturn:
        """Say why the holds do not add up to what the accounts hold."""
        for hold in holds:
            if hold.account not in self._accounts:
                raise LedgerError(
                    "holds", "account_not_open", f"hold {hold.hold_id} is on {hold.account}"
                )
        for account, state in self._accounts.items():
            if state.held != sums.get(account, 0):
                raise LedgerError(
                    "holds",
                    "held_mismatch",
                    f"{account} holds {state.held} but its holds sum to {sums.get(account, 0)}",
                )
        raise AssertionError("the holds add up to what the accounts hold after all")

    def _restore_ended_holds(self, hold_ids: tuple[HoldId, ...]) -> None:
        _check_items("ended_holds", hold_ids, str)
        self._check_memory("ended_holds", len(hold_ids))
        for hold_id in hold_ids:
            check_name("hold_id", hold_id)
            if hold_id in self._holds:
                raise LedgerError("ended_holds", "hold_open", f"hold {hold_id} is open and ended")
            if hold_id in self._ended_holds:
                raise LedgerError("ended_holds", "not_canonical", f"hold {hold_id} is repeated")
            self._remember_ended(hold_id)
        if self._id_memory is None:
            _check_ascending("ended_holds", hold_ids)

    def _restore_entries(self, items: tuple[EntrySnapshot, ...]) -> None:
        _check_items("entries", items, EntrySnapshot)
        self._check_memory("entries", len(items))
        accounts = self._accounts
        for item in items:
            entry = _restored_entry(item)
            if entry.entry_id in self._entries:
                raise LedgerError("entries", "not_canonical", f"entry {entry.entry_id} is repeated")
            for posting in entry.postings:
                if posting.account not in accounts:
                    raise LedgerError(
                        "entries",
                        "account_not_open",
                        f"entry {entry.entry_id} posts to {posting.account}",
                    )
            self._remember_entry(entry)
        if self._id_memory is None:
            _check_ascending("entries", list(self._entries))

    def _check_memory(self, field: str, count: int) -> None:
        memory = self._id_memory
        if memory is not None and count > memory:
            raise LedgerError(
                field, "exceeds_id_memory", f"{count} ids remembered, id_memory is {memory}"
            )

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
        if self._owners is not None:
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


def _account_snapshot(account: AccountKey, state: _Account) -> AccountSnapshot:
    rule = state.rule
    return AccountSnapshot(
        account.owner, account.asset, rule.kind, rule.credit_limit, state.balance, state.held
    )


def _hold_snapshot(hold: Hold, index: dict[AccountKey, int]) -> HoldSnapshot:
    return HoldSnapshot(hold.hold_id, index[hold.account], hold.amount)


def _entry_snapshot(entry: Entry) -> EntrySnapshot:
    postings = tuple(
        [PostingSnapshot(p.account.owner, p.account.asset, p.amount) for p in entry.postings]
    )
    uses = tuple([HoldUseSnapshot(use.hold_id, use.amount) for use in entry.hold_uses])
    return EntrySnapshot(entry.entry_id, postings, uses)


def _restored_entry(item: EntrySnapshot) -> Entry:
    """The entry ``item`` describes; building it checks that it balances."""
    _check_items("postings", item.postings, PostingSnapshot)
    _check_items("hold_uses", item.hold_uses, HoldUseSnapshot)
    postings = tuple([Posting(AccountKey(p.owner, p.asset), p.amount) for p in item.postings])
    uses = tuple([HoldUse(use.hold_id, use.amount) for use in item.hold_uses])
    return Entry(item.entry_id, postings, uses)


def _restored_rules(
    kinds: list[AccountKind], credit_limits: list[int]
) -> tuple[list[AccountRule], list[int]]:
    """The rule of each restored account, and the lowest available it allows.

    Accounts share a few distinct rules, so each is built (and checked) once.
    They are looked up by the kind's value: an enum member hashes in Python,
    its value in C. Nor is a list of pairs kept: ``zip`` hands out the same
    tuple again whenever nobody holds on to it, so only the distinct pairs
    are ever allocated. An account without a floor gets one below any
    available amount, so that one comparison checks every account.
    """
    if not set(map(type, kinds)) <= {AccountKind}:
        for kind in kinds:
            AccountRule(kind)
    check_ints("credit_limit", credit_limits, 0, MAX_BALANCE)
    values = [kind._value_ for kind in kinds]
    shared = {
        pair: AccountRule(AccountKind(pair[0]), pair[1])
        for pair in set(zip(values, credit_limits, strict=True))
    }
    lowest = {
        pair: _NO_FLOOR if rule.floor is None else rule.floor for pair, rule in shared.items()
    }
    rules = list(map(shared.__getitem__, zip(values, credit_limits, strict=True)))
    return rules, list(map(lowest.__getitem__, zip(values, credit_limits, strict=True)))


def _check_floors(
    keys: list[AccountKey], balances: list[int], helds: list[int], floors: list[int]
) -> None:
    """Refuse a restored account whose available amount is below its floor."""
    availables = list(map(operator.sub, balances, helds))
    if any(map(operator.lt, availables, floors)):
        for account, available, floor in zip(keys, availables, floors, strict=True):
            if available < floor:
                raise LedgerError(
                    "accounts",
                    "below_floor",
                    f"{account} has {available} available, below its floor {floor}",
                )


def _check_items(field: str, items: object, kind: type) -> None:
    """Refuse anything but a tuple of ``kind``: a snapshot built by hand may hold anything."""
    if not isinstance(items, tuple):
        raise LedgerError(field, "not_tuple", f"must be a tuple, got {type(items).__name__}")
    for item in items:
        if not isinstance(item, kind):
            raise LedgerError(field, "wrong_type", f"must hold {kind.__name__}, got {item!r}")


def _check_ascending(field: str, values: Sequence[_Sortable]) -> None:
    """Refuse values out of canonical order, or repeated."""
    if not all(map(operator.lt, values, islice(values, 1, None))):
        raise LedgerError(field, "not_canonical", f"{field} must be sorted, without repeats")
