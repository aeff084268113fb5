"""Order book throughput and latency on a realistic mixed flow.

The flow: about 60 % limit inserts (about a tenth of them priced through the
opposite best, so they match), 30 % cancels of live resting orders and 10 %
market orders; passive prices cluster near the mid, so levels fill and empty.
The stream is generated once from a fixed seed by driving a scratch book, then
replayed on fresh books: every run does exactly the same work.

Figures: mixed operations per second over the whole stream (median of several
runs, one core, no per-operation timing in the loop), then each operation
kind's latency p50/p99 from a separate run that times every call.

Garbage collection: the pre-generated stream is frozen out of the cyclic
collector (it is the benchmark's input, not the book's state). The book itself
is measured twice, runs interleaved: with CPython's cyclic collector on, as
configured by default, and with it off. The book creates no reference cycles
(tests/unit/test_book.py proves it), so reference counting frees everything
and a node may run its core with the collector off; the "off" figure is what
such a node gets, the "on" figure what a default interpreter gets.

Usage: python benchmarks/book.py [--ops N] [--runs R] [--seed S]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

import datn.book.book
import datn.domain.orders
from datn.book import BookError, OrderBook
from datn.domain import Order, OrderId, OrderType, ProductKind, ProductSpec, Side, TimeInForce
from datn.domain.orders import TraderId

INSERT, CROSS, CANCEL, MARKET = "insert", "cross", "cancel", "market"
KINDS = (INSERT, CROSS, CANCEL, MARKET)
MID_TICKS = 10_000
TRADERS = [TraderId(f"t{i}") for i in range(200)]


def generate(count: int, seed: int) -> list[tuple[str, Any]]:
    """A deterministic stream of (kind, argument) operations."""
    rng = random.Random(seed)
    product = ProductSpec("BENCH", ProductKind.SHARE, "USD")  # type: ignore[arg-type]
    scratch = OrderBook(product.product_id)
    live: list[int] = []
    live_slot: dict[int, int] = {}
    ops: list[tuple[str, Any]] = []
    next_id = 1

    def forget(order_id: int) -> None:
        slot = live_slot.pop(order_id)
        last = live.pop()
        if last != order_id:
            live[slot] = last
            live_slot[last] = slot

    while len(ops) < count:
        roll = rng.random()
        if roll < 0.30 and live:
            order_id = live[rng.randrange(len(live))]
            scratch.cancel(order_id)
            forget(order_id)
            ops.append((CANCEL, order_id))
            continue
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        quantity = rng.choice((1, 1, 2, 5, 10, 20, 50, 100))
        trader = TRADERS[rng.randrange(len(TRADERS))]
        if roll < 0.40:
            kind = MARKET
            order = Order(
                OrderId(next_id),
                trader,
                product.product_id,
                side,
                quantity,
                None,
                OrderType.MARKET,
                TimeInForce.IOC,
                "b",
            )
        else:
            crossing = rng.random() < 0.10
            kind = CROSS if crossing else INSERT
            price = _price(rng, side, crossing, scratch)
            order = Order(
                OrderId(next_id),
                trader,
                product.product_id,
                side,
                quantity,
                price,
                OrderType.LIMIT,
                TimeInForce.GTC,
                "b",
            )
        next_id += 1
        result = scratch.submit(order)
        for fill in result.fills:
            if fill.maker_done:
                forget(fill.maker_order_id)
        if result.rested_lots:
            live_slot[order.order_id] = len(live)
            live.append(order.order_id)
        ops.append((kind, order))
    return ops


def _price(rng: random.Random, side: Side, crossing: bool, book: OrderBook) -> int:
    if crossing:
        best = book.best_ask() if side is Side.BUY else book.best_bid()
        through = rng.randint(0, 3)
        if best is not None:
            return best + through if side is Side.BUY else best - through
        return MID_TICKS + through if side is Side.BUY else MID_TICKS - through
    # Passive: a few ticks behind the mid on the order's own side, most near it.
    offset = 1 + min(int(rng.expovariate(1 / 6)), 60)
    return MID_TICKS - offset if side is Side.BUY else MID_TICKS + offset


def replay(ops: list[tuple[str, Any]], product_id: str, *, collector: bool) -> float:
    """Run the stream on a fresh book; return elapsed seconds."""
    book = OrderBook(product_id)
    submit, cancel = book.submit, book.cancel
    gc.collect()
    if not collector:
        gc.disable()
    try:
        start = time.perf_counter()
        for kind, arg in ops:
            if kind is CANCEL:
                cancel(arg)
            else:
                submit(arg)
        return time.perf_counter() - start
    finally:
        gc.enable()


def timed_replay(ops: list[tuple[str, Any]], product_id: str) -> dict[str, list[int]]:
    """Run the stream timing each call; return nanoseconds per operation kind."""
    book = OrderBook(product_id)
    samples: dict[str, list[int]] = {kind: [] for kind in KINDS}
    clock = time.perf_counter_ns
    for kind, arg in ops:
        call: Callable[[Any], object] = book.cancel if kind is CANCEL else book.submit
        start = clock()
        call(arg)
        samples[kind].append(clock() - start)
    return samples


def percentile(values: list[int], fraction: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    ops = generate(args.ops, args.seed)
    product_id = ops[0][1].product_id if ops[0][0] is not CANCEL else ""
    counts = {kind: sum(1 for k, _ in ops if k is kind) for kind in KINDS}
    compiled = all(
        (module.__file__ or "").endswith(".so") for module in (datn.book.book, datn.domain.orders)
    )
    build = "mypyc-compiled book and orders" if compiled else "pure-Python book and orders"
    print(f"datn {metadata.version('datn')}, {build}")
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.machine()}, {os.cpu_count()} cores, one core used; "
        f"{args.ops:,} ops, seed {args.seed}, {args.runs} runs"
    )
    print("mix: " + ", ".join(f"{k} {100 * counts[k] / len(ops):.1f} %" for k in KINDS))
    gc.collect()
    gc.freeze()
    seconds: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.runs):
        for collector in (True, False):
            seconds[collector].append(replay(ops, product_id, collector=collector))
    medians = {}
    for collector, label in ((True, "on "), (False, "off")):
        runs = seconds[collector]
        medians[collector] = len(ops) / statistics.median(runs)
        print(
            f"mixed throughput, cyclic GC {label}: {medians[collector]:,.0f} ops/s median "
            f"(best {len(ops) / min(runs):,.0f}, worst {len(ops) / max(runs):,.0f})"
        )
    print(f"ratio GC off / GC on: {medians[False] / medians[True]:.2f}")
    samples = timed_replay(ops, product_id)
    print(f"{'kind':<8}{'count':>10}{'ops/s':>12}{'p50 ns':>10}{'p99 ns':>10}")
    for kind in KINDS:
        values = samples[kind]
        if not values:
            continue
        rate = 1e9 * len(values) / sum(values)
        print(
            f"{kind:<8}{len(values):>10,}{rate:>12,.0f}"
            f"{percentile(values, 0.50):>10,}{percentile(values, 0.99):>10,}"
        )


if __name__ == "__main__":
    try:
        main()
    except BookError as error:  # a stream that does not replay means a book bug
        sys.exit(f"book refused a replayed operation: {error}")
