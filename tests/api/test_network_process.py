"""Real node processes linked over real sockets on 127.0.0.1: the operators
link them and post bonds, traders at each node fill resting orders at the
others through the public API, and every trade ends on both ledgers, every
lock ends, every settlement statement matches on both sides and the
network conserves every asset exactly; a node killed and restarted resumes
its links without losing or replaying a frame."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from nodes import counters, postgres_schema

from datn.api.client import TraderClient
from datn.launch import LocalNetwork, NodeProcess, wait_until

__all__ = ["postgres_schema"]  # the fixture, used by name

BOND = 50_000_000
"""Each node's bond with each peer, in USD minor units."""


def order(client_id: str, side: str, lots: int, price: int, **extra: object) -> dict[str, object]:
    return {
        "client_order_id": client_id,
        "product": "XYZ",
        "side": side,
        "quantity_lots": lots,
        "price_ticks": price,
        **extra,
    }


def balances(client: TraderClient) -> dict[str, int]:
    """The trader's balances: USD, and XYZ (its asset is the product's id)."""
    found = {b["asset"]: b["balance"] for b in client.request("GET", "/v1/balances").json()}
    return {("USD" if asset == "USD" else "XYZ"): amount for asset, amount in found.items()}


@pytest.fixture
def three(tmp_path: Path) -> Iterator[LocalNetwork]:
    with LocalNetwork(tmp_path, ["a", "b", "c"], resend_ms=100) as network:
        yield network


def trade_across(network: LocalNetwork, rounds: int, seed: int) -> list[tuple[TraderClient, int]]:
    """Sellers rest orders at every node, each node's a tick dearer than the
    one before; buyers at every node but the first bid a tick below their
    own node's sellers, so each fill is at another node. The buyers' orders
    and ids."""
    rng = random.Random(seed)
    nodes = network.nodes
    sellers = [network.trader(n, f"seller-{n.name}", {"XYZ": 1_000}) for n in nodes]
    buyers = [network.trader(n, f"buyer-{n.name}", {"USD": 50_000_000}) for n in nodes]
    for index, seller in enumerate(sellers):
        for level in range(3):
            placed = seller.request(
                "POST", "/v1/orders", order(f"s-{index}-{level}", "sell", 40, 5_000 + index)
            )
            assert placed.status_code == 201, placed.text
    for index, node in enumerate(nodes):
        wait_until(
            f"every seller's order in {node.name}'s network book",
            lambda i=index: (
                sum(
                    level["quantity_lots"]
                    for level in buyers[i].request("GET", "/v1/book/XYZ").json()["asks"]
                )
                >= 3 * 40 * len(nodes)
            ),
        )
    placed: list[tuple[TraderClient, int]] = []
    for number in range(rounds):
        index = rng.randrange(1, len(nodes))
        answer = buyers[index].request(
            "POST",
            "/v1/orders",
            order(f"b-{index}-{number}", "buy", rng.randint(1, 5), 5_000 + index - 1),
        )
        assert answer.status_code == 201, answer.text
        placed.append((buyers[index], answer.json()["order_id"]))
    return placed


def filled(buyer: TraderClient, order_id: int) -> bool:
    seen = buyer.request("GET", f"/v1/orders/{order_id}").json()
    return bool(seen["status"] == "filled")


def done(buyer: TraderClient, order_id: int) -> bool:
    """No part of the order is promised any more: filled, or what is left
    rests in its node's book (a holder that restarted voided its locks)."""
    seen = buyer.request("GET", f"/v1/orders/{order_id}").json()
    return not seen["pending_lots"] and not seen["waiting_on"]


@pytest.mark.parametrize("storage", ["sqlite", "postgresql"])
def test_three_nodes_trade_across_the_network_and_conserve_every_asset(
    tmp_path: Path, storage: str, request: pytest.FixtureRequest
) -> None:
    stores = {"c": request.getfixturevalue("postgres_schema")} if storage == "postgresql" else {}
    with LocalNetwork(tmp_path, ["a", "b", "c"], storage=stores, resend_ms=100) as network:
        network.start()
        network.link()
        network.bond(BOND)
        placed = trade_across(network, rounds=30, seed=7)
        for buyer, order_id in placed:
            wait_until(f"order {order_id} to fill", lambda b=buyer, o=order_id: filled(b, o))
        network.wait_quiet()
        assert network.conservation() == []
        # Trades crossed nodes: every node's peer accounts saw traffic.
        cross = [
            row
            for rows in network.ledgers().values()
            for row in rows
            if row["owner"].startswith("rail:") and row["balance"]
        ]
        assert cross, "no trade crossed nodes"
        _check_statements_match(network)
        _check_trades(network)
        _check_evidence(network, tmp_path)


def _check_trades(network: LocalNetwork) -> None:
    """Each node's trade feed holds what every node's book printed: its
    own trades as it made them, and its peers' as they printed them, lot for
    lot once the network is quiet."""
    lots: dict[str, Counter[str]] = {}
    for node in network.nodes:
        answer = httpx.get(f"{node.api_url}/v1/trades/XYZ", params={"limit": 1_000})
        assert answer.status_code == 200, answer.text
        rows = answer.json()
        assert [r["at_ms"] for r in rows] == sorted((r["at_ms"] for r in rows), reverse=True)
        lots[node.node_id] = Counter()
        for row in rows:
            lots[node.node_id][row["node"]] += row["quantity_lots"]
    printed = {source: lots[source][source] for source in lots}
    assert sum(printed.values()) > 0
    for here, heard in lots.items():
        assert heard == +Counter(printed), (here, heard, printed)


def _check_evidence(network: LocalNetwork, tmp_path: Path) -> None:
    """Each node exports the signed evidence it keeps with each peer; the
    bundle verifies with nothing but itself, and holds their trades."""
    from click.testing import CliRunner  # noqa: PLC0415

    from datn.cli.main import main  # noqa: PLC0415

    runner = CliRunner()
    for n, (a, b) in enumerate(itertools.permutations(network.nodes, 2)):
        out = tmp_path / f"{a.name}-{b.name}.jsonl"
        # Readable, then machine-readable, alternately.
        as_json = ["--json"] if n % 2 else []
        export = ["evidence", "export", "--node", str(a.folder), "--peer", b.node_id]
        exported = runner.invoke(main, [*export, "--out", str(out), *as_json])
        assert exported.exit_code == 0, exported.output
        checked = runner.invoke(main, ["evidence", "verify", str(out), *as_json])
        assert checked.exit_code == 0, checked.output
        if as_json:
            written = json.loads(exported.output)
            assert written["peer"] == b.node_id and written["records"] > 0
            found = json.loads(checked.output)
            assert found["ok"] and found["records"] == written["records"]
            assert found["frames_verified"] == found["records"], found
        else:
            assert "OK: every signature checks" in checked.output
            assert "trades" in checked.output, checked.output
            # A real node is named by its id, once.
            named = [line.split()[-1] for line in checked.output.splitlines()[1:3]]
            assert sorted(named) == sorted([a.node_id, b.node_id]), checked.output
            assert " = " not in "".join(checked.output.splitlines()[1:3])
    # A peer that is no node id, and a file that cannot be written, are
    # named; nothing is asked of the node for the first, nor written.
    a, b = network.nodes[0], network.nodes[1]
    export = ["evidence", "export", "--node", str(a.folder)]
    odd = runner.invoke(main, [*export, "--peer", "../status", "--out", str(tmp_path / "x")])
    assert odd.exit_code == 2 and "is not a node id" in odd.output
    assert not (tmp_path / "x").exists()
    nowhere = tmp_path / "gone" / "x.jsonl"
    lost = runner.invoke(main, [*export, "--peer", b.node_id, "--out", str(nowhere)])
    assert lost.exit_code == 1 and "cannot write" in lost.output, lost.output
    # A period outside what the API states is refused, naming the parameter.
    assert a.admin is not None
    for query in ("until_ms=0", f"until_ms={2**62 + 1}", "since_ms=-1", "since_ms=5&until_ms=5"):
        answer = a.admin.request("GET", f"/admin/evidence/{b.node_id}?{query}")
        assert answer.status_code in (400, 422), (query, answer.status_code, answer.text)


def _check_statements_match(network: LocalNetwork) -> None:
    """Each pair settled the same number of statements, on both sides."""
    for a, b in itertools.permutations(network.nodes, 2):
        here = network.peer(a, b)["settlement"]["statements_settled"]
        there = network.peer(b, a)["settlement"]["statements_settled"]
        assert here == there, f"{a.name} settled {here} statements with {b.name}, {b.name} {there}"


def test_a_killed_node_resumes_its_links_and_nothing_is_lost_or_replayed(
    three: LocalNetwork,
) -> None:
    three.start()
    three.link()
    three.bond(BOND)
    a, b, _ = three.nodes
    placed = trade_across(three, rounds=10, seed=3)
    b.kill()
    # While b is down, a and c trade on; a's frames for b wait in its outbox.
    more = trade_across_two(three, a, three.nodes[2])
    three.restart(b)
    wait_until("b's links back", lambda: three.peer(b, a)["link"]["state"] == "up", 30)
    wait_until("a's link to b back", lambda: three.peer(a, b)["link"]["state"] == "up", 30)
    for buyer, order_id in placed + more:
        wait_until(f"order {order_id} to settle", lambda by=buyer, o=order_id: done(by, o), 60)
    three.wait_quiet()
    assert three.conservation() == []
    metrics = _link_metrics(a) | _link_metrics(b)
    assert not any(name.startswith("frame:") for name in metrics), metrics
    wait_until(
        "a's outbox for b acknowledged", lambda: three.peer(a, b)["link"]["unacked_frames"] == 0
    )


def trade_across_two(
    network: LocalNetwork, a: NodeProcess, c: NodeProcess
) -> list[tuple[TraderClient, int]]:
    seller = network.trader(c, "seller-late", {"XYZ": 50})
    buyer = network.trader(a, "buyer-late", {"USD": 1_000_000})
    assert (
        seller.request("POST", "/v1/orders", order("late-s", "sell", 5, 4_990)).status_code == 201
    )
    wait_until(
        "c's order at a",
        lambda: any(
            level["price_ticks"] == 4_990
            for level in buyer.request("GET", "/v1/book/XYZ").json()["asks"]
        ),
    )
    answer = buyer.request("POST", "/v1/orders", order("late-b", "buy", 5, 4_990))
    assert answer.status_code == 201, answer.text
    return [(buyer, answer.json()["order_id"])]


def _link_metrics(node: NodeProcess) -> dict[str, int]:
    assert node.admin is not None
    return counters(node.admin, "datn_link_events_total")
