"""Domain values: content-addressed products and validated, immutable orders."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from datn.domain import (
    USD,
    Currency,
    DomainError,
    Order,
    OrderType,
    ProductKind,
    ProductSpec,
    Side,
    TimeInForce,
)
from datn.domain.assets import AssetCode

XYZ = ProductSpec("XYZ", ProductKind.SHARE, USD.code)


def good_fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "order_id": 1,
        "trader_id": "alice",
        "product_id": XYZ.product_id,
        "side": Side.BUY,
        "quantity_lots": 10,
        "price_ticks": 5_000,
        "order_type": OrderType.LIMIT,
        "time_in_force": TimeInForce.GTC,
        "client_order_id": "c-1",
    }
    fields.update(changes)
    return fields


# ----------------------------------------------------------------- products


def test_product_id_is_the_hash_of_the_canonical_spec() -> None:
    # Pinned: every node must derive this id from this spec, today and in
    # every later version, or nodes stop agreeing on what they trade.
    assert XYZ.canonical_bytes() == (
        b'{"attributes":{},"kind":"share","lot_size":1,"quote_currency":"USD",'
        b'"symbol":"XYZ","tick_size_minor":1}'
    )
    assert XYZ.product_id == ("p1a9cd8e0406106706eb74263e139069c3888fa626bc08679f762adbd37feb2ade")


def test_nodes_writing_the_same_spec_agree_on_the_id() -> None:
    attributes = (("expiry", "2027-03-19"), ("strike_minor", "5000"))
    one = ProductSpec("XYZ-C50", ProductKind.OPTION, AssetCode("USD"), 1, 100, attributes)
    other = ProductSpec("XYZ-C50", ProductKind.OPTION, AssetCode("USD"), 1, 100, attributes)
    assert one.product_id == other.product_id
    assert one == other


@pytest.mark.parametrize(
    "change",
    [
        {"symbol": "XYZW"},
        {"kind": ProductKind.FUND},
        {"quote_currency": "EUR"},
        {"tick_size_minor": 5},
        {"lot_size": 100},
        {"attributes": (("venue_class", "a"),)},
    ],
)
def test_a_spec_differing_in_any_field_gets_another_id(change: dict[str, Any]) -> None:
    fields = {
        "symbol": "XYZ",
        "kind": ProductKind.SHARE,
        "quote_currency": "USD",
        "tick_size_minor": 1,
        "lot_size": 1,
        "attributes": (),
    }
    fields.update(change)
    assert ProductSpec(**fields).product_id != XYZ.product_id


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"symbol": "xyz"}, "symbol"),
        ({"symbol": ""}, "symbol"),
        ({"kind": "share"}, "kind"),
        ({"quote_currency": "usd"}, "quote_currency"),
        ({"tick_size_minor": 0}, "tick_size_minor"),
        ({"lot_size": -1}, "lot_size"),
        ({"attributes": (("b", "1"), ("a", "2"))}, "attributes"),
        ({"attributes": (("Bad Key", "1"),)}, "attributes"),
    ],
)
def test_bad_specs_are_refused_naming_the_field(fields: dict[str, Any], bad_field: str) -> None:
    spec: dict[str, Any] = {"symbol": "XYZ", "kind": ProductKind.SHARE, "quote_currency": "USD"}
    spec.update(fields)
    with pytest.raises(DomainError) as error:
        ProductSpec(**spec)
    assert error.value.field == bad_field


def test_prices_convert_to_ticks_and_off_tick_prices_are_refused() -> None:
    nickel = ProductSpec("ACME", ProductKind.SHARE, USD.code, tick_size_minor=5)
    assert nickel.price_ticks(12_345) == 2_469
    with pytest.raises(DomainError) as error:
        nickel.price_ticks(12_346)
    assert (error.value.field, error.value.code) == ("price", "off_tick")
    assert nickel.notional_minor(quantity_lots=3, price_ticks=2_469) == 3 * 12_345


def test_currency_amounts_render_in_major_units() -> None:
    assert USD.format_minor(-12_345) == "-123.45 USD"
    assert Currency(AssetCode("JPY"), 0).format_minor(500) == "500 JPY"


# ------------------------------------------------------------------- orders


def test_a_valid_order_is_built_and_is_immutable() -> None:
    order = Order.create(**good_fields())
    assert order == Order(**good_fields())
    with pytest.raises(dataclasses.FrozenInstanceError):
        order.quantity_lots = 5  # type: ignore[misc]


def test_orders_survive_copy_and_pickle() -> None:
    order = Order.create(**good_fields())
    assert copy.deepcopy(order) == order
    assert pickle.loads(pickle.dumps(order)) == order


@pytest.mark.parametrize(
    ("change", "bad_field", "code"),
    [
        ({"quantity_lots": 0}, "quantity_lots", "not_positive"),
        ({"quantity_lots": -3}, "quantity_lots", "not_positive"),
        ({"quantity_lots": 10**13}, "quantity_lots", "too_large"),
        ({"quantity_lots": True}, "quantity_lots", "not_integer"),
        ({"quantity_lots": 1.0}, "quantity_lots", "not_integer"),
        ({"price_ticks": 0}, "price_ticks", "not_positive"),
        ({"price_ticks": "50"}, "price_ticks", "not_integer"),
        ({"order_id": 0}, "order_id", "not_positive"),
        ({"side": "buy"}, "side", "unknown_side"),
        ({"order_type": "limit"}, "order_type", "unknown_order_type"),
        ({"time_in_force": "day"}, "time_in_force", "unknown_time_in_force"),
        ({"client_order_id": ""}, "client_order_id", "empty"),
        ({"client_order_id": "x" * 65}, "client_order_id", "too_long"),
        ({"trader_id": "a\nb"}, "trader_id", "not_printable"),
        ({"order_type": OrderType.MARKET}, "price_ticks", "price_on_market_order"),
        (
            {"order_type": OrderType.MARKET, "price_ticks": None},
            "time_in_force",
            "market_order_gtc",
        ),
        ({"price_ticks": None}, "price_ticks", "not_integer"),
    ],
)
def test_nonsense_orders_are_refused_naming_the_field(
    change: dict[str, Any], bad_field: str, code: str
) -> None:
    with pytest.raises(DomainError) as error:
        Order.create(**good_fields(**change))
    assert (error.value.field, error.value.code) == (bad_field, code)


def test_limit_and_market_builders_check_the_tick() -> None:
    nickel = ProductSpec("ACME", ProductKind.SHARE, USD.code, tick_size_minor=5)
    order = Order.limit(
        order_id=7,
        trader_id="bob",
        product=nickel,
        side=Side.SELL,
        quantity_lots=2,
        price_minor=1_005,
        client_order_id="c",
    )
    assert (order.price_ticks, order.order_type) == (201, OrderType.LIMIT)
    with pytest.raises(DomainError) as error:
        Order.limit(
            order_id=8,
            trader_id="bob",
            product=nickel,
            side=Side.SELL,
            quantity_lots=2,
            price_minor=1_006,
            client_order_id="c",
        )
    assert error.value.field == "price"
    market = Order.market(
        order_id=9,
        trader_id="bob",
        product=nickel,
        side=Side.BUY,
        quantity_lots=1,
        client_order_id="m",
    )
    assert (market.price_ticks, market.time_in_force) == (None, TimeInForce.IOC)


def test_sides_and_times_in_force_parse_from_text() -> None:
    assert Side.parse("BUY") is Side.BUY
    assert Side.BUY.opposite is Side.SELL
    assert TimeInForce.parse("fok") is TimeInForce.FOK
    for parse, text, field in (
        (Side.parse, "hold", "side"),
        (TimeInForce.parse, "day", "time_in_force"),
        (OrderType.parse, 3, "order_type"),
    ):
        with pytest.raises(DomainError) as error:
            parse(text)
        assert error.value.field == field


@given(
    quantity=st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), st.text()),
    price=st.one_of(st.integers(), st.floats(), st.none(), st.text()),
)
def test_any_quantity_or_price_yields_an_order_or_a_domain_error(
    quantity: object, price: object
) -> None:
    try:
        order = Order.create(**good_fields(quantity_lots=quantity, price_ticks=price))
    except DomainError as error:
        assert error.field in {"quantity_lots", "price_ticks"}
    else:
        assert type(order.quantity_lots) is int and order.quantity_lots > 0
        assert type(order.price_ticks) is int and order.price_ticks > 0
