"""Crossed books across nodes resolve: of two crossing resting orders at two
nodes, the newer is worked again as a taker and trades with the older."""

from __future__ import annotations

from dataclasses import replace

from harness import CONFIG, OWNER, XYZ, A, B, C, Net, events_in, messages_in

from datn.domain import USD, Side, TimeInForce
from datn.protocol.clock import Hlc
from datn.protocol.effects import CancelAnswer, Done, Executed, Genesis, Rested, Send
from datn.protocol.messages import Advert, NodeId, OrderBroadcast, PotentialTrades
from datn.protocol.node import NodeConfig
from datn.protocol.originator import MAX_REWORKED

HEARTBEAT = CONFIG.heartbeat_ms
D = NodeId("d")


def open_orders(net: Net, node_id: NodeId) -> list[tuple[Side, int, int]]:
    book = net.nodes[node_id].resting.books[XYZ.product_id]
    return [
        (side, v.price_ticks, v.open_lots)
        for side in (Side.BUY, Side.SELL)
        for v in book.resting_orders(side)
    ]


def test_two_orders_that_cross_in_flight_trade_at_the_older_ones_price() -> None:
    """A's bid rests first; B's lower ask rests before A's advert reaches
    B. At one venue the ask would have taken the bid at the bid's price:
    B works its ask again when A's advert arrives, and A, the maker, waits."""
    net = Net()
    net.place(A, Side.BUY, 5, 5_100, "bid")
    net.mono += 1
    net.place(B, Side.SELL, 5, 5_000, "ask")
    assert open_orders(net, A) == [(Side.BUY, 5_100, 5)]
    assert open_orders(net, B) == [(Side.SELL, 5_000, 5)]
    net.run(50)
    fills = {n: [(e.price_ticks, e.quantity_lots) for e in net.events(n, Executed)] for n in (A, B)}
    assert fills == {A: [(5_100, 5)], B: [(5_100, 5)]}
    assert [d.reason for d in net.events(A, Done)] == ["filled"]
    assert [d.reason for d in net.events(B, Done)] == ["filled"]
    assert open_orders(net, A) == open_orders(net, B) == []
    assert net.nodes[B].stats.get("orders_reworked") == 1
    assert not net.nodes[A].stats.get("orders_reworked")
    assert net.balance(A, OWNER, XYZ.product_id) == 1_005
    assert net.balance(B, OWNER, XYZ.product_id) == 995
    assert net.balance(A, "peer:b", USD.code) == -net.balance(B, "peer:a", USD.code) == 25_500
    # Peers no longer see either order.
    for node_id, peer in ((A, B), (B, A)):
        view = net.nodes[node_id].network.views[peer]
        assert not view.adverts
    for node_id in (A, B):
        assert net.nodes[node_id].context.ledger.check_invariants() == []
        net.crash_and_recover(node_id)


def rest_unanswered(net: Net, side: Side, lots: int, price: int) -> None:
    """Place an order at A that B's answers never reach: it rests when its
    rounds are over."""
    net.place(A, side, lots, price, "unanswered")
    while net.nodes[A].originator.working:
        net.deliver(keep=PotentialTrades)  # dropped
        net.tick(10)


def test_an_order_whose_answers_were_lost_fills_once_they_get_through() -> None:
    """B advertised its ask; A's bid across it got no answer in any round,
    so it rested, crossing: A works it again (when B's advert comes anew or
    a heartbeat period later), and it fills."""
    net = Net()
    net.place(B, Side.SELL, 5, 5_000, "ask")
    net.deliver()
    net.mono += 5
    rest_unanswered(net, Side.BUY, 3, 5_100)
    assert open_orders(net, A) == [(Side.BUY, 5_100, 3)]
    assert not net.events(A, Executed)
    net.run(2 * HEARTBEAT)
    assert [(e.price_ticks, e.quantity_lots, e.counterparty) for e in net.events(A, Executed)] == [
        (5_000, 3, B)
    ]
    assert [d.reason for d in net.events(A, Done)] == ["filled"]
    assert open_orders(net, A) == []
    assert open_orders(net, B) == [(Side.SELL, 5_000, 2)]
    assert net.nodes[A].stats["orders_reworked"] >= 1
    for node_id in (A, B):
        net.crash_and_recover(node_id, snapshot=True)


def test_a_crossing_order_known_before_it_rested_is_worked_again_a_heartbeat_later() -> None:
    net = Net()
    older = Advert(
        77, XYZ.product_id, Side.SELL, 5_000, 5, net.nodes[A].context.clock.tick(0), 1, 0
    )
    net.receive(A, B, older)
    net.mono += 5
    net.place(A, Side.BUY, 3, 5_100, "bid")
    while net.nodes[A].originator.working:
        net.wire.clear()  # B's answers are lost
        net.tick(10)
    rested_at = net.mono
    assert open_orders(net, A) == [(Side.BUY, 5_100, 3)]
    broadcasts = len(net.sent(A, OrderBroadcast))
    while net.mono < rested_at + HEARTBEAT - 10:
        net.tick(10)
        net.wire.clear()
    assert len(net.sent(A, OrderBroadcast)) == broadcasts
    assert not net.nodes[A].stats.get("orders_reworked")
    while net.mono < rested_at + 2 * HEARTBEAT:
        net.tick(10)
        net.wire.clear()
    assert net.nodes[A].stats.get("orders_reworked") == 1
    assert len(net.sent(A, OrderBroadcast)) > broadcasts


def test_what_a_worked_again_order_does_not_fill_rests_again_and_can_be_cancelled() -> None:
    net = Net()
    net.place(B, Side.SELL, 2, 5_000, "ask")
    net.deliver()
    net.mono += 5
    rest_unanswered(net, Side.BUY, 6, 5_100)
    net.run(2 * HEARTBEAT)
    assert [(e.price_ticks, e.quantity_lots) for e in net.events(A, Executed)] == [(5_000, 2)]
    assert net.events(A, Rested)[-1].resting_lots == 4
    assert open_orders(net, A) == [(Side.BUY, 5_100, 4)]
    assert open_orders(net, B) == []
    assert not net.events(A, Done)
    # Nothing crosses it any more: later heartbeats leave it where it is.
    broadcasts = len(net.sent(A, OrderBroadcast))
    net.run(5 * HEARTBEAT)
    assert len(net.sent(A, OrderBroadcast)) == broadcasts
    a = net.nodes[A]
    (order_id,) = a.resting.orders
    effects = a.cancel("trader-alice", order_id, net.now())
    net.apply(A, effects)
    assert [(d.filled_lots, d.cancelled_lots, d.reason) for d in events_in(effects, Done)] == [
        (2, 4, "cancelled")
    ]
    # The hold is gone with the order: only the filled lots' cash left.
    assert net.balance(A, OWNER, USD.code) == 10_000_000 - 10_000
    assert a.context.ledger.check_invariants() == []


def test_an_order_older_than_the_crossing_advert_stays_the_maker() -> None:
    """A peer's advert crossing A's bid but younger than it: A waits for
    the peer to work its order."""
    net = Net()
    net.place(A, Side.BUY, 5, 5_100, "bid")
    young = Advert(77, XYZ.product_id, Side.SELL, 5_000, 5, Hlc(net.now().wall_ms + 10, 0), 1, 0)
    net.mono += 2 * HEARTBEAT
    effects = net.receive(A, B, young)
    assert not messages_in(effects, OrderBroadcast)
    net.tick(HEARTBEAT)
    assert not net.nodes[A].stats.get("orders_reworked")
    assert open_orders(net, A) == [(Side.BUY, 5_100, 5)]


def test_a_peer_that_advertises_and_never_answers_makes_one_order_work_per_advert() -> None:
    """A peer's old-stamped advert crossing many resting orders, and the
    peer never answers: each version of its advert makes the node work one
    order again, once; repeats of a version, and later heartbeats, none."""
    net = Net()
    for i in range(3 * MAX_REWORKED):
        net.place(A, Side.BUY, 1, 5_100 - i, f"bid{i}")
    net.wire.clear()
    net.mono += 2 * HEARTBEAT
    ancient = Advert(77, XYZ.product_id, Side.SELL, 4_000, 10_000, Hlc(1, 0), 1, 0)

    def reworked() -> int:
        return net.nodes[A].stats.get("orders_reworked", 0)

    net.receive(A, B, ancient)
    assert reworked() == 1
    for _ in range(20):
        net.receive(A, B, ancient)  # the same frame again
    for _ in range(30 * HEARTBEAT // 100):
        net.tick(100)
        net.wire.clear()  # B never answers
    assert reworked() == 1
    changed = Advert(77, XYZ.product_id, Side.SELL, 4_000, 9_999, Hlc(1, 0), 2, 0)
    net.receive(A, B, changed)
    assert reworked() == 2
    net.tick(2 * HEARTBEAT)
    assert reworked() == 2
    assert len(open_orders(net, A)) + len(net.nodes[A].originator.working) == 3 * MAX_REWORKED


def test_an_advert_overtaken_by_its_withdrawal_makes_no_order_work() -> None:
    net = Net()
    net.place(A, Side.BUY, 1, 5_100, "bid")
    net.wire.clear()
    net.mono += 2 * HEARTBEAT
    stamp = Hlc(1, 0)
    net.receive(A, B, Advert(77, XYZ.product_id, Side.SELL, 4_000, 0, stamp, 2, 0))
    net.receive(A, B, Advert(77, XYZ.product_id, Side.SELL, 4_000, 5, stamp, 1, 0))
    net.tick(2 * HEARTBEAT)
    assert not net.nodes[A].stats.get("orders_reworked")
    assert open_orders(net, A) == [(Side.BUY, 5_100, 1)]


def test_a_cancel_of_an_order_worked_again_ends_it_at_once() -> None:
    """While no acceptance of it is out, a cancel ends an order being
    worked at once, whatever later answers offer: it never trades after."""
    net = Net()
    net.place(B, Side.SELL, 5, 5_000, "ask")
    net.deliver()
    net.mono += 5
    rest_unanswered(net, Side.BUY, 5, 5_100)
    (order_id,) = net.nodes[A].resting.orders
    while not net.nodes[A].originator.working:
        net.tick(10)
        net.deliver(keep=PotentialTrades)  # B's lots come back, A works its bid again
    effects = net.nodes[A].cancel("trader-alice", order_id, net.now())
    net.apply(A, effects)
    assert events_in(effects, CancelAnswer) == [CancelAnswer(order_id, "cancelled", 5, 0)]
    assert [(d.filled_lots, d.cancelled_lots, d.reason) for d in events_in(effects, Done)] == [
        (0, 5, "cancelled")
    ]
    net.run(3 * HEARTBEAT)
    assert not net.events(A, Executed)
    assert open_orders(net, B) == [(Side.SELL, 5_000, 5)]
    assert not net.nodes[B].holder.locks
    assert net.balance(A, OWNER, USD.code) == 10_000_000
    assert net.nodes[A].context.ledger.check_invariants() == []


def asks_at_c_and_b(net: Net) -> None:
    """C's ask at 4,990, the best, and B's at 5,000, both advertised."""
    net.place(C, Side.SELL, 10, 4_990, "c-ask")
    net.place(B, Side.SELL, 10, 5_000, "b-ask")
    net.deliver()
    net.run(50)


def deliver_around(net: Net, cut_off: NodeId) -> None:
    """Deliver what is on the wire; what ``cut_off`` sends or is sent is lost."""
    while net.wire:
        sender, send = net.wire.popleft()
        if cut_off not in (sender, send.peer):
            net.receive(send.peer, sender, send.message, send)


def test_a_holder_out_of_reach_keeps_no_order_from_the_next_best() -> None:
    """C advertises the best ask and then hears nothing more (cut off): A's
    buy asks C first, and when C's window closes unanswered, the next round
    asks C again (an answer may only be late) and B too, which fills it."""
    net = Net(ids=(A, B, C))
    asks_at_c_and_b(net)
    net.place(A, Side.BUY, 4, 5_000, "buy")
    for _ in range(30):
        net.tick(10)
        deliver_around(net, C)
    fills = [(e.price_ticks, e.quantity_lots, e.counterparty) for e in net.events(A, Executed)]
    assert fills == [(5_000, 4, B)]
    asked_c = [
        e.message
        for n, e in net.effects
        if n == A and isinstance(e, Send) and e.peer == C and isinstance(e.message, OrderBroadcast)
    ]
    assert len(asked_c) == 2
    assert net.nodes[A].stats.get("holders_silent") == 2


def fok_past_a_silent_holder(net: Net) -> list[Done]:
    """A FOK buy at A that C, the best ask, lets its window close on
    (cut off, not yet for its silence limit): what A reports."""
    asks_at_c_and_b(net)
    net.place(A, Side.BUY, 4, 5_000, "fok", TimeInForce.FOK)
    for _ in range(30):
        net.tick(10)
        deliver_around(net, C)
    return net.events(A, Done)


def test_a_fok_the_best_holder_let_down_asks_the_next_best_for_the_whole() -> None:
    """As for any order, the round after C's closes asks C again and B
    too; nothing of the FOK filled, so B's offer of the whole fills it."""
    net = Net(ids=(A, B, C))
    done = fok_past_a_silent_holder(net)
    assert [(d.filled_lots, d.reason) for d in done] == [(4, "filled")]
    fills = [(e.price_ticks, e.quantity_lots, e.counterparty) for e in net.events(A, Executed)]
    assert fills == [(5_000, 4, B)]
    assert [m.round for m in net.sent(A, OrderBroadcast)] == [1, 2, 2]
    net.crash_and_recover(A)


def test_under_core_logic_version_2_a_fok_the_best_holder_let_down_ends_unfilled() -> None:
    net = Net(ids=(A, B, C))
    net.nodes[A].context.logic_version = 2  # as a version 2 genesis or restart sets it
    done = fok_past_a_silent_holder(net)
    assert [(d.filled_lots, d.reason) for d in done] == [(0, "fok_unfillable")]
    assert [m.round for m in net.sent(A, OrderBroadcast)] == [1]


def fok_between_two_holders(net: Net) -> list[Done]:
    """A FOK buy of 10 at A that C's 4 at 4,990 and B's 6 at 5,000 cover
    together; C's answer to the first round is lost (its link cut for that
    round only): what A reports."""
    net.place(C, Side.SELL, 4, 4_990, "c-ask")
    net.place(B, Side.SELL, 6, 5_000, "b-ask")
    net.deliver()
    net.run(50)
    net.place(A, Side.BUY, 10, 5_000, "fok", TimeInForce.FOK)
    while True:  # C is cut off until the first round's window closes
        net.tick(10)
        if any(m.round == 2 for m in net.sent(A, OrderBroadcast)):
            break
        deliver_around(net, C)
    net.run(300)
    return net.events(A, Done)


def test_a_fok_asks_again_the_holder_it_gave_back_beside_the_one_that_was_silent() -> None:
    """The first round has B's 6 and nothing from C: the FOK gives B's 6
    back. The next round asks C again and B too, and their offers together
    fill the whole, each at its own price."""
    net = Net(ids=(A, B, C))
    done = fok_between_two_holders(net)
    assert [(d.filled_lots, d.reason) for d in done] == [(10, "filled")]
    fills = [(e.price_ticks, e.quantity_lots, e.counterparty) for e in net.events(A, Executed)]
    assert sorted(fills) == [(4_990, 4, C), (5_000, 6, B)]
    asked = sorted(
        (e.message.round, e.peer)
        for n, e in net.effects
        if n == A and isinstance(e, Send) and isinstance(e.message, OrderBroadcast)
    )
    assert asked == sorted([(1, B), (1, C), (2, B), (2, C)])
    net.crash_and_recover(A)


def test_under_core_logic_version_3_a_fok_between_two_holders_ends_unfilled() -> None:
    """Before version 4, B counted as tried after the first round: the next
    asked C alone, whose 4 could not fill the whole."""
    net = Net(ids=(A, B, C))
    net.nodes[A].context.logic_version = 3  # as a version 3 genesis or restart sets it
    done = fok_between_two_holders(net)
    assert [(d.filled_lots, d.reason) for d in done] == [(0, "fok_unfillable")]
    assert net.events(A, Executed) == []


def test_a_holder_heard_nothing_from_for_heartbeat_periods_is_not_asked_until_it_is_back() -> None:
    """C's link is cut for longer than its silence limit (three heartbeat
    periods; A and B still hear each other): A's buy no longer asks C at
    all, so B fills it within the first round instead of after C's window.
    Once C is heard again, the next buy asks C first and trades at its
    better price."""
    net = Net(ids=(A, B, C))
    asks_at_c_and_b(net)
    network = net.nodes[A].network
    limit = network.silence_limit_ms()
    assert limit == 3 * HEARTBEAT

    for _ in range(limit // 10 + 1):
        net.tick(10)
        deliver_around(net, C)
    assert network.out_of_reach(C, net.now())
    assert not network.out_of_reach(B, net.now())
    start = len(net.effects)
    placed_at = net.mono
    net.place(A, Side.BUY, 4, 5_000, "buy")
    while not net.events(A, Executed):
        net.tick(1)
        deliver_around(net, C)
    assert net.mono - placed_at < CONFIG.collection_window_ms
    asked = [
        (e.message.round, e.peer)
        for n, e in net.effects[start:]
        if n == A and isinstance(e, Send) and isinstance(e.message, OrderBroadcast)
    ]
    assert asked == [(1, B)]
    net.run(100)
    fills = [(e.price_ticks, e.quantity_lots, e.counterparty) for e in net.events(A, Executed)]
    assert fills == [(5_000, 4, B)]
    assert not net.nodes[A].stats.get("holders_silent")
    assert net.nodes[A].stats.get("holders_out_of_reach")
    # C is back: its heartbeats (those sent from now on) get through.
    net.run(2 * HEARTBEAT)
    assert not network.out_of_reach(C, net.now())
    net.place(A, Side.BUY, 3, 5_000, "buy-again")
    net.run(200)
    fills = [(e.price_ticks, e.quantity_lots, e.counterparty) for e in net.events(A, Executed)]
    assert fills == [(5_000, 4, B), (4_990, 3, C)]
    net.crash_and_recover(A)
    net.crash_and_recover(A, snapshot=True)


def asked_by_a(net: Net, start: int) -> list[NodeId]:
    """Whom A asked about any order since effect ``start``."""
    return [
        e.peer
        for n, e in net.effects[start:]
        if n == A and isinstance(e, Send) and isinstance(e.message, OrderBroadcast)
    ]


def pause_a(net: Net, ms: int) -> None:
    """A's event loop stalls for ``ms``: B and C run on, and what they send
    A waits on the wire, unread, while A takes no input."""
    for _ in range(ms // 10):
        net.mono += 10
        for node_id in (B, C):
            net.apply(node_id, net.nodes[node_id].tick(net.now()))
        held = []
        while net.wire:
            sender, send = net.wire.popleft()
            if send.peer == A:
                held.append((sender, send))
            else:
                net.receive(send.peer, sender, send.message, send)
        net.wire.extend(held)


def test_a_pause_of_the_node_itself_is_not_its_peers_silence() -> None:
    """A stalls for longer than the silence limit while B and C run on:
    the buy A takes first after the stall, before their waiting messages,
    still asks C, whose ask is best, and trades with it. C cut off before
    the stall stays out of reach after it."""
    net = Net(ids=(A, B, C))
    asks_at_c_and_b(net)
    network = net.nodes[A].network
    pause_a(net, 2 * network.silence_limit_ms())
    assert net.mono - net.nodes[A].context.last_mono_ms > network.silence_limit_ms()
    start = len(net.effects)
    net.place(A, Side.BUY, 4, 5_000, "buy")
    assert asked_by_a(net, start) == [C]
    assert not network.out_of_reach(B, net.now()) and not network.out_of_reach(C, net.now())
    net.run(100)
    fills = [(e.price_ticks, e.quantity_lots, e.counterparty) for e in net.events(A, Executed)]
    assert fills == [(4_990, 4, C)]
    assert not net.nodes[A].stats.get("holders_out_of_reach")

    # C is cut off for longer than its limit, then A stalls again.
    for _ in range(network.silence_limit_ms() // 10 + 1):
        net.tick(10)
        deliver_around(net, C)
    pause_a(net, 2 * network.silence_limit_ms())
    net.wire.clear()
    start = len(net.effects)
    net.place(A, Side.BUY, 2, 5_000, "buy-after-cut")
    assert asked_by_a(net, start) == [B]
    assert network.out_of_reach(C, net.now()) and not network.out_of_reach(B, net.now())
    net.crash_and_recover(A)
    net.crash_and_recover(A, snapshot=True)


def test_under_core_logic_version_2_a_pause_counts_as_every_peers_silence() -> None:
    """A journal written before pauses were set apart replays as it ran:
    under version 2, after a stall past the limit every peer is out of
    reach and the buy asks no one."""
    net = Net(ids=(A, B, C))
    net.nodes[A].context.logic_version = 2  # as a version 2 genesis or restart sets it
    asks_at_c_and_b(net)
    pause_a(net, 2 * net.nodes[A].network.silence_limit_ms())
    start = len(net.effects)
    net.place(A, Side.BUY, 4, 5_000, "buy")
    assert asked_by_a(net, start) == []
    assert net.nodes[A].stats.get("holders_out_of_reach") == 2


def test_under_core_logic_version_1_a_silent_holder_is_asked_as_that_version_did() -> None:
    """A journal written before out-of-reach peers were skipped replays as
    it ran: under its logic version C is asked, however long it was silent."""
    net = Net(ids=(A, B, C))
    net.nodes[A].context.logic_version = 1  # as a version 1 genesis or restart sets it
    asks_at_c_and_b(net)
    for _ in range(4 * HEARTBEAT // 10):
        net.tick(10)
        deliver_around(net, C)
    assert not net.nodes[A].network.out_of_reach(C, net.now())
    start = len(net.effects)
    net.place(A, Side.BUY, 4, 5_000, "buy")
    net.tick(1)
    assert C in asked_by_a(net, start)


def test_a_peer_never_heard_from_counts_silent_from_the_start_or_from_when_it_was_added() -> None:
    """In broadcast routing every peer is asked: one whose link never came
    up (C never runs here) is out of reach once its silence limit passed
    from the node's start, as is a peer added later and never heard."""
    net = Net(replace(CONFIG, targeted_routing=False), ids=(A, B))
    net.place(B, Side.SELL, 10, 5_000, "ask")
    net.apply(A, net.nodes[A].add_peer(D, net.now()))
    network = net.nodes[A].network
    net.run(network.silence_limit_ms() + 100, step_ms=50)
    assert network.out_of_reach(C, net.now()) and network.out_of_reach(D, net.now())
    assert not network.out_of_reach(B, net.now())
    start = len(net.effects)
    net.place(A, Side.BUY, 1, 5_000, "buy")
    net.run(100)
    assert asked_by_a(net, start) == [B]
    assert [(e.quantity_lots, e.counterparty) for e in net.events(A, Executed)] == [(1, B)]
    net.crash_and_recover(A)


def test_a_shorter_heartbeat_period_measures_silence_from_the_change() -> None:
    """Lowering ``heartbeat_ms`` shortens the silence limit; a peer heard
    within the old limit is not out of reach the moment the change lands."""
    slow = replace(CONFIG, heartbeat_ms=10_000)
    net = Net(slow, ids=(A, B))
    net.place(B, Side.SELL, 10, 5_000, "ask")
    net.run(21_000, step_ms=50)
    net.run(4_000, step_ms=50)
    a = net.nodes[A]
    assert not a.network.out_of_reach(B, net.now())
    net.apply(A, a.set_config(replace(slow, heartbeat_ms=1_000), net.now()))
    assert not a.network.out_of_reach(B, net.now())
    start = len(net.effects)
    net.place(A, Side.BUY, 2, 5_000, "buy")
    net.run(300)
    assert B in asked_by_a(net, start)
    net.crash_and_recover(A)


class FourNodes(Net):
    """The harness's network, with a fourth node."""

    @staticmethod
    def genesis(
        node_id: NodeId, config: NodeConfig, peers: tuple[NodeId, ...] = (A, B, C, D)
    ) -> Genesis:
        return Net.genesis(node_id, config, peers)


def test_a_second_round_asks_only_whom_it_needs_when_no_holder_was_silent() -> None:
    """B advertises 10 but has 4 left (its newer advert never reached A):
    round 2 asks C, whose 10 cover the remaining 6, and not D too. Nobody
    was silent, so nobody's adverts are set aside."""
    net = FourNodes(ids=(A, B, C, D))
    for node, price in ((B, 4_990), (C, 5_000), (D, 5_050)):
        net.place(node, Side.SELL, 10, price, f"{node}-ask")
    net.deliver()
    net.run(50)
    net.apply(B, net.nodes[B].deposit("bob", USD.code, 10_000_000, net.now()))
    net.place(B, Side.BUY, 6, 4_990, "bob-buy", trader="bob")
    while net.wire:
        sender, send = net.wire.popleft()
        if not (send.peer == A and isinstance(send.message, Advert)):
            net.receive(send.peer, sender, send.message, send)
    start = len(net.effects)
    net.place(A, Side.BUY, 10, 5_100, "buy")
    net.run(300)
    asked = [
        (e.message.round, e.peer)
        for n, e in net.effects[start:]
        if n == A and isinstance(e, Send) and isinstance(e.message, OrderBroadcast)
    ]
    assert asked == [(1, B), (2, C)]
    assert not net.nodes[A].stats.get("holders_silent")
    fills = sorted((e.counterparty, e.quantity_lots) for e in net.events(A, Executed))
    assert fills == [(B, 4), (C, 6)]
