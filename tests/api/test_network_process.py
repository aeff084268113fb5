"""Real node processes linked over real sockets on 127.0.0.1: the operators
link them and post bonds, a trader at one node fills a resting order at the
other, and the trade ends on both ledgers; a restarted node resumes its
links without losing or replaying a frame."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from nodes import Running, make_trader, new_node, order, start, stop

BOND = 50_000_000
"""Each node's bond with each peer, in USD minor units."""


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def peer_status(node: Running, peer: Running) -> dict[str, Any]:
    response = node.admin.request("GET", f"/admin/peers/{peer.node_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def link(nodes: list[Running]) -> None:
    """Every node a peer of every other, at its link address."""
    for node in nodes:
        for peer in nodes:
            if peer is not node:
                added = node.admin.add_peer(peer.node_id, peer.net_address)
                assert added.status_code in (200, 201), added.text
    for node in nodes:
        for peer in nodes:
            if peer is not node:
                wait_for(
                    f"the link {node.folder.name} -> {peer.folder.name}",
                    lambda n=node, p=peer: peer_status(n, p)["link"]["state"] == "up",
                )


def bond(nodes: list[Running]) -> None:
    """Every node posts a bond with every other, whose operator confirms
    the money arrived (standing in for the rail)."""
    for node in nodes:
        funded = node.admin.request(
            "POST", "/admin/fund", {"asset": "USD", "amount": BOND * (len(nodes) - 1)}
        )
        assert funded.status_code == 201, funded.text
    for node in nodes:
        for peer in nodes:
            if peer is node:
                continue
            posted = node.admin.post_bond(peer.node_id, BOND)
            assert posted.status_code == 201, posted.text
            confirmed = peer.admin.confirm_bond(node.node_id, posted.json()["bond_id"], "USD", BOND)
            assert confirmed.status_code == 201, confirmed.text
    for node in nodes:
        for peer in nodes:
            if peer is not node:
                wait_for(
                    f"{node.folder.name}'s bond with {peer.folder.name}",
                    lambda n=node, p=peer: peer_status(n, p)["bonds"]["posted_minor"] == BOND,
                )


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[list[Running]]:
    nodes = [start(new_node(tmp_path, name=name)) for name in ("a", "b")]
    try:
        yield nodes
    finally:
        for node in nodes:
            stop(node)


def balances(client: Any) -> dict[str, int]:
    """The trader's balances: USD, and XYZ (its asset is the product's id)."""
    found = {b["asset"]: b["balance"] for b in client.request("GET", "/v1/balances").json()}
    return {("USD" if asset == "USD" else "XYZ"): amount for asset, amount in found.items()}


def test_a_trader_at_one_node_fills_a_resting_order_at_another(pair: list[Running]) -> None:
    a, b = pair
    link(pair)
    bond(pair)
    seller = make_trader(b, "seller", 0, 100)
    buyer = make_trader(a, "buyer", 10_000_000, 0)
    rest = seller.request("POST", "/v1/orders", order("s1", "sell", 10, 5_000))
    assert rest.status_code == 201, rest.text
    # Node a learns of b's order from b's advert, then routes to it.
    wait_for(
        "b's order in a's network book",
        lambda: buyer.request("GET", "/v1/book/XYZ").json()["asks"],
    )
    bought = buyer.request("POST", "/v1/orders", order("b1", "buy", 4, 5_000, time_in_force="ioc"))
    assert bought.status_code == 201, bought.text
    order_id = bought.json()["order_id"]
    filled = wait_for(
        "the cross-node fill",
        lambda: (
            (seen := buyer.request("GET", f"/v1/orders/{order_id}").json())["status"] == "filled"
            and seen
        ),
    )
    assert filled["filled_lots"] == 4
    assert balances(buyer)["XYZ"] == 4
    wait_for("the seller's fill", lambda: balances(seller).get("XYZ") == 96)
    assert balances(seller)["USD"] == 4 * 5_000
    assert balances(buyer)["USD"] == 10_000_000 - 4 * 5_000
