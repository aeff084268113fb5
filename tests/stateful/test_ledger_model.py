"""The ledger beside a naive model, compared after every step.

The model is plain dicts: a balance per account, the remaining amount per
hold, a floor per account. It decides on its own whether each command should
succeed and with which reason code it should be refused; the machine then
runs the command on the real ledger and checks that both agree, that a refused
command changed nothing, and that conservation and the floors still hold.
A ``restart`` rule rebuilds the ledger from the journal of applied commands
and requires the same state hash; a ``swap`` rule replaces the ledger with
one restored from its snapshot, sent through bytes, and the machine goes on
comparing. The model also remembers entries and ended hold ids the way the
ledger should: all of them, or with a small ``id_memory`` (the second
machine) only the most recent, so that retries of forgotten ids are expected
to be treated as new.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
)

from datn.domain import AssetCode, ProductKind, ProductSpec
from datn.domain.limits import MAX_AMOUNT_MINOR
from datn.ledger import (
    EXTERNAL_OWNER,
    UNBOUNDED,
    AccountKey,
    AccountRule,
    Entry,
    EntryId,
    HoldId,
    HoldUse,
    Ledger,
    LedgerError,
    LedgerSnapshot,
    Outcome,
    Posting,
)

USD = AssetCode("USD")
XYZ = ProductSpec("XYZ", ProductKind.SHARE, USD).product_id
ASSETS = (USD, XYZ)
TRADERS = ("trader:alice", "trader:bob", "trader:carol")
PEER = "peer:B"
MIN_BALANCE = -MAX_AMOUNT_MINOR - 1

BAD_AMOUNTS = {
    0: "not_positive",
    -7: "not_positive",
    True: "not_integer",
    2.5: "not_integer",
    "10": "not_integer",
    MAX_AMOUNT_MINOR + 1: "too_large",
}

traders = st.sampled_from(TRADERS)
parties = st.sampled_from((*TRADERS, PEER))
assets = st.sampled_from(ASSETS)
amounts = st.integers(1, 5_000)

SPECIAL_FLOORS: dict[AccountKey, int | None] = {
    AccountKey(PEER, USD): None,
    AccountKey(PEER, XYZ): None,
    AccountKey("trader:carol", USD): -1_000,
    AccountKey("trader:bob", XYZ): -5,
}
"""Floors of the accounts opened with a rule before the first step."""

Command = Callable[[Ledger], object]
V = TypeVar("V")


@dataclass
class Model:
    """What the ledger should contain, kept as naively as possible."""

    memory: int | None = None
    balances: dict[AccountKey, int] = field(default_factory=dict)
    floors: dict[AccountKey, int | None] = field(default_factory=dict)
    external: set[AccountKey] = field(default_factory=set)
    holds: dict[str, tuple[AccountKey, int]] = field(default_factory=dict)
    placed: dict[str, AccountKey] = field(default_factory=dict)
    """The account each hold id was last placed on, open or not."""
    entries: dict[str, Entry] = field(default_factory=dict)
    """Remembered entries, oldest first."""
    ended: dict[str, None] = field(default_factory=dict)
    """Remembered ended hold ids, oldest first."""

    def floor(self, account: AccountKey) -> int | None:
        return self.floors.get(account, 0)

    def held(self, account: AccountKey) -> int:
        return sum(amount for on, amount in self.holds.values() if on == account)

    def available(self, account: AccountKey) -> int:
        return self.balances.get(account, 0) - self.held(account)

    def hold_error(self, hold_id: str) -> str | None:
        if hold_id in self.holds:
            return None
        return "hold_ended" if hold_id in self.ended else "unknown_hold"

    def end_hold(self, hold_id: str) -> None:
        del self.holds[hold_id]
        _remember(self.ended, hold_id, None, self.memory)

    def entry_errors(self, entry: Entry) -> set[str]:
        """Reason codes the entry should be refused with, stage by stage; empty if none."""
        hold_errors: set[str] = set()
        taken: dict[AccountKey, int] = {}
        for use in entry.hold_uses:
            error = self.hold_error(use.hold_id)
            if error is None and use.amount > self.holds[use.hold_id][1]:
                error = "exceeds_hold"
            if error is not None:
                hold_errors.add(error)
                continue
            account = self.holds[use.hold_id][0]
            taken[account] = taken.get(account, 0) + use.amount
        if hold_errors:
            return hold_errors
        deltas: dict[AccountKey, int] = {}
        for posting in entry.postings:
            deltas[posting.account] = deltas.get(posting.account, 0) + posting.amount
        if any(amount > -deltas.get(account, 0) for account, amount in taken.items()):
            return {"consumption_exceeds_debit"}
        errors: set[str] = set()
        for account, delta in deltas.items():
            balance = self.balances.get(account, 0) + delta
            floor = self.floor(account)
            available = balance - (self.held(account) - taken.get(account, 0))
            if not MIN_BALANCE <= balance <= MAX_AMOUNT_MINOR:
                errors.add("balance_out_of_range")
            elif floor is not None and available < floor:
                errors.add("insufficient_available")
        return errors

    def apply_entry(self, entry: Entry) -> None:
        for use in entry.hold_uses:
            account, remaining = self.holds[use.hold_id]
            if remaining > use.amount:
                self.holds[use.hold_id] = (account, remaining - use.amount)
            else:
                self.end_hold(use.hold_id)
        for posting in entry.postings:
            self.balances[posting.account] = self.balances.get(posting.account, 0) + posting.amount
        _remember(self.entries, entry.entry_id, entry, self.memory)

    def issued(self, asset: str) -> int:
        return -sum(self.balances.get(a, 0) for a in self.external if a.asset == asset)


class LedgerMachine(RuleBasedStateMachine):
    holds = Bundle("holds")
    entries = Bundle("entries")
    id_memory: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger(id_memory=self.id_memory)
        self.model = Model(memory=self.id_memory)
        self.journal: list[Command] = []
        self.counter = 0

    def new_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    # Running commands on both sides ----------------------------------------

    def run(self, label: str, command: Command, expected_errors: set[str]) -> object:
        """Run ``command``; it must succeed iff no error is expected, else fail with one."""
        before = self.ledger.state_hash()
        try:
            result = command(self.ledger)
        except LedgerError as error:
            event(f"{label}: refused {error.code}")
            assert error.code in expected_errors, (error.code, expected_errors)
            assert self.ledger.state_hash() == before, "a refused command changed the state"
            return None
        assert not expected_errors, f"expected one of {expected_errors}, got {result!r}"
        event(f"{label}: succeeded")
        self.journal.append(command)
        return result

    def post(self, entry: Entry) -> Entry | None:
        """Post ``entry`` on both sides; return it if it applied."""
        errors = self.model.entry_errors(entry)
        label = entry.entry_id.split("-")[0]
        result = self.run(label, lambda ledger: ledger.post(entry), errors)
        if errors:
            return None
        assert result is Outcome.APPLIED
        self.model.apply_entry(entry)
        return entry

    def open_external(self, asset: str) -> AccountKey:
        bank = AccountKey(EXTERNAL_OWNER, AssetCode(asset))
        self.model.floors[bank] = None
        self.model.external.add(bank)
        return bank

    # Rules --------------------------------------------------------------------

    @initialize(cash=st.integers(0, 20_000), lots=st.integers(0, 100))
    def open_and_fund_accounts(self, cash: int, lots: int) -> None:
        self.run("open", _open_special_accounts, set())
        for account, floor in SPECIAL_FLOORS.items():
            self.model.balances[account] = 0
            self.model.floors[account] = floor
        # Starting with money lets holds and fills succeed from the first steps.
        for owner in TRADERS:
            for asset, amount in ((USD, cash), (XYZ, lots)):
                if amount:
                    self.deposit(owner, asset, amount)

    @rule(target=entries, owner=traders, asset=assets, amount=amounts)
    def deposit(self, owner: str, asset: str, amount: int) -> object:
        bank = self.open_external(asset)
        entry = Entry.transfer(
            self.new_id("dep"), bank, AccountKey(owner, AssetCode(asset)), amount
        )
        return self._deposit_like(
            entry, lambda ledger: ledger.deposit(entry.entry_id, owner, asset, amount)
        )

    @rule(target=entries, owner=traders, asset=assets)
    def deposit_near_limit(self, owner: str, asset: str) -> object:
        # Pushes a trader towards the top and the outside world towards the bottom
        # of the 64-bit range, where entries must be refused.
        bank = self.open_external(asset)
        account = AccountKey(owner, AssetCode(asset))
        amount = MAX_AMOUNT_MINOR // 2 + 1
        entry = Entry.transfer(self.new_id("dep"), bank, account, amount)
        return self._deposit_like(
            entry, lambda ledger: ledger.deposit(entry.entry_id, owner, asset, amount)
        )

    @rule(target=entries, owner=traders, asset=assets, amount=amounts)
    def withdraw(self, owner: str, asset: str, amount: int) -> object:
        bank = self.open_external(asset)
        entry = Entry.transfer(
            self.new_id("out"), AccountKey(owner, AssetCode(asset)), bank, amount
        )
        return self._deposit_like(
            entry, lambda ledger: ledger.withdraw(entry.entry_id, owner, asset, amount)
        )

    def _deposit_like(self, entry: Entry, command: Command) -> object:
        errors = self.model.entry_errors(entry)
        self.run(entry.entry_id.split("-")[0], command, errors)
        if errors:
            return multiple()
        self.model.apply_entry(entry)
        return entry

    @rule(target=entries, debit=parties, credit=parties, asset=assets, amount=amounts)
    def transfer(self, debit: str, credit: str, asset: str, amount: int) -> object:
        debit_account = AccountKey(debit, AssetCode(asset))
        credit_account = AccountKey(credit, AssetCode(asset))
        if debit == credit:
            self.run(
                "pay",
                lambda _: Entry.transfer("x", debit_account, credit_account, 1),
                {"same_account"},
            )
            return multiple()
        entry = Entry.transfer(self.new_id("pay"), debit_account, credit_account, amount)
        return self.post(entry) or multiple()

    @rule(
        target=entries,
        buyer=traders,
        seller=parties,
        lots=st.integers(1, 20),
        price=st.integers(1, 500),
        hold=st.none() | holds,
    )
    def trade(self, buyer: str, seller: str, lots: int, price: int, hold: str | None) -> object:
        cash = lots * price
        held_account = None if hold is None else self.model.placed.get(hold)
        if held_account is not None and held_account.asset == USD:
            # A buyer pays from its own order's cash hold, as the node does; holds
            # on positions and unknown holds still reach the refusals.
            buyer = held_account.owner
        uses = () if hold is None else (HoldUse(HoldId(hold), cash),)
        postings = (
            Posting(AccountKey(buyer, USD), -cash),
            Posting(AccountKey(seller, USD), cash),
            Posting(AccountKey(seller, XYZ), -lots),
            Posting(AccountKey(buyer, XYZ), lots),
        )
        return self.post(Entry(EntryId(self.new_id("fill")), postings, uses)) or multiple()

    @rule(target=holds, owner=traders, asset=assets, amount=amounts)
    def place_hold(self, owner: str, asset: str, amount: int) -> str:
        hold_id = self.new_id("hold")
        self._place(hold_id, AccountKey(owner, AssetCode(asset)), amount)
        return hold_id

    @rule(hold_id=holds, owner=traders, amount=amounts)
    def reuse_hold_id(self, hold_id: str, owner: str, amount: int) -> None:
        self._place(hold_id, AccountKey(owner, USD), amount)

    def _place(self, hold_id: str, account: AccountKey, amount: int) -> None:
        floor = self.model.floor(account)
        if hold_id in self.model.holds or hold_id in self.model.ended:
            errors = {"duplicate_hold"}
        elif floor is not None and self.model.available(account) - amount < floor:
            errors = {"insufficient_available"}
        else:
            errors = set()
        self.run("hold", lambda ledger: ledger.place_hold(hold_id, account, amount), errors)
        if not errors:
            self.model.holds[hold_id] = (account, amount)
            self.model.placed[hold_id] = account

    @rule(
        target=entries,
        hold_id=holds,
        credit=parties,
        amount=st.integers(1, 3_000),
        extra=st.sampled_from((-1, 0, 1, 100)),
        within=st.booleans(),
    )
    def post_against_hold(
        self, hold_id: str, credit: str, amount: int, extra: int, within: bool
    ) -> object:
        # Spends ``amount`` from the hold plus ``extra`` from what is still available;
        # ``within`` keeps the amount inside the hold, as a fill of a live order does,
        # and a negative ``extra`` consumes more than the entry takes, which is refused.
        debit = self.model.placed.get(hold_id, AccountKey("trader:alice", USD))
        if within and hold_id in self.model.holds:
            amount = min(amount, self.model.holds[hold_id][1])
        target = AccountKey(credit, debit.asset)
        if target == debit:
            return multiple()
        taken = max(1, amount + extra)
        postings = (Posting(debit, -taken), Posting(target, taken))
        entry = Entry(EntryId(self.new_id("use")), postings, (HoldUse(HoldId(hold_id), amount),))
        return self.post(entry) or multiple()

    @rule(hold_id=holds, amount=st.none() | st.integers(1, 3_000))
    def release_hold(self, hold_id: str, amount: int | None) -> None:
        errors = set()
        error = self.model.hold_error(hold_id)
        if error is not None:
            errors.add(error)
        elif amount is not None and amount > self.model.holds[hold_id][1]:
            errors.add("exceeds_hold")
        result = self.run("release", lambda ledger: ledger.release_hold(hold_id, amount), errors)
        if errors:
            return
        account, remaining = self.model.holds[hold_id]
        released = remaining if amount is None else amount
        assert result == released
        if remaining > released:
            self.model.holds[hold_id] = (account, remaining - released)
        else:
            self.model.end_hold(hold_id)

    @rule(owner=traders, asset=assets, limit=st.integers(0, 2_000))
    def set_credit(self, owner: str, asset: str, limit: int) -> None:
        account = AccountKey(owner, AssetCode(asset))
        if account not in self.model.balances:
            errors = {"unknown_account"}
        elif self.model.available(account) < -limit and self.model.floor(account) != -limit:
            errors = {"insufficient_available"}
        else:
            errors = set()
        rule_ = AccountRule.with_credit(limit)
        self.run("credit", lambda ledger: ledger.set_rule(account, rule_), errors)
        if not errors:
            self.model.floors[account] = -limit

    @rule(entry=entries)
    def replay_entry(self, entry: Entry) -> None:
        self.post_again("replay", entry)

    @rule(entry=entries, amount=amounts)
    def reuse_entry_id(self, entry: Entry, amount: int) -> None:
        other = Entry.transfer(
            entry.entry_id,
            AccountKey("trader:alice", USD),
            AccountKey("trader:bob", USD),
            amount,
        )
        self.post_again("conflict", other)

    def post_again(self, label: str, entry: Entry) -> None:
        """Post an entry whose id was used before: a duplicate of the remembered
        entry, a conflict with it, or, once it is forgotten, a new entry."""
        known = self.model.entries.get(entry.entry_id)
        if known is None:
            event(f"{label}: forgotten")
            self.post(entry)
        elif known == entry:
            result = self.run(label, lambda ledger: ledger.post(entry), set())
            assert result is Outcome.DUPLICATE
        else:
            self.run(label, lambda ledger: ledger.post(entry), {"entry_id_conflict"})

    @rule(
        operation=st.sampled_from(("deposit", "withdraw", "place_hold", "transfer", "release")),
        value=st.sampled_from(list(BAD_AMOUNTS)),
        hold_id=holds,
    )
    def bad_amount(self, operation: str, value: object, hold_id: str) -> None:
        alice = AccountKey("trader:alice", USD)
        bob = AccountKey("trader:bob", USD)
        commands: dict[str, Command] = {
            "deposit": lambda ledger: ledger.deposit("bad", "trader:alice", USD, value),  # type: ignore[arg-type]
            "withdraw": lambda ledger: ledger.withdraw("bad", "trader:alice", USD, value),  # type: ignore[arg-type]
            "place_hold": lambda ledger: ledger.place_hold("bad", alice, value),  # type: ignore[arg-type]
            "transfer": lambda ledger: ledger.post(Entry.transfer("bad", alice, bob, value)),  # type: ignore[arg-type]
            "release": lambda ledger: ledger.release_hold(hold_id, value),  # type: ignore[arg-type]
        }
        self.run("bad amount", commands[operation], {BAD_AMOUNTS[value]})

    @rule()
    def restart(self) -> None:
        # Rebuilding from the journal must give the very same state, and the
        # machine goes on with the rebuilt ledger.
        rebuilt = Ledger(id_memory=self.id_memory)
        for command in self.journal:
            command(rebuilt)
        assert rebuilt.state_hash() == self.ledger.state_hash()
        self.ledger = rebuilt

    @rule()
    def swap(self) -> None:
        # A ledger restored from its snapshot, sent through bytes, must be the
        # same ledger; the machine goes on with it and keeps comparing.
        snapshot = self.ledger.snapshot()
        data = msgspec.msgpack.encode(snapshot)
        decoded = msgspec.msgpack.decode(data, type=LedgerSnapshot)
        assert decoded == snapshot
        restored = Ledger.restore(decoded)
        assert restored.snapshot() == snapshot
        assert restored.state_hash() == self.ledger.state_hash()
        self.ledger = restored

    # Comparison after every step -----------------------------------------------

    @invariant()
    def accounts_match_the_model(self) -> None:
        assert set(self.ledger.accounts()) == set(self.model.balances)
        for account, balance in self.model.balances.items():
            assert self.ledger.balance(account) == balance, account
            assert self.ledger.held(account) == self.model.held(account), account
            assert self.ledger.available(account) == self.model.available(account), account
            assert self.ledger.rule(account).floor == self.model.floor(account), account

    @invariant()
    def holds_match_the_model(self) -> None:
        opened = {h.hold_id: (h.account, h.amount) for h in self.ledger.open_holds()}
        assert opened == self.model.holds

    @invariant()
    def remembered_ids_match_the_model(self) -> None:
        snapshot = self.ledger.snapshot()
        entry_ids = [entry.entry_id for entry in snapshot.entries]
        ended = list(snapshot.ended_holds)
        if self.id_memory is None:
            # Everything is remembered and listed sorted.
            assert entry_ids == sorted(self.model.entries)
            assert ended == sorted(self.model.ended)
        else:
            # The most recent ids, oldest first: the order they are forgotten in.
            assert entry_ids == list(self.model.entries)
            assert ended == list(self.model.ended)

    @invariant()
    def conservation_and_floors_hold(self) -> None:
        for asset in ASSETS:
            assert sum(b for a, b in self.model.balances.items() if a.asset == asset) == 0
            assert self.ledger.issued(asset) == self.model.issued(asset)
            held = sum(amount for a, amount in self.model.holds.values() if a.asset == asset)
            assert self.ledger.total_held(asset) == held
        for account in self.model.balances:
            floor = self.model.floor(account)
            assert floor is None or self.model.available(account) >= floor, account
        assert self.ledger.check_invariants() == []


def _remember(ids: dict[str, V], key: str, value: V, memory: int | None) -> None:
    """Remember ``key``, forgetting the oldest id beyond ``memory``."""
    ids[key] = value
    if memory is not None and len(ids) > memory:
        del ids[next(iter(ids))]


def _open_special_accounts(ledger: Ledger) -> None:
    # Carol trades on credit in cash, Bob may sell short, the peer owes freely.
    for asset in ASSETS:
        ledger.open_account(PEER, asset, UNBOUNDED)
    ledger.open_account("trader:carol", USD, AccountRule.with_credit(1_000))
    ledger.open_account("trader:bob", XYZ, AccountRule.with_credit(5))


class SmallMemoryLedgerMachine(LedgerMachine):
    """The same machine with a ledger that remembers only three entries and
    three ended hold ids, so that ids are forgotten within a run."""

    id_memory = 3


TestLedgerModel = LedgerMachine.TestCase
TestLedgerModel.settings = settings(max_examples=1000, stateful_step_count=30, deadline=None)

TestSmallMemoryLedgerModel = SmallMemoryLedgerMachine.TestCase
TestSmallMemoryLedgerModel.settings = settings(
    max_examples=500, stateful_step_count=30, deadline=None
)
