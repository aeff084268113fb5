"""A hostile holder that offers one lock id for two trades: the pair's
settlement knows its trades by lock id, so a second trade under an id the
originator still has would take the first's place there, and the first
would never be settled."""

from __future__ import annotations

from harness import XYZ, A, B, Net

from datn.domain import USD, Side, TimeInForce
from datn.protocol.clock import Hlc
from datn.protocol.effects import Done, Executed
from datn.protocol.messages import (
    Acceptance,
    Advert,
    Confirmation,
    Offer,
    OrderBroadcast,
    PotentialTrades,
)

LOCK = 4_242


def hostile_trade(net: Net, cid: str, trade_id: int, lock_id: int = LOCK) -> list[Acceptance]:
    """A's trader buys one lot with an IOC; B (scripted, its own core left
    out) offers ``lock_id`` and confirms whatever A accepts of it."""
    net.wire.clear()
    net.place(A, Side.BUY, 1, 5_000, cid, TimeInForce.IOC)
    broadcast = [s.message for n, s in net.wire if n == A and isinstance(s.message, OrderBroadcast)]
    assert broadcast, "A asked B"
    ask = broadcast[-1]
    net.wire.clear()
    offer = Offer(lock_id, 5_000, 1, Hlc(1, 0), 250)
    net.receive(A, B, PotentialTrades(ask.request_id, ask.round, (offer,)))
    accepted = [s.message for n, s in net.wire if n == A and isinstance(s.message, Acceptance)]
    net.wire.clear()
    if accepted:
        confirmation = Confirmation(lock_id, trade_id, XYZ.product_id, Side.BUY, 5_000, 1)
        net.receive(A, B, confirmation)
    net.wire.clear()
    return accepted


def hostile_net() -> Net:
    net = Net()
    advert = Advert(77, XYZ.product_id, Side.SELL, 5_000, 100, Hlc(1, 0), 1, 0)
    net.receive(A, B, advert)
    net.wire.clear()
    return net


def test_a_lock_id_offered_again_while_unsettled_is_not_a_second_trade() -> None:
    net = hostile_net()
    assert hostile_trade(net, "first", 1) == [Acceptance(LOCK, 1)]
    assert hostile_trade(net, "second", 2) == []
    originator = net.nodes[A]
    assert [e.quantity_lots for e in net.events(A, Executed)] == [1]
    assert [d.reason for d in net.events(A, Done)][-1] != "filled"
    assert originator.stats["offers_lock_reused"] == 1
    # The first trade is still what the pair will settle.
    assert list(originator.liability.unsettled(B)) == [LOCK]
    assert net.balance(A, "peer:b", USD.code) == 5_000 * 1
    # A fresh id from the same holder trades as ever.
    assert hostile_trade(net, "third", 3, LOCK + 1) == [Acceptance(LOCK + 1, 1)]
    assert sorted(originator.liability.unsettled(B)) == [LOCK, LOCK + 1]
    net.crash_and_recover(A)
    assert sorted(net.nodes[A].liability.unsettled(B)) == [LOCK, LOCK + 1]


def test_under_core_logic_version_4_a_reused_lock_id_was_taken_again() -> None:
    net = hostile_net()
    net.nodes[A].context.logic_version = 4  # as a version 4 genesis or restart sets it
    hostile_trade(net, "first", 1)
    assert hostile_trade(net, "second", 2) == [Acceptance(LOCK, 1)]
    assert len(net.events(A, Executed)) == 2
    # Two trades booked, one left in the pair's settlement.
    assert list(net.nodes[A].liability.unsettled(B)) == [LOCK]
