"""Book snapshots: a restored book is the original book, and a snapshot that
breaks the book's invariants is refused."""

from __future__ import annotations

import gc
import itertools
import random
from collections.abc import Callable

import msgspec
import pytest

from datn.book import BookError, BookSnapshot, LockSnapshot, OrderBook, RestingSnapshot
from datn.domain import AssetCode, Order, OrderId, OrderType, Side, TimeInForce, TraderId

BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
PRODUCT = AssetCode("XYZ")
TRADERS = ("a", "b", "c")
_ids = itertools.count(1)


def order(
    trader: str, side: Side, quantity: int, price: int | None, tif: TimeInForce = GTC
) -> Order:
    """An order with a fresh id; ``price=None`` makes a market order."""
    if price is None and tif is GTC:
        tif = IOC
    return Order(
        OrderId(next(_ids)),
        TraderId(trader),
        PRODUCT,
        side,
        quantity,
        price,
        OrderType.MARKET if price is None else OrderType.LIMIT,
        tif,
        "c",
    )


def rest(book: OrderBook, trader: str, side: Side, quantity: int, price: int) -> int:
    placed = order(trader, side, quantity, price)
    assert book.submit(placed).rested_lots == quantity
    return placed.order_id


def through_bytes(snapshot: BookSnapshot) -> BookSnapshot:
    return msgspec.msgpack.decode(msgspec.msgpack.encode(snapshot), type=BookSnapshot)


def observe(book: OrderBook) -> tuple[object, ...]:
    """Everything a caller can ask a book, in one comparable value."""
    locks = book.open_locks()
    return (
        book.product_id,
        book.version,
        len(book),
        book.best_bid(),
        book.best_ask(),
        [book.resting_orders(side) for side in Side],
        [book.depth(side, 1000) for side in Side],
        locks,
        [book.locked_lots(lock_id) for lock_id in locks],
    )


@pytest.fixture
def midway() -> OrderBook:
    """A book in the middle of trading: several levels per side, queues with
    cancelled and filled entries in them, partly locked orders, a crossing
    locked ask, and a cancel-pending order that still has two locks."""
    book = OrderBook(PRODUCT)
    for price in (99, 98, 99, 97, 99):
        rest(book, "a", BUY, 5, price)
    for price in (101, 103, 101, 102, 101):
        rest(book, "b", SELL, 4, price)
    cancelled = rest(book, "c", BUY, 3, 99)
    rest(book, "a", BUY, 2, 99)
    book.cancel(cancelled)
    book.submit(order("c", SELL, 6, 99))  # fills the first bid and part of the second
    pending = rest(book, "c", SELL, 10, 104)
    book.lock(30, pending, 3)
    book.lock(10, pending, 2)
    book.cancel(pending)
    crossing = rest(book, "b", SELL, 6, 100)
    book.lock(20, crossing, 6)
    partly = book.resting_orders(BUY)[1].order_id
    book.lock(40, partly, 1)
    rest(book, "c", BUY, 2, 100)  # across the locked ask at 100, which it skips
    return book


# ----------------------------------------------------------------- round trip


def test_snapshot_round_trips_through_bytes(midway: OrderBook) -> None:
    snapshot = midway.snapshot()
    assert through_bytes(snapshot) == snapshot
    assert OrderBook.restore(through_bytes(snapshot)).snapshot() == snapshot


def test_snapshot_lists_levels_best_first_and_locks_in_the_order_taken(
    midway: OrderBook,
) -> None:
    snapshot = midway.snapshot()
    bids = [entry.price_ticks for entry in snapshot.orders if entry.side is BUY]
    asks = [entry.price_ticks for entry in snapshot.orders if entry.side is SELL]
    assert bids == sorted(bids, reverse=True)
    assert asks == sorted(asks)
    assert [lock.lock_id for lock in snapshot.locks] == [30, 10, 20, 40]


def test_restored_book_answers_every_query_as_the_original(midway: OrderBook) -> None:
    restored = OrderBook.restore(through_bytes(midway.snapshot()))
    assert observe(restored) == observe(midway)
    pending = [view for view in midway.resting_orders(SELL) if view.cancel_pending]
    assert len(pending) == 1
    assert (pending[0].open_lots, pending[0].locked_lots) == (5, 5)
    for side in Side:
        for view in midway.resting_orders(side):
            assert restored.get(view.order_id) == view
            for limit in (None, 99, 100, 102):
                assert restored.lockable(side.opposite, limit, 50) == midway.lockable(
                    side.opposite, limit, 50
                )


def test_empty_book_round_trips() -> None:
    snapshot = OrderBook(PRODUCT).snapshot()
    assert snapshot == BookSnapshot(PRODUCT, 0, (), ())
    assert observe(OrderBook.restore(through_bytes(snapshot))) == observe(OrderBook(PRODUCT))


def test_restored_book_keeps_time_priority_within_a_level() -> None:
    book = OrderBook(PRODUCT)
    first, middle, last = (rest(book, trader, SELL, 2, 100) for trader in TRADERS)
    book.cancel(middle)
    restored = OrderBook.restore(book.snapshot())
    taker = order("z", BUY, 3, 100)
    fills = restored.submit(taker).fills
    assert [(fill.maker_order_id, fill.quantity_lots) for fill in fills] == [(first, 2), (last, 1)]
    assert book.submit(taker).fills == fills


def test_cancel_pending_order_leaves_the_restored_book_when_its_last_lock_ends(
    midway: OrderBook,
) -> None:
    restored = OrderBook.restore(midway.snapshot())
    for book in (midway, restored):
        pending = next(view for view in book.resting_orders(SELL) if view.cancel_pending)
        fill, reentry = book.take(30, 3)
        assert (fill.maker_done, reentry.order_done) == (False, False)
        reentry = book.release(10)
        assert (reentry.cancelled_lots, reentry.order_done) == (2, True)
        assert book.get(pending.order_id) is None
    assert observe(restored) == observe(midway)


def test_released_lock_trades_with_the_order_resting_across_it(midway: OrderBook) -> None:
    restored = OrderBook.restore(midway.snapshot())
    reentry = restored.release(20)
    assert [(fill.price_ticks, fill.quantity_lots) for fill in reentry.fills] == [(100, 2)]
    assert midway.release(20) == reentry
    assert observe(restored) == observe(midway)


# ------------------------------------------------------------ later operations

Operation = Callable[[OrderBook], object]


def random_operation(rng: random.Random, book: OrderBook) -> Operation:
    """One call a node could make next, chosen from the state of ``book``:
    mostly valid, sometimes refused, so that refusals are compared too. Bids
    lean low and asks high, so that the book keeps some depth."""
    resting = [view for side in Side for view in book.resting_orders(side)]
    locks = book.open_locks()
    roll = rng.random()
    if resting and 0.45 <= roll < 0.55:
        target = rng.choice(resting).order_id
        return lambda book: book.cancel(target)
    if resting and 0.55 <= roll < 0.7:
        view = rng.choice(resting)
        lock_id, quantity = rng.randrange(1000), rng.randint(1, view.open_lots + 1)
        return lambda book: book.lock(lock_id, view.order_id, quantity)
    if locks and 0.7 <= roll < 0.8:
        lock_id = rng.choice(locks)
        return lambda book: book.release(lock_id)
    if locks and 0.8 <= roll < 0.9:
        lock_id = rng.choice(locks)
        quantity = rng.randint(1, book.locked_lots(lock_id) + 1)
        return lambda book: book.take(lock_id, quantity)
    if roll >= 0.9:
        side, limit, quantity = rng.choice(list(Side)), rng.randint(94, 106), rng.randint(1, 30)
        exclude = rng.choice((None, *TRADERS))
        return lambda book: book.lockable(side, limit, quantity, exclude)
    side = rng.choice(list(Side))
    price: int | None = rng.randint(94, 102) if side is BUY else rng.randint(98, 106)
    tif = rng.choice((GTC, GTC, GTC, IOC, FOK))
    if rng.random() < 0.05:
        price, tif = None, rng.choice((IOC, FOK))
    placed = order(rng.choice(TRADERS), side, rng.randint(1, 12), price, tif)
    return lambda book: book.submit(placed)


def outcome(book: OrderBook, operation: Operation) -> object:
    try:
        return operation(book)
    except BookError as error:
        return ("refused", error.code)


@pytest.mark.parametrize("seed", range(12))
def test_restored_book_follows_the_original_through_random_operations(seed: int) -> None:
    """Run a book for a while, restore a copy from its snapshot, then give both
    the same calls: every answer and every later snapshot must agree."""
    rng = random.Random(seed)
    original = OrderBook(PRODUCT)
    for _ in range(rng.randint(0, 300)):
        outcome(original, random_operation(rng, original))
    restored = OrderBook.restore(through_bytes(original.snapshot()))
    assert observe(restored) == observe(original)
    for step in range(300):
        operation = random_operation(rng, original)
        assert outcome(restored, operation) == outcome(original, operation), f"step {step}"
        assert restored.snapshot() == original.snapshot(), f"step {step}"
    assert observe(restored) == observe(original)


def test_restored_book_leaves_no_reference_cycles_behind() -> None:
    """As for a book built by trading (see test_book.py): what the restored
    book lets go of is freed by reference counting alone."""
    rng = random.Random(7)
    original = OrderBook(PRODUCT)
    for _ in range(500):
        outcome(original, random_operation(rng, original))
    restored = OrderBook.restore(original.snapshot())
    gc.collect()
    gc.disable()
    try:
        for _ in range(1000):
            outcome(restored, random_operation(rng, restored))
        assert gc.collect() == 0
    finally:
        gc.enable()


# ------------------------------------------------------- refused snapshots


def replace_order(snapshot: BookSnapshot, index: int, **changes: object) -> BookSnapshot:
    orders = list(snapshot.orders)
    orders[index] = msgspec.structs.replace(orders[index], **changes)
    return msgspec.structs.replace(snapshot, orders=tuple(orders))


def valid() -> BookSnapshot:
    """Bids 101 (orders 1, 2), 100 (3); asks 102 (4, cancel-pending, 5).
    Order 2 has 3 of its 5 lots locked by locks 7 and 8; order 4 all of its 4
    by lock 9."""
    return BookSnapshot(
        PRODUCT,
        12,
        (
            RestingSnapshot(1, "a", BUY, 101, 5, 0, False),
            RestingSnapshot(2, "b", BUY, 101, 5, 3, False),
            RestingSnapshot(3, "a", BUY, 100, 1, 0, False),
            RestingSnapshot(4, "c", SELL, 102, 4, 4, True),
            RestingSnapshot(5, "c", SELL, 102, 2, 0, False),
        ),
        (LockSnapshot(7, 2, 1), LockSnapshot(9, 4, 4), LockSnapshot(8, 2, 2)),
    )


def test_the_valid_snapshot_restores() -> None:
    book = OrderBook.restore(valid())
    assert book.snapshot() == valid()
    assert (book.best_bid(), book.best_ask(), book.open_locks()) == (101, 102, [7, 8, 9])


def orders_of(*entries: RestingSnapshot) -> Callable[[BookSnapshot], BookSnapshot]:
    return lambda snapshot: msgspec.structs.replace(snapshot, orders=entries, locks=())


def locks_of(*entries: LockSnapshot) -> Callable[[BookSnapshot], BookSnapshot]:
    return lambda snapshot: msgspec.structs.replace(snapshot, locks=entries)


BAD_SNAPSHOTS: dict[str, tuple[Callable[[BookSnapshot], BookSnapshot], str]] = {
    "negative version": (lambda s: msgspec.structs.replace(s, version=-1), "version"),
    "order twice": (lambda s: replace_order(s, 2, order_id=1), "order 1 appears twice"),
    "order on both sides": (lambda s: replace_order(s, 4, order_id=1), "order 1 appears twice"),
    "no open lots": (lambda s: replace_order(s, 0, open_lots=0), "order 1 has 0 open"),
    "negative open lots": (lambda s: replace_order(s, 0, open_lots=-2), "order 1 has -2 open"),
    "more locked than open": (lambda s: replace_order(s, 1, open_lots=2), "order 2 has 2 open"),
    "negative locked": (lambda s: replace_order(s, 0, locked_lots=-1), "-1 locked"),
    "zero price": (lambda s: replace_order(s, 2, price_ticks=0), "order 3 has price 0"),
    "worse level first": (lambda s: replace_order(s, 2, price_ticks=102), "best price first"),
    "ask levels reversed": (lambda s: replace_order(s, 4, price_ticks=101), "best price first"),
    "split level": (
        orders_of(
            RestingSnapshot(1, "a", BUY, 101, 5, 0, False),
            RestingSnapshot(2, "a", BUY, 100, 5, 0, False),
            RestingSnapshot(3, "a", BUY, 101, 5, 0, False),
        ),
        "order 3 at 101 is out of place",
    ),
    "asks before bids": (
        orders_of(
            RestingSnapshot(1, "a", SELL, 101, 5, 0, False),
            RestingSnapshot(2, "a", BUY, 100, 5, 0, False),
        ),
        "all bids come before all asks",
    ),
    "unlocked quantity crosses": (
        orders_of(
            RestingSnapshot(1, "a", BUY, 101, 5, 0, False),
            RestingSnapshot(2, "b", SELL, 101, 5, 0, False),
        ),
        "cross",
    ),
    "cancel pending without locks": (
        lambda s: replace_order(s, 4, cancel_pending=True),
        "order 5 is cancel-pending",
    ),
    "cancel pending with unlocked lots": (
        lambda s: replace_order(s, 1, cancel_pending=True),
        "order 2 is cancel-pending",
    ),
    "lock on a missing order": (
        locks_of(LockSnapshot(7, 2, 3), LockSnapshot(9, 6, 4)),
        "order 6, which is not resting",
    ),
    "lock twice": (
        locks_of(LockSnapshot(7, 2, 3), LockSnapshot(7, 4, 4)),
        "lock 7 appears twice",
    ),
    "empty lock": (
        locks_of(LockSnapshot(7, 2, 3), LockSnapshot(8, 2, 0), LockSnapshot(9, 4, 4)),
        "lock 8 reserves 0",
    ),
    "locks exceed locked lots": (
        locks_of(LockSnapshot(7, 2, 3), LockSnapshot(8, 2, 1), LockSnapshot(9, 4, 4)),
        "reserve more than its 3 locked lots",
    ),
    "locked lots without a lock": (
        locks_of(LockSnapshot(7, 2, 2), LockSnapshot(9, 4, 4)),
        "order 2 has 1 locked lots that no lock reserves",
    ),
    "lock on an unlocked order": (
        locks_of(LockSnapshot(7, 2, 3), LockSnapshot(9, 4, 4), LockSnapshot(8, 1, 1)),
        "reserve more than its 0 locked lots",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SNAPSHOTS))
def test_inconsistent_snapshot_is_refused(case: str) -> None:
    corrupt, reason = BAD_SNAPSHOTS[case]
    with pytest.raises(BookError, match=reason) as error:
        OrderBook.restore(corrupt(valid()))
    assert error.value.code == "bad_snapshot"


def test_locked_quantity_may_cross() -> None:
    """Matching skips locked quantity, so an order may rest across it."""
    book = OrderBook.restore(
        BookSnapshot(
            PRODUCT,
            0,
            (
                RestingSnapshot(1, "a", BUY, 102, 3, 0, False),
                RestingSnapshot(2, "b", SELL, 100, 5, 5, False),
            ),
            (LockSnapshot(1, 2, 5),),
        )
    )
    assert [fill.quantity_lots for fill in book.release(1).fills] == [3]


def test_snapshot_of_another_shape_does_not_decode() -> None:
    """The encoded shape is the snapshot's version: a field more or less is a
    different version, refused rather than read with a field lost."""
    fields = list(msgspec.to_builtins(valid()))
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(fields), type=BookSnapshot) == valid()
    first, *others = fields[2]
    longer_order = [*fields[:2], [[*first, False], *others], fields[3]]
    for shape in ([*fields, 0], fields[:-1], longer_order):
        with pytest.raises(msgspec.ValidationError):
            msgspec.msgpack.decode(msgspec.msgpack.encode(shape), type=BookSnapshot)
