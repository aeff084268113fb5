"""Clearing against a hostile peer, under core logic version 6: a bond paid
and then refused stays on the poster's books, a bond is not given back
while trades it backs are unsettled, a peer suspended for a violation still
defaults, and a healed default's old notice plus one hostile notice cannot
drive two honest nodes into declaring each other in default. Each rule is
also shown as it ran under version 5, which journals written then replay."""

from __future__ import annotations

from dataclasses import replace

from harness import CONFIG, XYZ, A, B, C, Net
from test_bonds import clearing, cycle, make_net, post, rest, trade, usd

from datn.clearing.exposure import exposure
from datn.domain import USD, Side, TimeInForce
from datn.ledger import AccountKey
from datn.protocol.clock import Hlc
from datn.protocol.effects import Effect, Pay, Send
from datn.protocol.messages import (
    Acceptance,
    Advert,
    BondAnswer,
    BondRequest,
    Confirmation,
    DefaultNotice,
    NodeId,
    Offer,
    OrderBroadcast,
    PotentialTrades,
    StatementAnswer,
    TradePrint,
)
from datn.protocol.node import NodeCore

CAPITAL = 1_000_000
BOND = 100_000
D = NodeId("d")


def paid_then_refused(logic_version: int) -> tuple[Net, NodeCore, int]:
    """A posts its whole capital as bond with B; B asks for the money, is
    paid, and refuses. The amount A paid out."""
    net = Net(CONFIG, bonds=False)
    a = net.nodes[A]
    a.context.logic_version = logic_version
    net.apply(A, a.fund(USD.code, CAPITAL, net.now()))
    net.wire.clear()
    effects = a.post_bond(B, CAPITAL, net.now())
    (request,) = [
        e.message for e in effects if isinstance(e, Send) and isinstance(e.message, BondRequest)
    ]
    asked = a.receive(B, net.stamp(B), BondAnswer(request.bond_id, "awaiting_funds"), net.now())
    paid = sum(e.amount for e in asked if isinstance(e, Pay) and e.purpose == "bond")
    a.receive(B, net.stamp(B), BondAnswer(request.bond_id, "bad_amount"), net.now())
    return net, a, paid


def test_a_bond_paid_and_then_refused_is_booked_with_the_peer_and_the_peer_suspended() -> None:
    _net, a, paid = paid_then_refused(6)
    assert paid == CAPITAL
    capital = AccountKey("node:capital", USD.code)
    # The money is with B: booked as posted there, not available to post again.
    assert a.context.ledger.available(capital) == 0
    assert a.liability.peers[B].bond_posted == CAPITAL
    assert a.liability.peers[B].suspended == "violation"
    assert a.stats["violations:bond_refused_after_payment"] == 1
    # A refusal that returns the money (receipt_mismatch) still ends as one.
    again = Net(CONFIG, bonds=False)
    c = again.nodes[A]
    again.apply(A, c.fund(USD.code, CAPITAL, again.now()))
    c.post_bond(B, 500, again.now())
    c.receive(B, again.stamp(B), BondAnswer(1, "awaiting_funds"), again.now())
    c.receive(B, again.stamp(B), BondAnswer(1, "receipt_mismatch"), again.now())
    assert c.context.ledger.available(capital) == CAPITAL
    assert not c.liability.peers[B].suspended


def test_under_core_logic_version_5_the_paid_bond_was_lost_from_the_books() -> None:
    _net, a, paid = paid_then_refused(5)
    capital = AccountKey("node:capital", USD.code)
    assert paid == CAPITAL and a.context.ledger.available(capital) == CAPITAL
    assert a.liability.peers[B].bond_posted == 0


def bonded_pair(net: Net, logic_version: int, *, both_bonded: bool = False) -> NodeCore:
    """A (and, if ``both_bonded``, B) posts a bond of 100,000 with the
    other; B runs under ``logic_version``."""
    a, b = net.nodes[A], net.nodes[B]
    b.context.logic_version = logic_version
    for node in (a, b):
        net.apply(node.node_id, node.fund(USD.code, 10**9, net.now()))
    net.apply(A, a.post_bond(B, BOND, net.now()))
    if both_bonded:
        net.apply(B, b.post_bond(A, BOND, net.now()))
    net.deliver()
    return b


def take_every_offer(net: Net, b: NodeCore, broadcast: OrderBroadcast) -> int:
    """A's ``broadcast`` reaches B, and A accepts every lot B offers: how many."""
    effects = b.receive(A, net.stamp(A), broadcast, net.now())
    (offers,) = [
        e.message for e in effects if isinstance(e, Send) and isinstance(e.message, PotentialTrades)
    ]
    for offer in offers.offers:
        b.receive(A, net.stamp(A), Acceptance(offer.lock_id, offer.quantity_lots), net.now())
    return sum(offer.quantity_lots for offer in offers.offers)


def withdrawn_under_open_trades(logic_version: int) -> tuple[Net, NodeCore, list[Effect]]:
    """A buys 20 lots at B at the mark (marked at nothing owed), then asks
    B for its whole bond back."""
    net = Net(replace(CONFIG, mark_quorum=1), bonds=False)
    b = bonded_pair(net, logic_version)
    net.place(B, Side.SELL, 20, 5_000, "s1")
    net.deliver()
    take_every_offer(net, b, OrderBroadcast(7, 1, XYZ.product_id, Side.BUY, 20, 5_000, False))
    net.wire.clear()
    view = b.liability.peers[A]
    assert view.unsettled and b.liability.marked(A) == 0
    request = BondRequest(view.last_bond_id + 1, USD.code, BOND, True)
    return net, b, b.receive(A, net.stamp(A), request, net.now())


def returned(effects: list[Effect]) -> list[int]:
    return [e.amount for e in effects if isinstance(e, Pay) and e.purpose == "bond_return"]


def test_a_bond_is_not_given_back_while_trades_it_backs_are_unsettled() -> None:
    net, b, effects = withdrawn_under_open_trades(6)
    assert returned(effects) == []
    assert b.liability.peers[A].bond_held == BOND
    answers = [e.message for e in effects if isinstance(e, Send)]
    assert any(isinstance(m, BondAnswer) and m.reason == "unsettled" for m in answers)
    # The price falls and A never settles: its bond covers the loss.
    net.receive(B, C, TradePrint(XYZ.product_id, 4_000, 1, net.stamp(C)))
    past_deadline(net, b)
    (record,) = b.liability.peers[A].open_defaults
    assert (record.claimed, record.loss) == (20_000, 0)


def test_under_core_logic_version_5_the_bond_went_back_under_open_trades() -> None:
    _net, _b, effects = withdrawn_under_open_trades(5)
    assert returned(effects) == [BOND]


def past_deadline(net: Net, node: NodeCore) -> None:
    clearing = node.config.clearing
    for _ in range(clearing.settlement_deadline_ms // clearing.settlement_cycle_ms + 2):
        net.mono += clearing.settlement_cycle_ms
        net.apply(node.node_id, node.tick(net.now()))
    net.wire.clear()


def sell_into_a_low_bid(logic_version: int, *, both_bonded: bool = False) -> tuple[Net, int]:
    """A (bond 100,000 at B) sells into B's trader's bid at 1,000 while the
    mark is 5,000, and takes every lot B offers: how many."""
    net = Net(CONFIG, bonds=False)
    b = bonded_pair(net, logic_version, both_bonded=both_bonded)
    net.place(B, Side.BUY, 1_000, 1_000, "low bid")
    net.deliver()
    sell = OrderBroadcast(77, 1, XYZ.product_id, Side.SELL, 1_000, 1_000, False)
    return net, take_every_offer(net, b, sell)


def owing_then_violating(logic_version: int) -> tuple[Net, NodeCore]:
    """A sells into B's trader's bid far below the mark and owes B on it;
    before the deadline it confirms one of B's acceptances on other terms."""
    net, _lots = sell_into_a_low_bid(logic_version, both_bonded=True)
    b = net.nodes[B]
    # Within the cap under version 6 (the lock counted at what A may come
    # to owe through it), four times it before.
    assert b.liability.marked(A) == (-100_000 if logic_version >= 6 else -400_000)
    stamp = Hlc(net.now().wall_ms, 0)
    b.receive(A, net.stamp(A), Advert(1, XYZ.product_id, Side.BUY, 5_000, 1, stamp, 1), net.now())
    net.wire.clear()
    net.place(B, Side.SELL, 1, 5_000, "s-ioc", TimeInForce.IOC)
    (broadcast,) = [
        s.message for n, s in net.wire if n == B and isinstance(s.message, OrderBroadcast)
    ]
    net.wire.clear()
    offer = Offer(4242, 5_000, 1, stamp, 250)
    b.receive(
        A, net.stamp(A), PotentialTrades(broadcast.request_id, broadcast.round, (offer,)), net.now()
    )
    other_terms = Confirmation(4242, 1, XYZ.product_id, Side.SELL, 9_999, 1)
    b.receive(A, net.stamp(A), other_terms, net.now())
    assert b.liability.peers[A].suspended == "violation"
    past_deadline(net, b)
    return net, b


def test_a_peer_suspended_for_a_violation_is_still_declared_in_default() -> None:
    net, b = owing_then_violating(6)
    view = b.liability.peers[A]
    assert view.suspended == "default" and len(view.open_defaults) == 1
    assert net.balance(B, "collateral:a", USD.code) == 0  # its bond claimed
    notices = [s.message for n, s in net.effects if n == B and isinstance(s, Send)]
    assert any(isinstance(m, DefaultNotice) and m.defaulter == A for m in notices)


def test_under_core_logic_version_5_a_violation_dodged_the_default() -> None:
    net, b = owing_then_violating(5)
    view = b.liability.peers[A]
    assert view.suspended == "violation" and not view.open_defaults
    assert net.balance(B, "collateral:a", USD.code) == BOND


class Net4(Net):
    """Four nodes: a, b, c and a hostile d."""

    @staticmethod
    def genesis(node_id, config, peers=(A, B, C, D)):  # type: ignore[no-untyped-def]
        return Net.genesis(node_id, config, peers)


def run_cycles(net: Net, cycles: int, cut: frozenset[NodeId] = frozenset()) -> None:
    """Settlement cycles with every message delivered, but between ``cut``."""
    period = net.nodes[A].config.clearing.settlement_cycle_ms
    for _ in range(cycles):
        net.tick(period)
        while net.wire:
            sender, send = net.wire.popleft()
            if {sender, send.peer} != cut:
                net.receive(send.peer, sender, send.message, send)


def healed_default(logic_version: int) -> tuple[Net, int]:
    """b and c were cut off from each other past the deadline and declared
    each other in default; both operators reinstated, and all settled. c's
    notice of b's default is still with a."""
    net = Net4(CONFIG, (A, B, C, D))
    for node in net.nodes.values():
        node.context.logic_version = logic_version
    a, b, c = net.nodes[A], net.nodes[B], net.nodes[C]
    clearing = a.config.clearing
    deadline = clearing.settlement_deadline_ms // clearing.settlement_cycle_ms + 2
    net.place(C, Side.SELL, 1, 5_000, "s1")
    net.deliver()
    net.place(B, Side.BUY, 1, 5_000, "b1", TimeInForce.IOC)
    net.deliver()
    run_cycles(net, deadline, cut=frozenset({B, C}))
    assert c.liability.peers[B].suspended == "default"
    assert a.liability.peers[B].witnesses == {C: None}
    net.apply(B, b.reinstate(C, net.now()))
    net.apply(C, c.reinstate(B, net.now()))
    run_cycles(net, 5)
    assert not b.liability.unsettled(C) and not c.liability.unsettled(B)
    return net, deadline


def test_one_hostile_notice_cannot_drive_honest_nodes_into_defaulting_each_other() -> None:
    net, deadline = healed_default(6)
    a, b = net.nodes[A], net.nodes[B]
    net.place(B, Side.SELL, 1, 5_000, "s2")
    net.deliver()
    net.place(A, Side.BUY, 1, 5_000, "b2", TimeInForce.IOC)
    net.deliver()
    assert a.liability.unsettled(B)
    # d's notice meets c's old one: a suspends b (no new trades with it),
    # but still settles what they traded, so b has no default to declare.
    net.receive(A, D, DefaultNotice(B, 0, 0))
    assert a.liability.peers[B].suspended == "notices"
    run_cycles(net, deadline)
    assert not a.liability.unsettled(B)
    assert not b.liability.peers[A].suspended and not b.liability.peers[A].open_defaults
    # Once a and b have settled, c's old notice no longer counts: after the
    # operator reinstates b, one more notice from d alone suspends nothing.
    net.apply(A, a.reinstate(B, net.now()))
    net.place(B, Side.SELL, 1, 5_000, "s3")
    net.deliver()
    net.place(A, Side.BUY, 1, 5_000, "b3", TimeInForce.IOC)
    net.deliver()
    net.receive(A, C, DefaultNotice(B, 0, 0))  # c's stale view, said again
    run_cycles(net, 5)
    assert not a.liability.unsettled(B) and a.liability.peers[B].witnesses == {}
    net.receive(A, D, DefaultNotice(B, 0, 0))
    assert not a.liability.peers[B].suspended


def test_under_core_logic_version_5_the_notices_drove_b_to_declare_a_in_default() -> None:
    net, deadline = healed_default(5)
    a, b = net.nodes[A], net.nodes[B]
    net.place(B, Side.SELL, 1, 5_000, "s2")
    net.deliver()
    net.place(A, Side.BUY, 1, 5_000, "b2", TimeInForce.IOC)
    net.deliver()
    net.receive(A, D, DefaultNotice(B, 0, 0))
    assert a.liability.peers[B].suspended == "notices"
    run_cycles(net, deadline)
    assert b.liability.peers[A].suspended == "default"


def sold_into_a_low_bid(logic_version: int) -> tuple[int, int]:
    """The lots B locked for A's sale, and B's exposure to A after, against
    a cap of 100,000."""
    net, lots = sell_into_a_low_bid(logic_version)
    b = net.nodes[B]
    return lots, exposure(b.liability.marked(A), b.holder.open_for(A)[0])


def test_a_sale_into_a_bid_far_below_the_mark_stays_within_the_cap() -> None:
    lots, exposed = sold_into_a_low_bid(6)
    # Each lot may come to cost 4,000 (the mark 5,000 against the price).
    assert lots == 25 and exposed == 100_000


def test_under_core_logic_version_5_the_sale_took_the_exposure_past_the_cap() -> None:
    lots, exposed = sold_into_a_low_bid(5)
    assert lots == 100 and exposed == 400_000


def split_by_a_lost_answer(logic_version: int) -> Net:
    """A (the lower id) proposes cycle 1 with T1; B settles it, and its
    answer is lost. T2 trades. Every answer is lost past the deadline, so
    each declares the other in default; both operators reinstate."""
    net = make_net()
    for node in net.nodes.values():
        node.context.logic_version = logic_version
    post(net, A, 1_000_000)
    post(net, B, 1_000_000)
    rest(net, B, Side.SELL, 3, 5_000, "s1")
    trade(net, A, Side.BUY, 3, 5_000, "b1")
    clearing_config = net.nodes[A].config.clearing
    cycle(net)
    net.deliver(keep=StatementAnswer)
    rest(net, B, Side.BUY, 1, 5_000, "b2")
    trade(net, A, Side.SELL, 1, 5_000, "s2")
    for _ in range(
        clearing_config.settlement_deadline_ms // clearing_config.settlement_cycle_ms + 2
    ):
        cycle(net)
        net.deliver(keep=StatementAnswer)
    assert clearing(net, A).suspended == "default" and clearing(net, B).suspended == "default"
    net.apply(A, net.nodes[A].reinstate(B, net.now()))
    net.apply(B, net.nodes[B].reinstate(A, net.now()))
    for _ in range(30):
        cycle(net)
        net.deliver()
    return net


def test_a_pair_split_by_a_lost_answer_heals_after_a_default() -> None:
    net = split_by_a_lost_answer(6)
    assert not clearing(net, A).unsettled and not clearing(net, B).unsettled
    assert usd(net, A, "rail:b") == -usd(net, B, "rail:a") != 0


def test_under_core_logic_version_5_the_pair_never_mirrored_again() -> None:
    net = split_by_a_lost_answer(5)
    assert clearing(net, A).unsettled
    assert usd(net, A, "rail:b") != -usd(net, B, "rail:a")
