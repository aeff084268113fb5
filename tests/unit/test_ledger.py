"""Unit tests of the double-entry ledger: entries, holds, floors, conservation."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from datn.domain import AssetCode, ProductKind, ProductSpec
from datn.domain.limits import MAX_AMOUNT_MINOR
from datn.ledger import (
    EXTERNAL,
    EXTERNAL_OWNER,
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
    Outcome,
    Posting,
)
from datn.ledger.limits import MAX_POSTINGS_PER_ENTRY

USD = AssetCode("USD")
XYZ = ProductSpec("XYZ", ProductKind.SHARE, USD).product_id

ALICE = AccountKey("trader:alice", USD)
BOB = AccountKey("trader:bob", USD)
ALICE_XYZ = AccountKey("trader:alice", XYZ)
BOB_XYZ = AccountKey("trader:bob", XYZ)
PEER = AccountKey("peer:B", USD)
BANK = AccountKey(EXTERNAL_OWNER, USD)


def funded(usd_minor: int = 10_000, xyz_lots: int = 0) -> Ledger:
    """A ledger where Alice and Bob each have ``usd_minor`` cents and ``xyz_lots`` lots."""
    ledger = Ledger()
    for owner in ("trader:alice", "trader:bob"):
        ledger.deposit(f"fund:{owner}:usd", owner, USD, usd_minor)
        if xyz_lots:
            ledger.deposit(f"fund:{owner}:xyz", owner, XYZ, xyz_lots)
    return ledger


def assert_refused(ledger: Ledger, code: str, action: Callable[[], object]) -> LedgerError:
    """``action`` raises a LedgerError with ``code`` and leaves the ledger exactly as it was."""
    before = ledger.state_hash()
    with pytest.raises(LedgerError) as caught:
        action()
    assert caught.value.code == code
    assert ledger.state_hash() == before
    assert ledger.check_invariants() == []
    return caught.value


def trade(entry_id: str, *, cash_minor: int, lots: int, hold_id: str | None = None) -> Entry:
    """Alice buys ``lots`` XYZ from Bob for ``cash_minor``, optionally from her hold."""
    uses = () if hold_id is None else (HoldUse(HoldId(hold_id), cash_minor),)
    return Entry(
        EntryId(entry_id),
        (
            Posting(ALICE, -cash_minor),
            Posting(BOB, cash_minor),
            Posting(BOB_XYZ, -lots),
            Posting(ALICE_XYZ, lots),
        ),
        uses,
    )


# Entries ----------------------------------------------------------------------


def test_balanced_entry_moves_amounts() -> None:
    ledger = funded()
    assert ledger.post(Entry.transfer("pay-1", ALICE, BOB, 2_500)) is Outcome.APPLIED
    assert ledger.balance(ALICE) == 7_500
    assert ledger.balance(BOB) == 12_500
    assert ledger.check_invariants() == []


def test_unbalanced_entry_cannot_be_built() -> None:
    with pytest.raises(LedgerError) as caught:
        Entry(EntryId("bad"), (Posting(ALICE, -100), Posting(BOB, 99)))
    assert caught.value.code == "unbalanced"


def test_unbalanced_entry_is_refused_and_nothing_changes() -> None:
    ledger = funded()
    assert_refused(
        ledger,
        "unbalanced",
        lambda: ledger.post(Entry(EntryId("bad"), (Posting(ALICE, -100), Posting(BOB, 99)))),
    )
    assert ledger.balance(ALICE) == ledger.balance(BOB) == 10_000


def test_refused_entry_applies_none_of_its_postings() -> None:
    # The first posting alone would succeed; the second takes more than Bob has.
    ledger = funded()
    carol = AccountKey("trader:carol", USD)
    entry = Entry(
        EntryId("split"),
        (Posting(ALICE, -100), Posting(BOB, -20_000), Posting(carol, 20_100)),
    )
    assert_refused(ledger, "insufficient_available", lambda: ledger.post(entry))
    assert ledger.balance(ALICE) == 10_000
    assert not ledger.has_account(carol)


def test_trade_balances_per_asset() -> None:
    ledger = funded(xyz_lots=50)
    ledger.post(trade("fill-1", cash_minor=4_800, lots=10))
    assert (ledger.balance(ALICE), ledger.balance(ALICE_XYZ)) == (5_200, 60)
    assert (ledger.balance(BOB), ledger.balance(BOB_XYZ)) == (14_800, 40)
    assert ledger.check_invariants() == []


def test_each_asset_must_balance_on_its_own() -> None:
    # Cash out and product in of the same size still leaves each asset unbalanced.
    with pytest.raises(LedgerError) as caught:
        Entry(EntryId("swap"), (Posting(ALICE, -10), Posting(ALICE_XYZ, 10)))
    assert caught.value.code == "unbalanced"


def test_postings_to_one_account_are_netted() -> None:
    ledger = funded()
    entry = Entry(EntryId("net"), (Posting(ALICE, -300), Posting(ALICE, 100), Posting(BOB, 200)))
    ledger.post(entry)
    assert (ledger.balance(ALICE), ledger.balance(BOB)) == (9_800, 10_200)


def test_entry_shape_is_checked() -> None:
    cases: list[tuple[str, Callable[[], object]]] = [
        ("bad_posting_count", lambda: Entry(EntryId("e"), ())),
        ("not_tuple", lambda: Entry(EntryId("e"), [Posting(ALICE, 1)])),  # type: ignore[arg-type]
        ("not_posting", lambda: Entry(EntryId("e"), ("x",))),  # type: ignore[arg-type]
        ("zero_amount", lambda: Posting(ALICE, 0)),
        ("not_account", lambda: Posting("trader:alice", 1)),  # type: ignore[arg-type]
        ("empty", lambda: Entry.transfer("", ALICE, BOB, 1)),
        ("asset_mismatch", lambda: Entry.transfer("e", ALICE, BOB_XYZ, 1)),
        ("same_account", lambda: Entry.transfer("e", ALICE, ALICE, 1)),
        (
            "duplicate_hold_use",
            lambda: Entry(
                EntryId("e"),
                (Posting(ALICE, -2), Posting(BOB, 2)),
                (HoldUse(HoldId("h"), 1), HoldUse(HoldId("h"), 1)),
            ),
        ),
    ]
    for code, build in cases:
        with pytest.raises(LedgerError) as caught:
            build()
        assert caught.value.code == code, code


def test_a_posting_off_the_common_path_is_judged_by_the_full_checks() -> None:
    # Postings take a short cut for the exact types; any other value goes
    # through the checks that give a refusal its reason, and is not refused
    # for a reason it does not have.
    class Key(AccountKey):
        pass

    account = Key("trader:alice", USD)
    assert Posting(account, 5).amount == 5
    assert Entry(EntryId("e"), (Posting(account, -5), Posting(BOB, 5))).postings[0].amount == -5
    with pytest.raises(LedgerError) as caught:
        Posting(account, 0)
    assert caught.value.code == "zero_amount"


def test_entry_has_a_posting_limit() -> None:
    many = tuple(
        Posting(AccountKey(f"trader:{i}", USD), 1 if i % 2 else -1)
        for i in range(MAX_POSTINGS_PER_ENTRY + 2)
    )
    with pytest.raises(LedgerError) as caught:
        Entry(EntryId("big"), many)
    assert caught.value.code == "bad_posting_count"


def test_posting_to_a_new_account_opens_it_bounded() -> None:
    ledger = funded()
    carol = AccountKey("trader:carol", USD)
    ledger.post(Entry.transfer("gift", ALICE, carol, 100))
    assert ledger.rule(carol).kind is AccountKind.BOUNDED
    assert_refused(
        ledger,
        "insufficient_available",
        lambda: ledger.post(Entry.transfer("overdraw", carol, ALICE, 101)),
    )


# Idempotency ------------------------------------------------------------------


def test_posting_the_same_entry_again_is_a_no_op() -> None:
    ledger = funded()
    entry = Entry.transfer("pay-1", ALICE, BOB, 100)
    assert ledger.post(entry) is Outcome.APPLIED
    before = ledger.state_hash()
    assert ledger.post(Entry.transfer("pay-1", ALICE, BOB, 100)) is Outcome.DUPLICATE
    assert ledger.state_hash() == before
    assert ledger.balance(ALICE) == 9_900


def test_reusing_an_entry_id_for_other_content_is_refused() -> None:
    ledger = funded()
    ledger.post(Entry.transfer("pay-1", ALICE, BOB, 100))
    assert_refused(
        ledger,
        "entry_id_conflict",
        lambda: ledger.post(Entry.transfer("pay-1", ALICE, BOB, 101)),
    )


def test_repeated_deposit_is_booked_once() -> None:
    ledger = Ledger()
    assert ledger.deposit("dep-1", "trader:alice", USD, 500) is Outcome.APPLIED
    assert ledger.deposit("dep-1", "trader:alice", USD, 500) is Outcome.DUPLICATE
    assert ledger.balance(ALICE) == 500
    assert ledger.issued(USD) == 500


def test_a_refused_entry_does_not_use_up_its_id() -> None:
    ledger = funded()
    assert_refused(
        ledger,
        "insufficient_available",
        lambda: ledger.post(Entry.transfer("pay-1", ALICE, BOB, 20_000)),
    )
    assert ledger.post(Entry.transfer("pay-1", ALICE, BOB, 100)) is Outcome.APPLIED


# Holds ------------------------------------------------------------------------


def test_hold_reduces_available_not_balance() -> None:
    ledger = funded()
    hold = ledger.place_hold("order-1", ALICE, 3_000)
    assert hold.amount == 3_000
    assert ledger.balance(ALICE) == 10_000
    assert ledger.held(ALICE) == 3_000
    assert ledger.available(ALICE) == 7_000
    assert ledger.total_held(USD) == 3_000


def test_hold_over_available_is_refused() -> None:
    ledger = funded()
    ledger.place_hold("order-1", ALICE, 6_000)
    assert_refused(
        ledger, "insufficient_available", lambda: ledger.place_hold("order-2", ALICE, 4_001)
    )
    ledger.place_hold("order-2", ALICE, 4_000)
    assert ledger.available(ALICE) == 0


def test_held_amount_cannot_be_spent_by_another_entry() -> None:
    ledger = funded()
    ledger.place_hold("order-1", ALICE, 8_000)
    assert_refused(
        ledger,
        "insufficient_available",
        lambda: ledger.post(Entry.transfer("pay", ALICE, BOB, 2_001)),
    )


def test_order_hold_is_consumed_fill_by_fill_then_released() -> None:
    # Buy 10 lots at 5.00: 5,000 cents held; two fills of 3 lots, then a cancel.
    ledger = funded(xyz_lots=50)
    ledger.place_hold("order-1", ALICE, 5_000)
    ledger.post(trade("fill-1", cash_minor=1_500, lots=3, hold_id="order-1"))
    ledger.post(trade("fill-2", cash_minor=1_500, lots=3, hold_id="order-1"))
    remaining = ledger.find_hold("order-1")
    assert remaining is not None and remaining.amount == 2_000
    assert (ledger.balance(ALICE), ledger.held(ALICE), ledger.available(ALICE)) == (
        7_000,
        2_000,
        5_000,
    )
    assert ledger.release_hold("order-1") == 2_000
    assert ledger.find_hold("order-1") is None
    assert (ledger.held(ALICE), ledger.available(ALICE)) == (0, 7_000)
    assert ledger.check_invariants() == []


def test_fill_may_spend_held_and_free_cash_together() -> None:
    # The hold covers 1,000 of a 1,500 debit; the rest comes from available.
    ledger = funded()
    ledger.place_hold("order-1", ALICE, 1_000)
    entry = Entry(
        EntryId("fill"),
        (Posting(ALICE, -1_500), Posting(BOB, 1_500)),
        (HoldUse(HoldId("order-1"), 1_000),),
    )
    ledger.post(entry)
    assert (ledger.balance(ALICE), ledger.held(ALICE), ledger.available(ALICE)) == (8_500, 0, 8_500)


def test_fully_consumed_hold_ends() -> None:
    ledger = funded()
    ledger.place_hold("w-1", ALICE, 700)
    ledger.withdraw("out-1", "trader:alice", USD, 700, hold_id="w-1")
    assert ledger.find_hold("w-1") is None
    assert_refused(ledger, "hold_ended", lambda: ledger.release_hold("w-1"))
    assert ledger.balance(ALICE) == 9_300


def test_consuming_more_than_held_is_refused() -> None:
    ledger = funded()
    ledger.place_hold("order-1", ALICE, 1_000)
    assert_refused(
        ledger,
        "exceeds_hold",
        lambda: ledger.post(Entry.transfer("fill", ALICE, BOB, 1_001, hold_id="order-1")),
    )


def test_consuming_more_than_the_entry_takes_is_refused() -> None:
    # A hold is released explicitly, never as a side effect of an entry.
    ledger = funded()
    ledger.place_hold("order-1", ALICE, 1_000)
    entry = Entry(
        EntryId("fill"),
        (Posting(ALICE, -400), Posting(BOB, 400)),
        (HoldUse(HoldId("order-1"), 500),),
    )
    assert_refused(ledger, "consumption_exceeds_debit", lambda: ledger.post(entry))


def test_partial_release() -> None:
    ledger = funded()
    ledger.place_hold("order-1", ALICE, 1_000)
    assert ledger.release_hold("order-1", 400) == 400
    hold = ledger.find_hold("order-1")
    assert hold is not None and hold.amount == 600
    assert ledger.held(ALICE) == 600


def test_release_more_than_held_is_refused() -> None:
    ledger = funded()
    ledger.place_hold("order-1", ALICE, 1_000)
    assert_refused(ledger, "exceeds_hold", lambda: ledger.release_hold("order-1", 1_001))


def test_unknown_hold_is_refused() -> None:
    ledger = funded()
    assert_refused(ledger, "unknown_hold", lambda: ledger.release_hold("nope"))
    assert_refused(
        ledger,
        "unknown_hold",
        lambda: ledger.post(Entry.transfer("fill", ALICE, BOB, 1, hold_id="nope")),
    )


def test_hold_ids_are_never_reused() -> None:
    ledger = funded()
    ledger.place_hold("order-1", ALICE, 100)
    assert_refused(ledger, "duplicate_hold", lambda: ledger.place_hold("order-1", BOB, 100))
    ledger.release_hold("order-1")
    assert_refused(ledger, "duplicate_hold", lambda: ledger.place_hold("order-1", ALICE, 100))


def test_open_holds_are_capped() -> None:
    ledger = Ledger(max_open_holds=2)
    ledger.deposit("dep", "trader:alice", USD, 100)
    ledger.place_hold("h1", ALICE, 1)
    ledger.place_hold("h2", ALICE, 1)
    assert_refused(ledger, "too_many_holds", lambda: ledger.place_hold("h3", ALICE, 1))
    ledger.release_hold("h1")
    ledger.place_hold("h3", ALICE, 1)


def test_hold_on_an_account_never_opened_is_refused() -> None:
    ledger = Ledger()
    assert_refused(ledger, "insufficient_available", lambda: ledger.place_hold("h", ALICE, 1))
    assert not ledger.has_account(ALICE)


# Floors -----------------------------------------------------------------------


def test_credit_limit_allows_negative_available_down_to_the_limit() -> None:
    ledger = funded(usd_minor=100)
    ledger.set_rule(ALICE, AccountRule.with_credit(500))
    ledger.post(Entry.transfer("pay-1", ALICE, BOB, 400))
    ledger.place_hold("order-1", ALICE, 200)
    assert (ledger.balance(ALICE), ledger.available(ALICE)) == (-300, -500)
    assert_refused(
        ledger,
        "insufficient_available",
        lambda: ledger.post(Entry.transfer("pay-2", ALICE, BOB, 1)),
    )
    assert_refused(ledger, "insufficient_available", lambda: ledger.place_hold("o-2", ALICE, 1))


def test_lowering_a_credit_limit_below_what_is_used_is_refused() -> None:
    ledger = funded(usd_minor=1)
    ledger.set_rule(ALICE, AccountRule.with_credit(500))
    ledger.post(Entry.transfer("pay-1", ALICE, BOB, 301))
    assert_refused(
        ledger,
        "insufficient_available",
        lambda: ledger.set_rule(ALICE, AccountRule.with_credit(299)),
    )
    ledger.set_rule(ALICE, AccountRule.with_credit(300))
    assert ledger.rule(ALICE).floor == -300


def test_short_position_under_a_credit_limit() -> None:
    # Short selling is a credit limit on the product account, counted in lots.
    ledger = funded(xyz_lots=0)
    ledger.open_account("trader:bob", XYZ, AccountRule.with_credit(20))
    ledger.post(trade("fill-1", cash_minor=1_000, lots=20))
    assert ledger.balance(BOB_XYZ) == -20
    assert_refused(
        ledger,
        "insufficient_available",
        lambda: ledger.post(trade("fill-2", cash_minor=50, lots=1)),
    )


def test_unbounded_account_may_go_negative() -> None:
    ledger = funded()
    ledger.open_account("peer:B", USD, UNBOUNDED)
    ledger.post(Entry.transfer("owed", PEER, ALICE, 1_000_000))
    assert ledger.balance(PEER) == -1_000_000
    assert ledger.check_invariants() == []


def test_account_rules_are_validated() -> None:
    cases: list[tuple[str, Callable[[], object]]] = [
        ("credit_on_unbounded", lambda: AccountRule(AccountKind.UNBOUNDED, 5)),
        ("too_small", lambda: AccountRule.with_credit(-1)),
        ("not_integer", lambda: AccountRule.with_credit(True)),
        ("unknown_kind", lambda: AccountRule("bounded")),  # type: ignore[arg-type]
    ]
    for code, build in cases:
        with pytest.raises(LedgerError) as caught:
            build()
        assert caught.value.code == code


def test_reopening_with_another_rule_is_refused() -> None:
    ledger = Ledger()
    ledger.open_account("peer:B", USD, UNBOUNDED)
    assert ledger.open_account("peer:B", USD, UNBOUNDED) == PEER
    assert_refused(ledger, "account_exists", lambda: ledger.open_account("peer:B", USD))


def test_external_accounts_keep_their_kind() -> None:
    ledger = funded()
    assert ledger.rule(BANK) == EXTERNAL
    assert_refused(ledger, "external_fixed", lambda: ledger.set_rule(BANK, UNBOUNDED))
    assert_refused(ledger, "external_fixed", lambda: ledger.set_rule(ALICE, EXTERNAL))
    assert_refused(ledger, "unknown_account", lambda: ledger.set_rule(PEER, UNBOUNDED))


def test_deposit_source_must_be_external() -> None:
    ledger = funded()
    assert_refused(
        ledger,
        "not_external",
        lambda: ledger.deposit("dep", "trader:alice", USD, 1, source="trader:bob"),
    )


# Conservation -----------------------------------------------------------------


def test_conservation_after_deposits_trades_and_withdrawals() -> None:
    ledger = funded(usd_minor=10_000, xyz_lots=100)
    ledger.deposit("dep-wire", "trader:bob", USD, 2_000, source="external:wire")
    ledger.place_hold("order-1", ALICE, 6_000)
    ledger.post(trade("fill-1", cash_minor=5_000, lots=10, hold_id="order-1"))
    ledger.withdraw("out-1", "trader:bob", USD, 3_000)
    ledger.withdraw("out-2", "trader:alice", XYZ, 110)

    assert ledger.check_invariants() == []
    assert ledger.issued(USD) == 10_000 + 10_000 + 2_000 - 3_000
    assert ledger.issued(XYZ) == 200 - 110
    assert ledger.total_held(USD) == 1_000
    assert ledger.total_held(XYZ) == 0
    for asset in ledger.assets():
        assert sum(ledger.balance(a) for a in ledger.accounts() if a.asset == asset) == 0
    traders = [a for a in ledger.accounts() if a.owner.startswith("trader:")]
    assert sum(ledger.balance(a) for a in traders if a.asset == USD) == ledger.issued(USD)


def test_withdrawal_beyond_available_is_refused() -> None:
    ledger = funded()
    ledger.place_hold("order-1", ALICE, 9_000)
    assert_refused(
        ledger,
        "insufficient_available",
        lambda: ledger.withdraw("out", "trader:alice", USD, 1_001),
    )


def test_accounts_of_an_owner_are_listed_sorted() -> None:
    ledger = funded(xyz_lots=5)
    assert ledger.accounts_of("trader:alice") == tuple(sorted((ALICE, ALICE_XYZ)))
    assert ledger.accounts_of("trader:nobody") == ()
    assert BANK in ledger.accounts()


# Numbers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        (0, "not_positive"),
        (-5, "not_positive"),
        (True, "not_integer"),
        (1.0, "not_integer"),
        ("5", "not_integer"),
        (None, "not_integer"),
        (MAX_AMOUNT_MINOR + 1, "too_large"),
    ],
)
def test_bad_amounts_are_refused_with_a_code(amount: object, code: str) -> None:
    ledger = funded()
    ledger.place_hold("order-1", ALICE, 100)
    actions: list[Callable[[], object]] = [
        lambda: ledger.deposit("d", "trader:alice", USD, amount),  # type: ignore[arg-type]
        lambda: ledger.withdraw("w", "trader:alice", USD, amount),  # type: ignore[arg-type]
        lambda: ledger.place_hold("h", ALICE, amount),  # type: ignore[arg-type]
        lambda: ledger.post(Entry.transfer("t", ALICE, BOB, amount)),  # type: ignore[arg-type]
    ]
    if amount is not None:  # release_hold reads None as "all that remains"
        actions.append(lambda: ledger.release_hold("order-1", amount))  # type: ignore[arg-type]
    for action in actions:
        error = assert_refused(ledger, code, action)
        assert error.field == "amount"


def test_balances_stay_within_64_bits() -> None:
    ledger = Ledger()
    ledger.deposit("d1", "trader:alice", USD, MAX_AMOUNT_MINOR)
    assert_refused(
        ledger, "balance_out_of_range", lambda: ledger.deposit("d2", "trader:alice", USD, 1)
    )
    # The external side reaches the bottom of the range exactly, and no further.
    ledger.deposit("d3", "trader:bob", USD, 1)
    assert ledger.balance(BANK) == -(2**63)
    assert_refused(
        ledger, "balance_out_of_range", lambda: ledger.deposit("d4", "trader:bob", USD, 1)
    )


def test_bad_names_are_refused() -> None:
    cases: list[tuple[str, Callable[[], object]]] = [
        ("empty", lambda: AccountKey("", USD)),
        ("not_text", lambda: AccountKey(7, USD)),  # type: ignore[arg-type]
        ("too_long", lambda: AccountKey("trader:" + "x" * 200, USD)),
        ("not_printable", lambda: AccountKey("trader:\n", USD)),
        ("empty", lambda: AccountKey("trader:alice", AssetCode(""))),
    ]
    for code, build in cases:
        with pytest.raises(LedgerError) as caught:
            build()
        assert caught.value.code == code


# State hash -------------------------------------------------------------------


def build_history(ledger: Ledger) -> Ledger:
    ledger.deposit("d1", "trader:alice", USD, 1_000)
    ledger.deposit("d2", "trader:bob", XYZ, 10)
    ledger.place_hold("order-1", ALICE, 600)
    ledger.post(trade("fill-1", cash_minor=300, lots=3, hold_id="order-1"))
    return ledger


def test_state_hash_is_equal_for_equal_states() -> None:
    first = build_history(Ledger())
    second = build_history(Ledger())
    assert first.state_hash() == second.state_hash()
    assert len(first.state_hash()) == 64


def test_state_hash_ignores_the_order_accounts_were_opened_in() -> None:
    first, second = Ledger(), Ledger()
    first.open_account("peer:A", USD, UNBOUNDED)
    first.open_account("peer:B", USD, UNBOUNDED)
    second.open_account("peer:B", USD, UNBOUNDED)
    second.open_account("peer:A", USD, UNBOUNDED)
    assert first.state_hash() == second.state_hash()


def test_state_hash_differs_for_different_states() -> None:
    base = build_history(Ledger()).state_hash()
    variants: list[Callable[[Ledger], object]] = [
        lambda ledger: ledger.deposit("d9", "trader:alice", USD, 1),
        lambda ledger: ledger.place_hold("order-2", ALICE, 1),
        lambda ledger: ledger.release_hold("order-1", 1),
        lambda ledger: ledger.set_rule(ALICE, AccountRule.with_credit(1)),
        lambda ledger: ledger.open_account("peer:B", USD, UNBOUNDED),
    ]
    hashes = {base}
    for change in variants:
        ledger = build_history(Ledger())
        change(ledger)
        hashes.add(ledger.state_hash())
    assert len(hashes) == len(variants) + 1


def test_state_hash_covers_past_entry_ids() -> None:
    # Two ledgers with equal balances answer a retried entry differently.
    first, second = Ledger(), Ledger()
    first.deposit("d1", "trader:alice", USD, 100)
    second.deposit("d2", "trader:alice", USD, 100)
    assert first.balance(ALICE) == second.balance(ALICE)
    assert first.state_hash() != second.state_hash()


def test_version_moves_on_every_change_and_only_then() -> None:
    ledger = Ledger()
    start = ledger.version
    ledger.deposit("d1", "trader:a", "USD", 100)
    after_deposit = ledger.version
    assert after_deposit > start
    account = AccountKey("trader:a", AssetCode("USD"))
    ledger.balance(account), ledger.available(account), ledger.check_invariants()
    assert ledger.version == after_deposit
    ledger.place_hold("h1", account, 40)
    after_hold = ledger.version
    assert after_hold > after_deposit
    ledger.release_hold("h1")
    assert ledger.version > after_hold


def test_a_watched_ledger_names_the_accounts_that_changed_and_checks_them() -> None:
    ledger = funded()
    assert ledger.drain_changes() == []  # nothing recorded until someone watches
    ledger.watch_changes()
    ledger.post(Entry.transfer("t1", ALICE, BOB, 300))
    ledger.place_hold("h1", BOB, 100)
    assert set(ledger.drain_changes()) == {ALICE, BOB}
    assert ledger.drain_changes() == []
    assert ledger.check_accounts([ALICE, BOB]) == []
    assert ledger.check_accounts([AccountKey("trader:nobody", USD)]) == [
        "trader:nobody/USD changed but is not open"
    ]
