"""One product's order book: price-time priority, partial fills, locks.

Layout, chosen for speed on the order path:

* Each side keeps a dict from price to :class:`_Level` and a sorted list of
  *keys*, where a level's key is its price times the side's sign (``+1`` for
  bids, ``-1`` for asks). The best level of either side is then always the
  largest key, at the end of the list, so adding or removing the best level is
  an append or a pop and one matching loop serves both sides: an incoming order
  crosses a level exactly when ``key >= limit * sign``.
* A level holds a FIFO queue of resting entries: a list and the index of its
  head, which compiles to plain C list operations. Cancels are lazy: the entry
  is marked dead and skipped later, so a cancel never searches a queue. A level
  whose live entries are gone is removed at once; a queue that collects more
  dead entries than live ones is compacted.
* A resting order's quantity may be partly *locked* for a peer (DESIGN.md
  section 4). Locked quantity keeps its place in the queue but cannot be
  matched, cancelled or locked again until its lock ends: taken, released or
  expired, exactly once.

Self-trade prevention is "cancel newest": when an incoming order reaches a
resting order of the same trader, matching stops and the incoming order's
remainder is cancelled, so a trader's orders never fill each other and the
book never rests crossed.

A book's whole state can be taken as a :class:`BookSnapshot` and a book rebuilt
from one (``book/snapshot.py``). The rebuild lays out the levels directly
rather than replaying orders, which would be slower and could match, and it
refuses a snapshot that breaks an invariant the book keeps.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Final, NamedTuple

from datn.book.errors import BookError
from datn.book.snapshot import BookSnapshot, LockSnapshot, RestingSnapshot
from datn.domain.limits import MAX_PRICE_TICKS, MAX_QUANTITY_LOTS
from datn.domain.orders import Order, OrderType, Side, TimeInForce

# A price key no real order reaches: the threshold of a market order.
_NO_LIMIT: Final = -(2**80)
# Compact a level's queue once its dead entries outnumber the live ones by this.
_COMPACT_SLACK: Final = 16

_BUY: Final = Side.BUY
_SELL: Final = Side.SELL
_GTC: Final = TimeInForce.GTC
_FOK: Final = TimeInForce.FOK
_MARKET: Final = OrderType.MARKET


class _Value:
    """Base of the small result values the book returns on its hot path.

    They are plain classes rather than NamedTuples or frozen dataclasses because
    building one is several times cheaper, compiled or not, and the book builds
    one per operation. Their attributes are ``Final``: the type checker refuses
    any assignment after construction.
    """

    __slots__ = ()

    def fields(self) -> tuple[object, ...]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Value)
            and type(other) is type(self)
            and self.fields() == other.fields()
        )

    def __hash__(self) -> int:
        return hash(self.fields())

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self.fields()!r}"


class Fill(_Value):
    """One execution against a resting (maker) order, at the maker's price.
    ``maker_done`` is true when this fill ended the maker order."""

    __slots__ = ("maker_done", "maker_order_id", "maker_trader_id", "price_ticks", "quantity_lots")

    def __init__(
        self,
        maker_order_id: int,
        maker_trader_id: str,
        price_ticks: int,
        quantity_lots: int,
        maker_done: bool,
    ) -> None:
        self.maker_order_id: Final = maker_order_id
        self.maker_trader_id: Final = maker_trader_id
        self.price_ticks: Final = price_ticks
        self.quantity_lots: Final = quantity_lots
        self.maker_done: Final = maker_done

    def fields(self) -> tuple[object, ...]:
        return (
            self.maker_order_id,
            self.maker_trader_id,
            self.price_ticks,
            self.quantity_lots,
            self.maker_done,
        )


class SubmitResult(_Value):
    """What happened to an incoming order: its ``fills``, the quantity now
    resting (a GTC limit remainder) and the quantity that neither filled nor
    rests, with the reason: ``ioc_remainder``, ``fok_unfillable``,
    ``self_trade`` or ``no_liquidity`` (a market order with nothing to hit)."""

    __slots__ = ("cancel_reason", "cancelled_lots", "fills", "rested_lots")

    def __init__(
        self,
        fills: tuple[Fill, ...],
        rested_lots: int,
        cancelled_lots: int,
        cancel_reason: str | None,
    ) -> None:
        self.fills: Final = fills
        self.rested_lots: Final = rested_lots
        self.cancelled_lots: Final = cancelled_lots
        self.cancel_reason: Final = cancel_reason

    def fields(self) -> tuple[object, ...]:
        return (self.fills, self.rested_lots, self.cancelled_lots, self.cancel_reason)

    @property
    def filled_lots(self) -> int:
        return sum(fill.quantity_lots for fill in self.fills)


class Reentry(_Value):
    """What became of locked quantity that came back to its order when a lock
    ended: it may trade at once (``fills``, this order being the taker) or be
    cancelled (the order was cancelled meanwhile, or a self-trade).
    ``order_done`` is true when the order has left the book."""

    __slots__ = ("cancelled_lots", "fills", "order_done", "order_id")

    def __init__(
        self, order_id: int, fills: tuple[Fill, ...], order_done: bool, cancelled_lots: int
    ) -> None:
        self.order_id: Final = order_id
        self.fills: Final = fills
        self.order_done: Final = order_done
        self.cancelled_lots: Final = cancelled_lots

    def fields(self) -> tuple[object, ...]:
        return (self.order_id, self.fills, self.order_done, self.cancelled_lots)


def _unfilled_reason(order: Order, *, filled: bool) -> str:
    if order.time_in_force is _FOK:
        return "fok_unfillable"
    if order.order_type is _MARKET and not filled:
        return "no_liquidity"
    return "ioc_remainder"


class LevelView(NamedTuple):
    price_ticks: int
    quantity_lots: int
    """Open quantity at this price, locked quantity included."""
    locked_lots: int
    order_count: int


class RestingView(NamedTuple):
    order_id: int
    trader_id: str
    side: Side
    price_ticks: int
    open_lots: int
    locked_lots: int
    cancel_pending: bool


class _Resting:
    """A resting order's mutable state inside the book. Its place in its
    level's queue is its time priority; its side and price are its level's."""

    __slots__ = ("cancel_pending", "level", "locked_lots", "open_lots", "order_id", "trader_id")

    def __init__(self, order_id: int, trader_id: str, open_lots: int, level: _Level) -> None:
        self.order_id = order_id
        self.trader_id = trader_id
        self.open_lots = open_lots
        self.locked_lots = 0
        self.cancel_pending = False
        self.level = level


class _Level:
    """One price of one side. Its entries point back at it, so a dropped level
    empties its queue: the book then makes no reference cycles that outlive an
    operation, and reference counting alone frees everything it lets go of."""

    __slots__ = ("head", "key", "live", "locked_lots", "open_lots", "price_ticks", "queue", "side")

    def __init__(self, side: _Side, price_ticks: int) -> None:
        self.side = side
        self.price_ticks = price_ticks
        self.key = price_ticks * side.sign
        self.queue: list[_Resting] = []
        self.head = 0
        self.live = 0
        self.open_lots = 0
        self.locked_lots = 0

    def entries(self) -> list[_Resting]:
        """The queue from its head, dead entries included."""
        return self.queue[self.head :]

    def trim(self) -> None:
        """Skip dead entries at the head; drop them and any others once dead
        entries outnumber live ones."""
        queue = self.queue
        head = self.head
        while head < len(queue) and queue[head].open_lots == 0:
            head += 1
        self.head = head
        if len(queue) - head > 2 * self.live + _COMPACT_SLACK or head > _COMPACT_SLACK + self.live:
            self.queue = [entry for entry in queue[head:] if entry.open_lots]
            self.head = 0


class _Side:
    __slots__ = ("keys", "levels", "side", "sign")

    def __init__(self, side: Side, sign: int) -> None:
        self.side = side
        self.sign = sign
        self.levels: dict[int, _Level] = {}
        self.keys: list[int] = []

    def new_level(self, price_ticks: int) -> _Level:
        level = _Level(self, price_ticks)
        self.levels[price_ticks] = level
        keys = self.keys
        if not keys or level.key > keys[-1]:
            keys.append(level.key)
        else:
            insort(keys, level.key)
        return level

    def drop(self, level: _Level) -> None:
        del self.levels[level.price_ticks]
        level.queue = []  # break level -> entry -> level cycles (see _Level)
        keys = self.keys
        if keys[-1] == level.key:
            keys.pop()
        else:
            del keys[bisect_left(keys, level.key)]


class _Lock:
    __slots__ = ("lock_id", "quantity_lots", "resting")

    def __init__(self, lock_id: int, resting: _Resting, quantity_lots: int) -> None:
        self.lock_id = lock_id
        self.resting = resting
        self.quantity_lots = quantity_lots


class OrderBook:
    """The resting orders of one product, in price-time priority.

    ``version`` grows with every call that may change the book (submit,
    cancel, lock, release, take), so a watcher can skip re-checking a book
    that has not moved.
    """

    def __init__(self, product_id: str) -> None:
        self.product_id = product_id
        self.version = 0
        self._bids = _Side(Side.BUY, +1)
        self._asks = _Side(Side.SELL, -1)
        self._orders: dict[int, _Resting] = {}
        self._locks: dict[int, _Lock] = {}

    # ------------------------------------------------------------------ orders

    def submit(self, order: Order) -> SubmitResult:
        """Match ``order`` against the book; rest a GTC limit remainder.

        The order must be for this book's product and its id must be new to the
        book; both are checked because a violation would corrupt the book.
        """
        self.version += 1
        if order.product_id != self.product_id:
            raise BookError("wrong_product", f"order is for {order.product_id}")
        order_id = order.order_id
        if order_id in self._orders:
            raise BookError("duplicate_order_id", f"order {order_id} is already resting")
        if order.side is _BUY:
            own, opposite = self._bids, self._asks
        else:
            own, opposite = self._asks, self._bids
        price = order.price_ticks
        threshold = _NO_LIMIT if price is None else price * opposite.sign
        keys = opposite.keys
        if keys and keys[-1] >= threshold:
            return self._take_liquidity(order, own, opposite, threshold)
        # Nothing crosses: the common case of a passive limit order.
        quantity = order.quantity_lots
        if order.time_in_force is _GTC and price is not None:
            self._rest(own, order_id, order.trader_id, price, quantity)
            return SubmitResult((), quantity, 0, None)
        return SubmitResult((), 0, quantity, _unfilled_reason(order, filled=False))

    def _take_liquidity(
        self, order: Order, own: _Side, opposite: _Side, threshold: int
    ) -> SubmitResult:
        quantity = order.quantity_lots
        trader_id = order.trader_id
        if order.time_in_force is _FOK and (
            self._fillable(opposite, threshold, quantity, trader_id) < quantity
        ):
            return SubmitResult((), 0, quantity, "fok_unfillable")
        fills: list[Fill] = []
        remaining, self_trade = self._match(opposite, threshold, quantity, trader_id, fills)
        if remaining == 0:
            return SubmitResult(tuple(fills), 0, 0, None)
        if self_trade:
            return SubmitResult(tuple(fills), 0, remaining, "self_trade")
        price = order.price_ticks
        if order.time_in_force is _GTC and price is not None:
            self._rest(own, order.order_id, trader_id, price, remaining)
            return SubmitResult(tuple(fills), remaining, 0, None)
        return SubmitResult(tuple(fills), 0, remaining, _unfilled_reason(order, filled=bool(fills)))

    def cancel(self, order_id: int) -> int:
        """Cancel a resting order's unlocked quantity at once; return it.

        Locked quantity stays promised: the order is marked cancel-pending and
        leaves the book when its last lock ends.
        """
        self.version += 1
        resting = self._orders.get(order_id)
        if resting is None or resting.cancel_pending:
            raise BookError("unknown_order", f"order {order_id} is not resting")
        cancelled = resting.open_lots - resting.locked_lots
        if resting.locked_lots:
            resting.cancel_pending = True
            self._reduce(resting, cancelled)
        else:
            self._remove(resting)
        return cancelled

    # ------------------------------------------------------------------- locks

    def lock(self, lock_id: int, order_id: int, quantity_lots: int) -> None:
        """Reserve ``quantity_lots`` of a resting order's unlocked quantity."""
        self.version += 1
        if lock_id in self._locks:
            raise BookError("duplicate_lock_id", f"lock {lock_id} already exists")
        resting = self._orders.get(order_id)
        if resting is None or resting.cancel_pending:
            raise BookError("unknown_order", f"order {order_id} is not resting")
        if type(quantity_lots) is not int or quantity_lots <= 0:
            raise BookError(
                "bad_quantity", f"lock quantity must be positive, got {quantity_lots!r}"
            )
        unlocked = resting.open_lots - resting.locked_lots
        if quantity_lots > unlocked:
            raise BookError(
                "insufficient_unlocked",
                f"order {order_id} has {unlocked} unlocked lots, asked for {quantity_lots}",
            )
        resting.locked_lots += quantity_lots
        resting.level.locked_lots += quantity_lots
        self._locks[lock_id] = _Lock(lock_id, resting, quantity_lots)

    def release(self, lock_id: int) -> Reentry:
        """End a lock without a fill. Its quantity returns to the order (or is
        cancelled, if the order was cancelled meanwhile) and is matched at once
        against anything that rested across it while it was locked."""
        self.version += 1
        lock = self._locks.pop(lock_id, None)
        if lock is None:
            raise BookError("unknown_lock", f"lock {lock_id} is not open")
        return self._unlock(lock.resting, lock.quantity_lots)

    def take(self, lock_id: int, quantity_lots: int) -> tuple[Fill, Reentry]:
        """Fill ``quantity_lots`` (at most the locked quantity) and end the lock;
        any locked rest is released as by :meth:`release`. The trade is at the
        resting order's price."""
        self.version += 1
        lock = self._locks.get(lock_id)
        if lock is None:
            raise BookError("unknown_lock", f"lock {lock_id} is not open")
        if type(quantity_lots) is not int or not 0 < quantity_lots <= lock.quantity_lots:
            raise BookError(
                "bad_quantity", f"take must be 1..{lock.quantity_lots} lots, got {quantity_lots!r}"
            )
        del self._locks[lock_id]
        resting = lock.resting
        price = resting.level.price_ticks
        resting.locked_lots -= quantity_lots
        resting.level.locked_lots -= quantity_lots
        self._reduce(resting, quantity_lots)
        done = resting.open_lots == 0
        if done:
            self._remove(resting)
            reentry = Reentry(resting.order_id, (), True, 0)
        else:
            reentry = self._unlock(resting, lock.quantity_lots - quantity_lots)
        fill = Fill(resting.order_id, resting.trader_id, price, quantity_lots, reentry.order_done)
        return fill, reentry

    def lockable(
        self,
        taker_side: Side,
        limit_price_ticks: int | None,
        quantity_lots: int,
        exclude_trader: str | None = None,
    ) -> list[tuple[int, int, int]]:
        """Resting orders an order on ``taker_side`` could take, best first, as
        ``(order_id, price_ticks, lots)`` with lots up to each order's unlocked
        quantity and ``quantity_lots`` in all. Orders of ``exclude_trader`` are
        skipped. Nothing changes: the caller locks what it offers."""
        opposite = self._asks if taker_side is _BUY else self._bids
        threshold = _NO_LIMIT if limit_price_ticks is None else limit_price_ticks * opposite.sign
        found: list[tuple[int, int, int]] = []
        for key in reversed(opposite.keys):
            if key < threshold or quantity_lots <= 0:
                break
            level = opposite.levels[key * opposite.sign]
            for resting in level.entries():
                available = resting.open_lots - resting.locked_lots
                if available <= 0 or resting.trader_id == exclude_trader:
                    continue
                lots = available if available < quantity_lots else quantity_lots
                found.append((resting.order_id, level.price_ticks, lots))
                quantity_lots -= lots
                if quantity_lots == 0:
                    break
        return found

    def locked_lots(self, lock_id: int) -> int:
        lock = self._locks.get(lock_id)
        if lock is None:
            raise BookError("unknown_lock", f"lock {lock_id} is not open")
        return lock.quantity_lots

    # ----------------------------------------------------------------- queries

    def best_bid(self) -> int | None:
        keys = self._bids.keys
        return keys[-1] if keys else None

    def best_ask(self) -> int | None:
        keys = self._asks.keys
        return -keys[-1] if keys else None

    def depth(self, side: Side, max_levels: int = 10) -> list[LevelView]:
        """The best ``max_levels`` price levels of one side, best first."""
        book_side = self._bids if side is _BUY else self._asks
        views = []
        for key in reversed(book_side.keys[-max_levels:] if max_levels > 0 else []):
            level = book_side.levels[key * book_side.sign]
            views.append(
                LevelView(level.price_ticks, level.open_lots, level.locked_lots, level.live)
            )
        return views

    def get(self, order_id: int) -> RestingView | None:
        resting = self._orders.get(order_id)
        if resting is None:
            return None
        return RestingView(
            resting.order_id,
            resting.trader_id,
            resting.level.side.side,
            resting.level.price_ticks,
            resting.open_lots,
            resting.locked_lots,
            resting.cancel_pending,
        )

    def resting_orders(self, side: Side) -> list[RestingView]:
        """Every resting order of one side in priority order (best first)."""
        return self._views(self._bids if side is _BUY else self._asks, None)

    def at_or_better(self, side: Side, price_ticks: int, most: int) -> list[RestingView]:
        """The first ``most`` resting orders of one side priced at
        ``price_ticks`` or better (bids at or above it, asks at or below),
        in priority order."""
        book_side = self._bids if side is _BUY else self._asks
        return self._views(book_side, price_ticks * book_side.sign, most)

    def _views(self, book_side: _Side, lowest_key: int | None, most: int = -1) -> list[RestingView]:
        views: list[RestingView] = []
        for key in reversed(book_side.keys):
            if lowest_key is not None and key < lowest_key:
                break
            for resting in book_side.levels[key * book_side.sign].entries():
                if resting.open_lots:
                    if len(views) == most:
                        return views
                    view = self.get(resting.order_id)
                    assert view is not None
                    views.append(view)
        return views

    def open_locks(self) -> list[int]:
        return sorted(self._locks)

    def __len__(self) -> int:
        return len(self._orders)

    # --------------------------------------------------------------- snapshots

    def snapshot(self) -> BookSnapshot:
        """The book's whole state as an immutable value; see :meth:`restore`."""
        orders: list[RestingSnapshot] = []
        for book_side in (self._bids, self._asks):
            side = book_side.side
            for key in reversed(book_side.keys):
                level = book_side.levels[key * book_side.sign]
                price = level.price_ticks
                for resting in level.entries():
                    if resting.open_lots:
                        orders.append(
                            RestingSnapshot(
                                resting.order_id,
                                resting.trader_id,
                                side,
                                price,
                                resting.open_lots,
                                resting.locked_lots,
                                resting.cancel_pending,
                            )
                        )
        locks = tuple(
            LockSnapshot(lock.lock_id, lock.resting.order_id, lock.quantity_lots)
            for lock in self._locks.values()
        )
        return BookSnapshot(self.product_id, self.version, tuple(orders), locks)

    @classmethod
    def restore(cls, snapshot: BookSnapshot) -> OrderBook:
        """Rebuild the book that ``snapshot`` was taken of.

        The new book answers every later call exactly as the original would
        have. A snapshot comes from storage, so it is checked as any input from
        outside is: one that breaks an invariant the book keeps (quantities,
        level order, locks adding up, no crossing on unlocked quantity) raises
        :class:`BookError` with code ``bad_snapshot``, and no book is built.
        """
        book = cls(snapshot.product_id)
        if snapshot.version < 0:
            raise _bad_snapshot(f"version must not be negative, got {snapshot.version}")
        book.version = snapshot.version
        unclaimed = book._restore_orders(snapshot.orders)
        book._restore_locks(snapshot.locks, unclaimed)
        book._check_uncrossed()
        return book

    # --------------------------------------------------------------- internals

    def _match(
        self, opposite: _Side, threshold: int, quantity: int, trader_id: str, fills: list[Fill]
    ) -> tuple[int, bool]:
        """Fill up to ``quantity`` from the crossing levels of ``opposite``, best
        first, skipping locked quantity. Returns what is left and whether a
        self-trade stopped the match."""
        keys = opposite.keys
        levels = opposite.levels
        sign = opposite.sign
        orders = self._orders
        position = len(keys) - 1
        while quantity and position >= 0 and keys[position] >= threshold:
            level = levels[keys[position] * sign]
            queue = level.queue
            price = level.price_ticks
            index = level.head
            end = len(queue)
            while quantity and index < end:
                resting = queue[index]
                index += 1
                available = resting.open_lots - resting.locked_lots
                if available <= 0:
                    continue
                if resting.trader_id == trader_id:
                    level.trim()
                    return quantity, True
                fill = available if available < quantity else quantity
                quantity -= fill
                resting.open_lots -= fill
                level.open_lots -= fill
                done = resting.open_lots == 0
                if done:
                    del orders[resting.order_id]
                    level.live -= 1
                fills.append(Fill(resting.order_id, resting.trader_id, price, fill, done))
            if level.live == 0:
                del levels[level.price_ticks]
                del keys[position]
                level.queue = []
            else:
                level.trim()
            position -= 1
        return quantity, False

    def _fillable(self, opposite: _Side, threshold: int, quantity: int, trader_id: str) -> int:
        """How much :meth:`_match` would fill, without changing anything."""
        found = 0
        for key in reversed(opposite.keys):
            if key < threshold:
                break
            for resting in opposite.levels[key * opposite.sign].entries():
                available = resting.open_lots - resting.locked_lots
                if available <= 0:
                    continue
                if resting.trader_id == trader_id:
                    return found
                found += available
                if found >= quantity:
                    return found
        return found

    def _rest(self, side: _Side, order_id: int, trader_id: str, price: int, quantity: int) -> None:
        level = side.levels.get(price) or side.new_level(price)
        resting = _Resting(order_id, trader_id, quantity, level)
        level.queue.append(resting)
        level.live += 1
        level.open_lots += quantity
        self._orders[order_id] = resting

    def _reduce(self, resting: _Resting, quantity: int) -> None:
        resting.open_lots -= quantity
        resting.level.open_lots -= quantity

    def _remove(self, resting: _Resting) -> None:
        """Take a resting order out of the book; its queue entry dies lazily."""
        level = resting.level
        level.open_lots -= resting.open_lots
        resting.open_lots = 0
        del self._orders[resting.order_id]
        level.live -= 1
        if level.live == 0:
            level.side.drop(level)
        else:
            level.trim()

    def _unlock(self, resting: _Resting, quantity: int) -> Reentry:
        """Return ``quantity`` locked lots to ``resting`` and re-match them."""
        resting.locked_lots -= quantity
        resting.level.locked_lots -= quantity
        if resting.cancel_pending:
            self._reduce(resting, quantity)
            done = resting.locked_lots == 0
            if done:
                self._remove(resting)
            return Reentry(resting.order_id, (), done, quantity)
        return self._reenter(resting)

    def _reenter(self, resting: _Resting) -> Reentry:
        """Match the unlocked quantity of a resting order against the other side.

        While quantity is locked, an incoming order may skip it and rest at a
        price that crosses it. When that quantity comes back it trades with such
        orders as if it had just arrived, at their resting price, so the book
        never stays crossed on unlocked quantity. A self-trade cancels the
        returning quantity (it is the newest), as for an incoming order.
        """
        available = resting.open_lots - resting.locked_lots
        opposite = self._asks if resting.level.side.side is _BUY else self._bids
        keys = opposite.keys
        threshold = resting.level.price_ticks * opposite.sign
        if not available or not keys or keys[-1] < threshold:
            return Reentry(resting.order_id, (), False, 0)
        fills: list[Fill] = []
        left, self_trade = self._match(opposite, threshold, available, resting.trader_id, fills)
        cancelled = left if self_trade else 0
        self._reduce(resting, available - left + cancelled)
        done = resting.open_lots == 0
        if done:
            self._remove(resting)
        return Reentry(resting.order_id, tuple(fills), done, cancelled)

    # ------------------------------------------------------ restoring a snapshot

    def _restore_orders(self, entries: tuple[RestingSnapshot, ...]) -> dict[int, int]:
        """Rest every order of a snapshot in its place in its level's queue.

        Returns the locked lots of each order that has any, for
        :meth:`_restore_locks` to account for. Levels arrive best first, so each
        side's keys are collected in descending order and reversed at the end.
        """
        orders = self._orders
        unclaimed: dict[int, int] = {}
        book_side = self._bids
        side = _BUY
        level: _Level | None = None
        price = 0
        queue: list[_Resting] = []
        for entry in entries:
            if level is None or entry.price_ticks != price or entry.side is not side:
                if entry.side is not side:
                    book_side = self._restore_asks(entry)
                    side = _SELL
                    level = None
                level = _restore_level(book_side, level, entry)
                price = level.price_ticks
                queue = level.queue
            order_id = entry.order_id
            open_lots = entry.open_lots
            locked_lots = entry.locked_lots
            if order_id in orders:
                raise _bad_snapshot(f"order {order_id} appears twice")
            if not 0 <= locked_lots <= open_lots <= MAX_QUANTITY_LOTS or open_lots == 0:
                raise _bad_snapshot(
                    f"order {order_id} has {open_lots} open and {locked_lots} locked lots"
                )
            resting = _Resting(order_id, entry.trader_id, open_lots, level)
            if locked_lots:
                _restore_locked(resting, locked_lots, entry.cancel_pending)
                unclaimed[order_id] = locked_lots
            elif entry.cancel_pending:
                raise _bad_snapshot(f"order {order_id} is cancel-pending but has no locked lots")
            queue.append(resting)
            level.open_lots += open_lots
            orders[order_id] = resting
        # Each level's count of live orders is its queue's length, set once at
        # the end rather than counted up order by order.
        for restored in (self._bids, self._asks):
            restored.keys.reverse()
            for done in restored.levels.values():
                done.live = len(done.queue)
        return unclaimed

    def _restore_asks(self, entry: RestingSnapshot) -> _Side:
        """The asks, where ``entry`` starts a new side: bids come first."""
        if entry.side is not _SELL or self._asks.levels:
            raise _bad_snapshot(
                f"order {entry.order_id} is out of place: all bids come before all asks"
            )
        return self._asks

    def _restore_locks(self, entries: tuple[LockSnapshot, ...], unclaimed: dict[int, int]) -> None:
        """Reopen every lock of a snapshot in its order, checking that the locks
        on each order reserve exactly its locked lots: ``unclaimed`` maps each
        locked order to the lots that no lock has reserved yet."""
        orders = self._orders
        locks = self._locks
        for entry in entries:
            lock_id = entry.lock_id
            order_id = entry.order_id
            quantity = entry.quantity_lots
            if lock_id in locks:
                raise _bad_snapshot(f"lock {lock_id} appears twice")
            resting = orders.get(order_id)
            if resting is None:
                raise _bad_snapshot(f"lock {lock_id} is on order {order_id}, which is not resting")
            if quantity <= 0:
                raise _bad_snapshot(f"lock {lock_id} reserves {quantity} lots")
            left = unclaimed.get(order_id, 0) - quantity
            if left < 0:
                raise _bad_snapshot(
                    f"the locks on order {order_id} reserve more than its"
                    f" {resting.locked_lots} locked lots"
                )
            unclaimed[order_id] = left
            locks[lock_id] = _Lock(lock_id, resting, quantity)
        for order_id, left in unclaimed.items():
            if left:
                raise _bad_snapshot(
                    f"order {order_id} has {left} locked lots that no lock reserves"
                )

    def _check_uncrossed(self) -> None:
        """Refuse a book whose unlocked quantity crosses. Matching never leaves
        one so (locked quantity may cross, and trades when it comes back), and a
        rebuilt book would behave unlike any real one."""
        bid = _best_unlocked_price(self._bids)
        ask = _best_unlocked_price(self._asks)
        if bid is not None and ask is not None and bid >= ask:
            raise _bad_snapshot(f"unlocked bids at {bid} cross unlocked asks at {ask}")


def _bad_snapshot(message: str) -> BookError:
    return BookError("bad_snapshot", message)


def _restore_level(book_side: _Side, previous: _Level | None, entry: RestingSnapshot) -> _Level:
    """Open the level of ``entry``, the first order of its price. ``previous``
    is the level before it on the same side, which must be a better price."""
    price = entry.price_ticks
    if not 0 < price <= MAX_PRICE_TICKS:
        raise _bad_snapshot(f"order {entry.order_id} has price {price}")
    level = _Level(book_side, price)
    if previous is not None and level.key >= previous.key:
        # Orders of one price form a single run, and runs go from the best
        # price to the worst; anything else has no one queue order.
        raise _bad_snapshot(
            f"order {entry.order_id} at {price} is out of place after price"
            f" {previous.price_ticks}: each side lists its best price first"
        )
    book_side.levels[price] = level
    book_side.keys.append(level.key)
    return level


def _restore_locked(resting: _Resting, locked_lots: int, cancel_pending: bool) -> None:
    """Give a restored order its locked lots and its pending cancel, if any."""
    if cancel_pending and locked_lots != resting.open_lots:
        # Cancelling drops all unlocked quantity, and each lock that ends while
        # the cancel is pending drops what it returns.
        raise _bad_snapshot(
            f"order {resting.order_id} is cancel-pending but has unlocked lots"
            f" ({resting.open_lots} open, {locked_lots} locked)"
        )
    resting.locked_lots = locked_lots
    resting.cancel_pending = cancel_pending
    resting.level.locked_lots += locked_lots


def _best_unlocked_price(book_side: _Side) -> int | None:
    """The best price of one side at which some quantity is unlocked."""
    for key in reversed(book_side.keys):
        level = book_side.levels[key * book_side.sign]
        if level.open_lots > level.locked_lots:
            return level.price_ticks
    return None
