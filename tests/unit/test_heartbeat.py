"""Heartbeats and round trips: what a node knows of each peer's link.

Round trips are estimated as TCP does (RFC 6298): the first sample sets the
smoothed RTT and half of it as the deviation; later samples move the
smoothed RTT an eighth and the deviation a quarter of the way. An originator
budgets the smoothed RTT plus four deviations, so a link that jitters gets
more room than its average alone would give it.

Most tests here drive single cores by hand, because they give each node its
own monotonic and wall clocks; the harness's nodes share one clock.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
from harness import CONFIG, OWNER, TRADER, XYZ, A, B, Net

from datn.domain import USD, Side, TimeInForce
from datn.protocol.clock import Now
from datn.protocol.effects import Effect, Send
from datn.protocol.messages import Acceptance, Heartbeat, NodeId, OrderBroadcast, Release
from datn.protocol.network import MAX_PLAUSIBLE_RTT_MS, PeerView
from datn.protocol.node import NodeCore
from datn.protocol.venue import OrderRequest


def node(node_id: NodeId, peers: list[NodeId], at: Now, **config: object) -> NodeCore:
    """A node started at ``at`` with the harness's products and these knobs."""
    genesis = Net.genesis(node_id, replace(CONFIG, **config), tuple(peers))  # type: ignore[arg-type]
    core, _ = NodeCore.start(genesis, at)
    return core


def probes(effects: list[Effect]) -> list[NodeId]:
    """The peers sent a heartbeat probe (not an answer to one)."""
    sends = [e for e in effects if isinstance(e, Send) and isinstance(e.message, Heartbeat)]
    return [e.peer for e in sends if e.message.echo_mono_ms is None]  # type: ignore[union-attr]


def sends(effects: list[Effect]) -> list[Send]:
    return [e for e in effects if isinstance(e, Send)]


# ------------------------------------------------------------- probing


def test_a_node_probes_at_most_heartbeat_peers_per_period_and_every_peer_in_turn() -> None:
    peers = [NodeId(f"p{i:02d}") for i in range(20)]
    core = node(NodeId("me"), peers, Now(0, 0), heartbeat_ms=1_000, heartbeat_peers=8)
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
    core = node(NodeId("me"), peers, Now(0, 0), heartbeat_ms=500)
    core.tick(Now(0, 0))
    assert sorted(probes(core.tick(Now(500, 500)))) == ["a", "b", "c"]
    assert probes(core.tick(Now(900, 900))) == []  # not due yet
    assert sorted(probes(core.tick(Now(1_000, 1_000)))) == ["a", "b", "c"]


def test_after_a_restart_probing_runs_on_the_new_clock() -> None:
    """A restarted process's monotonic clock starts anywhere: the probe timer
    of the old clock means nothing on it, so the first tick arms it afresh."""
    peers = [NodeId("a"), NodeId("b")]
    core = node(NodeId("me"), peers, Now(0, 0), heartbeat_ms=500)
    core.tick(Now(0, 0))
    assert probes(core.tick(Now(500, 500))) == ["a", "b"]
    core, _ = NodeCore.recover([], core.snapshot()).restart(Now(10, 600))
    assert probes(core.tick(Now(10, 600))) == []  # arms the timer
    assert probes(core.tick(Now(509, 1_099))) == []
    assert probes(core.tick(Now(510, 1_100))) == ["a", "b"]


# --------------------------------------------------------- round trips


def test_a_heartbeat_echo_measures_round_trip_time_and_clock_offset() -> None:
    alice = node(A, [A, B], Now(0, 10_000), default_rtt_ms=20)
    bob = node(B, [A, B], Now(0, 15_000))
    assert alice.network.views[B].rtt_budget_ms == 20 + 4 * 10  # before any sample
    alice.tick(Now(0, 10_000))
    (probe,) = sends(alice.tick(Now(1_000, 11_000)))
    # Bob's wall clock runs 5 s ahead; the probe takes 30 ms each way.
    (answer,) = sends(bob.receive(A, probe.hlc, probe.message, Now(77, 16_030)))
    alice.receive(B, answer.hlc, answer.message, Now(1_060, 11_060))
    view = alice.network.views[B]
    # The first sample replaces the configured guess: 60 ms, give or take 30.
    assert (view.srtt_ms, view.rttvar_ms, view.rtt_samples) == (60, 30, 1)
    assert view.rtt_ms == 60 and view.rtt_budget_ms == 60 + 4 * 30
    assert view.offset_ms == 5_000


def test_later_samples_smooth_the_round_trip_and_track_its_deviation() -> None:
    view = PeerView(20, 10)
    assert view.sample_rtt(60)
    assert view.sample_rtt(100)
    # RFC 6298: rttvar = 3/4 rttvar + 1/4 |srtt - r|; srtt = 7/8 srtt + 1/8 r.
    assert (view.srtt_ms, view.rttvar_ms) == ((7 * 60 + 100) // 8, (3 * 30 + 40) // 4)
    assert view.rtt_budget_ms == 65 + 4 * 32
    for _ in range(50):  # a steady link: the deviation dies away
        view.sample_rtt(65)
    assert view.srtt_ms == 65 and view.rttvar_ms == 0 and view.rtt_budget_ms == 65


@pytest.mark.parametrize("rtt", [-1, MAX_PLAUSIBLE_RTT_MS + 1])
def test_an_implausible_round_trip_is_not_a_sample(rtt: int) -> None:
    view = PeerView(20, 10)
    assert not view.sample_rtt(rtt)
    assert (view.srtt_ms, view.rttvar_ms, view.rtt_samples) == (20, 10, 0)


def test_an_echo_from_before_a_restart_is_not_a_sample() -> None:
    """A restarted node's monotonic clock starts anywhere: an answer to a
    probe it sent before would measure the gap between two clocks."""
    alice = node(A, [A, B], Now(50_000, 10_000))
    late = Heartbeat(sent_mono_ms=0, echo_mono_ms=120_000, wall_ms=10_000, advert_version=0)
    alice.receive(B, alice.context.clock.tick(10_000), late, Now(50_000, 10_000))
    assert alice.network.views[B].rtt_samples == 0


def test_answers_to_a_broadcast_measure_the_round_trip_too() -> None:
    alice = node(A, [A, B], Now(0, 0), default_rtt_ms=20, targeted_routing=False)
    bob = node(B, [A, B], Now(0, 0))
    alice.deposit(TRADER, USD.code, 1_000_000, Now(0, 0))
    request = OrderRequest(TRADER, "c1", XYZ.product_id, Side.BUY, 1, 100, TimeInForce.IOC)
    (broadcast,) = [s for s in sends(alice.place(request, Now(0, 0))) if s.peer == B]
    assert isinstance(broadcast.message, OrderBroadcast)
    (answer,) = sends(bob.receive(A, broadcast.hlc, broadcast.message, Now(50, 50)))
    alice.receive(B, answer.hlc, answer.message, Now(100, 100))
    view = alice.network.views[B]
    assert (view.srtt_ms, view.rttvar_ms, view.rtt_samples) == (100, 50, 1)
    # A duplicate of the answer is not a second sample.
    alice.receive(B, answer.hlc, answer.message, Now(400, 400))
    assert (view.srtt_ms, view.rttvar_ms, view.rtt_samples) == (100, 50, 1)


def test_an_originator_budgets_for_a_jittery_link_not_just_its_average() -> None:
    """The same offer over the same average round trip: taken over a steady
    link, given back over one whose deviation eats the lock's life."""
    taken = []
    for rttvar_ms in (0, 60):
        net = Net()
        net.place(B, Side.SELL, 10, 5_000, "s1")
        net.deliver()
        view = net.nodes[A].network.views[B]
        view.srtt_ms, view.rttvar_ms, view.rtt_samples = 35, rttvar_ms, 8
        # The answer arrives at once, a zero sample: srtt becomes 30 on both
        # links, rttvar 8 on the steady one (a budget of 62 ms) and 53 on the
        # jittery one (242 ms, beyond the 240 that a 250 ms lock leaves
        # after the 10 ms margin).
        net.place(A, Side.BUY, 4, 5_100, "b1", TimeInForce.IOC)
        net.deliver()
        taken.append((bool(net.sent(A, Acceptance)), net.balance(A, OWNER, XYZ.product_id) - 1_000))
        if rttvar_ms:
            assert net.sent(A, Release)  # every lock it was offered, given back
    assert taken == [(True, 4), (False, 0)]


# ------------------------------------------------------------- adverts


def test_a_gap_in_a_peers_advert_versions_marks_its_view_stale_until_filled() -> None:
    view = PeerView(20, 10)
    gaps = CONFIG.max_advert_gaps
    assert view.see_advert(1, gaps) and not view.stale
    assert view.see_advert(3, gaps) and view.stale  # version 2 was lost or is late
    assert not view.see_advert(3, gaps)  # a duplicate is not news
    assert view.see_advert(2, gaps) and not view.stale
    assert (view.adverts_seen_through, view.adverts_seen_above) == (3, set())
    view.advert_version_announced = 5  # a heartbeat said 5 were sent
    assert view.stale


def test_the_gaps_tracked_per_peer_are_bounded() -> None:
    view = PeerView(20, 10)
    for version in (3, 5, 7):  # three gaps, room for two
        view.see_advert(version, 2)
    # The oldest gap is given up; the view stays stale until the rest arrive.
    assert (view.adverts_seen_through, view.adverts_seen_above) == (3, {5, 7})
    assert view.stale
    assert not view.see_advert(2, 2)  # given up: no longer news
    view.see_advert(4, 2)
    view.see_advert(6, 2)
    assert (view.adverts_seen_through, view.adverts_seen_above) == (7, set())
    assert not view.stale


def test_a_heartbeat_announces_adverts_the_peer_has_not_seen() -> None:
    net = Net(bonds=False)
    net.place(B, Side.SELL, 10, 5_000, "s1")
    net.wire.clear()  # the advert is lost
    assert not net.nodes[A].network.views[B].stale
    net.tick(0)
    net.tick(CONFIG.heartbeat_ms)
    net.deliver()
    assert net.nodes[A].network.views[B].stale
