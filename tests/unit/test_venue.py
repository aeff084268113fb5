"""A node's local order intake: risk, holds, matching and booking together."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from datn.cli.main import main
from datn.domain import USD, DomainError, ProductKind, ProductSpec, Side, TimeInForce
from datn.protocol.venue import LocalVenue, OrderRequest
from datn.risk import RiskConfig
from datn.sim.session import run_session

XYZ = ProductSpec("XYZ", ProductKind.SHARE, USD.code)
BUY, SELL = Side.BUY, Side.SELL


@pytest.fixture
def venue() -> LocalVenue:
    venue = LocalVenue(
        [XYZ],
        RiskConfig(listed_products=frozenset({XYZ.product_id}), market_protection_bps=1_000),
        reference_prices={XYZ.product_id: 5_000},
    )
    venue.deposit("alice", "USD", 1_000_000)
    venue.deposit("bob", XYZ.product_id, 100)
    return venue


def request(
    trader: str,
    client_id: str,
    side: Side,
    quantity: int,
    price: int | None,
    tif: TimeInForce = TimeInForce.GTC,
) -> OrderRequest:
    if price is None and tif is TimeInForce.GTC:
        tif = TimeInForce.IOC
    return OrderRequest(trader, client_id, XYZ.product_id, side, quantity, price, tif)


def test_a_cross_moves_cash_and_lots_and_frees_the_holds(venue: LocalVenue) -> None:
    resting = venue.place(request("bob", "s1", SELL, 10, 5_000), now_ms=1)
    assert resting.accepted and resting.rested_lots == 10
    assert venue.available("bob", XYZ.product_id) == 90
    taken = venue.place(request("alice", "b1", BUY, 4, 5_100), now_ms=2)
    assert [(t.price_ticks, t.quantity_lots) for t in taken.trades] == [(5_000, 4)]
    assert venue.balance("alice", "USD") == 1_000_000 - 20_000
    assert venue.available("alice", "USD") == 1_000_000 - 20_000
    assert venue.balance("alice", XYZ.product_id) == 4
    assert venue.balance("bob", "USD") == 20_000
    assert venue.balance("bob", XYZ.product_id) == 96
    assert venue.available("bob", XYZ.product_id) == 90
    assert venue.check_invariants() == []


def test_a_rejected_order_changes_nothing(venue: LocalVenue) -> None:
    before = venue.ledger.state_hash()
    result = venue.place(request("alice", "b1", BUY, 300, 5_000), now_ms=1)
    assert (result.accepted, result.reason) == (False, "insufficient_cash")
    assert venue.ledger.state_hash() == before
    assert venue.open_order_ids() == []


def test_bad_input_is_rejected_with_the_field_named(venue: LocalVenue) -> None:
    zero = venue.place(request("alice", "b1", BUY, 0, 5_000), now_ms=1)
    assert (zero.accepted, zero.reason) == (False, "invalid_quantity_lots")
    unlisted = venue.place(
        OrderRequest("alice", "b2", "p1nope", BUY, 1, 5_000, TimeInForce.GTC), now_ms=1
    )
    assert unlisted.reason == "product_not_listed"


def test_a_retry_with_the_same_client_order_id_gets_the_same_answer(venue: LocalVenue) -> None:
    venue.place(request("bob", "s1", SELL, 10, 5_000), now_ms=1)
    first = venue.place(request("alice", "b1", BUY, 4, 5_000), now_ms=2)
    again = venue.place(request("alice", "b1", BUY, 4, 5_000), now_ms=3)
    assert again == first
    assert venue.balance("alice", XYZ.product_id) == 4


def test_a_market_buy_stops_at_its_protection_price(venue: LocalVenue) -> None:
    venue.deposit("carol", XYZ.product_id, 10)
    venue.place(request("bob", "s1", SELL, 2, 5_400), now_ms=1)
    venue.place(request("carol", "s2", SELL, 2, 5_600), now_ms=1)
    result = venue.place(request("alice", "m1", BUY, 10, None), now_ms=2)
    # The band is 10 % around the reference of 5,000 ticks: at most 5,500.
    assert [(t.price_ticks, t.quantity_lots) for t in result.trades] == [(5_400, 2)]
    assert result.cancelled_lots == 8
    assert venue.available("alice", "USD") == venue.balance("alice", "USD")
    assert venue.check_invariants() == []


def test_cancel_releases_what_the_order_still_held(venue: LocalVenue) -> None:
    resting = venue.place(request("alice", "b1", BUY, 10, 5_000), now_ms=1)
    assert venue.available("alice", "USD") == 1_000_000 - 50_000
    venue.place(request("bob", "s1", SELL, 3, 4_900), now_ms=2)
    assert resting.order_id is not None
    assert venue.cancel("alice", resting.order_id) == 7
    assert venue.available("alice", "USD") == venue.balance("alice", "USD") == 1_000_000 - 15_000
    with pytest.raises(DomainError) as error:
        venue.cancel("alice", resting.order_id)
    assert error.value.code == "unknown_order"


def test_a_trader_cannot_cancel_another_traders_order(venue: LocalVenue) -> None:
    resting = venue.place(request("bob", "s1", SELL, 3, 5_000), now_ms=1)
    assert resting.order_id is not None
    with pytest.raises(DomainError):
        venue.cancel("alice", resting.order_id)
    assert venue.open_order_ids("bob") == [resting.order_id]


@pytest.mark.parametrize("seed", range(5))
def test_seeded_sessions_trade_and_conserve_every_asset(seed: int) -> None:
    report, venue, _ = run_session(seed, orders=400, traders=8, emit=lambda _line: None)
    assert len(report.trades) > 20
    assert report.accepted > report.orders // 2
    assert venue.check_invariants() == []


def test_session_command_runs_a_session_and_reports_it() -> None:
    result = CliRunner().invoke(main, ["session", "--orders", "200", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "invariants held after every step" in result.output
    assert " trades" in result.output


def test_session_command_answers_in_json_what_it_shows_as_text() -> None:
    args = ["session", "--orders", "200", "--seed", "3"]
    text = CliRunner().invoke(main, args)
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)  # one object, and nothing else on stdout
    assert answer["ok"] is True
    counts = f"{answer['orders']} orders ({answer['accepted']} accepted), "
    counts += f"{answer['cancels']} cancels, {answer['trades']} trades"
    assert counts in text.output
    for symbol, product in answer["products"].items():
        assert f"{symbol} ({product['kind']}): {product['lots_traded']} lots traded" in text.output
        asks, bids = product["asks"], product["bids"]
        if asks and bids:
            assert bids[0]["price_ticks"] < asks[0]["price_ticks"]
        assert all(isinstance(level["price_ticks"], int) for level in asks + bids)


def test_session_command_in_json_names_a_broken_invariant_and_its_replay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib  # noqa: PLC0415

    from datn.sim.session import InvariantError  # noqa: PLC0415

    main_module = importlib.import_module("datn.cli.main")

    def broken(*args: object, **kwargs: object) -> object:
        raise InvariantError("cash went missing")

    monkeypatch.setattr(main_module, "run_session", broken)
    result = CliRunner().invoke(main, ["session", "--orders", "50", "--seed", "4", "--json"])
    assert result.exit_code == 1
    answer = json.loads(result.output)
    assert answer == {
        "ok": False,
        "error": "cash went missing",
        "replay": "datn session --seed 4 --orders 50 --traders 12",
    }
