"""The order book: priority, partial fills, time in force, self-trade
prevention, cancels, and locks as the trade protocol uses them."""

from __future__ import annotations

import gc
import itertools
import random

import pytest

from datn.book import BookError, Fill, OrderBook
from datn.domain import Order, ProductKind, ProductSpec, Side, TimeInForce

BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
XYZ = ProductSpec("XYZ", ProductKind.SHARE, "USD")  # type: ignore[arg-type]
_ids = itertools.count(1)


def limit(trader: str, side: Side, quantity: int, price: int, tif: TimeInForce = GTC) -> Order:
    return Order.limit(
        order_id=next(_ids),
        trader_id=trader,
        product=XYZ,
        side=side,
        quantity_lots=quantity,
        price_minor=price,
        time_in_force=tif,
        client_order_id="c",
    )


def market(trader: str, side: Side, quantity: int, tif: TimeInForce = IOC) -> Order:
    return Order.market(
        order_id=next(_ids),
        trader_id=trader,
        product=XYZ,
        side=side,
        quantity_lots=quantity,
        time_in_force=tif,
        client_order_id="c",
    )


@pytest.fixture
def book() -> OrderBook:
    return OrderBook(XYZ.product_id)


def levels(book: OrderBook, side: Side) -> list[tuple[int, int]]:
    return [(level.price_ticks, level.quantity_lots) for level in book.depth(side, 50)]


def test_resting_orders_form_price_levels_best_first(book: OrderBook) -> None:
    for price in (99, 101, 100, 99):
        book.submit(limit("a", BUY, 5, price))
    for price in (103, 102):
        book.submit(limit("b", SELL, 7, price))
    assert levels(book, BUY) == [(101, 5), (100, 5), (99, 10)]
    assert levels(book, SELL) == [(102, 7), (103, 7)]
    assert (book.best_bid(), book.best_ask()) == (101, 102)


def test_match_takes_best_price_first_then_time(book: OrderBook) -> None:
    first = limit("a", SELL, 5, 100)
    second = limit("b", SELL, 5, 100)
    cheaper = limit("c", SELL, 5, 99)
    for order in (first, second, cheaper):
        book.submit(order)
    result = book.submit(limit("d", BUY, 12, 100))
    assert [(f.maker_order_id, f.price_ticks, f.quantity_lots) for f in result.fills] == [
        (cheaper.order_id, 99, 5),
        (first.order_id, 100, 5),
        (second.order_id, 100, 2),
    ]
    assert result.rested_lots == 0
    assert levels(book, SELL) == [(100, 3)]


def test_trade_price_is_the_resting_price(book: OrderBook) -> None:
    book.submit(limit("a", BUY, 10, 100))
    result = book.submit(limit("b", SELL, 4, 90))
    assert result.fills == (Fill(result.fills[0].maker_order_id, "a", 100, 4, False),)


def test_gtc_remainder_rests_at_its_limit(book: OrderBook) -> None:
    book.submit(limit("a", SELL, 3, 100))
    result = book.submit(limit("b", BUY, 10, 101))
    assert (result.filled_lots, result.rested_lots, result.cancelled_lots) == (3, 7, 0)
    assert levels(book, BUY) == [(101, 7)]
    assert book.best_ask() is None


def test_ioc_cancels_what_does_not_fill_at_once(book: OrderBook) -> None:
    book.submit(limit("a", SELL, 3, 100))
    result = book.submit(limit("b", BUY, 10, 100, IOC))
    assert (result.filled_lots, result.cancelled_lots, result.cancel_reason) == (
        3,
        7,
        "ioc_remainder",
    )
    assert len(book) == 0


def test_fok_fills_entirely_or_not_at_all(book: OrderBook) -> None:
    book.submit(limit("a", SELL, 3, 100))
    book.submit(limit("b", SELL, 3, 101))
    refused = book.submit(limit("c", BUY, 7, 101, FOK))
    assert (refused.fills, refused.cancelled_lots, refused.cancel_reason) == (
        (),
        7,
        "fok_unfillable",
    )
    assert levels(book, SELL) == [(100, 3), (101, 3)]
    filled = book.submit(limit("c", BUY, 6, 101, FOK))
    assert filled.filled_lots == 6
    assert len(book) == 0


def test_fok_does_not_count_liquidity_behind_a_self_trade(book: OrderBook) -> None:
    book.submit(limit("c", SELL, 5, 100))
    book.submit(limit("a", SELL, 5, 100))
    result = book.submit(limit("c", BUY, 5, 100, FOK))
    assert result.cancel_reason == "fok_unfillable"
    assert len(book) == 2


def test_market_order_sweeps_levels_and_never_rests(book: OrderBook) -> None:
    book.submit(limit("a", SELL, 2, 100))
    book.submit(limit("a", SELL, 2, 105))
    result = book.submit(market("b", BUY, 10))
    assert [(f.price_ticks, f.quantity_lots) for f in result.fills] == [(100, 2), (105, 2)]
    assert (result.rested_lots, result.cancelled_lots) == (0, 6)
    empty = book.submit(market("b", BUY, 1))
    assert empty.cancel_reason == "no_liquidity"


def test_self_trade_cancels_the_incoming_remainder(book: OrderBook) -> None:
    book.submit(limit("a", SELL, 5, 100))
    book.submit(limit("t", SELL, 5, 101))
    book.submit(limit("a", SELL, 5, 102))
    result = book.submit(limit("t", BUY, 20, 102))
    assert [f.quantity_lots for f in result.fills] == [5]
    assert (result.cancelled_lots, result.cancel_reason) == (15, "self_trade")
    assert levels(book, SELL) == [(101, 5), (102, 5)]
    assert book.best_bid() is None


def test_cancel_removes_the_order_and_empty_level(book: OrderBook) -> None:
    keep = limit("a", BUY, 5, 100)
    gone = limit("b", BUY, 4, 101)
    book.submit(keep)
    book.submit(gone)
    assert book.cancel(gone.order_id) == 4
    assert levels(book, BUY) == [(100, 5)]
    with pytest.raises(BookError) as error:
        book.cancel(gone.order_id)
    assert error.value.code == "unknown_order"


def test_cancelled_order_never_fills(book: OrderBook) -> None:
    orders = [limit("a", SELL, 1, 100) for _ in range(40)]
    for order in orders:
        book.submit(order)
    for order in orders[:-1]:
        book.cancel(order.order_id)
    result = book.submit(limit("b", BUY, 5, 100))
    assert [f.maker_order_id for f in result.fills] == [orders[-1].order_id]


def test_duplicate_order_id_and_wrong_product_are_refused(book: OrderBook) -> None:
    order = limit("a", BUY, 5, 100)
    book.submit(order)
    with pytest.raises(BookError) as error:
        book.submit(order)
    assert error.value.code == "duplicate_order_id"
    other = ProductSpec("ABC", ProductKind.SHARE, "USD")  # type: ignore[arg-type]
    with pytest.raises(BookError) as error:
        OrderBook(other.product_id).submit(limit("a", BUY, 1, 1))
    assert error.value.code == "wrong_product"
    assert levels(book, BUY) == [(100, 5)]


# ------------------------------------------------------------------- locks


def test_locked_quantity_cannot_be_matched_locked_again_or_cancelled(book: OrderBook) -> None:
    resting = limit("a", SELL, 10, 100)
    book.submit(resting)
    book.lock(1, resting.order_id, 6)
    with pytest.raises(BookError) as error:
        book.lock(2, resting.order_id, 5)
    assert error.value.code == "insufficient_unlocked"
    result = book.submit(limit("b", BUY, 10, 100, IOC))
    assert result.filled_lots == 4
    assert book.cancel(resting.order_id) == 0
    view = book.get(resting.order_id)
    assert view is not None
    assert (view.open_lots, view.locked_lots, view.cancel_pending) == (6, 6, True)


def test_take_fills_at_resting_price_and_releases_the_rest(book: OrderBook) -> None:
    resting = limit("a", SELL, 10, 100)
    book.submit(resting)
    book.lock(7, resting.order_id, 6)
    fill, reentry = book.take(7, 4)
    assert fill == Fill(resting.order_id, "a", 100, 4, False)
    assert (reentry.fills, reentry.order_done) == ((), False)
    assert levels(book, SELL) == [(100, 6)]
    assert book.depth(SELL)[0].locked_lots == 0
    with pytest.raises(BookError) as error:
        book.take(7, 1)
    assert error.value.code == "unknown_lock"


def test_lock_ends_exactly_once(book: OrderBook) -> None:
    resting = limit("a", SELL, 10, 100)
    book.submit(resting)
    book.lock(1, resting.order_id, 10)
    assert book.release(1).cancelled_lots == 0
    for end in (lambda: book.release(1), lambda: book.take(1, 1)):
        with pytest.raises(BookError) as error:
            end()
        assert error.value.code == "unknown_lock"
    with pytest.raises(BookError):
        book.lock(1, resting.order_id, 0)


def test_take_more_than_locked_is_refused_and_changes_nothing(book: OrderBook) -> None:
    resting = limit("a", SELL, 10, 100)
    book.submit(resting)
    book.lock(1, resting.order_id, 3)
    with pytest.raises(BookError) as error:
        book.take(1, 4)
    assert error.value.code == "bad_quantity"
    assert book.locked_lots(1) == 3


def test_cancel_pending_order_leaves_when_its_last_lock_ends(book: OrderBook) -> None:
    resting = limit("a", BUY, 10, 100)
    book.submit(resting)
    book.lock(1, resting.order_id, 3)
    book.lock(2, resting.order_id, 2)
    assert book.cancel(resting.order_id) == 5
    fill, _ = book.take(1, 3)
    assert not fill.maker_done
    reentry = book.release(2)
    assert (reentry.cancelled_lots, reentry.order_done) == (2, True)
    assert book.get(resting.order_id) is None
    assert levels(book, BUY) == []


def test_full_take_of_last_quantity_ends_the_order(book: OrderBook) -> None:
    resting = limit("a", BUY, 5, 100)
    book.submit(resting)
    book.lock(1, resting.order_id, 5)
    fill, reentry = book.take(1, 5)
    assert fill.maker_done and reentry.order_done
    assert len(book) == 0


def test_released_quantity_trades_with_orders_that_rested_across_it(book: OrderBook) -> None:
    locked = limit("a", SELL, 5, 100)
    book.submit(locked)
    book.lock(1, locked.order_id, 5)
    buyer = limit("b", BUY, 3, 102)
    assert book.submit(buyer).rested_lots == 3
    reentry = book.release(1)
    assert reentry.fills == (Fill(buyer.order_id, "b", 102, 3, True),)
    assert levels(book, SELL) == [(100, 2)]
    assert levels(book, BUY) == []


def test_released_quantity_meeting_its_own_trader_is_cancelled(book: OrderBook) -> None:
    locked = limit("a", SELL, 5, 100)
    book.submit(locked)
    book.lock(1, locked.order_id, 5)
    book.submit(limit("a", BUY, 3, 101))
    reentry = book.release(1)
    assert (reentry.fills, reentry.cancelled_lots, reentry.order_done) == ((), 5, True)
    assert levels(book, BUY) == [(101, 3)]
    assert levels(book, SELL) == []


def test_book_operations_leave_no_reference_cycles_behind(book: OrderBook) -> None:
    """Everything the book lets go of is freed by reference counting, so a node
    may run with the cyclic garbage collector off (see benchmarks/book.py)."""
    rng = random.Random(5)
    gc.collect()
    gc.disable()
    try:
        resting: list[int] = []
        for step in range(3_000):
            side = BUY if rng.random() < 0.5 else SELL
            if resting and rng.random() < 0.3:
                order_id = resting.pop(rng.randrange(len(resting)))
                if book.get(order_id) is not None:
                    book.cancel(order_id)
            elif rng.random() < 0.1:
                book.submit(market(f"t{step % 7}", side, rng.randint(1, 30)))
            else:
                order = limit(f"t{step % 7}", side, rng.randint(1, 30), rng.randint(95, 105))
                if book.submit(order).rested_lots:
                    resting.append(order.order_id)
        assert gc.collect() == 0
    finally:
        gc.enable()
