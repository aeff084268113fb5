"""A book's whole state as plain immutable values, for saving and rebuilding it.

A snapshot lists what decides every later operation of an order book and
nothing of how the book happens to lay it out: each resting order with its
place in the queue, and each open lock. :meth:`OrderBook.snapshot` takes one
and :meth:`OrderBook.restore` rebuilds a book from one, checking that it
keeps the book's invariants.

The structs encode as msgpack arrays, so their shape is their version: a
snapshot written with more or fewer fields than these fails to decode rather
than being read with fields silently dropped or defaulted. Changing a field
therefore means a new struct, never an edit of these. Encoding itself happens
outside the book (habit 2 in STYLE.md); the book only builds and reads values.
"""

from __future__ import annotations

import msgspec

from datn.domain.orders import Side


class RestingSnapshot(
    msgspec.Struct, frozen=True, array_like=True, gc=False, forbid_unknown_fields=True
):
    """One resting order, with the same fields as :class:`RestingView`.

    ``locked_lots`` is part of ``open_lots``. A ``cancel_pending`` order was
    cancelled while locked: all of its open quantity is locked, and it leaves
    the book when its last lock ends.
    """

    order_id: int
    trader_id: str
    side: Side
    price_ticks: int
    open_lots: int
    locked_lots: int
    cancel_pending: bool


class LockSnapshot(
    msgspec.Struct, frozen=True, array_like=True, gc=False, forbid_unknown_fields=True
):
    """One open lock: ``quantity_lots`` of order ``order_id`` reserved for a peer."""

    lock_id: int
    order_id: int
    quantity_lots: int


class BookSnapshot(
    msgspec.Struct, frozen=True, array_like=True, gc=False, forbid_unknown_fields=True
):
    """The state of one product's book.

    ``orders`` holds the bids, best price first and oldest first within a
    price, then the asks in the same order, so a queue's order is its time
    priority and no timestamp is needed. ``locks`` are in the order they were
    taken. ``version`` is the book's change counter, kept so that a watcher of
    the rebuilt book sees it continue rather than start over.
    """

    product_id: str
    version: int
    orders: tuple[RestingSnapshot, ...]
    locks: tuple[LockSnapshot, ...]
