"""Bonds, exposure caps, lock quotas, settlement and defaults between two
nodes, driven by hand.

A bond counts only once the holder's own rail reports its money received
(DESIGN.md section 7): the poster claims it with a bond request, the holder
answers that it awaits the funds, the poster pays, and the holder books the
bond when the rail reports the payment; the poster books it on the holder's
final answer. The harness's rail delivers a payment at once unless a test
closes it.

Exposure is marked at prices the peer does not set: a node values what a
peer owes at the median of the latest prices of every other source. These
two-node tests count a mark from a single source (``mark_quorum=1``; the
quorum itself is tested in test_hardening.py), so a test that needs the
price to fall has a third node, C, report a trade at the lower price; with
the node's own last price beside it, the median (the lower of two) is C's.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from harness import CONFIG, OWNER, XYZ, A, B, C, Net, with_clearing

from datn.clearing.quota import QuotaConfig
from datn.clearing.settlement import build_statement
from datn.domain import USD, Side, TimeInForce
from datn.ledger import AccountKey
from datn.protocol.effects import Pay, Send
from datn.protocol.liability import STATEMENT_LOCKS, PeerClearing
from datn.protocol.messages import (
    Acceptance,
    BondAnswer,
    BondRequest,
    NodeId,
    OrderBroadcast,
    PotentialTrades,
    StatementAnswer,
    StatementProposal,
    TradePrint,
)
from datn.protocol.node import NodeConfig
from datn.wire import encode_message
from datn.wire.limits import MAX_FRAME_BYTES

CAPITAL = 100_000_000
"""What each node is funded with, to post bonds from."""
UNJUDGED = 10**15
"""A ratio_min_offered_minor no test reaches: quotas by bond alone."""
USD_CODE = USD.code


def config(**clearing: object) -> NodeConfig:
    """The harness's configuration with these clearing knobs; quotas by bond
    alone unless ``quota`` is given."""
    clearing.setdefault("quota", QuotaConfig(ratio_min_offered_minor=UNJUDGED))
    return with_clearing(replace(CONFIG, mark_quorum=1), **clearing)


def make_net(a: NodeConfig | None = None, b: NodeConfig | None = None) -> Net:
    """A and B funded with capital, no bond posted either way yet."""
    net = Net(config(), bonds=False, configs={A: a or config(), B: b or config()})
    for node_id, node in net.nodes.items():
        net.apply(node_id, node.fund(USD_CODE, CAPITAL, net.now()))
    return net


def other(node_id: NodeId) -> NodeId:
    return B if node_id == A else A


def post(net: Net, poster: NodeId, amount: int) -> None:
    """``poster`` posts ``amount`` with the other node, and the wire runs dry."""
    net.apply(poster, net.nodes[poster].post_bond(other(poster), amount, net.now()))
    net.deliver()


def withdraw(net: Net, poster: NodeId, amount: int) -> None:
    net.apply(poster, net.nodes[poster].withdraw_bond(other(poster), amount, net.now()))
    net.deliver()


def clearing(net: Net, node_id: NodeId) -> PeerClearing:
    """What ``node_id`` keeps to clear with the other node."""
    return net.nodes[node_id].liability.peers[other(node_id)]


def usd(net: Net, node_id: NodeId, owner: str) -> int:
    return net.balance(node_id, owner, USD_CODE)


def capital(net: Net, node_id: NodeId) -> int:
    """The node's capital not held for a bond in flight."""
    ledger = net.nodes[node_id].context.ledger
    return ledger.available(AccountKey("node:capital", USD_CODE))


def rest(net: Net, node_id: NodeId, side: Side, lots: int, price: int, cid: str) -> None:
    net.place(node_id, side, lots, price, cid)
    net.deliver()


def trade(net: Net, node_id: NodeId, side: Side, lots: int, price: int, cid: str) -> None:
    """An IOC order at ``node_id``, worked to its end."""
    net.place(node_id, side, lots, price, cid, TimeInForce.IOC)
    net.deliver()


def price_falls_at(net: Net, node_id: NodeId, price: int) -> None:
    """``node_id`` hears that C traded XYZ at ``price``: see the module docstring."""
    net.receive(node_id, C, TradePrint(XYZ.product_id, price, 1, net.stamp(C)))


def broadcast(request_id: int, lots: int, price: int, side: Side = Side.BUY) -> OrderBroadcast:
    return OrderBroadcast(request_id, 1, XYZ.product_id, side, lots, price, False)


def ask(net: Net, originator: NodeId, message: OrderBroadcast) -> PotentialTrades:
    """The other node's answer to ``message`` from ``originator``. The answer
    is returned, not put on the wire: the originator never placed an order
    behind the broadcast, so the answer would mean nothing to it."""
    holder = other(originator)
    effects = net.nodes[holder].receive(originator, net.stamp(originator), message, net.now())
    net.apply(holder, [e for e in effects if not isinstance(e, Send)])
    (answer,) = [e.message for e in effects if isinstance(e, Send)]
    assert isinstance(answer, PotentialTrades)
    return answer


def bond_answers(net: Net, node_id: NodeId) -> list[BondAnswer]:
    """Every bond answer ``node_id`` sent, in order."""
    return [m for m in net.sent(node_id, BondAnswer) if isinstance(m, BondAnswer)]


def bond_requests(net: Net, node_id: NodeId) -> list[BondRequest]:
    """Every bond request ``node_id`` sent, in order (retries included)."""
    return [m for m in net.sent(node_id, BondRequest) if isinstance(m, BondRequest)]


def resend_ms(net: Net) -> int:
    return net.nodes[A].config.clearing.bond_resend_ms


# ------------------------------------------------------------------ bonds


def test_a_bond_counts_on_both_ledgers_only_once_its_money_is_received() -> None:
    net = make_net()
    net.rail_open = False
    net.apply(A, net.nodes[A].post_bond(B, 30_000, net.now()))
    ((_, request),) = net.wire
    net.wire.clear()
    assert request.message == BondRequest(1, USD_CODE, 30_000, False)
    # Not acknowledged yet: the capital is only held.
    assert usd(net, A, "bond-posted:b") == 0 and capital(net, A) == CAPITAL - 30_000
    answers = []
    for _ in range(2):  # the request arrives twice
        effects = net.receive(B, A, request.message, request)
        answers += [e.message for e in effects if isinstance(e, Send)]
    assert answers == [BondAnswer(1, "awaiting_funds")] * 2
    net.deliver()  # both answers reach A, which pays once
    assert net.payments(A) == [Pay(B, "bond", 1, USD_CODE, 30_000)]
    assert (clearing(net, A).bond_posted, clearing(net, B).bond_held) == (0, 0)
    # The rail reports the money at B: B books the bond, then A on B's answer.
    net.pay(*net.unpaid.pop())
    assert usd(net, B, "bond-held:a") == -30_000 and usd(net, A, "bond-posted:b") == 0
    net.deliver()
    assert usd(net, A, "bond-posted:b") == 30_000
    assert usd(net, A, "node:capital") == CAPITAL - 30_000
    assert usd(net, B, "bond-held:a") == -30_000  # mirrors A's bond-posted:b
    assert usd(net, B, "collateral:a") == 30_000
    assert (clearing(net, A).bond_posted, clearing(net, B).bond_held) == (30_000, 30_000)
    assert bond_answers(net, B)[-1] == BondAnswer(1, "")


def test_a_lost_final_answer_is_asked_for_again_and_a_repeated_answer_books_nothing() -> None:
    net = make_net()
    net.rail_open = False
    net.apply(A, net.nodes[A].post_bond(B, 30_000, net.now()))
    net.deliver()
    net.pay(*net.unpaid.pop())
    assert [s.message for _, s in net.wire] == [BondAnswer(1, "")]
    net.wire.clear()  # lost
    assert (clearing(net, A).bond_posted, clearing(net, B).bond_held) == (0, 30_000)
    net.tick(resend_ms(net))
    net.deliver()  # A asks again; B repeats its answer and books nothing more
    assert (clearing(net, A).bond_posted, clearing(net, B).bond_held) == (30_000, 30_000)
    before = (net.balances(A), net.balances(B))
    for _ in range(2):  # the answer arrives twice more
        net.receive(A, B, BondAnswer(1, ""))
    net.deliver()
    assert (net.balances(A), net.balances(B)) == before
    assert clearing(net, A).bond_posted == 30_000
    assert len(net.payments(A)) == 1


def test_a_lost_bond_request_or_answer_is_sent_again_until_answered() -> None:
    net = make_net()
    net.apply(A, net.nodes[A].post_bond(B, 30_000, net.now()))
    net.wire.clear()  # the request is lost
    net.tick(resend_ms(net))
    net.deliver(keep=BondAnswer)  # and then B's answer that it awaits the money
    assert net.payments(A) == [] and clearing(net, B).claim is not None
    net.tick(resend_ms(net))
    net.deliver()
    assert usd(net, B, "bond-held:a") == -30_000 and usd(net, A, "bond-posted:b") == 30_000
    assert len(net.payments(A)) == 1


def test_a_bond_cannot_be_posted_beyond_the_capital() -> None:
    net = make_net()
    net.apply(A, net.nodes[A].post_bond(B, CAPITAL + 1, net.now()))
    assert not net.wire and net.nodes[A].stats["bond_post_without_capital"] == 1


def test_a_peer_that_claims_a_bond_but_never_pays_gets_no_quota() -> None:
    net = make_net()
    net.rail_open = False  # A's money never reaches B
    rest(net, B, Side.SELL, 5, 5_000, "s1")
    post(net, A, 30_000)
    claim = BondRequest(1, USD_CODE, 30_000, False)
    assert clearing(net, B).claim == claim and clearing(net, B).bond_held == 0
    answer = ask(net, A, broadcast(1, 5, 5_000))
    assert answer.offers == () and answer.limited == "no_bond"
    # Asking again gets the same: the claim stays pending, and A pays no more.
    net.tick(resend_ms(net))
    net.deliver()
    assert clearing(net, B).claim == claim and clearing(net, B).bond_held == 0
    assert bond_answers(net, B)[-1] == BondAnswer(1, "awaiting_funds")
    assert ask(net, A, broadcast(2, 5, 5_000)).limited == "no_bond"
    assert usd(net, B, "bond-held:a") == 0 and usd(net, A, "bond-posted:b") == 0
    assert len(net.payments(A)) == 1 and capital(net, A) == CAPITAL - 30_000
    assert not net.nodes[B].holder.locks


def test_money_received_before_the_claim_is_booked_when_the_claim_arrives() -> None:
    net = make_net()
    net.apply(A, net.nodes[A].post_bond(B, 30_000, net.now()))
    delayed = list(net.wire)
    net.wire.clear()
    # The money (sent by A's operator out of band) arrives first: nothing is
    # claimed, so nothing is booked yet.
    net.apply(B, net.nodes[B].bond_received(A, 1, USD_CODE, 30_000, net.now()))
    assert clearing(net, B).bond_held == 0 and usd(net, B, "bond-held:a") == 0
    net.wire.extend(delayed)
    net.deliver()
    assert bond_answers(net, B) == [BondAnswer(1, "")]  # no wait for funds
    assert usd(net, B, "bond-held:a") == -30_000 and usd(net, A, "bond-posted:b") == 30_000
    assert net.payments(A) == []  # A was never asked to pay: it had been paid
    assert clearing(net, B).receipts == {}


def test_a_second_bond_request_waits_until_the_first_is_answered() -> None:
    net = make_net()
    net.rail_open = False
    net.apply(A, net.nodes[A].post_bond(B, 10_000, net.now()))
    net.apply(A, net.nodes[A].post_bond(B, 20_000, net.now()))
    assert capital(net, A) == CAPITAL - 30_000  # both held
    net.deliver()
    net.tick(resend_ms(net))
    net.deliver()  # B awaits the first one's money; only the first is resent
    assert {m.bond_id for m in bond_requests(net, A)} == {1}
    net.pay(*net.unpaid.pop())
    net.deliver()
    assert bond_requests(net, A)[-1] == BondRequest(2, USD_CODE, 20_000, False)
    assert (clearing(net, A).bond_posted, clearing(net, B).bond_held) == (10_000, 10_000)
    net.pay(*net.unpaid.pop())
    net.deliver()
    assert (clearing(net, A).bond_posted, clearing(net, B).bond_held) == (30_000, 30_000)
    assert usd(net, A, "bond-posted:b") == 30_000 and usd(net, B, "bond-held:a") == -30_000


def test_a_request_out_of_sequence_is_refused_and_changes_nothing() -> None:
    net = make_net()
    net.rail_open = False
    net.apply(A, net.nodes[A].post_bond(B, 10_000, net.now()))
    net.receive(B, A, BondRequest(2, USD_CODE, 10_000, False))  # id 1 not answered yet
    assert bond_answers(net, B) == [BondAnswer(2, "bad_sequence")]
    assert clearing(net, B).claim is None and net.nodes[B].stats["bond_refused:bad_sequence"] == 1
    net.deliver()  # A ignores the answer to a request it did not make
    assert clearing(net, A).outgoing == BondRequest(1, USD_CODE, 10_000, False)
    assert net.payments(A) == [Pay(B, "bond", 1, USD_CODE, 10_000)]


def test_a_receipt_that_differs_from_the_claim_is_not_booked() -> None:
    net = make_net()
    net.rail_open = False
    post(net, A, 30_000)
    net.apply(B, net.nodes[B].bond_received(A, 1, USD_CODE, 29_999, net.now()))
    net.apply(B, net.nodes[B].bond_received(A, 2, XYZ.product_id, 30_000, net.now()))
    assert net.nodes[B].stats["bond_receipt_mismatch"] == 1
    assert net.nodes[B].stats["bond_receipt_invalid"] == 1  # not the bond asset
    assert clearing(net, B).bond_held == 0 and usd(net, B, "bond-held:a") == 0
    # The claim ends, refused, and what arrived goes back.
    assert clearing(net, B).claim is None
    assert bond_answers(net, B)[-1] == BondAnswer(1, "receipt_mismatch")
    assert net.payments(B, "bond_return") == [Pay(A, "bond_return", 1, USD_CODE, 29_999)]
    net.deliver()
    assert clearing(net, A).bond_posted == 0 and clearing(net, A).outgoing is None


def test_a_claim_whose_receipt_differs_is_answered_and_does_not_block_the_pair() -> None:
    net = make_net()
    net.rail_open = False
    post(net, A, 30_000)
    net.apply(A, net.nodes[A].post_bond(B, 10_000, net.now()))  # queued behind the first
    net.unpaid.clear()  # the rail delivers A's payment short:
    net.apply(B, net.nodes[B].bond_received(A, 1, USD_CODE, 29_999, net.now()))
    net.tick(resend_ms(net))
    net.deliver()
    # B answers the claim finally (a refusal) and gives back what it received...
    final = [m for m in bond_answers(net, B) if m.reason != "awaiting_funds"]
    assert {m.bond_id for m in final} == {1} and final[0].reason
    assert net.payments(B, "bond_return") == [Pay(A, "bond_return", 1, USD_CODE, 29_999)]
    # ...so A releases the first hold and its second request goes out and is booked.
    assert bond_requests(net, A)[-1] == BondRequest(2, USD_CODE, 10_000, False)
    net.pay(*net.unpaid.pop())
    net.deliver()
    assert (clearing(net, A).bond_posted, clearing(net, B).bond_held) == (10_000, 10_000)
    assert capital(net, A) == CAPITAL - 10_000


def test_a_restart_in_the_middle_of_posting_neither_loses_nor_repeats_the_payment() -> None:
    net = make_net()
    net.rail_open = False
    post(net, A, 30_000)  # A has paid; the money is still on the rail
    net.crash_and_recover(A)
    net.crash_and_recover(B)
    net.tick(resend_ms(net))
    net.deliver()  # A asks again; B, rebuilt, still awaits the money
    assert len(net.payments(A)) == 1 and clearing(net, B).claim is not None
    net.pay(*net.unpaid.pop())
    net.deliver()
    assert (clearing(net, A).bond_posted, clearing(net, B).bond_held) == (30_000, 30_000)
    net.crash_and_recover(B, snapshot=True)


def test_a_bond_is_withdrawn_when_nothing_is_owed() -> None:
    net = make_net()
    post(net, A, 30_000)
    withdraw(net, A, 10_000)
    assert usd(net, A, "bond-posted:b") == 20_000 and usd(net, B, "bond-held:a") == -20_000
    assert usd(net, B, "collateral:a") == 20_000
    assert usd(net, A, "node:capital") == CAPITAL - 20_000
    # B booked the withdrawal and pays the money back over its rail.
    assert net.payments(B, "bond_return") == [Pay(A, "bond_return", 2, USD_CODE, 10_000)]
    # More than is posted cannot even be asked for.
    net.apply(A, net.nodes[A].withdraw_bond(B, 20_001, net.now()))
    assert not net.wire and net.nodes[A].stats["bond_withdraw_beyond_posted"] == 1


def test_a_bond_withdrawal_while_owing_is_refused_and_changes_nothing() -> None:
    net = make_net(b=config(exposure_multiple_percent=1_000))
    post(net, A, 30_000)
    post(net, B, 100_000)
    rest(net, B, Side.SELL, 2, 5_100, "s1")
    trade(net, A, Side.BUY, 2, 5_100, "b1")  # above the opening reference of 5,000
    price_falls_at(net, B, 4_000)  # B now marks A's 2 lots at 4,000: A owes B
    before = (usd(net, A, "bond-posted:b"), usd(net, B, "bond-held:a"))
    withdraw(net, A, 10_000)
    assert (usd(net, A, "bond-posted:b"), usd(net, B, "bond-held:a")) == before
    assert net.nodes[B].stats["bond_refused:owing"] == 1
    assert net.nodes[A].stats["bond_refused_by_peer:owing"] == 1
    assert net.payments(B, "bond_return") == []


def test_a_bond_withdrawal_while_locks_are_open_is_refused() -> None:
    net = make_net()
    post(net, A, 30_000)
    rest(net, B, Side.SELL, 2, 5_000, "s1")
    assert ask(net, A, broadcast(1, 2, 5_000)).offers  # B now holds a lock for A
    withdraw(net, A, 10_000)
    assert net.nodes[B].stats["bond_refused:locks_open"] == 1
    assert usd(net, A, "bond-posted:b") == 30_000 and usd(net, B, "bond-held:a") == -30_000


# --------------------------------------------------------------- exposure


def test_without_a_bond_a_holder_offers_no_locks_and_says_why() -> None:
    net = make_net()
    rest(net, B, Side.SELL, 5, 5_000, "s1")
    answer = ask(net, A, broadcast(1, 5, 5_000))
    assert answer.offers == () and answer.limited == "no_bond"


def test_exposure_may_reach_the_cap_exactly_and_not_beyond() -> None:
    # Quota generous, exposure cap = the bond: 4 lots at 5,000 exactly.
    quota = QuotaConfig(lock_notional_percent=10_000, ratio_min_offered_minor=UNJUDGED)
    net = make_net(b=config(quota=quota))
    post(net, A, 4 * 5_000)
    rest(net, B, Side.SELL, 10, 5_000, "s1")
    first = ask(net, A, broadcast(1, 10, 5_000))
    assert [o.quantity_lots for o in first.offers] == [4] and first.limited == "exposure_cap"
    assert net.nodes[B].holder.open_for(A) == (20_000, 1)  # exactly at the cap
    second = ask(net, A, broadcast(2, 1, 5_000))
    assert second.offers == () and second.limited == "exposure_cap"


def test_a_peer_does_not_set_the_price_its_own_debt_is_marked_at() -> None:
    net = make_net()
    post(net, A, 1_000_000)
    post(net, B, 1_000_000)
    rest(net, B, Side.SELL, 4, 5_000, "s1")
    trade(net, A, Side.BUY, 4, 5_000, "b1")  # A owes B 20,000 and is owed 4 lots
    liability = net.nodes[B].liability
    assert liability.marked(A) == 0
    # A reports a trade far above the market, which would make its lots cover
    # twice its debt: B's mark for A ignores A's own prices.
    net.receive(B, A, TradePrint(XYZ.product_id, 10_000, 1, net.stamp(A)))
    assert liability.marked(A) == 0
    price_falls_at(net, B, 4_000)  # another source's price does count
    assert liability.marked(A) == -4_000
    net.receive(B, A, TradePrint(XYZ.product_id, 10_000, 1, net.stamp(A)))
    assert liability.marked(A) == -4_000


def test_an_originator_accepts_nothing_that_would_owe_more_than_it_posted() -> None:
    # B offers A plenty; A posted only 300 with B. Buying 4 lots at 5,100
    # against a mark of 5,000 would leave A owing B 400 marked: refused.
    quota = QuotaConfig(lock_notional_percent=10_000, ratio_min_offered_minor=UNJUDGED)
    net = make_net(b=config(exposure_multiple_percent=100_000, quota=quota))
    post(net, A, 300)
    post(net, B, 1_000_000)
    rest(net, B, Side.SELL, 4, 5_100, "s1")
    net.place(A, Side.BUY, 4, 5_100, "b1", TimeInForce.IOC)
    assert net.deliver(keep=Acceptance) == []
    assert net.nodes[A].stats["acceptances_over_bond"] >= 1
    assert net.balance(A, OWNER, XYZ.product_id) == 1_000  # nothing traded
    # At 5,075 the same order owes 300 marked: exactly what A posted, so it trades.
    rest(net, B, Side.SELL, 4, 5_075, "s2")
    trade(net, A, Side.BUY, 4, 5_075, "b2")
    assert net.balance(A, OWNER, XYZ.product_id) == 1_004


# ------------------------------------------------------------------ quota


def test_a_lock_grabber_is_held_to_its_lock_count_and_rate() -> None:
    quota = QuotaConfig(
        lock_notional_percent=10_000,
        lock_count_unit_minor=1_000_000,
        broadcasts_per_s=1,
        broadcast_burst=5,
        ratio_min_offered_minor=UNJUDGED,
    )
    net = make_net(b=config(exposure_multiple_percent=10_000, quota=quota))
    post(net, A, 2_000_000)  # 1 + 2 locks by count
    for i in range(10):
        rest(net, B, Side.SELL, 1, 5_000 + i, f"s{i}")
    answers = [ask(net, A, broadcast(r, 1, 6_000)) for r in range(1, 7)]
    assert [len(a.offers) for a in answers] == [1, 1, 1, 0, 0, 0]
    assert [a.limited for a in answers] == [
        "",
        "",
        "",
        "lock_quota",
        "lock_quota",
        "broadcast_rate",
    ]
    assert net.nodes[B].holder.open_for(A)[1] == 3
    assert net.nodes[B].stats["limited:broadcast_rate"] == 1


def test_a_peer_that_locks_much_and_takes_little_gets_a_smaller_quota() -> None:
    quota = QuotaConfig(
        lock_notional_percent=100, ratio_floor_permille=100, ratio_min_offered_minor=0
    )
    net = make_net(b=config(quota=quota))
    post(net, A, 100_000)  # 20 lots at 5,000
    rest(net, B, Side.SELL, 100, 5_000, "s1")
    assert sum(o.quantity_lots for o in ask(net, A, broadcast(1, 100, 5_000)).offers) == 20
    # A takes none of the locks it is offered, many times over.
    for request in range(2, 12):
        net.tick(1_000)  # locks expire; the bucket refills
        ask(net, A, broadcast(request, 100, 5_000))
    net.tick(1_000)
    answer = ask(net, A, broadcast(99, 100, 5_000))
    # Took nothing: the quota is down to its floor (10 %), 2 lots.
    assert sum(o.quantity_lots for o in answer.offers) == 2 and answer.limited == "lock_quota"


# ------------------------------------------------------------- settlement


def traded_pair() -> Net:
    """A and B bonded both ways, with two trades between them: A's trader
    bought 3 lots at 5,000 and sold 1 at 5,000 to B's."""
    net = make_net()
    post(net, A, 1_000_000)
    post(net, B, 1_000_000)
    rest(net, B, Side.SELL, 3, 5_000, "s1")
    trade(net, A, Side.BUY, 3, 5_000, "b1")
    rest(net, B, Side.BUY, 1, 5_000, "b2")
    trade(net, A, Side.SELL, 1, 5_000, "s2")
    return net


def cycle(net: Net) -> None:
    """One settlement cycle passes at both nodes (nothing delivered)."""
    net.tick(net.nodes[A].config.clearing.settlement_cycle_ms)


def test_a_cycle_settles_the_net_per_asset_and_both_ledgers_mirror() -> None:
    net = traded_pair()
    assert usd(net, A, "peer:b") == 10_000 and net.balance(A, "peer:b", XYZ.product_id) == -2
    cycle(net)
    net.deliver()
    for node_id, peer in ((A, "b"), (B, "a")):
        assert usd(net, node_id, f"peer:{peer}") == 0
        assert net.balance(node_id, f"peer:{peer}", XYZ.product_id) == 0
        assert not net.nodes[node_id].liability.any_unsettled()
    # A paid B the net 10,000 and B delivered the net 2 lots, over the rail.
    assert usd(net, A, "rail:b") == 10_000 and usd(net, B, "rail:a") == -10_000
    assert net.balance(A, "rail:b", XYZ.product_id) == -2
    assert net.balance(B, "rail:a", XYZ.product_id) == 2
    # Traders are untouched by settlement.
    assert net.balance(A, OWNER, XYZ.product_id) == 1_002
    assert net.nodes[A].stats["statements_settled"] == net.nodes[B].stats["statements_settled"] == 1


def test_a_repeated_proposal_gets_the_same_answer_and_settles_once() -> None:
    net = traded_pair()
    cycle(net)
    (proposal,) = [s for n, s in net.wire if n == A and isinstance(s.message, StatementProposal)]
    net.deliver()
    effects = net.receive(B, A, proposal.message, proposal)
    (again,) = [e for e in effects if isinstance(e, Send)]
    assert isinstance(again.message, StatementAnswer) and again.message.reason == ""
    assert usd(net, B, "rail:a") == -10_000  # booked once
    net.deliver()
    assert usd(net, A, "rail:b") == 10_000


def test_a_statement_the_peer_cannot_reproduce_moves_nothing_and_is_flagged() -> None:
    net = traded_pair()
    # B has not booked one of the trades yet (its record is set aside).
    b_view = clearing(net, B)
    lock_id, deltas = next(iter(b_view.unsettled.items()))
    booked_at = b_view.unsettled_at.pop(lock_id)
    del b_view.unsettled[lock_id]
    cycle(net)
    net.deliver()
    assert usd(net, A, "rail:b") == 0 and usd(net, B, "rail:a") == 0
    assert net.nodes[B].stats["statements_refused:unknown_trades"] == 1
    assert net.nodes[A].stats["statements_mismatched:unknown_trades"] == 1
    assert len(clearing(net, A).unsettled) == 2  # still open for the next cycle
    # Once B has it, the next cycle settles everything.
    b_view.unsettled[lock_id] = deltas
    b_view.unsettled_at[lock_id] = booked_at
    cycle(net)
    net.deliver()
    assert usd(net, A, "rail:b") == 10_000 and usd(net, B, "rail:a") == -10_000
    assert not net.nodes[A].liability.any_unsettled()
    assert not net.nodes[B].liability.any_unsettled()


def test_a_pair_with_more_trades_than_a_statement_holds_settles_them_over_cycles() -> None:
    """A statement of every unsettled trade would, past about 7,200 trades
    in a cycle, no longer fit a frame: it is sent never, and the honest
    pair ends in default. The oldest go first, the rest in the next cycles."""
    net = traded_pair()
    extra = 2 * STATEMENT_LOCKS + 100
    a_view, b_view = clearing(net, A), clearing(net, B)
    booked = min(a_view.unsettled_at.values())
    for n in range(extra):
        lock_id = 2**62 + n * 7_919  # large ids, as random ones are
        for view in (a_view, b_view):
            view.unsettled[lock_id] = ()  # moves nothing: only its count matters
            view.unsettled_at[lock_id] = booked
    sizes: list[int] = []
    for _ in range(4):
        cycle(net)
        proposals = [s.message for n, s in net.wire if n == A]
        sizes += [len(m.statement.lock_ids) for m in proposals if isinstance(m, StatementProposal)]
        # Each fits a frame with room to spare (a frame holds 64 KiB).
        assert all(len(encode_message(m)) < MAX_FRAME_BYTES * 5 // 8 for m in proposals)
        net.deliver()
    assert sizes == [STATEMENT_LOCKS, STATEMENT_LOCKS, extra + 2 - 2 * STATEMENT_LOCKS]
    assert not a_view.unsettled and not b_view.unsettled
    assert usd(net, A, "rail:b") == 10_000 and usd(net, B, "rail:a") == -10_000
    assert net.nodes[A].stats["statements_settled"] == net.nodes[B].stats["statements_settled"] == 3


def test_a_proposal_out_of_turn_is_answered_but_not_remembered() -> None:
    """The higher id keeps only the answer to the latest cycle; a stale
    proposal is told it is out of turn, and that answer displaces nothing."""
    net = traded_pair()
    cycle(net)
    (first,) = [s for n, s in net.wire if n == A and isinstance(s.message, StatementProposal)]
    net.deliver()
    rest(net, B, Side.SELL, 1, 5_000, "s3")
    trade(net, A, Side.BUY, 1, 5_000, "b3")
    cycle(net)
    (second,) = [s for n, s in net.wire if n == A and isinstance(s.message, StatementProposal)]
    net.deliver()
    latest = clearing(net, B).last_statement_answer
    assert latest is not None and latest.cycle == 2 and latest.reason == ""
    rails = (net.balances(A), net.balances(B))
    stale = [e.message for e in net.receive(B, A, first.message, first) if isinstance(e, Send)]
    assert [(m.cycle, m.reason) for m in stale if isinstance(m, StatementAnswer)] == [
        (1, "out_of_turn")
    ]
    assert clearing(net, B).last_statement_answer == latest
    assert net.nodes[B].stats["statements_refused:out_of_turn"] == 1
    again = net.receive(B, A, second.message, second)
    assert [e.message for e in again if isinstance(e, Send)] == [latest]
    net.deliver()
    assert (net.balances(A), net.balances(B)) == rails


def test_an_empty_statement_is_refused() -> None:
    net = make_net()
    empty = StatementProposal(build_statement(A, B, 1, {}))
    effects = net.receive(B, A, empty)
    (answer,) = [e.message for e in effects if isinstance(e, Send)]
    assert isinstance(answer, StatementAnswer) and answer.reason == "empty"
    assert net.nodes[B].stats["statements_refused:empty"] == 1
    assert clearing(net, B).cycle == 0 and net.nodes[B].stats.get("statements_settled", 0) == 0


def test_once_settled_nothing_is_owed_and_the_bond_can_be_withdrawn() -> None:
    net = traded_pair()
    price_falls_at(net, B, 4_000)  # A owes B, marked
    withdraw(net, A, 1_000_000)
    assert net.nodes[B].stats["bond_refused:owing"] == 1
    cycle(net)
    net.deliver()
    withdraw(net, A, 1_000_000)
    assert usd(net, A, "bond-posted:b") == 0 and usd(net, B, "bond-held:a") == 0
    assert usd(net, B, "collateral:a") == 0


# ---------------------------------------------------------------- default


def defaulting_pair() -> Net:
    """A bought 4 lots at 5,000 from B and posted only 3,000 with B, which
    lets A's exposure run to 100 times the bond; then the price B marks at
    falls to 4,000, so A owes B 4,000 marked."""
    lenient = config(
        exposure_multiple_percent=10_000, quota=QuotaConfig(lock_notional_percent=10_000)
    )
    net = make_net(b=lenient)
    post(net, A, 3_000)
    post(net, B, 1_000_000)
    rest(net, B, Side.SELL, 4, 5_000, "s1")
    trade(net, A, Side.BUY, 4, 5_000, "b1")
    price_falls_at(net, B, 4_000)
    return net


def run_past_deadline(net: Net, keep: type) -> list[tuple[NodeId, Send]]:
    """Tick both nodes through the settlement deadline; messages of type
    ``keep`` never arrive (they are returned)."""
    clearing = net.nodes[B].config.clearing
    kept = []
    for _ in range(clearing.settlement_deadline_ms // clearing.settlement_cycle_ms + 2):
        cycle(net)
        kept += net.deliver(keep=keep)
    return kept


def test_a_peer_that_never_settles_is_suspended_and_its_bond_claimed() -> None:
    net = defaulting_pair()
    run_past_deadline(net, keep=StatementProposal)  # A never gets a statement through
    b = net.nodes[B]
    assert clearing(net, B).suspended == "default" and b.stats["defaults_declared"] == 1
    # Shortfall 4,000: the bond covers 3,000, B records the other 1,000 as its loss.
    assert usd(net, B, "collateral:a") == 0
    assert usd(net, B, "node:losses") == -1_000
    ledger = b.context.ledger
    assert ledger.find_entry("claim:a:1") is not None and ledger.find_entry("loss:a:1") is not None
    # The trade stays on record, to settle if the peer is reinstated.
    assert len(clearing(net, B).unsettled) == 1
    # The claim and the loss close A's debt at B, marked.
    assert usd(net, B, "peer:a") == -20_000 + 3_000 + 1_000
    assert net.balance(B, "peer:a", XYZ.product_id) == 4
    # No more locks for A, whatever it asks.
    rest(net, B, Side.SELL, 1, 5_000, "s2")
    assert ask(net, A, broadcast(77, 1, 5_000)).limited == "suspended"


def test_a_peer_in_default_cannot_take_back_the_bond_that_was_claimed() -> None:
    net = defaulting_pair()
    run_past_deadline(net, keep=StatementProposal)
    before = (net.balances(A), net.balances(B))
    withdraw(net, A, 3_000)
    (answer,) = bond_answers(net, B)[-1:]
    assert isinstance(answer, BondAnswer) and answer.reason not in ("", "awaiting_funds")
    assert net.payments(B, "bond_return") == []
    assert (net.balances(A), net.balances(B)) == before
    assert clearing(net, A).bond_posted == 3_000 and clearing(net, A).outgoing is None


def test_default_during_settlement_ignores_the_late_answer() -> None:
    net = defaulting_pair()
    answers = run_past_deadline(net, keep=StatementAnswer)  # B answers; A never hears
    a = net.nodes[A]
    assert answers and clearing(net, A).suspended == "default"
    # B settled the statement it was shown; A, in default of hearing, did not.
    for _, late in answers:
        net.receive(A, B, late.message, late)
    assert usd(net, A, "rail:b") == 0 and a.stats.get("statements_settled", 0) == 0


def test_a_pair_that_heals_after_a_default_settles_what_one_side_settled_already() -> None:
    net = defaulting_pair()
    run_past_deadline(net, keep=StatementAnswer)
    assert usd(net, B, "rail:a") == -20_000 and usd(net, A, "rail:b") == 0
    net.apply(A, net.nodes[A].reinstate(B, net.now()))
    for _ in range(3):
        cycle(net)
        net.deliver()
    # A proposes the same cycle again; B repeats its answer to it, settling nothing twice.
    assert usd(net, A, "rail:b") == 20_000 and usd(net, B, "rail:a") == -20_000
    assert net.balance(A, "rail:b", XYZ.product_id) == -4
    assert net.nodes[A].stats["statements_settled"] == net.nodes[B].stats["statements_settled"]
    assert not net.nodes[A].liability.any_unsettled()


def test_a_peer_can_default_again_after_it_was_reinstated() -> None:
    net = defaulting_pair()
    run_past_deadline(net, keep=StatementProposal)
    b = net.nodes[B]
    after_first = net.balances(B)
    net.apply(B, b.reinstate(A, net.now()))
    assert clearing(net, B).suspended == "" and b.stats["peers_reinstated"] == 1
    run_past_deadline(net, keep=StatementProposal)  # A's statements still never arrive
    assert clearing(net, B).suspended == "default" and b.stats["defaults_declared"] == 2
    ledger = b.context.ledger
    for number in (1, 2):
        claim = ledger.find_entry(f"claim:a:{number}")
        loss = ledger.find_entry(f"loss:a:{number}")
        assert claim is not None and loss is not None
        assert sorted(p.amount for p in claim.postings) == [-3_000, 3_000]
        assert sorted(p.amount for p in loss.postings) == [-1_000, 1_000]
    assert net.balances(B) == after_first
    net.crash_and_recover(B)  # the journal rebuilds the node as it is


def test_reinstatement_reverses_the_default_exactly_and_the_kept_trades_settle() -> None:
    net = defaulting_pair()
    before = (net.balances(A), net.balances(B))
    run_past_deadline(net, keep=StatementProposal)
    # Both sides of a link that carried no statements declared the other in default.
    assert clearing(net, B).suspended == clearing(net, A).suspended == "default"
    assert net.balances(B) != before[1]
    net.apply(B, net.nodes[B].reinstate(A, net.now()))
    net.apply(A, net.nodes[A].reinstate(B, net.now()))
    assert (net.balances(A), net.balances(B)) == before
    assert not clearing(net, B).open_defaults
    for _ in range(3):
        cycle(net)
        net.deliver()
    for node_id, peer in ((A, "b"), (B, "a")):
        assert usd(net, node_id, f"peer:{peer}") == 0
        assert net.balance(node_id, f"peer:{peer}", XYZ.product_id) == 0
        assert not net.nodes[node_id].liability.any_unsettled()
    assert usd(net, A, "rail:b") == 20_000 and usd(net, B, "rail:a") == -20_000
    assert net.balance(B, "rail:a", XYZ.product_id) == 4
    assert usd(net, B, "collateral:a") == 3_000 and usd(net, B, "node:losses") == 0


@pytest.mark.parametrize("node_id", [A, B])
def test_reinstating_a_peer_that_is_not_suspended_changes_nothing(node_id: NodeId) -> None:
    net = traded_pair()
    before = net.balances(node_id)
    net.apply(node_id, net.nodes[node_id].reinstate(other(node_id), net.now()))
    assert net.nodes[node_id].stats["reinstate_not_suspended"] == 1
    assert net.balances(node_id) == before
