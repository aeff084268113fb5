"""One node partitioned away from three: real node processes, the links to
and from the third routed through fault proxies (:mod:`faultproxy`) that
cut its connections and then forward nothing for a while.

While the third is out of reach, the other two go on trading with each
other: an order at one fills against the other's resting order even though
the unreachable node advertised a better price; once it has been silent for
three heartbeat periods, it is not even asked. When the partition ends,
the third's links come back on their own, and every trade it or anyone
took part in ends on both ledgers: the network conserves every asset, every
pair settled the same statements, and no lock is left.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from pathlib import Path

from faultproxy import FaultProxy
from nodes import counters, order

from datn.api.client import TraderClient
from datn.api.metrics import samples
from datn.launch import LocalNetwork, NodeProcess, wait_until

BOND = 50_000_000
PARTITION_MS = 6_000
"""How long nothing passes to or from the partitioned node (beyond the
links' handshake timeout, so that reconnecting through the partition fails
too)."""


SILENCE_S = 3.6
"""A little over a peer's silence limit at the default heartbeat period
(three periods of 1 s): by then a has stopped asking c."""


def core_events(node: NodeProcess) -> dict[str, int]:
    assert node.admin is not None
    return counters(node.admin, "datn_core_events_total")


def filled(client: TraderClient, order_id: int) -> bool:
    answer = client.request("GET", f"/v1/orders/{order_id}")
    return bool(answer.json()["status"] == "filled")


def link_up(network: LocalNetwork, node: NodeProcess, peer: NodeProcess) -> bool:
    return bool(network.peer(node, peer)["link"]["state"] == "up")


def link_gauges(node: NodeProcess, peer: NodeProcess) -> tuple[int, int, int]:
    """What ``node``'s ``/metrics`` shows of its links with ``peer``: the
    messages it has not acknowledged, and whether the links to it and
    from it are up."""
    assert node.admin is not None
    found = samples(node.admin.request("GET", "/metrics").text)
    label = f'peer="{peer.node_id}"'
    return (
        int(found[f"datn_link_unacknowledged_messages{{{label}}}"]),
        int(found[f'datn_link_up{{{label},direction="sending"}}']),
        int(found[f'datn_link_up{{{label},direction="receiving"}}']),
    )


def test_a_partitioned_node_stops_no_one_and_its_links_heal(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        network = stack.enter_context(LocalNetwork(tmp_path, ["a", "b", "c"], resend_ms=100))
        network.start()
        network.link()
        a, b, c = network.nodes
        proxies: list[FaultProxy] = []
        for n, node in enumerate((a, b)):
            to_c = stack.enter_context(FaultProxy(c.net_address, seed=n, name=f"{node.name}->c"))
            to_node = stack.enter_context(
                FaultProxy(node.net_address, seed=10 + n, name=f"c->{node.name}")
            )
            node.call("POST", "/admin/peers", {"node_id": c.node_id, "address": to_c.address})
            c.call("POST", "/admin/peers", {"node_id": node.node_id, "address": to_node.address})
            proxies += [to_c, to_node]
        for proxy in proxies:
            wait_until(
                f"a link through {proxy.name}", lambda p=proxy: p.counts().get("seen:welcome")
            )
        network.bond(BOND)

        # c offers the best price, b the next: both in a's network book.
        c_seller = network.trader(c, "seller-c", {"XYZ": 100})
        b_seller = network.trader(b, "seller-b", {"XYZ": 100})
        for seller, price in ((c_seller, 4_990), (b_seller, 5_000)):
            rested = seller.request("POST", "/v1/orders", order("s", "sell", 100, price))
            assert rested.status_code == 201, rested.text
        buyer = network.trader(a, "buyer-a", {"USD": 10_000_000})
        wait_until(
            "both asks in a's network book",
            lambda: len(buyer.request("GET", "/v1/book/XYZ").json()["asks"]) == 2,
        )

        # The partition: c's connections cut, and nothing passes either way.
        for proxy in proxies:
            proxy.stall(PARTITION_MS)
            proxy.cut()
        partitioned_at = time.monotonic()
        partitioned_until = partitioned_at + PARTITION_MS / 1_000
        placed = []
        for number in range(5):
            answer = buyer.request("POST", "/v1/orders", order(f"b{number}", "buy", 2, 5_000))
            assert answer.status_code == 201, answer.text
            placed.append(answer.json()["order_id"])
        for order_id in placed:
            wait_until(f"order {order_id} filled by b", lambda o=order_id: filled(buyer, o), 10)
        assert time.monotonic() < partitioned_until, "trading waited for the partition to end"
        # Once c has been silent past its limit (three heartbeat periods),
        # a stops asking it: orders no longer wait out c's window first.
        silent_before = core_events(a).get("holders_silent", 0)
        time.sleep(max(0.0, partitioned_at + SILENCE_S - time.monotonic()))
        for number in range(5, 10):
            answer = buyer.request("POST", "/v1/orders", order(f"b{number}", "buy", 2, 5_000))
            assert answer.status_code == 201, answer.text
            order_id = answer.json()["order_id"]
            wait_until(f"order {order_id} filled by b", lambda o=order_id: filled(buyer, o), 10)
        assert time.monotonic() < partitioned_until, "trading waited for the partition to end"
        events = core_events(a)
        assert events.get("holders_silent", 0) == silent_before, events
        assert events.get("holders_out_of_reach", 0) >= 5, events
        sold = b_seller.request("GET", "/v1/orders?client_order_id=s").json()[0]
        assert sold["filled_lots"] == 20, sold
        # ...while c was out of reach: a's link to it down, not up.
        assert time.monotonic() < partitioned_until
        assert network.peer(a, c)["link"]["state"] != "up"
        # An operator's metrics show it: what a sent c waits unacknowledged,
        # and neither link with c is up; the links with b are.
        unacked, sending, receiving = link_gauges(a, c)
        assert unacked > 0 and sending == receiving == 0, (unacked, sending, receiving)
        assert link_gauges(a, b)[1:] == (1, 1)

        # The partition ends: c's links come back on their own.
        for node, peer in itertools.permutations(network.nodes, 2):
            wait_until(
                f"{node.name}'s link with {peer.name} up again",
                lambda n=node, p=peer: link_up(network, n, p),
                PARTITION_MS / 1_000 + 30,
            )
        # c trades again: its better ask is taken from a.
        answer = buyer.request("POST", "/v1/orders", order("after", "buy", 3, 4_990))
        assert answer.status_code == 201, answer.text
        wait_until("a's order filled by c", lambda: filled(buyer, answer.json()["order_id"]), 30)

        network.wait_quiet(90)
        wait_until(
            "c acknowledged everything a sent it",
            lambda: link_gauges(a, c) == (0, 1, 1),
            30,
        )
        assert network.conservation() == []
        for node, peer in itertools.combinations(network.nodes, 2):
            here = network.peer(node, peer)["settlement"]["statements_settled"]
            there = network.peer(peer, node)["settlement"]["statements_settled"]
            assert here == there, (node.name, peer.name, here, there)
        for node in network.nodes:
            assert node.running, node.tail()
            assert "Traceback" not in node.log_path.read_text(errors="replace"), node.tail()
