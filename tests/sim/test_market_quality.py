"""Market quality in the simulator: the same orders reach more liquidity
through datn than through fragmented venues, and no more than through a
central exchange (a small version of benchmarks/market_quality.py)."""

from __future__ import annotations

import pytest

from datn.protocol.clock import Now
from datn.protocol.messages import NodeId
from datn.protocol.node import NodeCore
from datn.protocol.originator import Originator, Working
from datn.sim.market_quality import (
    WAN_LATENCY_MS,
    FlowSpec,
    World,
    WorldFigures,
    compare,
    fill_rate,
    make_population,
    run_world,
    worlds,
)

SEED = 1
NODES = 3
FLOW = FlowSpec(traders=30, orders=300, duration_ms=12_000)
LINKED = ("datn", "datn-wan")


@pytest.fixture(scope="module")
def figures() -> dict[str, WorldFigures]:
    return compare(SEED, NODES, FLOW)


def reach_problems(
    central: WorldFigures, fragmented: WorldFigures, linked: WorldFigures
) -> list[str]:
    """What breaks central >= linked > fragmented on fill rate, or linked's
    arbitrage profit below fragmented's."""
    problems = []
    rates = [fill_rate(f, central) for f in (central, linked, fragmented)]
    if not rates[0] >= rates[1] > rates[2]:
        problems.append(f"fill rates central, {linked.world}, fragmented: {rates}")
    if not linked.arbitrage_minor < fragmented.arbitrage_minor:
        problems.append(
            f"arbitrage {linked.world} {linked.arbitrage_minor} against fragmented "
            f"{fragmented.arbitrage_minor}"
        )
    return problems


def test_every_world_receives_the_same_orders(figures: dict[str, WorldFigures]) -> None:
    central = figures["central"]
    assert len(central.client_order_ids) > 200
    for world in figures.values():
        assert world.client_order_ids == central.client_order_ids
        assert world.accepted == len(central.client_order_ids)
        assert not world.rejected


@pytest.mark.parametrize("linked", LINKED)
def test_datn_reaches_liquidity_that_fragmented_venues_cannot(
    figures: dict[str, WorldFigures], linked: str
) -> None:
    replay = f"replay: python benchmarks/market_quality.py --seeds {SEED} --nodes {NODES}"
    problems = reach_problems(figures["central"], figures["fragmented"], figures[linked])
    assert not problems, f"{problems}; {replay}"
    assert figures[linked].surplus_minor > figures["fragmented"].surplus_minor


def test_only_linked_nodes_send_peer_messages(figures: dict[str, WorldFigures]) -> None:
    assert figures["central"].messages == figures["fragmented"].messages == 0
    for linked in LINKED:
        assert figures[linked].order_messages > 0


def test_the_same_seed_gives_the_same_figures(figures: dict[str, WorldFigures]) -> None:
    again = run_world(make_population(SEED, FLOW), worlds(NODES)[-1])
    assert again == figures["datn-wan"]


class DeafOriginator(Originator):
    """Asks no peer: every order trades only with its own node's book."""

    def _targets(self, working: Working, now: Now, *, counted: bool = False) -> list[NodeId]:
        return []


class DeafCore(NodeCore):
    originator_class = DeafOriginator


def test_the_ordering_catches_a_network_that_does_not_reach(
    figures: dict[str, WorldFigures],
) -> None:
    deaf = World("deaf", NODES, NODES, linked=True, latency_ms=WAN_LATENCY_MS, core=DeafCore)
    linked = run_world(make_population(SEED, FLOW), deaf)
    assert linked.order_messages == 0
    assert reach_problems(figures["central"], figures["fragmented"], linked)
