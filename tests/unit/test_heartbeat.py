"""Heartbeats and round trips: what a node knows of each peer's link."""

from __future__ import annotations

from collections import Counter
from typing import Any

from datn.domain import USD, ProductKind, ProductSpec, Side, TimeInForce
from datn.protocol.clock import Now
from datn.protocol.effects import Effect, Send
from datn.protocol.messages import Heartbeat, NodeId, OrderBroadcast
from datn.protocol.node import NodeConfig, NodeCore
from datn.protocol.venue import OrderRequest
from datn.risk import RiskConfig

XYZ = ProductSpec("XYZ", ProductKind.SHARE, USD.code)
RISK = RiskConfig(listed_products=frozenset({XYZ.product_id}))


def node(node_id: str, peers: list[NodeId], **config: Any) -> NodeCore:
    return NodeCore(
        NodeId(node_id), [XYZ], peers, NodeConfig(RISK, **config), b"k", {XYZ.product_id: 100}
    )


def probes(effects: list[Effect]) -> list[NodeId]:
    """The peers sent a heartbeat probe (not an answer to one)."""
    sends = [e for e in effects if isinstance(e, Send) and isinstance(e.message, Heartbeat)]
    return [e.peer for e in sends if e.message.echo_mono_ms is None]  # type: ignore[union-attr]


def test_a_node_probes_at_most_heartbeat_peers_per_period_and_every_peer_in_turn() -> None:
    peers = [NodeId(f"p{i:02d}") for i in range(20)]
    core = node("me", peers, heartbeat_ms=1_000, heartbeat_peers=8)
    assert probes(core.tick(Now(0, 0))) == []  # the first tick only arms the timer
    probed: Counter[NodeId] = Counter()
    for period in range(1, 6):
        sent = probes(core.tick(Now(period * 1_000, period * 1_000)))
        assert len(sent) == 8 and len(set(sent)) == 8
        probed.update(sent)
    # 40 probes over 20 peers, round robin: each peer exactly twice.
    assert set(probed) == set(peers) and set(probed.values()) == {2}


def test_with_few_peers_every_peer_is_probed_every_period() -> None:
    peers = [NodeId("a"), NodeId("b"), NodeId("c")]
    core = node("me", peers, heartbeat_ms=500)
    core.tick(Now(0, 0))
    assert sorted(probes(core.tick(Now(500, 500)))) == ["a", "b", "c"]
    assert probes(core.tick(Now(900, 900))) == []  # not due yet
    assert sorted(probes(core.tick(Now(1_000, 1_000)))) == ["a", "b", "c"]


def test_a_heartbeat_echo_measures_round_trip_time_and_clock_offset() -> None:
    a, b = NodeId("a"), NodeId("b")
    alice, bob = node("a", [a, b], default_rtt_ms=20), node("b", [a, b])
    alice.tick(Now(0, 10_000))
    (probe,) = [e for e in alice.tick(Now(1_000, 11_000)) if isinstance(e, Send)]
    # Bob's wall clock runs 5 s ahead; the probe takes 30 ms each way.
    (answer,) = [
        e for e in bob.receive(a, probe.hlc, probe.message, Now(77, 16_030)) if isinstance(e, Send)
    ]
    alice.receive(b, answer.hlc, answer.message, Now(1_060, 11_060))
    view = alice.peers[b]
    assert view.rtt_ms == (7 * 20 + 60) // 8  # smoothed towards the 60 ms sample
    assert view.offset_ms == 5_000


def test_answers_to_a_broadcast_measure_the_round_trip_too() -> None:
    a, b = NodeId("a"), NodeId("b")
    alice = node("a", [a, b], default_rtt_ms=20, targeted_routing=False)
    bob = node("b", [a, b])
    request = OrderRequest("t", "c1", XYZ.product_id, Side.BUY, 1, 100, TimeInForce.IOC)
    alice.deposit("t", USD.code, 1_000_000, Now(0, 0))
    sent = [e for e in alice.place(request, Now(0, 0)) if isinstance(e, Send)]
    (broadcast,) = [s for s in sent if isinstance(s.message, OrderBroadcast)]
    (answer,) = [
        e
        for e in bob.receive(a, broadcast.hlc, broadcast.message, Now(50, 50))
        if isinstance(e, Send)
    ]
    alice.receive(b, answer.hlc, answer.message, Now(100, 100))
    assert alice.peers[b].rtt_ms == (7 * 20 + 100) // 8
    # A duplicate of the answer is not a second sample.
    alice.receive(b, answer.hlc, answer.message, Now(400, 400))
    assert alice.peers[b].rtt_ms == (7 * 20 + 100) // 8


def test_a_gap_in_a_peers_advert_versions_marks_its_view_stale_until_filled() -> None:
    from datn.protocol.state import PeerView  # noqa: PLC0415

    view = PeerView(rtt_ms=20)
    assert view.see_advert(1) and not view.stale
    assert view.see_advert(3) and view.stale  # version 2 was lost or is late
    assert not view.see_advert(3)  # a duplicate is not news
    assert view.see_advert(2) and not view.stale
    assert (view.adverts_seen_through, view.adverts_seen_above) == (3, set())
    view.advert_version_announced = 5  # a heartbeat said 5 were sent
    assert view.stale
