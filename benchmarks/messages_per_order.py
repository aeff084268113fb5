"""Peer messages per order: broadcast to every peer versus targeted routing.

For each network size N, the deterministic simulator (datn.sim.network) runs
the same trader flow twice on a clean network (no loss, duplication,
reordering, partitions, crashes or skew; latency 1-5 ms): once with
``targeted_routing=False`` (an order is broadcast to all N-1 peers) and once
with ``targeted_routing=True`` (only to peers whose adverts show crossing
liquidity, plus peers whose adverts this node knows it missed). Both modes use
the same seed, so the same fund and the same flow generator; the generator
shares its random source with the network's latency draws, so the two order
streams have the same mix but are not identical order for order (the orders,
trades and cross-node trades of each run are printed to show that the runs did
comparable work).

A run: construct, fund, schedule ``orders`` trader actions over
``orders * 20`` ms of virtual time (50 per virtual second, as run_simulation
does), run them, heal, settle until no order is worked and no lock is open,
then the final checks (no lock left, every trade on both ledgers, conservation
per asset). The per-event invariant checker does not change what is sent, and
at N = 200 it costs minutes per run (see benchmarks/sim_speed.py), so it is off
by default; --checks turns it on.

Per N and mode, per accepted order:

* order-path messages (OrderBroadcast, PotentialTrades, Acceptance, Release,
  Confirmation, Refusal: the simulator's ``order_messages``) and each type;
* k, the average number of distinct peers that answered an order with at
  least one offer (holders with crossing liquidity), found by observing every
  PotentialTrades the simulator sends, grouped by request id;
* the order-path messages divided by 2k+2 (ask and answer each holder, one
  acceptance and one confirmation) and by 2(N-1) (ask and answer every peer);
* adverts and heartbeats, shown apart: an advert goes to every peer on each
  change of a resting order, and each node pings min(N-1, heartbeat_peers)
  peers per heartbeat period, round robin (each ping answered): 2N min(N-1,
  heartbeat_peers) messages per period however many orders there are. Per
  order they depend on the order rate.

Counts are exact for the seed; wall time per run is printed for information
only. Nothing here asserts a figure.

Usage: python benchmarks/messages_per_order.py [--sizes 2 5 10 50 200]
       [--orders 300] [--seed S] [--traders 2] [--checks]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import datn.book.book
from datn.protocol.clock import Now
from datn.protocol.effects import Effect, Send
from datn.protocol.messages import (
    Acceptance,
    Confirmation,
    NodeId,
    OrderBroadcast,
    PotentialTrades,
    Refusal,
    Release,
)
from datn.protocol.node import NodeCore
from datn.protocol.venue import OrderRequest
from datn.sim.network import Faults, Simulation

ORDER_TYPES = ("OrderBroadcast", "PotentialTrades", "Acceptance", "Release")
DECISION_TYPES = ("Confirmation", "Refusal")
MODES = ((False, "broadcast"), (True, "targeted"))


@dataclass
class Result:
    nodes: int
    mode: str
    orders: int
    requests: int
    rejected: int
    trades: int
    cross_node_trades: int
    order_messages: int
    messages: Counter[str]
    holders: float
    asked: float
    without_holder: float
    held_orders: int
    held_messages: int
    held_holders: int
    unattributed: int
    virtual_ms: int
    wall_s: float
    stats: Counter[str] = field(default_factory=Counter)
    true_k: list[int] = field(default_factory=list)

    def per_order(self, count: float) -> float:
        return count / self.orders if self.orders else 0.0


class Observer:
    """Records, per order, which peers were asked, which answered with offers,
    and how many order-path messages it caused.

    An order is its originator and request id. Broadcasts and answers carry
    the request id; acceptances, releases and decisions carry a lock id, which
    an answer's offer tied to its order.
    """

    def __init__(self) -> None:
        self.holders: defaultdict[tuple[NodeId, int], set[NodeId]] = defaultdict(set)
        self.asked: defaultdict[tuple[NodeId, int], set[NodeId]] = defaultdict(set)
        self.messages: Counter[tuple[NodeId, int]] = Counter()
        self.unattributed = 0
        self._lock_order: dict[tuple[NodeId, int], tuple[NodeId, int]] = {}

    def observe(self, sender: NodeId, effect: Send) -> None:
        message = effect.message
        if isinstance(message, OrderBroadcast):
            order = (sender, message.request_id)
            self.asked[order].add(effect.peer)
        elif isinstance(message, PotentialTrades):
            order = (effect.peer, message.request_id)
            if message.offers:
                self.holders[order].add(sender)
            for offer in message.offers:
                self._lock_order[(sender, offer.lock_id)] = order
        elif isinstance(message, Acceptance | Release):
            found = self._lock_order.get((effect.peer, message.lock_id))
            if found is None:
                self.unattributed += 1
                return
            order = found
        elif isinstance(message, Confirmation | Refusal):
            found = self._lock_order.get((sender, message.lock_id))
            if found is None:
                self.unattributed += 1
                return
            order = found
        else:
            return
        self.messages[order] += 1


class ObservedSimulation(Simulation):
    """The simulator, showing every message sent to an :class:`Observer`."""

    def __init__(self, observer: Observer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.observer = observer

    def _send(self, sender: NodeId, effect: Send) -> None:
        self.observer.observe(sender, effect)
        super()._send(sender, effect)


def run(nodes: int, targeted: bool, orders: int, seed: int, traders: int, checks: bool) -> Result:
    observer = Observer()
    crossing_holders: list[int] = []
    counting_core = crossing_counter(crossing_holders)
    sim = ObservedSimulation(
        observer,
        seed,
        nodes,
        traders=traders,
        faults=Faults(),
        targeted=targeted,
        honest=counting_core,
    )
    if not checks:
        sim.per_event_checks = False
    duration_ms = max(1_000, orders * 20)
    start = time.perf_counter()
    sim.fund()
    end_ms = sim.schedule_flow(orders, duration_ms)
    sim.run(until_ms=end_ms)
    sim.heal()
    sim.settle()
    sim.check_final()
    wall_s = time.perf_counter() - start
    stats: Counter[str] = Counter()
    for node in sim.nodes.values():
        stats.update(node.core.stats)
    accepted = stats["orders"]
    report = sim.report
    held = observer.holders
    return Result(
        nodes=nodes,
        mode="targeted" if targeted else "broadcast",
        orders=accepted,
        requests=report.orders,
        rejected=report.rejected,
        trades=report.trades,
        cross_node_trades=report.cross_node_trades,
        order_messages=report.order_messages,
        messages=Counter(report.messages),
        holders=sum(len(h) for h in observer.holders.values()) / max(accepted, 1),
        asked=sum(len(a) for a in observer.asked.values()) / max(accepted, 1),
        without_holder=1 - len(held) / max(accepted, 1),
        held_orders=len(held),
        held_messages=sum(observer.messages[order] for order in held),
        held_holders=sum(len(h) for h in held.values()),
        unattributed=observer.unattributed,
        virtual_ms=sim.time_ms,
        wall_s=wall_s,
        stats=stats,
        true_k=crossing_holders,
    )


def crossing_counter(counts: list[int]) -> type[NodeCore]:
    """A node core that records, for each order placed, how many other nodes
    had crossing unlocked liquidity in their books at that moment: the k of
    the 2k+2 target, whether or not the originator asked them.

    Every honest node runs the returned class; each core it builds joins the
    registry the counting reads (a clean network restarts no node)."""
    cores: dict[NodeId, NodeCore] = {}

    class CountingCore(NodeCore):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            cores[self.node_id] = self

        def place(self, request: OrderRequest, now: Now) -> list[Effect]:
            k = 0
            for other_id, other in cores.items():
                book = other.resting.books.get(request.product_id)
                if (
                    other_id != self.node_id
                    and book is not None
                    and book.lockable(request.side, request.price_ticks, 1)
                ):
                    k += 1
            counts.append(k)
            return super().place(request, now)

    return CountingCore


def print_conditions(args: argparse.Namespace) -> None:
    compiled = (datn.book.book.__file__ or "").endswith(".so")
    build = "mypyc-compiled book" if compiled else "pure-Python book"
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    config = Simulation(args.seed, 2, faults=Faults()).config
    print(f"datn {metadata.version('datn')}, {build}")
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.machine()}, {os.cpu_count()} cores, affinity {affinity}"
    )
    print(
        f"seed {args.seed}, {args.traders} traders per node, {args.orders} trader actions "
        f"per run over {max(1_000, args.orders * 20)} ms of virtual time "
        "(about 20 % of a trader's actions with resting orders are cancels, not orders)"
    )
    print(
        f"clean network: latency {Faults().latency_ms[0]}-{Faults().latency_ms[1]} ms, "
        "no loss, duplication, reordering, partitions, crashes or skew"
    )
    print(
        f"node config: lock TTL {config.lock_ttl_ms} ms, collection window "
        f"{config.collection_window_ms} ms, heartbeat every {config.heartbeat_ms} ms, "
        f"max {config.max_rounds} rounds"
    )
    checks = "on" if args.checks else "off (final checks only)"
    print(f"per-event invariant checks: {checks}")


def print_target(results: list[Result]) -> None:
    """The 2k+2 target, with k counted in the books when each order arrived."""
    print("\nThe target: order messages per order against 2k+2, k = other nodes whose books")
    print("held crossing unlocked liquidity when the order arrived (asked or not)")
    print(f"{'N':>4} {'mode':<10} {'mean k':>7} {'msgs/order':>11} {'mean 2k+2':>10} {'ratio':>7}")
    for r in results:
        if not r.true_k:
            continue
        mean_k = sum(r.true_k) / len(r.true_k)
        budget = sum(2 * k + 2 for k in r.true_k)
        per_order = r.order_messages / len(r.true_k)
        ratio = r.order_messages / budget
        print(
            f"{r.nodes:>4} {r.mode:<10} {mean_k:>7.2f} {per_order:>11.2f} "
            f"{budget / len(r.true_k):>10.2f} {ratio:>7.2f}"
        )


def print_results(results: list[Result]) -> None:
    print()
    print("Order path, messages per accepted order")
    print("  placed: orders sent to nodes; rej: rejected by risk checks; orders: accepted")
    print(
        f"{'N':>4} {'mode':<10}{'placed':>7}{'rej':>5}{'orders':>7}{'trades':>7}{'x-node':>7}"
        f"{'order msgs':>11}{'bcast':>8}{'answers':>8}{'accept':>7}{'release':>8}"
        f"{'conf+ref':>9}"
    )
    for r in results:
        m = r.messages
        decisions = sum(m[t] for t in DECISION_TYPES)
        print(
            f"{r.nodes:>4} {r.mode:<10}{r.requests:>7}{r.rejected:>5}{r.orders:>7}"
            f"{r.trades:>7}{r.cross_node_trades:>7}"
            f"{r.per_order(r.order_messages):>11.2f}"
            + "".join(
                f"{r.per_order(m[t]):>{w}.2f}"
                for t, w in zip(ORDER_TYPES, (8, 8, 7, 8), strict=True)
            )
            + f"{r.per_order(decisions):>9.2f}"
        )
    print()
    print("Holders and the models")
    print("  asked: peers sent the order; k: peers that answered it with at least one offer;")
    print("  'with k>=1': only orders with a remote holder, their own messages (acceptances,")
    print("  releases and decisions tied to an order by its offers' lock ids)")
    print(
        f"{'N':>4} {'mode':<10}{'asked':>7}{'k':>6}{'k=0':>6}{'/(2k+2)':>8}{'/2(N-1)':>8}"
        f"{'| k>=1:':>8}{'orders':>7}{'k':>6}{'msgs':>7}{'/(2k+2)':>8}"
    )
    for r in results:
        per_order = r.per_order(r.order_messages)
        held_k = r.held_holders / max(r.held_orders, 1)
        held_msgs = r.held_messages / max(r.held_orders, 1)
        print(
            f"{r.nodes:>4} {r.mode:<10}{r.asked:>7.2f}{r.holders:>6.2f}"
            f"{100 * r.without_holder:>5.0f}%"
            f"{per_order / (2 * r.holders + 2):>8.2f}{per_order / (2 * (r.nodes - 1)):>8.2f}"
            f"{'':>8}{r.held_orders:>7}{held_k:>6.2f}{held_msgs:>7.2f}"
            f"{r.held_messages / max(2 * r.held_holders + 2 * r.held_orders, 1):>8.2f}"
        )
    print()
    print("Beside the order path, per accepted order, and run times")
    print(
        f"{'N':>4} {'mode':<10}{'adverts':>9}{'heartbts':>9}{'all msgs':>9}"
        f"{'virt s':>7}{'wall s':>7}"
    )
    for r in results:
        m = r.messages
        print(
            f"{r.nodes:>4} {r.mode:<10}"
            f"{r.per_order(m['Advert']):>9.1f}{r.per_order(m['Heartbeat']):>9.1f}"
            f"{r.per_order(sum(m.values())):>9.1f}"
            f"{r.virtual_ms / 1000:>7.1f}{r.wall_s:>7.1f}"
        )
    print()
    print("Per N: targeted against broadcast, and the traffic that does not scale with orders")
    heartbeat_peers = Simulation(0, 2, faults=Faults()).config.heartbeat_peers
    by_size: dict[int, dict[str, Result]] = defaultdict(dict)
    for r in results:
        by_size[r.nodes][r.mode] = r
    for nodes, pair in by_size.items():
        print(f"N={nodes}:")
        if len(pair) == 2:
            b, t = pair["broadcast"], pair["targeted"]
            order_ratio = t.per_order(t.order_messages) / b.per_order(b.order_messages)
            with_adverts = t.per_order(t.order_messages + t.messages["Advert"]) / b.per_order(
                b.order_messages + b.messages["Advert"]
            )
            print(
                f"  targeted / broadcast: order path x{order_ratio:.2f}, "
                f"order path + adverts x{with_adverts:.2f}"
            )
        probed = min(nodes - 1, heartbeat_peers)
        period = 2 * nodes * probed
        for r in pair.values():
            changes = r.stats["adverts"] // max(nodes - 1, 1)
            print(
                f"  {r.mode}: {r.messages['Heartbeat']} heartbeats = 2N x {probed} = {period} x "
                f"{r.messages['Heartbeat'] / period:.1f} periods; {changes} advertised book "
                f"changes x {nodes - 1} peers = {r.messages['Advert']} adverts; "
                f"{r.unattributed} order-path messages not tied to an order"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 5, 10, 50, 200])
    parser.add_argument("--orders", type=int, default=300, help="trader actions per run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--traders", type=int, default=2, help="traders per node")
    parser.add_argument(
        "--checks", action="store_true", help="check invariants after every event (slow)"
    )
    args = parser.parse_args()
    print_conditions(args)
    results = []
    started = time.perf_counter()
    for nodes in args.sizes:
        for targeted, _ in MODES:
            results.append(run(nodes, targeted, args.orders, args.seed, args.traders, args.checks))
    print_results(results)
    print_target(results)
    print(f"\ntotal wall time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
