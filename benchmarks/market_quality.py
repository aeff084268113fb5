"""Market quality: fragmented venues, datn and a central exchange, on one flow.

The same seeded trader population and the same orders, at the same virtual
times, are replayed in each world (datn.sim.market_quality, on the same node
core as a real node):

* central: one node holding every trader (a single exchange);
* fragmented: N nodes that never link (N separate venues);
* datn: the N nodes linked, bonded with each other, targeted routing, every
  fault off, 1-5 ms a message;
* datn-wan: the same with a wide-area latency (5-40 ms a message, each way,
  uniform; --wan changes it).

The population depends on the seed and the flow's size only (``--traders``,
``--orders``, ``--duration-s``), not on N: traders are spread over the N
nodes in turn. Figures per world, each defined in the module docstring of
datn.sim.market_quality: fill rate (of the lots each order filled in the
central world, the share it filled here), volume (lots filled over the
central world's), surplus against the traders' valuations, effective spread
against the consolidated mid, dispersion of the latest trade prices across
home nodes, time the market is crossed across venues, trade-throughs (with
fills whose better order was in flight counted apart), the profit an
arbitrageur with an account at every venue could lock in, and peer messages
per order. Each figure is the mean over the seeds.

The target, at N = 10 with the WAN latency: datn's fill rate and surplus
within 5 % of the central exchange's, its arbitrage profit and crossed time
at least 10 times smaller than the fragmented venues'. The script prints
whether each part holds, and where datn falls short: trade-throughs (and
how many filled at the taker's own node), offers that reached their
originator after its round closed (the collection window), and what held
holders' offers back.

Nothing here asserts a figure. ``--chart PATH`` draws the main figures side
by side (matplotlib, a benchmark extra: ``make market-quality`` installs it
and regenerates benchmarks/market_quality.png); ``--json PATH`` writes every
run's figures.

Usage: python benchmarks/market_quality.py [--seeds 1 2 3 4 5]
       [--nodes 3 10 50] [--traders 150] [--orders 1800] [--duration-s 60]
       [--wan 5 40] [--json PATH] [--chart PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import datn.book.book
import datn.protocol.node
import datn.sim.network
from datn.sim import market_quality as mq
from datn.sim.market_quality import FlowSpec, World, WorldFigures

WORLDS = ("central", "fragmented", "datn", "datn-wan")
TARGET_NODES = 10
COLOURS = {
    "central": "#4d4d4d",
    "fragmented": "#d95f02",
    "datn": "#1b9e77",
    "datn-wan": "#7570b3",
}
Runs = dict[int, dict[str, list[WorldFigures]]]
"""Figures by N, then world, one per seed."""


# ================================================================== runs


def measure(args: argparse.Namespace, flow: FlowSpec) -> Runs:
    runs: Runs = defaultdict(lambda: defaultdict(list))
    wan = (args.wan[0], args.wan[1])
    for nodes in args.nodes:
        for seed in args.seeds:
            started = time.perf_counter()
            for name, figures in mq.compare(seed, nodes, flow, wan).items():
                runs[nodes][name].append(figures)
            print(f"  N={nodes} seed {seed}: {time.perf_counter() - started:.1f} s", flush=True)
    return runs


def same_orders(runs: Runs) -> list[str]:
    """Problems, if any world did not receive every order of its seed."""
    problems = []
    for nodes, by_world in runs.items():
        for i, central in enumerate(by_world["central"]):
            for name in WORLDS:
                other = by_world[name][i]
                if other.client_order_ids != central.client_order_ids:
                    problems.append(f"N={nodes} seed {central.seed}: {name} got other orders")
                if other.accepted != central.accepted or other.rejected:
                    problems.append(
                        f"N={nodes} seed {central.seed}: {name} accepted {other.accepted}, "
                        f"rejected {dict(other.rejected)}"
                    )
    return problems


# =============================================================== figures

Figure = Callable[[WorldFigures, WorldFigures], float]
"""A figure of a world, given also the central world of the same seed."""

COLUMNS: list[tuple[str, str, Figure]] = [
    ("fill", "{:>6.1%}", mq.fill_rate),
    ("volume", "{:>7.1%}", mq.volume_ratio),
    ("surplus $", "{:>10,.0f}", lambda f, c: f.surplus_minor / 100),
    ("of ctrl", "{:>8.1%}", lambda f, c: f.surplus_minor / c.surplus_minor),
    ("eff sprd", "{:>9.1f}", lambda f, c: f.effective_spread_bps),
    ("disp", "{:>6.1f}", lambda f, c: f.dispersion_bps),
    ("crossed", "{:>8.2f}", lambda f, c: f.crossed_pct),
    ("t-thru", "{:>7.1f}", lambda f, c: f.trade_through_pct),
    ("in flt", "{:>7.1f}", lambda f, c: f.in_flight_pct),
    ("arb $", "{:>8.2f}", lambda f, c: f.arbitrage_minor / 100),
    ("ord msg", "{:>8.2f}", lambda f, c: f.order_messages_per_order),
    ("all msg", "{:>8.1f}", lambda f, c: f.messages_per_order),
]


def mean_of(by_world: dict[str, list[WorldFigures]], name: str, figure: Figure) -> float:
    central = by_world["central"]
    return statistics.fmean(figure(f, c) for f, c in zip(by_world[name], central, strict=True))


def print_table(runs: Runs) -> None:
    print()
    print("Figures per world, means over the seeds")
    print("  fill: of the lots each order filled in the central world, the share it filled;")
    print("  volume: lots filled over the central world's; surplus against the traders'")
    print("  valuations (of ctrl: over the central world's); eff sprd: effective spread, bps")
    print("  of the consolidated mid; disp: range of the home nodes' latest trade prices, bps;")
    print("  crossed: % of the time a bid at one venue is above an ask at another; t-thru: %")
    print("  of taken lots filled worse than a standing better order elsewhere (in flt: one")
    print("  that was in flight, apart); arb $: what an arbitrageur at every venue could lock")
    print("  in; ord msg / all msg: order-path / all peer messages per order")
    header = f"{'N':>3} {'world':<11}" + "".join(
        f"{title:>{len(fmt.format(0.0))}}" for title, fmt, _ in COLUMNS
    )
    for nodes, by_world in runs.items():
        print()
        print(header)
        for name in WORLDS:
            cells = "".join(fmt.format(mean_of(by_world, name, fig)) for _, fmt, fig in COLUMNS)
            print(f"{nodes:>3} {name:<11}{cells}")


Pooled = Callable[[Sequence[WorldFigures], Sequence[WorldFigures], Sequence[WorldFigures]], float]
"""A figure over runs of several seeds taken together: central, fragmented, datn-wan."""


def _fill(central: Sequence[WorldFigures], _: object, wan: Sequence[WorldFigures]) -> float:
    could = [sum(c.filled_by_order.values()) for c in central]
    filled = sum(mq.fill_rate(w, c) * lots for w, c, lots in zip(wan, central, could, strict=True))
    return filled / sum(could)


def _surplus(central: Sequence[WorldFigures], _: object, wan: Sequence[WorldFigures]) -> float:
    return sum(w.surplus_minor for w in wan) / sum(c.surplus_minor for c in central)


def _arbitrage(_: object, fragmented: Sequence[WorldFigures], wan: Sequence[WorldFigures]) -> float:
    return _ratio(sum(f.arbitrage_minor for f in fragmented), sum(w.arbitrage_minor for w in wan))


def _crossed(_: object, fragmented: Sequence[WorldFigures], wan: Sequence[WorldFigures]) -> float:
    return _ratio(sum(f.crossed_moments for f in fragmented), sum(w.crossed_moments for w in wan))


TARGET: list[tuple[str, Pooled, float]] = [
    # each part holds when its figure is at least the bound
    ("fill rate / central's", _fill, 0.95),
    ("surplus / central's", _surplus, 0.95),
    ("fragmented's arbitrage profit / datn's", _arbitrage, 10.0),
    ("fragmented's crossed time / datn's", _crossed, 10.0),
]


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.inf


def print_target(runs: Runs) -> None:
    by_world = runs.get(TARGET_NODES)
    if by_world is None:
        return
    worlds = (by_world["central"], by_world["fragmented"], by_world["datn-wan"])
    seeds = len(worlds[0])
    print()
    print(f"The target at N = {TARGET_NODES}, datn with the WAN latency (pooled over the seeds,")
    print("and per seed)")
    for what, figure, bound in TARGET:
        pooled = figure(*worlds)
        values = [figure(*([w[i]] for w in worlds)) for i in range(seeds)]
        held = sum(1 for v in values if v >= bound)
        shown = ", ".join(f"{v:.3g}" for v in values)
        print(
            f"  {what:<39} {pooled:>6.3g} (need >= {bound:g}): "
            f"{'met' if pooled >= bound else 'NOT met'}; per seed {shown} "
            f"({held} of {seeds} seeds)"
        )


def print_diagnosis(runs: Runs) -> None:
    """Where the linked worlds lose against the central exchange."""
    print()
    print("Where datn loses, summed over the seeds")
    for nodes, by_world in runs.items():
        for name in ("datn", "datn-wan"):
            print(f"  N={nodes} {name}:")
            for line in describe_losses(by_world[name]):
                print(f"    {line}")


def describe_losses(figures: Sequence[WorldFigures]) -> list[str]:
    """Trade-throughs by where the fill came from, offers that came too late,
    and what else held liquidity back."""
    taken = sum(f.taken_lots for f in figures)
    through = sum(f.traded_through_lots for f in figures)
    local = sum(f.traded_through_local_lots for f in figures)
    late = sum(f.late_answers for f in figures)
    late_lots = sum(f.late_offered_lots for f in figures)
    limited: Counter[str] = Counter()
    stats: Counter[str] = Counter()
    for f in figures:
        limited.update(f.limited)
        stats.update(f.node_stats)
    return [
        f"traded through: {through:,} of {taken:,} taken lots, {local:,} of them filled at "
        "the taker's own node",
        f"answers with offers that reached their originator after its round closed: {late:,} "
        f"({late_lots:,} lots offered)",
        f"holders' answers limited by: {dict(limited) or 'nothing'}; locks expired "
        f"{stats['locks_expired']}, refusals {stats['refusals']}, acceptances over bond "
        f"{stats['acceptances_over_bond']}, broadcasts {stats['broadcasts']:,} for "
        f"{stats['orders']:,} orders",
    ]


# ============================================================ conditions


def print_conditions(args: argparse.Namespace, flow: FlowSpec) -> None:
    compiled = [
        m.__name__
        for m in (datn.book.book, datn.protocol.node, datn.sim.network)
        if (m.__file__ or "").endswith(".so")
    ]
    build = f"mypyc-compiled ({', '.join(compiled)})" if compiled else "pure Python"
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    config = World("datn", 2, 2, linked=True).config()
    print(f"datn {metadata.version('datn')}, {build}")
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.machine()}, {os.cpu_count()} cores, affinity {affinity}"
    )
    print(f"seeds {' '.join(map(str, args.seeds))}; N {' '.join(map(str, args.nodes))}")
    products = ", ".join(f"{s.symbol} at {p} ticks" for s, p in datn.sim.network.PRODUCTS)
    print(
        f"population: {flow.traders} traders spread over the N nodes in turn, about "
        f"{flow.orders} orders over {flow.duration_ms / 1000:g} s of virtual time, "
        f"{len(datn.sim.network.PRODUCTS)} products ({products})"
    )
    print(
        f"  common value: +-{mq.VALUE_STEP_BPS} bps or still every {mq.VALUE_STEP_MS} ms; "
        f"trader bias +-{mq.BIAS_BPS} bps; private gain 0-{mq.PRIVATE_BPS} bps; GTC limits "
        f"shaded 0-{mq.SHADE_BPS} bps from the valuation"
    )
    print(
        f"  orders: {100 - mq.MARKET_PCT - mq.IOC_PCT - mq.FOK_PCT} % GTC limits, "
        f"{mq.IOC_PCT} % IOC and {mq.FOK_PCT} % FOK limits at the valuation, {mq.MARKET_PCT} % "
        f"market IOC; {'/'.join(map(str, mq.QUANTITIES_LOTS))} lots; each arrival first "
        "cancels the trader's resting orders in its product"
    )
    print(
        f"latency: datn {mq.LAN_LATENCY_MS[0]}-{mq.LAN_LATENCY_MS[1]} ms, datn-wan "
        f"{args.wan[0]}-{args.wan[1]} ms a message, uniform, each message drawn on its own; "
        "no loss, duplication, reordering, partitions, crashes or skew"
    )
    print(
        f"node config: lock TTL {config.lock_ttl_ms} ms, collection window "
        f"{config.collection_window_ms} ms (at least the peers' round-trip budget, srtt"
        " + 4 rttvar, + "
        f"{config.acceptance_margin_ms} ms, at most TTL/2), max {config.max_rounds} rounds, "
        f"targeted routing, heartbeat every {config.heartbeat_ms} ms"
    )
    print(
        f"sampling every {flow.sample_ms} ms of the flow; dispersion over trades of the last "
        f"{flow.dispersion_window_ms} ms; per-event invariant checks off, final checks on"
    )


# ================================================================= chart


PANELS: list[tuple[str, Figure, bool, float | None]] = [
    # title, figure, log scale, the target's line (N = 10, datn-wan)
    ("Fill rate (% of central)", lambda f, c: 100 * mq.fill_rate(f, c), False, 95.0),
    (
        "Traders' surplus (% of central)",
        lambda f, c: 100 * f.surplus_minor / c.surplus_minor,
        False,
        95.0,
    ),
    (
        "Effective spread (bps of the consolidated mid)",
        lambda f, c: f.effective_spread_bps,
        False,
        None,
    ),
    ("Time the market is crossed (%, log scale)", lambda f, c: f.crossed_pct, True, None),
    (
        "Arbitrage profit available ($, log scale)",
        lambda f, c: f.arbitrage_minor / 100,
        True,
        None,
    ),
    ("Trade-throughs (% of taken lots)", lambda f, c: f.trade_through_pct, False, None),
]


def draw_chart(runs: Runs, path: Path, args: argparse.Namespace, flow: FlowSpec) -> None:
    import matplotlib  # noqa: PLC0415 (a benchmark extra, loaded only for --chart)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    sizes = list(runs)
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.8))
    for ax, panel in zip(axes.flat, PANELS, strict=True):
        draw_panel(ax, panel, runs, sizes)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(WORLDS), bbox_to_anchor=(0.5, 0.95))
    fig.suptitle(
        f"One order flow ({flow.traders} traders, about {flow.orders} orders over "
        f"{flow.duration_ms / 1000:g} s of virtual time) in three worlds, datn at two latencies "
        f"({mq.LAN_LATENCY_MS[0]}-{mq.LAN_LATENCY_MS[1]} ms and {args.wan[0]}-{args.wan[1]} ms "
        f"a message); means of seeds {' '.join(map(str, args.seeds))}",
        fontsize=11,
    )
    fig.text(
        0.5,
        0.01,
        "python benchmarks/market_quality.py --chart benchmarks/market_quality.png "
        "(make market-quality); every figure is defined in datn.sim.market_quality",
        ha="center",
        fontsize=8,
        color="#555555",
    )
    fig.tight_layout(rect=(0, 0.03, 1, 0.92))
    fig.savefig(path, dpi=110)
    print(f"\nchart written to {path}")


def draw_panel(
    ax: Any, panel: tuple[str, Figure, bool, float | None], runs: Runs, sizes: list[int]
) -> None:
    """Bars by N, one per world; on a log scale a zero is written, not drawn."""
    title, figure, log, target = panel
    width = 0.8 / len(WORLDS)
    values = {name: [mean_of(runs[n], name, figure) for n in sizes] for name in WORLDS}
    positive = [v for vs in values.values() for v in vs if v > 0]
    floor = 10 ** (math.floor(math.log10(min(positive))) - 1) if log and positive else 0.0
    for w, name in enumerate(WORLDS):
        xs = [i + (w - (len(WORLDS) - 1) / 2) * width for i in range(len(sizes))]
        heights = [v if v > 0 or not log else math.nan for v in values[name]]
        bars = ax.bar(xs, heights, width, label=name, color=COLOURS[name])
        ax.bar_label(bars, labels=[_short(v) for v in values[name]], fontsize=7, padding=1)
        for x, v in zip(xs, values[name], strict=True):
            if log and v <= 0:
                ax.text(x, floor, "0", ha="center", va="bottom", fontsize=7)
    if target is not None:
        ax.axhline(target, color="#999999", linestyle="--", linewidth=0.8)
        title = f"{title}\ndashed: the target for datn-wan at N = {TARGET_NODES}, {target:g} %"
    ax.set_title(title, fontsize=10)
    ax.set_xticks(range(len(sizes)), [f"N = {n}" for n in sizes])
    ax.set_xlim(-0.5, len(sizes) - 0.5)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(floor, 5 * max(positive, default=1.0))
    ax.margins(y=0.15)


def _short(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2g}"


# ================================================================== json


def write_json(runs: Runs, path: Path, args: argparse.Namespace, flow: FlowSpec) -> None:
    records: list[dict[str, Any]] = []
    for nodes, by_world in runs.items():
        for name, figures in by_world.items():
            for f, c in zip(figures, by_world["central"], strict=True):
                records.append(
                    {
                        "nodes": nodes,
                        "world": name,
                        "seed": f.seed,
                        "orders": f.orders,
                        "fill_rate": mq.fill_rate(f, c),
                        "volume_ratio": mq.volume_ratio(f, c),
                        "filled_lots": f.filled_lots,
                        "surplus_minor": f.surplus_minor,
                        "effective_spread_bps": f.effective_spread_bps,
                        "dispersion_bps": f.dispersion_bps,
                        "crossed_pct": f.crossed_pct,
                        "trade_through_pct": f.trade_through_pct,
                        "in_flight_pct": f.in_flight_pct,
                        "arbitrage_minor": f.arbitrage_minor,
                        "order_messages_per_order": f.order_messages_per_order,
                        "messages_per_order": f.messages_per_order,
                        "late_answers": f.late_answers,
                        "traded_through_local_lots": f.traded_through_local_lots,
                        "limited": dict(f.limited),
                    }
                )
    conditions = {
        "seeds": args.seeds,
        "nodes": args.nodes,
        "traders": flow.traders,
        "orders": flow.orders,
        "duration_ms": flow.duration_ms,
        "lan_latency_ms": list(mq.LAN_LATENCY_MS),
        "wan_latency_ms": list(args.wan),
        "python": platform.python_version(),
        "datn": metadata.version("datn"),
    }
    path.write_text(json.dumps({"conditions": conditions, "runs": records}, indent=1))
    print(f"figures written to {path}")


# ================================================================== main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 10, 50])
    parser.add_argument("--traders", type=int, default=150, help="traders in all")
    parser.add_argument("--orders", type=int, default=1_800, help="orders expected in all")
    parser.add_argument("--duration-s", type=int, default=60, help="virtual seconds of flow")
    parser.add_argument("--wan", type=int, nargs=2, default=list(mq.WAN_LATENCY_MS))
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    parser.add_argument("--chart", type=Path, help="draw the chart here (PNG)")
    args = parser.parse_args()
    if any(args.traders < n for n in args.nodes):
        parser.error("every node needs a trader: --traders must be at least the largest N")
    flow = FlowSpec(args.traders, args.orders, args.duration_s * 1_000)
    started = time.perf_counter()
    print_conditions(args, flow)
    print()
    runs = measure(args, flow)
    problems = same_orders(runs)
    orders = statistics.fmean(f.orders for f in runs[args.nodes[0]]["central"])
    print(
        f"\nevery world received the same orders (mean {orders:.0f} per seed), "
        "all accepted, none rejected"
        if not problems
        else "\n" + "\n".join(problems)
    )
    print_table(runs)
    print_target(runs)
    print_diagnosis(runs)
    if args.json:
        write_json(runs, args.json, args, flow)
    if args.chart:
        draw_chart(runs, args.chart, args, flow)
    print(f"\ntotal wall time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
