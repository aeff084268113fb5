"""The node core between two nodes, driven by hand: the trade protocol's rules."""

from __future__ import annotations

from dataclasses import replace

import pytest
from harness import CONFIG, OWNER, TRADER, XYZ, A, B, Net

from datn.clearing.config import ClearingConfig
from datn.clearing.quota import QuotaConfig
from datn.domain import USD, DomainError, Side, TimeInForce
from datn.protocol.clock import Hlc
from datn.protocol.effects import Done, Executed, Reply, Send
from datn.protocol.messages import (
    Acceptance,
    Confirmation,
    OrderBroadcast,
    PotentialTrades,
    Refusal,
)
from datn.protocol.venue import OrderRequest

Pair = Net


@pytest.fixture
def pair() -> Pair:
    pair = Pair()
    pair.place(B, Side.SELL, 10, 5_000, "s1")
    pair.deliver()  # B's order rests and is advertised to A
    return pair


def test_an_order_at_one_node_trades_with_a_resting_order_at_another(pair: Pair) -> None:
    pair.place(A, Side.BUY, 4, 5_100, "b1")
    pair.deliver()
    executions = [(n, r.event) for n, r in pair.replies if isinstance(r.event, Executed)]
    assert [(n, e.price_ticks, e.quantity_lots, e.counterparty) for n, e in executions] == [
        (B, 5_000, 4, A),
        (A, 5_000, 4, B),
    ]
    # Both ledgers hold the trade, mirrored in each other's peer account.
    assert pair.balance(A, OWNER, XYZ.product_id) == 1_004
    assert pair.balance(B, OWNER, XYZ.product_id) == 996
    assert pair.balance(A, "peer:b", USD.code) == 20_000
    assert pair.balance(B, "peer:a", USD.code) == -20_000
    assert pair.balance(A, "peer:b", XYZ.product_id) == -4
    assert pair.balance(B, "peer:a", XYZ.product_id) == 4
    assert not pair.nodes[A].originator.working and not pair.nodes[B].holder.locks


def test_an_acceptance_after_expiry_is_refused_and_the_originator_tries_again(
    pair: Pair,
) -> None:
    pair.place(A, Side.BUY, 4, 5_100, "b1")
    held = pair.deliver(keep=Acceptance)
    late_lock = held[0][1].message.lock_id  # type: ignore[union-attr]
    pair.mono += CONFIG.lock_ttl_ms  # the lock expires at B before the acceptance lands
    pair.wire.extend(held)
    pair.deliver()
    assert pair.nodes[B].holder.decisions[late_lock].message == Refusal(late_lock, "expired")
    # The refusal left the quantity open: A broadcast again and traded on a new lock.
    pair.deliver()
    decisions = [d.message for d in pair.nodes[B].holder.decisions.values()]
    trades = [d for d in decisions if isinstance(d, Confirmation)]
    assert len(trades) == 1
    assert trades[0].lock_id != late_lock and trades[0].quantity_lots == 4
    assert pair.balance(A, OWNER, XYZ.product_id) == 1_004


def test_a_repeated_acceptance_gets_the_same_decision(pair: Pair) -> None:
    pair.place(A, Side.BUY, 4, 5_100, "b1")
    held = pair.deliver(keep=Acceptance)
    sender, acceptance = held[0]
    first = pair.nodes[B].receive(sender, acceptance.hlc, acceptance.message, pair.now())
    again = pair.nodes[B].receive(sender, acceptance.hlc, acceptance.message, pair.now())
    decisions = [e.message for e in first + again if isinstance(e, Send)]
    decisions = [m for m in decisions if isinstance(m, Confirmation | Refusal)]
    assert len(decisions) == 2 and decisions[0] == decisions[1]
    assert isinstance(decisions[0], Confirmation)
    assert pair.balance(B, OWNER, XYZ.product_id) == 996  # one trade, not two


def test_a_restart_voids_every_lock_and_replay_rebuilds_the_same_state(pair: Pair) -> None:
    pair.place(A, Side.BUY, 4, 5_100, "b1")
    held = pair.deliver(keep=Acceptance)
    pre_crash_lock = held[0][1].message.lock_id  # type: ignore[union-attr]
    assert pre_crash_lock in pair.nodes[B].holder.locks
    pair.crash_and_recover(B)  # checks the rebuilt node hashes equal to the old one
    rebuilt = pair.nodes[B]
    assert not rebuilt.holder.locks
    pair.wire.extend(held)
    pair.deliver()
    decision = rebuilt.holder.decisions[pre_crash_lock].message
    assert isinstance(decision, Refusal) and decision.reason == "expired_by_restart"
    # Whatever traded afterwards did so on a lock offered after the restart.
    decisions = [d.message for d in rebuilt.holder.decisions.values()]
    taken = [d.lock_id for d in decisions if isinstance(d, Confirmation)]
    assert pre_crash_lock not in taken


def test_potential_trades_carry_no_trader_identity(pair: Pair) -> None:
    pair.place(A, Side.BUY, 4, 5_100, "b1")
    sent = [repr(s.message) for _, s in pair.wire]
    while pair.wire:
        pair.deliver()
        sent += [repr(s.message) for _, s in pair.wire]
    assert sent and not any("trader-alice" in text for text in sent)


def test_a_fok_order_takes_nothing_unless_it_can_take_everything(pair: Pair) -> None:
    request = OrderRequest(TRADER, "f1", XYZ.product_id, Side.BUY, 20, 5_100, TimeInForce.FOK)
    pair.apply(A, pair.nodes[A].place(request, pair.now()))
    pair.deliver()
    done = [r.event for n, r in pair.replies if n == A and isinstance(r.event, Done)]
    assert [(d.filled_lots, d.reason) for d in done] == [(0, "fok_unfillable")]
    assert pair.balance(B, OWNER, XYZ.product_id) == 1_000
    assert not pair.nodes[B].holder.locks


def test_cancelling_a_partly_filled_resting_order_reports_what_filled(pair: Pair) -> None:
    pair.place(A, Side.BUY, 4, 5_100, "b1")
    pair.deliver()
    resting_id = next(iter(pair.nodes[B].resting.orders))
    pair.apply(B, pair.nodes[B].cancel(TRADER, resting_id, pair.now()))
    pair.deliver()
    done = [r.event for n, r in pair.replies if n == B and isinstance(r.event, Done)]
    assert [(d.filled_lots, d.cancelled_lots, d.reason) for d in done] == [(4, 6, "cancelled")]
    # The hold behind the cancelled lots is free again; the advert withdrew the order.
    assert pair.nodes[B].context.ledger.total_held(XYZ.product_id) == 0
    assert not any(v.adverts for v in pair.nodes[A].network.views.values())


def fok_refused_by_a_restarted_holder(pair: Pair) -> list[Done]:
    """A FOK at A whose one holder, B, restarts between its offer and A's
    acceptance (the restart voids the lock A is taking): what A reports."""
    request = OrderRequest(TRADER, "f2", XYZ.product_id, Side.BUY, 4, 5_100, TimeInForce.FOK)
    pair.apply(A, pair.nodes[A].place(request, pair.now()))
    held = pair.deliver(keep=Acceptance)
    pair.crash_and_recover(B)
    pair.wire.extend(held)
    pair.deliver()
    return [r.event for n, r in pair.replies if n == A and isinstance(r.event, Done)]


def test_a_fok_refused_by_a_restarted_holder_asks_again_whole_and_names_the_holder(
    pair: Pair,
) -> None:
    """Nothing of the FOK filled and nothing is in doubt, so, as for any
    order a holder refused, the next round asks again, for the whole
    quantity: B offers anew and the FOK fills whole."""
    done = fok_refused_by_a_restarted_holder(pair)
    assert [(d.filled_lots, d.reason, d.failed_holders) for d in done] == [(4, "filled", (B,))]
    assert pair.balance(B, OWNER, XYZ.product_id) == 996
    assert pair.balance(A, OWNER, XYZ.product_id) == 1_004


def test_under_core_logic_version_2_a_refused_fok_ends_unfilled(pair: Pair) -> None:
    """A journal written before FOK orders asked again replays as it ran."""
    pair.nodes[A].context.logic_version = 2  # as a version 2 genesis or restart sets it
    done = fok_refused_by_a_restarted_holder(pair)
    assert [(d.filled_lots, d.reason, d.failed_holders) for d in done] == [
        (0, "fok_unfillable", (B,))
    ]
    assert pair.balance(B, OWNER, XYZ.product_id) == 1_000


# ------------------------------------------------- the holder's memory

ASKING = replace(CONFIG, clearing=ClearingConfig(quota=QuotaConfig(ratio_min_offered_minor=10**15)))
"""Quotas by bond alone: B keeps offering to A, which takes nothing here."""


def _ask(pair: Pair, request_id: int, wall_ms: int) -> list[PotentialTrades]:
    """B's answers to an order broadcast from A stamped ``wall_ms`` (A's HLC)."""
    message = OrderBroadcast(request_id, 1, XYZ.product_id, Side.BUY, 1, 5_000, False)
    wall_ms += pair.now().wall_ms - 20_000  # A's clock, near B's
    effects = pair.nodes[B].receive(A, Hlc(wall_ms, 0), message, pair.now())
    return [e.message for e in effects if isinstance(e, Send)]  # type: ignore[misc]


def test_a_repeated_broadcast_gets_the_answer_it_got_before(pair: Pair) -> None:
    (first,) = _ask(pair, 7, 10_000)
    assert first.offers
    assert _ask(pair, 7, 10_000) == [first]  # the same locks, none new
    assert len(pair.nodes[B].holder.locks) == len(first.offers)


def test_the_holder_keeps_a_bounded_number_of_answers_per_peer() -> None:
    pair = Pair(replace(CONFIG, max_answers_per_peer=3))
    pair.place(B, Side.SELL, 10, 5_000, "s1")
    pair.deliver()
    for request_id in range(1, 6):
        _ask(pair, request_id, 10_000 + request_id)
    view = pair.nodes[B].holder.memories[A]
    assert list(view.answers) == [(3, 1), (4, 1), (5, 1)]
    # A repeat of a forgotten broadcast is stale: no answer, no new locks.
    locks = dict(pair.nodes[B].holder.locks)
    assert _ask(pair, 1, 10_001) == []
    assert pair.nodes[B].holder.locks == locks
    assert pair.nodes[B].stats["broadcasts_stale"] == 1
    # A remembered one is still answered as before.
    (again,) = _ask(pair, 5, 10_005)
    assert again == view.answers[(5, 1)][1]


def test_answers_older_than_the_memory_window_are_forgotten() -> None:
    pair = Pair(ASKING)
    pair.place(B, Side.SELL, 10, 5_000, "s1")
    pair.deliver()
    window = CONFIG.broadcast_memory_ms
    _ask(pair, 1, 10_000)
    _ask(pair, 2, 10_000 + window + 1)  # by A's own clock: B's clock plays no part
    assert list(pair.nodes[B].holder.memories[A].answers) == [(2, 1)]
    assert _ask(pair, 1, 10_000) == []  # the network's copy of a forgotten one
    # Older than the window behind A's newest broadcast: stale, even if new.
    assert _ask(pair, 3, 10_000) == []
    assert pair.nodes[B].stats["broadcasts_stale"] == 2
    (within,) = _ask(pair, 4, 10_002)
    assert within.offers


def test_a_broadcast_sent_again_under_a_new_stamp_is_a_new_message() -> None:
    """Originators never resend a broadcast; a copy with a new stamp is not
    the network's duplicate but a new message (refusing replayed frames is
    the link's job), so once its first answer is forgotten it is answered
    afresh."""
    pair = Pair(replace(ASKING, max_answers_per_peer=1))
    pair.place(B, Side.SELL, 10, 5_000, "s1")
    pair.deliver()
    (first,) = _ask(pair, 1, 10_000)
    _ask(pair, 2, 10_001)  # pushes the first answer out
    (again,) = _ask(pair, 1, 10_002)
    assert again.offers and {o.lock_id for o in again.offers}.isdisjoint(
        o.lock_id for o in first.offers
    )


def test_memory_limits_are_checked() -> None:
    with pytest.raises(DomainError):
        replace(CONFIG, max_answers_per_peer=0)
    with pytest.raises(DomainError):
        replace(CONFIG, broadcast_memory_ms=CONFIG.lock_ttl_ms - 1)


def test_lots_that_come_back_from_a_partly_taken_lock_and_trade_at_once_are_booked() -> None:
    """A lock taken in part sends its other lots back to their order, where
    they may trade at once with an order of the same node that rested
    across them meanwhile, and finish it: that trade is booked on the
    ledger and reported, and the book and the node's records agree."""
    net = Net()
    bob = "trader-bob"
    for node in (A, B):
        net.apply(node, net.nodes[node].deposit(bob, USD.code, 10_000_000, net.now()))
        net.apply(node, net.nodes[node].deposit(bob, XYZ.product_id, 1_000, net.now()))
    net.place(A, Side.BUY, 3, 100, "a1")  # alice bids 3 at A
    net.place(B, Side.BUY, 1, 101, "b-bob", trader=bob)  # bob bids 1 at B, higher
    net.deliver()
    net.place(B, Side.SELL, 3, 100, "b1")  # 1 trades at B, 2 are asked of A
    deliver_only(net, OrderBroadcast)  # A locks all 3 lots of alice's bid for B
    net.place(A, Side.SELL, 1, 100, "a-bob", trader=bob)  # crosses alice's bid, which is locked
    deliver_only(net, OrderBroadcast)  # B has nothing for bob's sell
    deliver_only(net, PotentialTrades)  # bob's sell rests at A; B accepts 2 of the 3 lots
    deliver_only(net, Acceptance)  # 1 lot comes back to alice's bid, across bob's sell
    a = net.nodes[A]
    book = a.resting.books[XYZ.product_id]
    in_book = {v.order_id for side in (Side.BUY, Side.SELL) for v in book.resting_orders(side)}
    assert set(a.resting.orders) == in_book
    bob_at_a = [e for n, r in net.replies if n == A and r.trader_id == bob for e in [r.event]]
    executed = [e for e in bob_at_a if isinstance(e, Executed)]
    assert [(e.price_ticks, e.quantity_lots) for e in executed] == [(100, 1)]
    assert [e.reason for e in bob_at_a if isinstance(e, Done)] == ["filled"]
    assert net.balance(A, f"trader:{bob}", XYZ.product_id) == 999
    assert net.balance(A, OWNER, XYZ.product_id) == 1_003
    assert a.context.ledger.check_invariants() == []
    for order_id in list(a.resting.orders):  # every order left can be cancelled
        net.apply(A, a.cancel(a.resting.orders[order_id].trader_id, order_id, net.now()))


def deliver_only(net: Net, kind: type) -> None:
    """Deliver the messages of one kind on the wire, in order; keep the rest."""
    kept = []
    while net.wire:
        sender, send = net.wire.popleft()
        if isinstance(send.message, kind):
            net.receive(send.peer, sender, send.message, send)
        else:
            kept.append((sender, send))
    net.wire.extend(kept)


def test_a_peer_advertising_a_better_price_is_asked_even_when_the_own_book_covers_the_order() -> (
    None
):
    """No trade-through of a price the node knew of: the own book could
    fill the whole order at 105, but a peer advertises 100, so the peer is
    asked and the order fills there."""
    net = Net()
    net.apply(A, net.nodes[A].deposit("trader-bob", USD.code, 10_000_000, net.now()))
    net.place(A, Side.SELL, 3, 105, "a-ask")
    net.place(B, Side.SELL, 3, 100, "b-ask")
    net.deliver()
    effects = net.place(A, Side.BUY, 3, 110, "buy", trader="trader-bob")
    asked = [
        s.peer for s in effects if isinstance(s, Send) and isinstance(s.message, OrderBroadcast)
    ]
    assert asked == [B]
    net.run(100)
    fills = [r.event for n, r in net.replies if n == A and r.trader_id == "trader-bob"]
    executed = [
        (e.price_ticks, e.quantity_lots, e.counterparty) for e in fills if isinstance(e, Executed)
    ]
    assert executed == [(100, 3, B)]
    # The node's own ask at 105 is still there, unlocked.
    asks = net.nodes[A].resting.books[XYZ.product_id].resting_orders(Side.SELL)
    assert [(v.price_ticks, v.open_lots, v.locked_lots) for v in asks] == [(105, 3, 0)]


def test_an_own_book_at_the_best_price_is_enough_and_no_peer_is_asked() -> None:
    net = Net()
    net.apply(A, net.nodes[A].deposit("trader-bob", USD.code, 10_000_000, net.now()))
    net.place(A, Side.SELL, 3, 100, "a-ask")
    net.place(B, Side.SELL, 3, 100, "b-ask")
    net.deliver()
    effects = net.place(A, Side.BUY, 3, 110, "buy", trader="trader-bob")
    assert not [s for s in effects if isinstance(s, Send) and isinstance(s.message, OrderBroadcast)]
    bob = [
        r.event for r in (e for e in effects if isinstance(e, Reply)) if r.trader_id == "trader-bob"
    ]
    assert [
        (e.price_ticks, e.quantity_lots, e.counterparty) for e in bob if isinstance(e, Executed)
    ] == [(100, 3, A)]


def test_the_collection_window_waits_for_a_jittery_peers_round_trip_budget() -> None:
    net = Net()
    view = net.nodes[A].network.views[B]
    for rtt in (40, 120, 40, 120, 40, 120):
        view.sample_rtt(rtt)
    config = net.nodes[A].context.config
    budget = view.srtt_ms + 4 * view.rttvar_ms
    assert budget > view.srtt_ms + config.acceptance_margin_ms
    expected = min(budget + config.acceptance_margin_ms, config.lock_ttl_ms // 2)
    assert net.nodes[A].originator._window_ms([B]) == expected
    assert expected > view.srtt_ms + config.acceptance_margin_ms
