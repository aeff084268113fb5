"""Pre-trade risk policies: each edge, each switch, the order of reasons, purity."""

from __future__ import annotations

import copy
import dataclasses
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datn.domain import (
    USD,
    AssetCode,
    DomainError,
    Order,
    OrderType,
    ProductKind,
    ProductSpec,
    Side,
)
from datn.domain.orders import OrderId, TimeInForce, TraderId
from datn.risk import (
    ACCEPT,
    BPS_PER_UNIT,
    MAX_BPS,
    POLICIES,
    Accept,
    Decision,
    Hold,
    MarkedPosition,
    Reason,
    Reject,
    RiskConfig,
    RiskContext,
    band_edges_ticks,
    check_cash_cover,
    check_listed_product,
    check_market_protection,
    check_max_notional,
    check_max_open_orders,
    check_max_quantity,
    check_order,
    check_order_rate,
    check_position_cover,
    check_price_band,
    check_short_margin,
    protection_price_ticks,
    required_hold,
    worst_price_ticks,
)
from datn.risk.valuation import margin_required_minor

XYZ = ProductSpec("XYZ", ProductKind.SHARE, USD.code)
# Lots of 10 units priced in ticks of 5 cents: a notional is q * 10 * p * 5.
ABC = ProductSpec("ABC", ProductKind.SHARE, USD.code, tick_size_minor=5, lot_size=10)
EUR_BOND = ProductSpec("EB", ProductKind.BOND, AssetCode("EUR"))

OFF = RiskConfig(cash_cover=False, position_cover=False)
"""Every policy that can be switched off, switched off."""


def limit(side: Side, quantity_lots: int, price_ticks: int, product: ProductSpec = XYZ) -> Order:
    return Order(
        OrderId(1),
        TraderId("t1"),
        product.product_id,
        side,
        quantity_lots,
        price_ticks,
        OrderType.LIMIT,
        TimeInForce.GTC,
        "c1",
    )


def market(side: Side, quantity_lots: int, product: ProductSpec = XYZ) -> Order:
    return Order(
        OrderId(1),
        TraderId("t1"),
        product.product_id,
        side,
        quantity_lots,
        None,
        OrderType.MARKET,
        TimeInForce.IOC,
        "c1",
    )


T = TypeVar("T")


def rebuilt(value: T) -> T:
    """An equal, separate copy of a value made of dataclasses, tuples and
    atoms, built field by field: ``copy.deepcopy`` cannot copy a frozen
    dataclass that mypyc compiled (it restores state by assignment)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return type(value)(**{f.name: rebuilt(getattr(value, f.name)) for f in fields if f.init})
    if isinstance(value, tuple):
        return type(value)(rebuilt(item) for item in value)  # type: ignore[return-value]
    return value


def context(
    order: Order,
    *,
    product: ProductSpec = XYZ,
    cash_minor: int = 0,
    lots: int = 0,
    reference_ticks: int | None = None,
    open_count: int = 0,
    recent_count: int = 0,
    positions: tuple[MarkedPosition, ...] = (),
) -> RiskContext:
    return RiskContext(
        order=order,
        product=product,
        available_cash_minor=cash_minor,
        available_position_lots=lots,
        reference_price_ticks=reference_ticks,
        open_order_count=open_count,
        recent_order_count=recent_count,
        positions=positions,
    )


def code(decision: Decision) -> Reason | None:
    return decision.code if isinstance(decision, Reject) else None


# --- listed products -------------------------------------------------------------


def test_unlisted_product_is_refused() -> None:
    config = RiskConfig(listed_products=frozenset({ABC.product_id}))
    decision = check_listed_product(config, context(limit(Side.BUY, 1, 10)))
    assert code(decision) == Reason.PRODUCT_NOT_LISTED
    assert isinstance(decision, Reject) and "XYZ" in decision.message


def test_listed_product_passes() -> None:
    config = RiskConfig(listed_products=frozenset({ABC.product_id, XYZ.product_id}))
    assert check_listed_product(config, context(limit(Side.BUY, 1, 10))) == ACCEPT


def test_no_listing_allows_every_product() -> None:
    assert check_listed_product(OFF, context(limit(Side.BUY, 1, 10))) == ACCEPT


# --- max quantity ----------------------------------------------------------------


def test_max_quantity_edge() -> None:
    config = RiskConfig(max_quantity_lots=100)
    assert check_max_quantity(config, context(limit(Side.BUY, 100, 1))) == ACCEPT
    decision = check_max_quantity(config, context(limit(Side.SELL, 101, 1)))
    assert code(decision) == Reason.MAX_QUANTITY
    assert isinstance(decision, Reject) and "101" in decision.message


def test_max_quantity_off() -> None:
    assert check_max_quantity(OFF, context(limit(Side.BUY, 10**12, 1))) == ACCEPT


# --- market protection -----------------------------------------------------------


@pytest.mark.parametrize("side", list(Side))
def test_market_order_without_reference_price_is_refused(side: Side) -> None:
    decision = check_market_protection(OFF, context(market(side, 1)))
    assert code(decision) == Reason.NO_REFERENCE_PRICE


def test_market_order_with_reference_price_passes() -> None:
    ctx = context(market(Side.BUY, 1), reference_ticks=100)
    assert check_market_protection(OFF, ctx) == ACCEPT


def test_limit_order_needs_no_reference_price() -> None:
    assert check_market_protection(OFF, context(limit(Side.BUY, 1, 10))) == ACCEPT


def test_market_buy_without_reference_is_refused_by_check_order() -> None:
    decision = check_order(RiskConfig(), context(market(Side.BUY, 1), cash_minor=10**9))
    assert code(decision) == Reason.NO_REFERENCE_PRICE


def test_protection_price_is_band_edge_against_the_side() -> None:
    config = RiskConfig(market_protection_bps=500)
    assert protection_price_ticks(config, Side.BUY, 10_000) == 10_500
    assert protection_price_ticks(config, Side.SELL, 10_000) == 9_500
    ctx = context(market(Side.BUY, 1), reference_ticks=10_000)
    assert worst_price_ticks(config, ctx) == 10_500
    assert worst_price_ticks(config, context(limit(Side.BUY, 1, 77))) == 77


# --- price band ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price_ticks", "accepted"),
    [(10_100, True), (10_101, False), (9_900, True), (9_899, False), (10_000, True)],
)
@pytest.mark.parametrize("side", list(Side))
def test_price_band_both_sides(price_ticks: int, accepted: bool, side: Side) -> None:
    config = RiskConfig(price_band_bps=100)
    ctx = context(limit(side, 1, price_ticks), reference_ticks=10_000)
    decision = check_price_band(config, ctx)
    assert (decision == ACCEPT) is accepted
    if not accepted:
        assert code(decision) == Reason.PRICE_BAND
        assert isinstance(decision, Reject) and "9900..10100" in decision.message


def test_price_band_rounds_edges_inward() -> None:
    # 1 % of 150 ticks is 1.5 ticks: 148.5..151.5 holds the whole ticks 149..151.
    assert band_edges_ticks(150, 100) == (149, 151)
    config = RiskConfig(price_band_bps=100)
    assert check_price_band(config, context(limit(Side.BUY, 1, 151), reference_ticks=150)) == ACCEPT
    rejected = check_price_band(config, context(limit(Side.BUY, 1, 152), reference_ticks=150))
    assert code(rejected) == Reason.PRICE_BAND
    assert check_price_band(config, context(limit(Side.BUY, 1, 149), reference_ticks=150)) == ACCEPT
    rejected = check_price_band(config, context(limit(Side.BUY, 1, 148), reference_ticks=150))
    assert code(rejected) == Reason.PRICE_BAND


def test_band_low_edge_is_at_least_one_tick() -> None:
    assert band_edges_ticks(100, 20_000) == (1, 300)


def test_price_band_without_reference_price_passes() -> None:
    config = RiskConfig(price_band_bps=1)
    assert check_price_band(config, context(limit(Side.BUY, 1, 10**9))) == ACCEPT


def test_price_band_ignores_market_orders() -> None:
    config = RiskConfig(price_band_bps=0)
    ctx = context(market(Side.BUY, 1), reference_ticks=100)
    assert check_price_band(config, ctx) == ACCEPT


def test_price_band_off() -> None:
    ctx = context(limit(Side.BUY, 1, 10**9), reference_ticks=1)
    assert check_price_band(OFF, ctx) == ACCEPT


# --- max notional ----------------------------------------------------------------


def test_max_notional_edge_uses_lot_and_tick_size() -> None:
    config = RiskConfig(max_notional_minor=1_050)  # 3 lots * 10 * 7 ticks * 5 cents
    assert check_max_notional(config, context(limit(Side.BUY, 3, 7, ABC), product=ABC)) == ACCEPT
    config = RiskConfig(max_notional_minor=1_049)
    decision = check_max_notional(config, context(limit(Side.BUY, 3, 7, ABC), product=ABC))
    assert code(decision) == Reason.MAX_NOTIONAL
    assert isinstance(decision, Reject) and "1050" in decision.message


def test_max_notional_of_market_buy_is_at_protection_price() -> None:
    ctx = context(market(Side.BUY, 10), reference_ticks=10_000)  # costed at 10 500
    assert check_max_notional(RiskConfig(max_notional_minor=105_000), ctx) == ACCEPT
    decision = check_max_notional(RiskConfig(max_notional_minor=104_999), ctx)
    assert code(decision) == Reason.MAX_NOTIONAL


def test_max_notional_of_market_sell_is_at_reference_price() -> None:
    ctx = context(market(Side.SELL, 10), reference_ticks=10_000)
    assert check_max_notional(RiskConfig(max_notional_minor=100_000), ctx) == ACCEPT
    decision = check_max_notional(RiskConfig(max_notional_minor=99_999), ctx)
    assert code(decision) == Reason.MAX_NOTIONAL


def test_max_notional_of_market_order_without_reference_is_refused() -> None:
    decision = check_max_notional(
        RiskConfig(max_notional_minor=10**9), context(market(Side.SELL, 1))
    )
    assert code(decision) == Reason.NO_REFERENCE_PRICE


def test_max_notional_off() -> None:
    assert check_max_notional(OFF, context(market(Side.SELL, 1))) == ACCEPT


# --- order rate and open orders --------------------------------------------------


def test_order_rate_edge() -> None:
    config = RiskConfig(max_orders_per_window=5, order_rate_window_ms=250)
    assert check_order_rate(config, context(limit(Side.BUY, 1, 1), recent_count=4)) == ACCEPT
    decision = check_order_rate(config, context(limit(Side.BUY, 1, 1), recent_count=5))
    assert code(decision) == Reason.ORDER_RATE
    assert isinstance(decision, Reject) and "250 ms" in decision.message


def test_order_rate_off() -> None:
    assert check_order_rate(OFF, context(limit(Side.BUY, 1, 1), recent_count=10**9)) == ACCEPT


def test_max_open_orders_edge() -> None:
    config = RiskConfig(max_open_orders=3)
    assert check_max_open_orders(config, context(limit(Side.BUY, 1, 1), open_count=2)) == ACCEPT
    decision = check_max_open_orders(config, context(limit(Side.BUY, 1, 1), open_count=3))
    assert code(decision) == Reason.MAX_OPEN_ORDERS


def test_max_open_orders_off() -> None:
    assert check_max_open_orders(OFF, context(limit(Side.BUY, 1, 1), open_count=10**9)) == ACCEPT


# --- cash cover ------------------------------------------------------------------


def test_cash_exactly_equal_to_notional_passes_one_cent_less_fails() -> None:
    config = RiskConfig()
    order = limit(Side.BUY, 100, 5_000)  # 100 * 50.00 = 500 000 cents
    assert check_cash_cover(config, context(order, cash_minor=500_000)) == ACCEPT
    decision = check_cash_cover(config, context(order, cash_minor=499_999))
    assert code(decision) == Reason.INSUFFICIENT_CASH
    assert isinstance(decision, Reject)
    assert "500000" in decision.message and "499999" in decision.message


def test_cash_cover_uses_lot_and_tick_size() -> None:
    order = limit(Side.BUY, 3, 7, ABC)
    assert check_cash_cover(RiskConfig(), context(order, product=ABC, cash_minor=1_050)) == ACCEPT
    decision = check_cash_cover(RiskConfig(), context(order, product=ABC, cash_minor=1_049))
    assert code(decision) == Reason.INSUFFICIENT_CASH


def test_market_buy_is_costed_at_band_price() -> None:
    config = RiskConfig(market_protection_bps=500)
    order = market(Side.BUY, 10)  # reference 100.00, protected at 105.00
    ok = context(order, cash_minor=105_000, reference_ticks=10_000)
    short = context(order, cash_minor=104_999, reference_ticks=10_000)
    assert check_cash_cover(config, ok) == ACCEPT
    assert code(check_cash_cover(config, short)) == Reason.INSUFFICIENT_CASH


def test_cash_cover_alone_refuses_market_buy_without_reference() -> None:
    decision = check_cash_cover(RiskConfig(), context(market(Side.BUY, 1), cash_minor=10**9))
    assert code(decision) == Reason.NO_REFERENCE_PRICE


def test_cash_cover_ignores_sells() -> None:
    assert check_cash_cover(RiskConfig(), context(limit(Side.SELL, 10, 10))) == ACCEPT


def test_cash_cover_off() -> None:
    assert check_cash_cover(OFF, context(limit(Side.BUY, 10, 10))) == ACCEPT


# --- position cover --------------------------------------------------------------


def test_position_cover_edge() -> None:
    config = RiskConfig()
    assert check_position_cover(config, context(limit(Side.SELL, 10, 10), lots=10)) == ACCEPT
    decision = check_position_cover(config, context(limit(Side.SELL, 11, 10), lots=10))
    assert code(decision) == Reason.INSUFFICIENT_POSITION


def test_position_cover_ignores_buys() -> None:
    assert check_position_cover(RiskConfig(), context(limit(Side.BUY, 10, 10))) == ACCEPT


def test_position_cover_lets_shorts_through_when_short_selling_is_on() -> None:
    config = RiskConfig(short_margin_bps=15_000)
    assert check_position_cover(config, context(limit(Side.SELL, 11, 10), lots=10)) == ACCEPT


def test_position_cover_off() -> None:
    assert check_position_cover(OFF, context(limit(Side.SELL, 11, 10))) == ACCEPT


# --- short-sale margin -----------------------------------------------------------


def test_short_selling_off_refuses_a_naked_sell() -> None:
    decision = check_order(RiskConfig(), context(limit(Side.SELL, 10, 100), cash_minor=10**9))
    assert code(decision) == Reason.INSUFFICIENT_POSITION


def test_short_margin_edge() -> None:
    # 10 lots short at 100 ticks is 1 000 cents of exposure; 150 % needs 1 500.
    config = RiskConfig(short_margin_bps=15_000)
    order = limit(Side.SELL, 10, 100)
    assert check_order(config, context(order, cash_minor=1_500, reference_ticks=100)) == ACCEPT
    decision = check_order(config, context(order, cash_minor=1_499, reference_ticks=100))
    assert code(decision) == Reason.SHORT_MARGIN
    assert isinstance(decision, Reject)
    assert "1000" in decision.message and "1500" in decision.message


def test_short_margin_rounds_requirement_up() -> None:
    # 1 000 cents at 33.33 % is 333.3 cents: the trader needs 334.
    assert margin_required_minor(1_000, 3_333) == 334
    config = RiskConfig(short_margin_bps=3_333)
    order = limit(Side.SELL, 10, 100)
    assert check_short_margin(config, context(order, cash_minor=334)) == ACCEPT
    assert code(check_short_margin(config, context(order, cash_minor=333))) == Reason.SHORT_MARGIN


def test_short_margin_counts_all_short_exposure_and_positions_at_mark() -> None:
    positions = (
        # Short 2 lots of ABC at 40 ticks: -4 000 of value, 4 000 of exposure,
        # plus 1 lot open sells would short: 2 000 more exposure.
        MarkedPosition(ABC, position_lots=-2, mark_price_ticks=40, open_short_lots=1),
        # Long 5 XYZ at a mark of 100: 500 of value, no exposure.
        MarkedPosition(XYZ, position_lots=5, mark_price_ticks=100),
    )
    # Selling 8 XYZ with 5 available shorts 3, valued at the highest known price,
    # the mark of 100 ticks (limit 90, reference 95): 300 more exposure.
    order = limit(Side.SELL, 8, 90)
    config = RiskConfig(short_margin_bps=BPS_PER_UNIT)  # margin of 100 % on 6 300
    # Equity is cash + 500 - 4 000, so cash must be 9 800.
    ok = context(order, cash_minor=9_800, lots=5, reference_ticks=95, positions=positions)
    assert check_short_margin(config, ok) == ACCEPT
    short = dataclasses.replace(ok, available_cash_minor=9_799)
    decision = check_short_margin(config, short)
    assert code(decision) == Reason.SHORT_MARGIN
    assert isinstance(decision, Reject) and "6300" in decision.message


def test_new_short_is_valued_at_its_limit_when_that_is_highest() -> None:
    config = RiskConfig(short_margin_bps=BPS_PER_UNIT)
    order = limit(Side.SELL, 10, 120)  # 1 200 of exposure, not 1 000 at the reference
    assert check_short_margin(config, context(order, cash_minor=1_200, reference_ticks=100)) == (
        ACCEPT
    )
    decision = check_short_margin(config, context(order, cash_minor=1_199, reference_ticks=100))
    assert code(decision) == Reason.SHORT_MARGIN


def test_short_market_sell_without_any_price_is_refused() -> None:
    config = RiskConfig(short_margin_bps=BPS_PER_UNIT)
    decision = check_short_margin(config, context(market(Side.SELL, 1), cash_minor=10**9))
    assert code(decision) == Reason.NO_REFERENCE_PRICE


def test_short_margin_ignores_buys_and_covered_sells() -> None:
    config = RiskConfig(short_margin_bps=MAX_BPS)
    assert check_short_margin(config, context(limit(Side.BUY, 10, 100))) == ACCEPT
    assert check_short_margin(config, context(limit(Side.SELL, 10, 100), lots=10)) == ACCEPT


def test_short_margin_off_means_no_short_selling() -> None:
    assert check_short_margin(RiskConfig(), context(limit(Side.SELL, 10, 100))) == ACCEPT
    assert not RiskConfig().short_selling
    assert RiskConfig(short_margin_bps=0).short_selling


# --- check_order -----------------------------------------------------------------


def test_policies_run_in_the_documented_order() -> None:
    assert [policy.__name__ for policy in POLICIES] == [
        "check_listed_product",
        "check_max_quantity",
        "check_market_protection",
        "check_price_band",
        "check_max_notional",
        "check_order_rate",
        "check_max_open_orders",
        "check_cash_cover",
        "check_position_cover",
        "check_short_margin",
    ]


def test_check_order_returns_the_first_failing_reason() -> None:
    # A buy that breaks every limit it can; each fix exposes the next reason.
    config = RiskConfig(
        listed_products=frozenset({ABC.product_id}),
        max_quantity_lots=5,
        price_band_bps=100,
        max_notional_minor=100,
        max_orders_per_window=1,
        max_open_orders=1,
        cash_cover=True,
    )
    ctx = context(limit(Side.BUY, 10, 200), reference_ticks=100, open_count=1, recent_count=1)
    fixes: dict[Reason, dict[str, object]] = {
        Reason.PRODUCT_NOT_LISTED: {"listed_products": None},
        Reason.MAX_QUANTITY: {"max_quantity_lots": None},
        Reason.PRICE_BAND: {"price_band_bps": None},
        Reason.MAX_NOTIONAL: {"max_notional_minor": None},
        Reason.ORDER_RATE: {"max_orders_per_window": None},
        Reason.MAX_OPEN_ORDERS: {"max_open_orders": None},
        Reason.INSUFFICIENT_CASH: {"cash_cover": False},
    }
    for reason, fix in fixes.items():
        assert code(check_order(config, ctx)) == reason
        config = dataclasses.replace(config, **fix)  # type: ignore[arg-type]
    assert check_order(config, ctx) == ACCEPT


def test_check_order_reports_rate_before_cover_and_margin() -> None:
    sell = context(limit(Side.SELL, 10, 100), recent_count=1)
    assert code(check_order(RiskConfig(max_orders_per_window=1), sell)) == Reason.ORDER_RATE
    assert code(check_order(RiskConfig(), sell)) == Reason.INSUFFICIENT_POSITION
    margin = RiskConfig(short_margin_bps=BPS_PER_UNIT)
    assert code(check_order(margin, sell)) == Reason.SHORT_MARGIN


def test_check_order_is_pure() -> None:
    config = RiskConfig(short_margin_bps=15_000, price_band_bps=100, max_open_orders=2)
    positions = (MarkedPosition(ABC, position_lots=-2, mark_price_ticks=40, open_short_lots=1),)
    ctx = context(limit(Side.SELL, 8, 101), cash_minor=5, lots=2, reference_ticks=100)
    ctx = dataclasses.replace(ctx, positions=positions)
    config_before, ctx_before = copy.deepcopy(config), rebuilt(ctx)
    first = check_order(config, ctx)
    hold = required_hold(config, ctx)
    assert check_order(config, ctx) == first
    assert required_hold(config, ctx) == hold
    assert ctx == ctx_before
    assert config == config_before


# --- holds -----------------------------------------------------------------------


def test_hold_for_limit_buy_is_its_notional() -> None:
    ctx = context(limit(Side.BUY, 3, 7, ABC), product=ABC, cash_minor=10**6)
    assert required_hold(RiskConfig(), ctx) == Hold(USD.code, 1_050)


def test_hold_for_market_buy_is_at_protection_price() -> None:
    ctx = context(market(Side.BUY, 10), cash_minor=10**6, reference_ticks=10_000)
    assert required_hold(RiskConfig(market_protection_bps=500), ctx) == Hold(USD.code, 105_000)


def test_hold_for_sell_is_the_lots_up_to_the_available_position() -> None:
    config = RiskConfig(short_margin_bps=0)
    assert required_hold(config, context(limit(Side.SELL, 8, 1), lots=10)) == Hold(
        XYZ.product_id, 8
    )
    assert required_hold(config, context(limit(Side.SELL, 12, 1), lots=10)) == Hold(
        XYZ.product_id, 10
    )
    assert required_hold(config, context(market(Side.SELL, 12), reference_ticks=5)) == Hold(
        XYZ.product_id, 0
    )


def test_hold_for_market_buy_without_reference_is_an_error() -> None:
    with pytest.raises(DomainError) as raised:
        required_hold(RiskConfig(), context(market(Side.BUY, 1)))
    assert raised.value.field == "reference_price_ticks"


# --- validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_quantity_lots", -1),
        ("max_quantity_lots", 0),
        ("max_quantity_lots", True),
        ("max_notional_minor", 0),
        ("max_notional_minor", 1.5),
        ("price_band_bps", -1),
        ("price_band_bps", MAX_BPS + 1),
        ("market_protection_bps", -1),
        ("market_protection_bps", None),
        ("max_open_orders", 0),
        ("max_orders_per_window", -3),
        ("order_rate_window_ms", 0),
        ("cash_cover", 1),
        ("position_cover", None),
        ("short_margin_bps", -1),
        ("listed_products", {XYZ.product_id}),
        ("listed_products", frozenset({""})),
    ],
)
def test_bad_config_is_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(DomainError) as raised:
        RiskConfig(**{field: value})  # type: ignore[arg-type]
    assert raised.value.field == field


def test_context_refuses_a_product_that_is_not_the_orders() -> None:
    with pytest.raises(DomainError) as raised:
        context(limit(Side.BUY, 1, 1), product=ABC)
    assert raised.value.field == "product"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("available_cash_minor", -1),
        ("available_position_lots", -1),
        ("reference_price_ticks", 0),
        ("open_order_count", -1),
        ("recent_order_count", -1),
    ],
)
def test_context_refuses_bad_numbers(field: str, value: int) -> None:
    ctx = context(limit(Side.BUY, 1, 1))
    with pytest.raises(DomainError) as raised:
        dataclasses.replace(ctx, **{field: value})  # type: ignore[arg-type]
    assert raised.value.field == field


def test_context_refuses_positions_in_another_currency_or_twice() -> None:
    ctx = context(limit(Side.BUY, 1, 1))
    euro = (MarkedPosition(EUR_BOND, position_lots=1, mark_price_ticks=1),)
    twice = (MarkedPosition(XYZ, 1, 1), MarkedPosition(XYZ, 2, 1))
    for positions in (euro, twice):
        with pytest.raises(DomainError) as raised:
            dataclasses.replace(ctx, positions=positions)
        assert raised.value.field == "positions"


def test_marked_position_refuses_a_zero_mark() -> None:
    with pytest.raises(DomainError) as raised:
        MarkedPosition(XYZ, position_lots=1, mark_price_ticks=0)
    assert raised.value.field == "mark_price_ticks"


# --- properties ------------------------------------------------------------------


def optional_ints(low: int, high: int) -> st.SearchStrategy[int | None]:
    return st.none() | st.integers(low, high)


# The bounds are chosen so that each policy, alone, passes about as often as it
# fails, and every reason shows up as the first one.
configs = st.builds(
    RiskConfig,
    listed_products=st.sampled_from(
        [None, frozenset({XYZ.product_id, ABC.product_id}), frozenset({ABC.product_id})]
    ),
    max_quantity_lots=optional_ints(60, 200),
    max_notional_minor=optional_ints(1, 2_000_000),
    price_band_bps=optional_ints(0, 20_000),
    market_protection_bps=st.integers(0, 20_000),
    max_open_orders=optional_ints(1, 12),
    max_orders_per_window=optional_ints(1, 12),
    cash_cover=st.booleans(),
    position_cover=st.booleans(),
    short_margin_bps=optional_ints(0, 30_000),
)


@st.composite
def orders(draw: st.DrawFn, product: ProductSpec) -> Order:
    side = draw(st.sampled_from(list(Side)))
    quantity_lots = draw(st.integers(1, 120))
    if draw(st.booleans()):
        return market(side, quantity_lots, product)
    return limit(side, quantity_lots, draw(st.integers(1, 300)), product)


@st.composite
def marked_positions(draw: st.DrawFn) -> tuple[MarkedPosition, ...]:
    held = draw(st.lists(st.sampled_from([XYZ, ABC]), unique=True, max_size=2))
    return tuple(
        MarkedPosition(
            product,
            position_lots=draw(st.integers(-50, 50)),
            mark_price_ticks=draw(st.integers(1, 300)),
            open_short_lots=draw(st.integers(0, 20)),
        )
        for product in held
    )


@st.composite
def contexts(draw: st.DrawFn) -> RiskContext:
    product = draw(st.sampled_from([XYZ, ABC]))
    return RiskContext(
        order=draw(orders(product)),
        product=product,
        available_cash_minor=draw(st.integers(0, 2_000_000)),
        available_position_lots=draw(st.integers(0, 100)),
        reference_price_ticks=draw(optional_ints(1, 300)),
        open_order_count=draw(st.integers(0, 6)),
        recent_order_count=draw(st.integers(0, 6)),
        positions=draw(marked_positions()),
    )


@settings(max_examples=400, derandomize=True)
@given(config=configs, ctx=contexts())
def test_check_order_accepts_iff_every_policy_accepts(config: RiskConfig, ctx: RiskContext) -> None:
    before = rebuilt(ctx)
    decision = check_order(config, ctx)
    each = [policy(config, ctx) for policy in POLICIES]
    rejections = [d for d in each if isinstance(d, Reject)]
    assert isinstance(decision, Accept) == (not rejections)
    assert decision == (rejections[0] if rejections else ACCEPT)
    assert ctx == before
    if isinstance(decision, Accept):
        _assert_hold_fits(config, ctx, required_hold(config, ctx))


def _assert_hold_fits(config: RiskConfig, ctx: RiskContext, hold: Hold) -> None:
    if ctx.order.side is Side.SELL:
        assert hold.asset == ctx.order.product_id
        assert 0 <= hold.amount <= ctx.available_position_lots
    else:
        assert hold.asset == ctx.product.quote_currency
        if config.cash_cover:
            assert 0 < hold.amount <= ctx.available_cash_minor


@settings(max_examples=400, derandomize=True)
@given(
    reference_ticks=st.integers(1, 10**12),
    band_bps=st.integers(0, MAX_BPS),
    price_ticks=st.integers(1, 10**13),
)
def test_band_edges_are_exact(reference_ticks: int, band_bps: int, price_ticks: int) -> None:
    low, high = band_edges_ticks(reference_ticks, band_bps)
    in_band = (
        reference_ticks * (BPS_PER_UNIT - band_bps)
        <= price_ticks * BPS_PER_UNIT
        <= reference_ticks * (BPS_PER_UNIT + band_bps)
    )
    assert (low <= price_ticks <= high) == in_band


@settings(max_examples=200, derandomize=True)
@given(exposure_minor=st.integers(0, 2**63 - 1), margin_bps=st.integers(0, MAX_BPS))
def test_margin_requirement_is_the_smallest_sufficient_amount(
    exposure_minor: int, margin_bps: int
) -> None:
    required = margin_required_minor(exposure_minor, margin_bps)
    assert required * BPS_PER_UNIT >= exposure_minor * margin_bps
    assert (required - 1) * BPS_PER_UNIT < exposure_minor * margin_bps
