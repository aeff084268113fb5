"""Honest trades kept against adversarial nodes, side by side.

For each strategy of datn.sim.adversaries (every one in ``STRATEGIES``
unless ``--strategies`` names some) and each seed, the deterministic
simulator runs the same seed twice: once with the last ``--adversaries``
node(s) playing the strategy and once with the same node ids running the
plain NodeCore. Each run goes through every phase with every invariant
checked after every event: fund and post bonds, ``orders`` trader actions
over ``max(1000, orders * 20)`` ms of virtual time, heal, settle, final
checks. The strategy plays from when it is ready (for most, when its bonds
are booked) until the trader flow ends; both runs use the configuration the
strategy asks of the network (the defaulter's shortens the settlement
deadline so that its defaults fall within the run).

The network is clean (latency 1-5 ms, no loss, duplication, reordering,
partitions, crashes or skew) unless ``--faults``, which derives a fault mix
from each seed as ``datn sim`` does. The trader flow draws from a random
source of its own, one seed per order, and so do the latency and faults of
messages to or from adversary nodes, so both runs of a seed see the same
orders and honest messages meet the same fates until the strategy makes an
honest node act differently; from there the runs diverge (a single seed's
count moves by several per cent either way), hence the sums over seeds.

Per strategy:

* honest executions: Executed events at honest nodes against honest nodes or
  local trades, with the adversary and without, summed over the seeds, their
  ratio, and the same in lots; per seed on request (``--per-seed``);
* quota: the most locks and lock notional any honest holder held open for an
  adversary node at once, checked after every event, against the full quota
  its bond allows (``lock_quota(bond_held, 1000, config.clearing.quota)``),
  with the number of events that found more open (breaches); and the
  smallest quota, acceptance ratio counted, an honest holder allowed it when
  the flow ended;
* what honest holders did for adversary nodes: locks offered and how they
  ended, why answers offered less than asked (``PotentialTrades.limited``),
  their decisions on its acceptances; the ``limited:`` counters of all honest
  holders; copies of messages honest nodes had already received from an
  adversary and whether any changed their ledger, books, locks, decisions,
  worked orders or unsettled trades; inert nonsense delivered and whether
  any changed an honest node; the violations honest nodes recorded; the
  counters of honest defences at work.

A strategy against which a run breaks an invariant is reported as such, with
the seed and the error, and the sweep goes on. The last lines are a table:
per strategy, honest executions with and without it over all seeds, and the
share kept (the target is at least 95 %).

``--quota NAME=VALUE`` (repeatable) sets a QuotaConfig field for every node
of both runs, to see what a different default would do, e.g.
``--quota ratio_floor_permille=10 --quota ratio_min_offered_minor=0``.

Wall time per strategy is printed for information only. Nothing here asserts
a figure.

Usage: python benchmarks/adversaries.py [--first-seed 1] [--seeds 10]
       [--nodes 6] [--orders 300] [--adversaries 1]
       [--strategies NAME ...] [--faults]
       [--quota NAME=VALUE ...] [--per-seed] [--jobs 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from importlib import metadata

import datn.book.book
from datn.clearing.config import ClearingConfig
from datn.clearing.quota import QuotaConfig
from datn.protocol.node import NodeConfig
from datn.risk import RiskConfig
from datn.sim.adversaries import (
    STRATEGIES,
    Comparison,
    compare,
    default_adversaries,
    flow_duration_ms,
    kept,
    summary,
)
from datn.sim.invariants import InvariantError
from datn.sim.network import PRODUCTS, Faults

TARGET: float = 0.95
"""The share of honest executions an adversary must leave honest nodes."""


def node_config(quota: dict[str, int]) -> NodeConfig:
    risk = RiskConfig(listed_products=frozenset(spec.product_id for spec, _ in PRODUCTS))
    return NodeConfig(risk, clearing=ClearingConfig(quota=QuotaConfig(**quota)))


def one(args: tuple[str, int, int, int, int, bool, dict[str, int]]) -> Comparison | str:
    """One comparison, or the invariant it broke."""
    strategy, seed, nodes, orders, count, faults, quota = args
    ids = default_adversaries(nodes, count)
    try:
        return compare(
            seed,
            nodes,
            orders,
            strategy,
            ids,
            faults=None if faults else Faults.none(),
            config=node_config(quota),
        )
    except InvariantError as error:
        return str(error)


def parse_quota(items: list[str]) -> dict[str, int]:
    names = {f.name for f in dataclasses.fields(QuotaConfig)}
    quota: dict[str, int] = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in names or not value.lstrip("-").isdigit():
            raise SystemExit(f"--quota {item}: expected NAME=INTEGER, NAME one of {sorted(names)}")
        quota[name] = int(value)
    return quota


def print_conditions(args: argparse.Namespace, quota: dict[str, int]) -> None:
    compiled = (datn.book.book.__file__ or "").endswith(".so")
    build = "mypyc-compiled book" if compiled else "pure-Python book"
    print(f"datn {metadata.version('datn')}, {build}")
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.machine()}, {os.cpu_count()} cores, {args.jobs} processes"
    )
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    print(
        f"seeds {seeds.start}..{seeds.stop - 1}, {args.nodes} nodes, "
        f"{args.orders} orders over {flow_duration_ms(args.orders)} ms of virtual time, "
        f"adversaries {', '.join(default_adversaries(args.nodes, args.adversaries))}"
    )
    print(
        "network: " + ("faults derived from each seed" if args.faults else "clean (latency 1-5 ms)")
    )
    config = node_config(quota)
    print(
        f"node config: lock TTL {config.lock_ttl_ms} ms, collection window "
        f"{config.collection_window_ms} ms, acceptance margin {config.acceptance_margin_ms} ms"
    )
    print(f"quota: {config.clearing.quota}" + (f" (changed: {quota})" if quota else " (defaults)"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=10, help="how many seeds, from --first-seed")
    parser.add_argument("--nodes", type=int, default=6)
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--adversaries", type=int, default=1)
    parser.add_argument(
        "--strategies", nargs="+", choices=sorted(STRATEGIES), default=sorted(STRATEGIES)
    )
    parser.add_argument("--faults", action="store_true", help="faults derived from each seed")
    parser.add_argument("--quota", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--per-seed", action="store_true", help="print each seed's counts")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    quota = parse_quota(args.quota)
    print_conditions(args, quota)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    table: list[tuple[str, int, int, int, int, int]] = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for strategy in args.strategies:
            started = time.perf_counter()
            work = [
                (strategy, seed, args.nodes, args.orders, args.adversaries, args.faults, quota)
                for seed in seeds
            ]
            results = list(pool.map(one, work))
            elapsed = time.perf_counter() - started
            comparisons = [r for r in results if isinstance(r, Comparison)]
            broken = [r for r in results if isinstance(r, str)]
            print()
            lines = summary(comparisons) or [f"{strategy}: no run kept every invariant"]
            if not args.per_seed:
                lines = [line for line in lines if not line.startswith("    per seed")]
            for line in lines:
                print(line)
            for error in broken:
                print(f"  INVARIANT BROKEN: {error}")
            print(f"  wall time {elapsed:.1f} s for {2 * len(results)} runs")
            on = sum(c.on.honest_executions for c in comparisons)
            off = sum(c.off.honest_executions for c in comparisons)
            lots_on = sum(c.on.honest_lots for c in comparisons)
            lots_off = sum(c.off.honest_lots for c in comparisons)
            table.append((strategy, on, off, lots_on, lots_off, len(broken)))
    print_table(table)


def print_table(table: list[tuple[str, int, int, int, int, int]]) -> None:
    """Honest executions and lots with and without each strategy, over the
    seeds that kept every invariant."""
    print()
    print(
        f"{'strategy':<15}{'executions with':>16}{'without':>9}{'kept':>8}"
        f"{'lots with':>11}{'without':>9}{'kept':>8}  note"
    )
    for strategy, on, off, lots_on, lots_off, broken in table:
        share = f"{kept(on, off):.1%}" if off else "-"
        lots_share = f"{kept(lots_on, lots_off):.1%}" if lots_off else "-"
        note = "" if not off or kept(on, off) >= TARGET else f"below the {TARGET:.0%} target"
        if broken:
            note = f"{broken} seed(s) broke an invariant (not counted); {note}".rstrip("; ")
        print(
            f"{strategy:<15}{on:>16}{off:>9}{share:>8}{lots_on:>11}{lots_off:>9}{lots_share:>8}"
            f"  {note}"
        )


if __name__ == "__main__":
    main()
