"""Simulator speed: peer messages, events and orders per wall-clock second.

Each size runs the deterministic network simulator (datn.sim.network) the way
run_simulation does: faults derived from the seed (the same mix for every
size, since they are the seed's first draws), fund, ``orders`` trader actions
over ``max(1000, orders * 20)`` ms of virtual time, heal, settle, final
checks. A run with a fixed seed does exactly the same work every time, so the
runs differ only in wall time. Figures per size: peer messages sent (the sum
of the report's per-type counter, lost ones included) per second of wall time,
simulator events per second and trader actions per second, medians of
``--runs`` runs, one process on one core (pin it, e.g. with taskset).

The invariant checker checks every node an event touched after that event:
it recomputes the node's whole ledger (every account, every hold) and scans
the top of its books. Runs are made with it ("checks on", what ``datn sim``
does) and without it ("checks off": its ``after_event`` replaced by a no-op;
it still watches the messages and the final checks still run), interleaved,
so the cost of checking shows as the ratio of the two.

Then one run is profiled with cProfile (sorted by own time, top functions)
and the cumulative share of the main parts is printed: per-event checks,
ledger recomputation, the node cores' input handling, the simulated network,
snapshots, recovery on restart, final checks. cProfile slows pure-Python code more
than compiled code, so the shares are a guide, not a measurement of the
unprofiled run. Nothing here asserts a figure.

Usage: python benchmarks/sim_speed.py [--sizes 20:2000 200:2000] [--seed S]
       [--runs R] [--checks both|on|off] [--no-checks] [--profile 20:1000]
       [--top 25] [--no-profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import platform
import pstats
import random
import statistics
import time
from dataclasses import dataclass
from importlib import metadata

import datn.book.book
import datn.domain.orders
import datn.ledger.ledger
import datn.protocol.node
from datn.domain.bulk import frozen_set_up
from datn.sim import invariants, network
from datn.sim.network import Faults, Simulation


@dataclass
class Run:
    wall_s: float
    messages: int
    events: int
    orders: int
    trades: int
    virtual_ms: int
    crashes: int
    setup_wall_s: float
    """Construction and funding: every node posting a bond with every peer."""
    setup_messages: int


def simulate(seed: int, nodes: int, orders: int, checks: bool) -> Run:
    """One run_simulation-like run, timed from construction to final checks.

    The previous run's object graph is collected first, outside the timing:
    each run starts from a clean heap, as ``datn sim`` does in its own process,
    instead of paying for its predecessor's garbage."""
    gc.collect()
    start = time.perf_counter()
    with frozen_set_up() as set_up_done:  # as run_simulation does
        sim = Simulation(seed, nodes)
        if not checks:
            sim.per_event_checks = False
        sim.fund()
        set_up_done()
        setup_wall_s = time.perf_counter() - start
        setup_messages = sum(sim.report.messages.values())
        duration_ms = max(1_000, orders * 20)
        end_ms = sim.schedule_flow(orders, duration_ms)
        sim.run(until_ms=end_ms)
        sim.heal()
        sim.settle()
        sim.check_final()
    wall_s = time.perf_counter() - start
    report = sim.report
    return Run(
        wall_s,
        sum(report.messages.values()),
        report.events,
        report.orders,
        report.trades,
        sim.time_ms,
        report.crashes,
        setup_wall_s,
        setup_messages,
    )


def size(text: str) -> tuple[int, int]:
    """NODES:ORDERS, e.g. 20:1000."""
    nodes, _, orders = text.partition(":")
    return int(nodes), int(orders or 300)


COMPILED = (
    datn.book.book,
    datn.domain.orders,
    datn.ledger.ledger,
    datn.protocol.node,
    network,
    invariants,
)
"""Modules setup.py compiles with mypyc (see pyproject.toml; the node core's
other parts are compiled with ``node``)."""


def compiled_modules() -> list[str]:
    return [m.__name__ for m in COMPILED if (m.__file__ or "").endswith(".so")]


def print_conditions(args: argparse.Namespace) -> None:
    compiled = compiled_modules()
    build = f"mypyc-compiled: {', '.join(compiled)}" if compiled else "pure Python"
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"datn {metadata.version('datn')}, {build}")
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.machine()}, {os.cpu_count()} cores, affinity {affinity}"
    )
    faults = Faults.from_seed(random.Random(args.seed))
    print(f"seed {args.seed}, faults derived from it: {faults}")
    sizes = ", ".join(
        f"{n} nodes x {o} trader actions over {max(1_000, o * 20)} ms" for n, o in args.sizes
    )
    print(f"sizes: {sizes}; 3 traders per node; {args.runs} runs each, median")


def measure(args: argparse.Namespace) -> None:
    modes = {"both": (True, False), "on": (True,), "off": (False,)}[args.checks]
    for nodes, orders in args.sizes:
        runs: dict[bool, list[Run]] = {mode: [] for mode in modes}
        for _ in range(args.runs):
            for checks in modes:
                runs[checks].append(simulate(args.seed, nodes, orders, checks))
        first = next(iter(runs.values()))[0]
        print()
        print(
            f"{nodes} nodes: {first.orders} trader actions, {first.trades} trades, "
            f"{first.crashes} crashes, {first.events:,} events, {first.messages:,} peer "
            f"messages, {first.virtual_ms / 1000:.1f} s virtual"
        )
        medians = {}
        for checks, done in runs.items():
            wall = statistics.median(r.wall_s for r in done)
            medians[checks] = wall
            label = "checks on:" if checks else "checks off:"
            print(
                f"  {label:<11} {first.messages / wall:>9,.0f} messages/s "
                f"(best {first.messages / min(r.wall_s for r in done):,.0f}, "
                f"worst {first.messages / max(r.wall_s for r in done):,.0f}), "
                f"{first.events / wall:>9,.0f} events/s, {first.orders / wall:>7,.1f} orders/s, "
                f"wall {wall:.2f} s median"
            )
            setup = statistics.median(r.setup_wall_s for r in done)
            trading = statistics.median(r.wall_s - r.setup_wall_s for r in done)
            print(
                f"  {'':<11} of which bond set-up {first.setup_messages:,} messages in "
                f"{setup:.2f} s ({first.setup_messages / setup:,.0f}/s), the rest "
                f"{first.messages - first.setup_messages:,} in {trading:.2f} s "
                f"({(first.messages - first.setup_messages) / trading:,.0f}/s)"
            )
        if len(medians) == 2:
            cost = medians[True] - medians[False]
            print(
                f"  checking: x{medians[True] / medians[False]:.1f} wall time, "
                f"{1e6 * cost / first.events:,.0f} us per event"
            )


# (label, file name, function name): cumulative time of each, as a share of the run.
PARTS = (
    ("set-up: nodes, genesis", "network.py", "__init__"),
    ("funding and bonds", "network.py", "fund"),
    ("simulator event loop (all events)", "network.py", "run"),
    ("  per-event invariant checks", "invariants.py", "after_event"),
    ("    node checks (ledger and book depth)", "invariants.py", "_check_node"),
    ("      ledger recomputation", "ledger.py", "check_invariants"),
    ("  node core inputs (all)", "node.py", "_apply_into"),
    ("    ledger postings", "ledger.py", "post"),
    ("    adverts built and sent", "resting.py", "advert"),
    ("    trade prints sent", "context.py", "print_trade"),
    ("    trade prints received", "network.py", "on_trade_print"),
    ("    heartbeats sent", "network.py", "heartbeat"),
    ("    heartbeats answered", "network.py", "on_heartbeat"),
    ("    lock ids and trade ids (blake2b)", "context.py", "random_id"),
    ("  network: send (rng draws, schedule)", "network.py", "_send"),
    ("  checker watching sends", "invariants.py", "watch"),
    ("  heap push", "~", "<built-in method _heapq.heappush>"),
    ("  heap pop", "~", "<built-in method _heapq.heappop>"),
    ("  snapshots taken (encoded)", "network.py", "_take_snapshot"),
    ("  restart: recovery, state hash", "network.py", "_restart"),
    ("final checks", "invariants.py", "final"),
)


def profile(args: argparse.Namespace) -> None:
    nodes, orders = args.profile
    checks = args.checks != "off"
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    run = simulate(args.seed, nodes, orders, checks)
    profiler.disable()
    wall = time.perf_counter() - start
    print()
    print(
        f"profile: {nodes} nodes, {orders} trader actions, checks {'on' if checks else 'off'}, "
        f"{run.events:,} events, {run.messages:,} messages; {wall:.1f} s under cProfile "
        f"({run.wall_s:.1f} s as timed inside)"
    )
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.strip_dirs().sort_stats(pstats.SortKey.TIME).print_stats(args.top)
    lines = stream.getvalue().splitlines()
    table = lines[next(i for i, line in enumerate(lines) if "ncalls" in line) :]
    print("\n".join(line for line in table if line.strip()))
    raw = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = max(
        [cum for (_, _, name), (_, _, _, cum, _) in raw.items() if name == "simulate"]
        + [sum(entry[2] for entry in raw.values())]
    )
    print()
    print(f"where the time goes (cumulative, share of {total:.1f} s profiled):")
    if compiled_modules():
        print("  (cProfile does not see into compiled modules: their parts are missing;")
        print("   DATN_PURE_PYTHON=1 installs show every part, slower)")
    for label, file_name, function in PARTS:
        calls, cumulative = 0, 0.0
        for (path, _, name), (_, ncalls, _, cum, _) in raw.items():
            if name == function and os.path.basename(path) == file_name:
                calls += ncalls
                cumulative += cum
        if calls:
            print(
                f"  {label:<40}{100 * cumulative / total:>6.1f} %  {cumulative:>7.2f} s"
                f"  {calls:>10,} calls"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=size,
        nargs="+",
        default=[(20, 2_000), (200, 2_000)],
        help="NODES:ORDERS pairs",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--checks", choices=("both", "on", "off"), default="both")
    parser.add_argument(
        "--no-checks",
        dest="checks",
        action="store_const",
        const="off",
        help="same as --checks off: per-event invariant checks off, profile included",
    )
    parser.add_argument("--profile", type=size, default=(20, 1_000), help="NODES:ORDERS")
    parser.add_argument("--top", type=int, default=25, help="functions shown in the profile")
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    print_conditions(args)
    measure(args)
    if not args.no_profile:
        profile(args)
    print(f"\ntotal wall time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
