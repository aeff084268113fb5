"""Order book throughput next to published Python matching engines.

Replays the operation stream of benchmarks/book.py (same generator, same seed,
so the same limit inserts, crossing limits, cancels and market orders) on
datn's OrderBook and on published engines from PyPI, in one process, and prints
each engine's mixed operations per second (median of several runs) and the ratio
datn / engine. The runs are interleaved: run 1 of every engine, then run 2 of
every engine, the order rotated each time, so that load on the machine hits all
engines alike.

Engines (pinned in requirements/bench.txt; one that is not installed is skipped):

* lightmatchingengine: pure Python, price-time, cancel by id. It has no IOC
  market order: a market order (price 0) that is not filled at once rests at
  price 0, so here every such remainder is cancelled right after the order, in
  the timed loop (IOC emulation, one extra call).
* liquibook: the Liquibook C++ engine through its SWIG binding
  (DepthOrderBook). A market order is price 0 with its IOC condition.

Each op is translated once before timing: same side, price and quantity; a
cancel targets the engine's handle for the same order. Input objects are built
outside the timed loop, as datn's Order values are. Neither published engine
has self-trade prevention and datn does (cancel newest, 200 traders), so the
books can drift slightly apart; one untimed replay per engine then counts fills,
traded lots, resting orders and cancels that found nothing, to show that the
engines did comparable work.

Figures are medians and ratios; nothing here asserts a timing.

Usage: python benchmarks/book_compare.py [--ops N] [--runs R] [--seed S]
       (after: python -m pip install -r requirements/bench.txt)
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

# book.py sits beside this script, and Python puts the script's folder first on
# sys.path: the stream and datn's own replay loop come from there unchanged.
from book import CANCEL, KINDS, MARKET, generate, replay
from datn.book import BookError, OrderBook
from datn.domain import Side

Ops = list[tuple[str, Any]]


@dataclass
class Tally:
    """What one untimed replay did on one engine."""

    fills: int = 0  # executions against a resting (maker) order
    lots: int = 0  # quantity traded
    resting: int = 0  # orders left in the book at the end
    cancel_misses: int = 0  # cancels of an order the engine no longer held
    notes: str = ""


@dataclass
class Engine:
    name: str
    version: str
    kind: str
    conditions: str
    run: Callable[[], float]  # a fresh book, the whole stream; elapsed seconds
    check: Callable[[], Tally]


# ------------------------------------------------------------------------ datn


def datn_engine(ops: Ops, product_id: str) -> Engine:
    module_file = sys.modules[OrderBook.__module__].__file__ or ""
    compiled = not module_file.endswith(".py")  # mypyc leaves an extension module

    def check() -> Tally:
        book = OrderBook(product_id)
        tally = Tally()
        self_trades = 0
        for kind, arg in ops:
            if kind is CANCEL:
                try:
                    book.cancel(arg)
                except BookError:
                    tally.cancel_misses += 1
                continue
            result = book.submit(arg)
            tally.fills += len(result.fills)
            tally.lots += result.filled_lots
            if result.cancel_reason == "self_trade":
                self_trades += 1
        tally.resting = len(book)
        tally.notes = f"{self_trades:,} orders stopped by self-trade prevention"
        return tally

    return Engine(
        name="datn",
        version=metadata.version("datn"),
        kind="mypyc-compiled Python" if compiled else "pure Python (not compiled)",
        conditions="native market IOC; self-trade prevention (cancel newest)",
        run=lambda: replay(ops, product_id, collector=True),
        check=check,
    )


# --------------------------------------------------------- lightmatchingengine


def lme_engine(ops: Ops) -> Engine | str:
    try:
        from lightmatchingengine import lightmatchingengine as lme  # noqa: PLC0415
    except ImportError:
        return "lightmatchingengine"
    instrument = "BENCH"
    buy, sell = lme.Side.BUY, lme.Side.SELL
    # (kind, price or engine order id, quantity, side). The engine numbers its
    # orders 1, 2, ... in the order it receives them; every op but a cancel is
    # one order, so the mapping from datn's ids is known before replaying.
    stream: list[tuple[str, int, int, int]] = []
    engine_id: dict[int, int] = {}
    for kind, arg in ops:
        if kind is CANCEL:
            stream.append((CANCEL, engine_id[arg], 0, 0))
            continue
        engine_id[arg.order_id] = len(engine_id) + 1
        side = buy if arg.side is Side.BUY else sell
        price = 0 if kind is MARKET else arg.price_ticks
        stream.append((kind, price, arg.quantity_lots, side))

    def run() -> float:
        engine = lme.LightMatchingEngine()
        add, cancel = engine.add_order, engine.cancel_order
        gc.collect()
        start = time.perf_counter()
        for kind, a, quantity, side in stream:
            if kind is CANCEL:
                # Cancelling an order this engine has already filled fails an
                # assertion inside it when its price level is gone. (A try block
                # costs nothing in the loop; contextlib.suppress would.)
                try:  # noqa: SIM105
                    cancel(a, instrument)
                except (AssertionError, KeyError):
                    pass
            elif kind is MARKET:
                order, _ = add(instrument, 0, quantity, side)
                if order.leaves_qty:
                    cancel(order.order_id, instrument)
            else:
                add(instrument, a, quantity, side)
        return time.perf_counter() - start

    def check() -> Tally:
        engine = lme.LightMatchingEngine()
        tally = Tally()
        unfilled_markets = 0
        for kind, a, quantity, side in stream:
            if kind is CANCEL:
                try:
                    found = engine.cancel_order(a, instrument)
                except (AssertionError, KeyError):
                    found = None
                tally.cancel_misses += found is None
                continue
            order, trades = engine.add_order(instrument, a, quantity, side)
            for trade in trades:
                if trade.order_id != order.order_id:  # the maker's side of a trade
                    tally.fills += 1
                    tally.lots += trade.trade_qty
            if kind is MARKET and order.leaves_qty:
                unfilled_markets += 1
                engine.cancel_order(order.order_id, instrument)
        book = engine.order_books[instrument]
        tally.resting = sum(map(len, book.bids.values())) + sum(map(len, book.asks.values()))
        tally.notes = f"{unfilled_markets:,} market remainders cancelled (IOC emulation)"
        return tally

    return Engine(
        name="lightmatchingengine",
        version=metadata.version("lightmatchingengine"),
        kind="pure Python",
        conditions=(
            "no IOC market order: price-0 market order, any remainder (which would rest "
            "at price 0) cancelled at once, timed; a cancel of an order it has already "
            "filled can fail an assertion inside it, caught; no self-trade prevention"
        ),
        run=run,
        check=check,
    )


# ------------------------------------------------------------------- liquibook


def liquibook_engine(ops: Ops) -> Engine | str:
    try:
        import liquibook  # noqa: PLC0415
    except ImportError:
        return "liquibook"
    ioc, plain = liquibook.oc_immediate_or_cancel, liquibook.oc_no_conditions
    new_order = liquibook.SimpleOrder

    def orders() -> list[tuple[str, Any]]:
        """Fresh order objects for one replay, aligned with the stream; a cancel
        carries the very object that was added."""
        by_id: dict[int, Any] = {}
        stream: list[tuple[str, Any]] = []
        for kind, arg in ops:
            if kind is CANCEL:
                stream.append((CANCEL, by_id[arg]))
                continue
            price = 0 if kind is MARKET else arg.price_ticks  # 0: a market order
            order = new_order(arg.side is Side.BUY, price, arg.quantity_lots)
            by_id[arg.order_id] = order
            stream.append((kind, order))
        return stream

    def run() -> float:
        stream = orders()
        book = liquibook.DepthOrderBook()
        add, cancel = book.add, book.cancel
        gc.collect()
        start = time.perf_counter()
        for kind, order in stream:
            if kind is CANCEL:
                cancel(order)
            elif kind is MARKET:
                add(order, ioc)
            else:
                add(order, plain)
        return time.perf_counter() - start

    class Listener(liquibook.OrderListener):
        def __init__(self, tally: Tally) -> None:
            liquibook.OrderListener.__init__(self)
            self.tally = tally
            self.rejects = 0

        def on_fill(self, order: Any, matched: Any, quantity: int, price: int) -> None:
            self.tally.fills += 1
            self.tally.lots += quantity

        def on_cancel_reject(self, order: Any, reason: str) -> None:
            self.tally.cancel_misses += 1

        def on_accept(self, order: Any) -> None:
            pass

        def on_reject(self, order: Any, reason: str) -> None:
            self.rejects += 1  # an exception here would not get past the engine

        def on_cancel(self, order: Any) -> None:
            pass

        def on_replace(self, order: Any, size_delta: int, new_price: int) -> None:
            pass

        def on_replace_reject(self, order: Any, reason: str) -> None:
            pass

    def check() -> Tally:
        tally = Tally()
        listener = Listener(tally)
        book = liquibook.DepthOrderBook()
        book.set_order_listener(listener)
        for kind, order in orders():
            if kind is CANCEL:
                book.cancel(order)
            else:
                book.add(order, ioc if kind is MARKET else plain)
        tally.resting = book.bids().size() + book.asks().size()
        if listener.rejects:
            tally.notes = f"{listener.rejects:,} orders rejected"
        return tally

    return Engine(
        name="liquibook",
        version=metadata.version("liquibook"),
        kind="C++ (SWIG binding)",
        conditions="market = price 0 with its IOC condition; no self-trade prevention",
        run=run,
        check=check,
    )


# ------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    ops = generate(args.ops, args.seed)
    product_id = ops[0][1].product_id if ops[0][0] is not CANCEL else ""

    engines = [datn_engine(ops, product_id)]
    missing: list[str] = []
    for build in (lme_engine, liquibook_engine):
        engine = build(ops)
        if isinstance(engine, str):
            missing.append(engine)
        else:
            engines.append(engine)

    counts = {kind: sum(1 for k, _ in ops if k is kind) for kind in KINDS}
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.machine()}, {os.cpu_count()} cores, one core used; "
        f"{len(ops):,} ops, seed {args.seed}, {args.runs} runs per engine, interleaved "
        "(engine order rotated each run)"
    )
    print("mix: " + ", ".join(f"{k} {100 * counts[k] / len(ops):.1f} %" for k in KINDS))
    print("engines:")
    for engine in engines:
        print(f"  {engine.name} {engine.version}, {engine.kind}: {engine.conditions}")
    for name in missing:
        print(f"  {name}: not installed, skipped (pip install -r requirements/bench.txt)")

    seconds: dict[str, list[float]] = {engine.name: [] for engine in engines}
    for run in range(args.runs):
        shift = run % len(engines)
        for engine in engines[shift:] + engines[:shift]:
            seconds[engine.name].append(engine.run())

    reference = statistics.median(seconds["datn"])
    print(
        f"{'engine':<22}{'ops/s median':>14}{'best':>12}{'worst':>12}"
        f"{'datn/engine':>13}{'per-run range':>17}"
    )
    for engine in engines:
        values = seconds[engine.name]
        median = statistics.median(values)
        ratio = median / reference
        per_run = [e / d for e, d in zip(values, seconds["datn"], strict=True)]
        print(
            f"{engine.name:<22}{len(ops) / median:>14,.0f}{len(ops) / min(values):>12,.0f}"
            f"{len(ops) / max(values):>12,.0f}{ratio:>12.2f}x"
            f"{f'{min(per_run):.2f}-{max(per_run):.2f}x':>17}"
        )

    print(
        "datn/engine: datn's median ops/s over the engine's (above 1: datn is faster); "
        "per-run range: the same ratio within each round of runs"
    )
    print("sanity, one untimed replay per engine:")
    print(f"{'engine':<22}{'fills':>10}{'lots traded':>13}{'resting':>10}{'cancel missed':>15}")
    for engine in engines:
        tally = engine.check()
        print(
            f"{engine.name:<22}{tally.fills:>10,}{tally.lots:>13,}{tally.resting:>10,}"
            f"{tally.cancel_misses:>15,}" + (f"  {tally.notes}" if tally.notes else "")
        )


if __name__ == "__main__":
    try:
        main()
    except BookError as error:  # a stream that does not replay means a book bug
        sys.exit(f"book refused a replayed operation: {error}")
