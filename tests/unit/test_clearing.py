"""The clearing rules on their own: quotas, exposure and settlement statements."""

from __future__ import annotations

import pytest

from datn.clearing.exposure import exposure, exposure_cap, marked_value, obligations
from datn.clearing.quota import AcceptanceRatio, QuotaConfig, TokenBucket, lock_quota
from datn.clearing.settlement import build_statement, reproduce, statement_hash
from datn.domain import USD, DomainError, ProductKind, ProductSpec
from datn.protocol.messages import NodeId

XYZ = ProductSpec("XYZ", ProductKind.SHARE, USD.code)
PRODUCTS = {XYZ.product_id: XYZ}
A, B = NodeId("a"), NodeId("b")


# ------------------------------------------------------------- token bucket


def test_a_token_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate_per_s=10, burst=3, now_ms=0)
    assert [bucket.take(0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(99)  # 0.99 of a token
    assert bucket.take(100)  # one token per 100 ms at 10 a second
    assert not bucket.take(100)
    assert [bucket.take(10_000) for _ in range(4)] == [True, True, True, False]  # capped at burst


# ---------------------------------------------------------- acceptance ratio


def test_the_acceptance_ratio_is_taken_per_offered_and_forgets_with_a_half_life() -> None:
    ratio = AcceptanceRatio(half_life_ms=1_000, now_ms=0)
    assert ratio.permille(0, min_offered=0) == 1_000  # nothing offered: no judgement
    ratio.offer(1_000, 0)
    ratio.take(250, 0)
    assert ratio.permille(0, min_offered=0) == 250
    assert ratio.permille(0, min_offered=1_000) == 1_000  # too little offered to judge
    ratio.permille(1_000, min_offered=0)
    assert (ratio.offered, ratio.taken) == (500, 125)  # one half-life later
    ratio.permille(1_500, min_offered=0)
    assert (ratio.offered, ratio.taken) == (375, 93)  # halfway to the next halving, linearly


def test_old_offers_fade_so_a_peer_can_mend_its_ratio() -> None:
    ratio = AcceptanceRatio(half_life_ms=1_000, now_ms=0)
    ratio.offer(1_000_000, 0)  # grabbed much, took nothing
    assert ratio.permille(0, min_offered=0) == 0
    ratio.offer(10_000, 20_000)
    ratio.take(10_000, 20_000)
    assert ratio.permille(20_000, min_offered=0) > 900


# ---------------------------------------------------------------- quota


def test_the_quota_follows_the_bond_and_shrinks_with_a_poor_ratio() -> None:
    config = QuotaConfig(
        lock_notional_percent=50, lock_count_unit_minor=1_000, ratio_floor_permille=100
    )
    assert lock_quota(0, 1_000, config) == lock_quota(-5, 1_000, config)
    assert lock_quota(0, 1_000, config).max_locks == 0  # no bond, no locks
    full = lock_quota(10_000, 1_000, config)
    assert (full.max_lock_notional, full.max_locks) == (5_000, 11)
    half = lock_quota(10_000, config.ratio_target_permille // 2, config)
    assert (half.max_lock_notional, half.max_locks) == (2_500, 5)
    floor = lock_quota(10_000, 0, config)
    assert (floor.max_lock_notional, floor.max_locks) == (500, 1)  # floor share, one lock


@pytest.mark.parametrize(
    "change",
    [
        {"broadcasts_per_s": 0},
        {"lock_notional_percent": 0},
        {"ratio_floor_permille": 0},
        {"ratio_target_permille": 1_001},
        {"ratio_min_offered_minor": -1},
        {"max_open_locks": True},
    ],
)
def test_a_bad_quota_config_is_refused_naming_the_field(change: dict[str, int]) -> None:
    with pytest.raises(DomainError) as caught:
        QuotaConfig(**change)
    assert caught.value.field == next(iter(change))


# ------------------------------------------------------------- exposure


def test_exposure_marks_lots_owed_both_ways_at_the_last_price() -> None:
    marks = {XYZ.product_id: 100}
    # The peer bought 10 lots at 90 from this node's trader: it owes 900 cash
    # and is owed 10 lots worth 1,000 at the mark: this node owes it 100 net.
    balances = {USD.code: -XYZ.notional_minor(10, 90), XYZ.product_id: 10}
    value = marked_value(balances, PRODUCTS, marks, USD.code)
    assert value == XYZ.notional_minor(10, 100) - XYZ.notional_minor(10, 90)
    assert exposure(value, 0) == 0 and obligations(value) == value
    # The other way round the peer owes the difference, and open locks add to it.
    short = {USD.code: XYZ.notional_minor(10, 90), XYZ.product_id: -10}
    owed = marked_value(short, PRODUCTS, marks, USD.code)
    assert exposure(owed, 5_000) == -owed + 5_000 and obligations(owed) == 0


def test_the_exposure_cap_is_a_multiple_of_the_bond() -> None:
    assert exposure_cap(10_000, 150) == 15_000
    assert exposure_cap(0, 150) == 0


# ----------------------------------------------------------- settlement


def test_both_sides_build_the_same_statement_and_hash() -> None:
    # Trade 7: a's trader bought 2 lots from b's at 10 cents: at a, b's accounts
    # show +20 cash (a owes it) and -2 lots; at b, a's show the opposite.
    at_a = {7: ((USD.code, 20), (XYZ.product_id, -2)), 9: ((USD.code, -5),)}
    at_b = {7: ((USD.code, -20), (XYZ.product_id, 2)), 9: ((USD.code, 5),)}
    mine = build_statement(A, B, 3, at_a)
    theirs = build_statement(B, A, 3, at_b)
    assert mine == theirs
    assert mine.net == ((USD.code, 15), (XYZ.product_id, -2))  # a owes b 15 cents, b owes 2 lots
    assert statement_hash(mine) == statement_hash(theirs)
    assert reproduce(mine, B, at_b) == (theirs, "")


def test_a_statement_the_other_side_cannot_reproduce_is_refused_with_a_reason() -> None:
    at_a = {7: ((USD.code, 20),), 8: ((USD.code, 1),)}
    proposed = build_statement(A, B, 1, at_a)
    assert reproduce(proposed, B, {7: ((USD.code, -20),)}) == (None, "unknown_trades")
    statement, reason = reproduce(proposed, B, {7: ((USD.code, -20),), 8: ((USD.code, -2),)})
    assert reason == "different_terms" and statement is not None
    assert statement_hash(statement) != statement_hash(proposed)
    assert reproduce(proposed, NodeId("c"), {}) == (None, "not_our_pair")
