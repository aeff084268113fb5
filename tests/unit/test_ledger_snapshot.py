"""Ledger snapshots and restore, and the ledger's bounded memory of past ids."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import msgspec
import pytest

from datn.domain import AssetCode, ProductKind, ProductSpec
from datn.domain.limits import MAX_AMOUNT_MINOR
from datn.ledger import (
    UNBOUNDED,
    AccountKey,
    AccountKind,
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
from datn.ledger.limits import MAX_ID_MEMORY

USD = AssetCode("USD")
XYZ = ProductSpec("XYZ", ProductKind.SHARE, USD).product_id
TRADERS = ("trader:alice", "trader:bob", "trader:carol")

ALICE = AccountKey("trader:alice", USD)
BOB = AccountKey("trader:bob", USD)
CAROL = AccountKey("trader:carol", USD)
ALICE_XYZ = AccountKey("trader:alice", XYZ)
BOB_XYZ = AccountKey("trader:bob", XYZ)
PEER = AccountKey("peer:B", USD)

Command = Callable[[Ledger], object]


def trade(entry_id: str, *, cash_minor: int, lots: int, hold_id: str | None = None) -> Entry:
    """Alice buys ``lots`` XYZ from Bob for ``cash_minor``, optionally from her hold."""
    uses = () if hold_id is None else (HoldUse(HoldId(hold_id), cash_minor),)
    postings = (
        Posting(ALICE, -cash_minor),
        Posting(BOB, cash_minor),
        Posting(BOB_XYZ, -lots),
        Posting(ALICE_XYZ, lots),
    )
    return Entry(EntryId(entry_id), postings, uses)


def busy_ledger(id_memory: int | None = None) -> Ledger:
    """A ledger with a bit of every kind of state: all account kinds, a credit
    limit, an open hold partly consumed, an untouched one, an ended one, and
    entries with and without hold uses."""
    ledger = Ledger(max_open_holds=50, id_memory=id_memory)
    ledger.open_account("peer:B", USD, UNBOUNDED)
    ledger.open_account("trader:carol", USD, AccountRule.with_credit(1_000))
    ledger.deposit("d1", "trader:alice", USD, 10_000)
    ledger.deposit("d2", "trader:bob", XYZ, 50, source="external:custodian")
    ledger.place_hold("h1", ALICE, 3_000)
    ledger.post(trade("fill-1", cash_minor=1_000, lots=5, hold_id="h1"))
    ledger.place_hold("h2", ALICE, 500)
    ledger.release_hold("h2")
    ledger.place_hold("h3", BOB_XYZ, 10)
    ledger.post(Entry.transfer("owe-1", PEER, CAROL, 700))
    return ledger


def through_bytes(snapshot: LedgerSnapshot) -> LedgerSnapshot:
    return msgspec.msgpack.decode(msgspec.msgpack.encode(snapshot), type=LedgerSnapshot)


def assert_alike(first: Ledger, second: Ledger) -> None:
    """Both ledgers hold the same state and answer every query alike."""
    assert first.snapshot() == second.snapshot()
    assert first.state_hash() == second.state_hash()
    assert first.accounts() == second.accounts()
    for account in first.accounts():
        assert first.rule(account) == second.rule(account)
        assert first.balance(account) == second.balance(account)
        assert first.held(account) == second.held(account)
        assert first.accounts_of(account.owner) == second.accounts_of(account.owner)
    assert first.open_holds() == second.open_holds()
    for asset in first.assets():
        assert first.issued(asset) == second.issued(asset)
        assert first.total_held(asset) == second.total_held(asset)
    assert first.check_invariants() == second.check_invariants() == []


# Round trip -------------------------------------------------------------------


@pytest.mark.parametrize("id_memory", [None, 3])
def test_a_snapshot_round_trips_through_bytes_and_restores_the_same_ledger(
    id_memory: int | None,
) -> None:
    ledger = busy_ledger(id_memory)
    snapshot = ledger.snapshot()
    decoded = through_bytes(snapshot)
    assert decoded == snapshot
    restored = Ledger.restore(decoded)
    assert_alike(ledger, restored)
    assert restored.find_entry("owe-1") == ledger.find_entry("owe-1")


def test_the_snapshot_holds_every_kind_of_state() -> None:
    snapshot = busy_ledger().snapshot()
    kinds = {account.kind for account in snapshot.accounts}
    assert kinds == {AccountKind.BOUNDED, AccountKind.UNBOUNDED, AccountKind.EXTERNAL}
    assert [hold.hold_id for hold in snapshot.holds] == ["h1", "h3"]
    assert snapshot.ended_holds == ("h2",)
    assert [entry.entry_id for entry in snapshot.entries] == ["d1", "d2", "fill-1", "owe-1"]
    assert (snapshot.max_open_holds, snapshot.id_memory) == (50, None)


def test_the_snapshot_is_canonical() -> None:
    # Accounts opened and entries posted in another order give the same snapshot
    # when every id is remembered: nothing about those orders affects later behaviour.
    first, second = Ledger(), Ledger()
    first.open_account("peer:A", USD, UNBOUNDED)
    first.open_account("peer:B", USD, UNBOUNDED)
    first.deposit("d1", "trader:alice", USD, 100)
    first.deposit("d2", "trader:bob", USD, 100)
    second.deposit("d2", "trader:bob", USD, 100)
    second.open_account("peer:B", USD, UNBOUNDED)
    second.deposit("d1", "trader:alice", USD, 100)
    second.open_account("peer:A", USD, UNBOUNDED)
    assert first.snapshot() == second.snapshot()
    assert msgspec.msgpack.encode(first.snapshot()) == msgspec.msgpack.encode(second.snapshot())


def test_a_bounded_memory_lists_ids_oldest_first() -> None:
    # The order decides which id is forgotten next, so it is part of the state.
    first, second = Ledger(id_memory=5), Ledger(id_memory=5)
    first.deposit("d1", "trader:alice", USD, 100)
    first.deposit("d2", "trader:bob", USD, 100)
    second.deposit("d2", "trader:bob", USD, 100)
    second.deposit("d1", "trader:alice", USD, 100)
    assert [e.entry_id for e in first.snapshot().entries] == ["d1", "d2"]
    assert [e.entry_id for e in second.snapshot().entries] == ["d2", "d1"]
    assert first.state_hash() != second.state_hash()


def test_state_hash_is_the_digest_of_the_snapshot_encoding() -> None:
    ledger = busy_ledger()
    expected = hashlib.sha256(msgspec.msgpack.encode(ledger.snapshot())).hexdigest()
    assert ledger.state_hash() == expected


def test_a_restored_ledger_watches_nothing_and_counts_versions_anew() -> None:
    ledger = busy_ledger()
    ledger.watch_changes()
    ledger.deposit("d9", "trader:alice", USD, 1)
    restored = Ledger.restore(ledger.snapshot())
    assert restored.version == 0
    restored.deposit("d10", "trader:alice", USD, 1)
    assert restored.version > 0
    assert restored.drain_changes() == []
    restored.watch_changes()
    restored.deposit("d11", "trader:bob", USD, 1)
    assert set(restored.drain_changes()) == {BOB, AccountKey("external:bank", USD)}


def test_accounts_of_still_answers_after_a_restore() -> None:
    restored = Ledger.restore(busy_ledger().snapshot())
    restored.deposit("d9", "trader:dave", USD, 5)
    assert restored.accounts_of("trader:alice") == (ALICE, ALICE_XYZ)
    restored.deposit("d10", "trader:dave", XYZ, 5)
    assert restored.accounts_of("trader:dave") == tuple(
        sorted((AccountKey("trader:dave", USD), AccountKey("trader:dave", XYZ)))
    )


# Same behaviour after a restore -------------------------------------------------


class RandomCommands:
    """Seeded random commands of every kind, including retries, refusals and
    reuse of old ids, built against the state of a reference ledger."""

    def __init__(self, seed: int, reference: Ledger) -> None:
        self.rng = random.Random(seed)
        self.reference = reference
        self.step = 0
        self.entries: list[Entry] = []
        self.hold_ids: list[str] = []

    def next(self) -> Command:
        self.step += 1
        rng = self.rng
        owner = rng.choice(TRADERS)
        asset = rng.choice((USD, XYZ))
        amount = rng.randint(1, 3_000)
        build = rng.choice(
            (
                self._deposit,
                self._withdraw,
                self._transfer,
                self._place_hold,
                self._release,
                self._fill,
                self._replay,
                self._reuse_hold_id,
                self._set_credit,
            )
        )
        return build(owner, asset, amount)

    def _deposit(self, owner: str, asset: str, amount: int) -> Command:
        entry_id = f"dep-{self.step}"
        return lambda ledger: ledger.deposit(entry_id, owner, asset, amount)

    def _withdraw(self, owner: str, asset: str, amount: int) -> Command:
        entry_id = f"out-{self.step}"
        return lambda ledger: ledger.withdraw(entry_id, owner, asset, amount // 3)

    def _transfer(self, owner: str, asset: str, amount: int) -> Command:
        other = self.rng.choice([t for t in (*TRADERS, "peer:B") if t != owner])
        debit, credit = AccountKey(owner, AssetCode(asset)), AccountKey(other, AssetCode(asset))
        return self._post(Entry.transfer(f"pay-{self.step}", debit, credit, amount))

    def _place_hold(self, owner: str, asset: str, amount: int) -> Command:
        hold_id = f"hold-{self.step}"
        self.hold_ids.append(hold_id)
        account = AccountKey(owner, AssetCode(asset))
        return lambda ledger: ledger.place_hold(hold_id, account, amount)

    def _release(self, owner: str, asset: str, amount: int) -> Command:
        hold_id = self._old_hold_id()
        part = self.rng.choice((None, amount // 10 + 1))
        return lambda ledger: ledger.release_hold(hold_id, part)

    def _fill(self, owner: str, asset: str, amount: int) -> Command:
        hold_id = self._old_hold_id()
        hold = self.reference.find_hold(hold_id)
        debit = ALICE if hold is None else hold.account
        used = min(amount, hold.amount) if hold is not None else amount
        credit = AccountKey("trader:bob" if debit.owner != "trader:bob" else owner, debit.asset)
        if credit == debit:
            credit = AccountKey("peer:B", debit.asset)
        postings = (Posting(debit, -used), Posting(credit, used))
        uses = (HoldUse(HoldId(hold_id), used),)
        return self._post(Entry(EntryId(f"fill-{self.step}"), postings, uses))

    def _replay(self, owner: str, asset: str, amount: int) -> Command:
        if not self.entries:
            return self._deposit(owner, asset, amount)
        # Recent entries half the time, so that retries also land within a small window.
        pool = self.entries[-3:] if self.rng.random() < 0.5 else self.entries
        entry = self.rng.choice(pool)
        remembered = [e for e in pool if self.reference.find_entry(e.entry_id) is not None]
        if remembered and self.rng.random() < 0.3:
            # The id of a remembered entry with other content: refused.
            entry = Entry.transfer(self.rng.choice(remembered).entry_id, ALICE, BOB, amount)
        return self._post(entry)

    def _reuse_hold_id(self, owner: str, asset: str, amount: int) -> Command:
        hold_id = self._old_hold_id()
        account = AccountKey(owner, AssetCode(asset))
        return lambda ledger: ledger.place_hold(hold_id, account, amount)

    def _set_credit(self, owner: str, asset: str, amount: int) -> Command:
        account = AccountKey(owner, AssetCode(asset))
        rule = AccountRule.with_credit(amount // 2)
        return lambda ledger: ledger.set_rule(account, rule)

    def _post(self, entry: Entry) -> Command:
        self.entries.append(entry)
        return lambda ledger: ledger.post(entry)

    def _old_hold_id(self) -> str:
        return self.rng.choice(self.hold_ids) if self.hold_ids else "hold-none"


def outcome(ledger: Ledger, command: Command) -> tuple[str, object]:
    try:
        return "done", command(ledger)
    except LedgerError as error:
        return "refused", error.code


@pytest.mark.parametrize("id_memory", [None, 4])
@pytest.mark.parametrize("seed", range(6))
def test_a_restored_ledger_behaves_like_the_original(seed: int, id_memory: int | None) -> None:
    original = busy_ledger(id_memory)
    restored = Ledger.restore(through_bytes(original.snapshot()))
    commands = RandomCommands(seed, original)
    answers: set[str] = set()
    for step in range(400):
        command = commands.next()
        expected = outcome(original, command)
        assert outcome(restored, command) == expected, (seed, step)
        answers.add(str(expected[1]))
        assert restored.snapshot() == original.snapshot(), (seed, step)
        if step % 50 == 49:
            restored = Ledger.restore(through_bytes(restored.snapshot()))
    assert_alike(original, restored)
    # The commands reached the interesting answers, not only refusals.
    assert {"Outcome.APPLIED", "Outcome.DUPLICATE", "entry_id_conflict"} <= answers
    assert {"duplicate_hold", "insufficient_available"} <= answers


# Bounded memory -----------------------------------------------------------------


def test_memory_stays_bounded_after_many_entries_and_holds() -> None:
    ledger = Ledger(id_memory=100)
    for i in range(3_000):
        ledger.deposit(f"d{i}", "trader:alice", USD, 10)
        ledger.place_hold(f"h{i}", ALICE, 5)
        ledger.withdraw(f"w{i}", "trader:alice", USD, 5, hold_id=f"h{i}")
    snapshot = ledger.snapshot()
    assert len(snapshot.entries) == 100
    assert len(snapshot.ended_holds) == 100
    assert snapshot.entries[-1].entry_id == "w2999"
    assert snapshot.ended_holds[0] == "h2900"
    assert ledger.balance(ALICE) == 3_000 * 5
    assert ledger.check_invariants() == []


def test_a_remembered_entry_is_still_a_duplicate_or_a_conflict() -> None:
    ledger = Ledger(id_memory=3)
    for i in range(1, 4):
        ledger.deposit(f"d{i}", "trader:alice", USD, 100)
    assert ledger.deposit("d1", "trader:alice", USD, 100) is Outcome.DUPLICATE
    with pytest.raises(LedgerError) as caught:
        ledger.deposit("d1", "trader:alice", USD, 101)
    assert caught.value.code == "entry_id_conflict"
    assert ledger.balance(ALICE) == 300


def test_a_forgotten_entry_is_forgotten() -> None:
    # The caller promised never to reuse an id this old; the ledger cannot tell.
    ledger = Ledger(id_memory=3)
    for i in range(1, 5):
        ledger.deposit(f"d{i}", "trader:alice", USD, 100)
    assert ledger.find_entry("d1") is None
    assert ledger.find_entry("d2") is not None
    assert ledger.deposit("d1", "trader:alice", USD, 100) is Outcome.APPLIED
    assert ledger.balance(ALICE) == 500
    assert ledger.find_entry("d2") is None


def test_ended_hold_ids_are_remembered_within_the_window_only() -> None:
    ledger = Ledger(id_memory=2)
    ledger.deposit("d", "trader:alice", USD, 1_000)
    for hold_id in ("h1", "h2", "h3"):
        ledger.place_hold(hold_id, ALICE, 10)
        ledger.release_hold(hold_id)
    for code, action in [
        ("hold_ended", lambda: ledger.release_hold("h2")),
        ("duplicate_hold", lambda: ledger.place_hold("h3", ALICE, 10)),
        ("unknown_hold", lambda: ledger.release_hold("h1")),
    ]:
        with pytest.raises(LedgerError) as caught:
            action()
        assert caught.value.code == code
    ledger.place_hold("h1", ALICE, 10)
    assert ledger.held(ALICE) == 10


def test_open_holds_are_never_forgotten() -> None:
    ledger = Ledger(id_memory=1)
    ledger.deposit("d", "trader:alice", USD, 1_000)
    ledger.place_hold("kept", ALICE, 100)
    for i in range(20):
        ledger.place_hold(f"h{i}", ALICE, 1)
        ledger.release_hold(f"h{i}")
        ledger.post(Entry.transfer(f"pay{i}", ALICE, BOB, 1))
    with pytest.raises(LedgerError) as caught:
        ledger.place_hold("kept", ALICE, 1)
    assert caught.value.code == "duplicate_hold"
    ledger.post(Entry.transfer("fill", ALICE, BOB, 100, hold_id="kept"))
    assert ledger.held(ALICE) == 0


def test_the_state_hash_covers_only_what_is_remembered() -> None:
    # Equal balances, and histories that differ only beyond the window.
    first, second = Ledger(id_memory=2), Ledger(id_memory=2)
    first.deposit("old-a", "trader:alice", USD, 100)
    second.deposit("old-b", "trader:alice", USD, 100)
    assert first.state_hash() != second.state_hash()
    for ledger in (first, second):
        ledger.deposit("d2", "trader:bob", USD, 5)
        ledger.deposit("d3", "trader:bob", USD, 5)
    assert first.state_hash() == second.state_hash()


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (0, "not_positive"),
        (-1, "not_positive"),
        (True, "not_integer"),
        (2.0, "not_integer"),
        ("3", "not_integer"),
        (MAX_ID_MEMORY + 1, "too_large"),
    ],
)
def test_id_memory_is_checked(value: object, code: str) -> None:
    with pytest.raises(LedgerError) as caught:
        Ledger(id_memory=value)  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.code) == ("id_memory", code)


# Inconsistent snapshots -----------------------------------------------------------

Change = Callable[[LedgerSnapshot], LedgerSnapshot]


def replace_account(index: int, **changes: object) -> Change:
    def change(snapshot: LedgerSnapshot) -> LedgerSnapshot:
        accounts = list(snapshot.accounts)
        accounts[index] = msgspec.structs.replace(accounts[index], **changes)
        return msgspec.structs.replace(snapshot, accounts=tuple(accounts))

    return change


def replace_hold(index: int, **changes: object) -> Change:
    def change(snapshot: LedgerSnapshot) -> LedgerSnapshot:
        holds = list(snapshot.holds)
        holds[index] = msgspec.structs.replace(holds[index], **changes)
        return msgspec.structs.replace(snapshot, holds=tuple(holds))

    return change


def replace_entry(entry_id: str, **changes: object) -> Change:
    def change(snapshot: LedgerSnapshot) -> LedgerSnapshot:
        entries = tuple(
            msgspec.structs.replace(entry, **changes) if entry.entry_id == entry_id else entry
            for entry in snapshot.entries
        )
        return msgspec.structs.replace(snapshot, entries=entries)

    return change


def replace_field(**changes: object) -> Change:
    return lambda snapshot: msgspec.structs.replace(snapshot, **changes)


def alice_index(snapshot: LedgerSnapshot) -> int:
    return [(a.owner, a.asset) for a in snapshot.accounts].index(("trader:alice", USD))


def peer_index(snapshot: LedgerSnapshot) -> int:
    return [(a.owner, a.asset) for a in snapshot.accounts].index(("peer:B", USD))


def with_alice(**changes: object) -> Change:
    return lambda snapshot: replace_account(alice_index(snapshot), **changes)(snapshot)


def alice_pays(amount: int) -> Change:
    """Alice's balance moves by ``amount`` and the peer's by its opposite:
    balanced, so that only the check under test can fail."""

    def change(snapshot: LedgerSnapshot) -> LedgerSnapshot:
        alice = snapshot.accounts[alice_index(snapshot)]
        peer = snapshot.accounts[peer_index(snapshot)]
        snapshot = replace_account(alice_index(snapshot), balance=alice.balance - amount)(snapshot)
        return replace_account(peer_index(snapshot), balance=peer.balance + amount)(snapshot)

    return change


def swapped(field: str) -> Change:
    def change(snapshot: LedgerSnapshot) -> LedgerSnapshot:
        items = list(getattr(snapshot, field))
        items[0], items[1] = items[1], items[0]
        return msgspec.structs.replace(snapshot, **{field: tuple(items)})

    return change


def repeated(field: str) -> Change:
    def change(snapshot: LedgerSnapshot) -> LedgerSnapshot:
        items = getattr(snapshot, field)
        return msgspec.structs.replace(snapshot, **{field: (items[0], *items)})

    return change


def moved_entry(snapshot: LedgerSnapshot) -> LedgerSnapshot:
    # Both postings of the peer's entry moved to accounts that are not open.
    postings = tuple(
        msgspec.structs.replace(p, owner=p.owner.replace("trader:carol", "trader:zed"))
        for p in next(e for e in snapshot.entries if e.entry_id == "owe-1").postings
    )
    return replace_entry("owe-1", postings=postings)(snapshot)


def unbalanced_entry(snapshot: LedgerSnapshot) -> LedgerSnapshot:
    entry = next(e for e in snapshot.entries if e.entry_id == "owe-1")
    first = msgspec.structs.replace(entry.postings[0], amount=entry.postings[0].amount - 1)
    return replace_entry("owe-1", postings=(first, *entry.postings[1:]))(snapshot)


INCONSISTENT: list[tuple[str, Change]] = [
    ("held_mismatch", with_alice(held=2_001)),
    ("held_mismatch", with_alice(held=0)),
    ("account_not_open", replace_hold(0, account=99)),
    ("account_not_open", replace_hold(0, account=-1)),
    ("below_floor", alice_pays(9_001)),
    ("unbalanced", with_alice(balance=9_001)),
    ("not_canonical", swapped("accounts")),
    ("not_canonical", repeated("accounts")),
    ("not_canonical", swapped("holds")),
    ("not_canonical", repeated("holds")),
    ("not_canonical", swapped("entries")),
    ("not_canonical", repeated("entries")),
    ("not_canonical", replace_field(ended_holds=("h2", "h2"))),
    ("hold_open", replace_field(ended_holds=("h1", "h2"))),
    ("too_many_holds", replace_field(max_open_holds=1)),
    ("unbalanced", unbalanced_entry),
    ("account_not_open", moved_entry),
    ("empty", with_alice(owner="")),
    ("not_printable", replace_hold(0, hold_id="h\n1")),
    ("too_small", with_alice(held=-1)),
    ("too_large", with_alice(balance=MAX_AMOUNT_MINOR + 1)),
    ("not_integer", with_alice(balance=1.5)),
    ("unknown_kind", with_alice(kind="bounded")),
    ("credit_on_unbounded", lambda s: replace_account(peer_index(s), credit_limit=5)(s)),
    ("not_integer", with_alice(credit_limit=True)),
    ("not_positive", replace_hold(0, amount=0)),
    ("not_tuple", replace_field(accounts=[])),
    ("wrong_type", replace_field(holds=("h1",))),
    ("not_positive", replace_field(max_open_holds=0)),
    ("not_positive", replace_field(id_memory=0)),
    ("exceeds_id_memory", replace_field(id_memory=3)),
]


@pytest.mark.parametrize(("code", "change"), INCONSISTENT)
def test_an_inconsistent_snapshot_is_refused(code: str, change: Change) -> None:
    snapshot = change(busy_ledger().snapshot())
    with pytest.raises(LedgerError) as caught:
        Ledger.restore(snapshot)
    assert caught.value.code == code


def test_a_bounded_snapshot_is_checked_against_its_bound() -> None:
    snapshot = busy_ledger(id_memory=4).snapshot()
    assert Ledger.restore(snapshot).snapshot() == snapshot
    too_many: list[tuple[str, Change]] = [
        ("entries", replace_field(entries=(*snapshot.entries, snapshot.entries[0]))),
        ("ended_holds", replace_field(ended_holds=("a", "b", "c", "d", "e"))),
    ]
    for field, change in too_many:
        with pytest.raises(LedgerError) as caught:
            Ledger.restore(change(snapshot))
        assert (caught.value.field, caught.value.code) == (field, "exceeds_id_memory")
    with pytest.raises(LedgerError) as caught:
        Ledger.restore(msgspec.structs.replace(snapshot, ended_holds=("h2", "h2")))
    assert caught.value.code == "not_canonical"


def test_restore_refuses_what_is_not_a_snapshot() -> None:
    with pytest.raises(LedgerError) as caught:
        Ledger.restore("snapshot")  # type: ignore[arg-type]
    assert caught.value.code == "not_snapshot"


def test_bytes_of_another_shape_do_not_decode() -> None:
    data = msgspec.msgpack.encode(busy_ledger().snapshot())[:-3]
    with pytest.raises(msgspec.DecodeError):
        msgspec.msgpack.decode(data, type=LedgerSnapshot)
