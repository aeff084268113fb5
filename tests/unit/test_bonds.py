"""Bonds, exposure caps, lock quotas and settlement between two nodes, by hand."""

from __future__ import annotations

from collections import deque

from datn.clearing.config import ClearingConfig
from datn.clearing.quota import QuotaConfig
from datn.domain import USD, AssetCode, ProductKind, ProductSpec, Side, TimeInForce
from datn.ledger import AccountKey
from datn.protocol.clock import Now
from datn.protocol.effects import Effect, Send
from datn.protocol.messages import (
    Acceptance,
    BondAnswer,
    BondRequest,
    NodeId,
    OrderBroadcast,
    PotentialTrades,
    StatementAnswer,
    StatementProposal,
)
from datn.protocol.node import NodeConfig, NodeCore
from datn.protocol.venue import OrderRequest
from datn.risk import RiskConfig

XYZ = ProductSpec("XYZ", ProductKind.SHARE, USD.code)
A, B = NodeId("a"), NodeId("b")
TRADER = "t"
RISK = RiskConfig(listed_products=frozenset({XYZ.product_id}))
MARK = 5_000


UNJUDGED = 10**15
"""A ratio_min_offered_minor no test reaches: quotas by bond alone."""


def config(**clearing: object) -> NodeConfig:
    quota = clearing.pop("quota", QuotaConfig(ratio_min_offered_minor=UNJUDGED))
    return NodeConfig(RISK, clearing=ClearingConfig(quota=quota, **clearing))  # type: ignore[arg-type]


class Net:
    """Two nodes and a wire that holds messages until delivered."""

    def __init__(self, a: NodeConfig | None = None, b: NodeConfig | None = None) -> None:
        configs = {A: a or config(), B: b or config()}
        self.nodes = {
            n: NodeCore(n, [XYZ], [A, B], configs[n], n.encode(), {XYZ.product_id: MARK})
            for n in (A, B)
        }
        self.mono = 1_000
        self.wire: deque[tuple[NodeId, Send]] = deque()
        for node_id, node in self.nodes.items():
            self.apply(node_id, node.deposit(TRADER, USD.code, 100_000_000, self.now()))
            self.apply(node_id, node.deposit(TRADER, XYZ.product_id, 10_000, self.now()))
            self.apply(node_id, node.fund(USD.code, 100_000_000, self.now()))

    def now(self) -> Now:
        return Now(self.mono, self.mono)

    def apply(self, node_id: NodeId, effects: list[Effect]) -> None:
        self.wire.extend((node_id, e) for e in effects if isinstance(e, Send))

    def deliver(self, drop: type | None = None) -> list[tuple[NodeId, Send]]:
        """Deliver all; messages of type ``drop`` are taken off the wire and returned."""
        dropped = []
        while self.wire:
            sender, send = self.wire.popleft()
            if drop is not None and isinstance(send.message, drop):
                dropped.append((sender, send))
                continue
            node = self.nodes[send.peer]
            self.apply(send.peer, node.receive(sender, send.hlc, send.message, self.now()))
        return dropped

    def bond(self, poster: NodeId, amount: int) -> None:
        peer = B if poster == A else A
        self.apply(poster, self.nodes[poster].post_bond(peer, amount, self.now()))
        self.deliver()

    def rest(self, node_id: NodeId, side: Side, lots: int, price: int, cid: str) -> None:
        self.place(node_id, side, lots, price, cid, TimeInForce.GTC)
        self.deliver()

    def place(
        self, node_id: NodeId, side: Side, lots: int, price: int, cid: str, tif: TimeInForce
    ) -> None:
        request = OrderRequest(TRADER, cid, XYZ.product_id, side, lots, price, tif)
        self.apply(node_id, self.nodes[node_id].place(request, self.now()))

    def balance(self, node_id: NodeId, owner: str, asset: str = USD.code) -> int:
        return self.nodes[node_id].ledger.balance(AccountKey(owner, AssetCode(asset)))

    def answers(self, sent: list[tuple[NodeId, Send]]) -> list[PotentialTrades]:
        return [s.message for _, s in sent if isinstance(s.message, PotentialTrades)]


def broadcast(request_id: int, lots: int, price: int, side: Side = Side.BUY) -> OrderBroadcast:
    return OrderBroadcast(request_id, 1, XYZ.product_id, side, lots, price, False)


def ask(net: Net, originator: NodeId, message: OrderBroadcast) -> PotentialTrades:
    """Send ``message`` to the other node as if from ``originator``; its answer."""
    holder = B if originator == A else A
    hlc = net.nodes[originator].clock.tick(net.mono)
    effects = net.nodes[holder].receive(originator, hlc, message, net.now())
    (answer,) = [e.message for e in effects if isinstance(e, Send)]
    assert isinstance(answer, PotentialTrades)
    return answer


# ------------------------------------------------------------------ bonds


def test_a_bond_is_on_both_ledgers_once_the_holder_answers_and_a_retry_books_nothing() -> None:
    net = Net()
    net.apply(A, net.nodes[A].post_bond(B, 30_000, net.now()))
    (_, request) = net.wire.popleft()
    assert isinstance(request.message, BondRequest)
    assert net.balance(A, "bond-posted:b") == 0  # not yet acknowledged: only held
    assert net.nodes[A].ledger.available(AccountKey("node:capital", USD.code)) == 99_970_000
    answers = []
    for _ in range(2):  # the request arrives twice
        effects = net.nodes[B].receive(A, request.hlc, request.message, net.now())
        answers += [e for e in effects if isinstance(e, Send)]
    assert answers[0].message == answers[1].message == BondAnswer(request.message.bond_id, "")
    for answer in answers:  # and so does the answer
        net.nodes[A].receive(B, answer.hlc, answer.message, net.now())
    assert net.balance(A, "bond-posted:b") == 30_000
    assert net.balance(A, "node:capital") == 99_970_000
    assert net.balance(B, "bond-held:a") == -30_000  # mirrors A's bond-posted:b
    assert net.balance(B, "collateral:a") == 30_000
    assert (net.nodes[A].peers[B].bond_posted, net.nodes[B].peers[A].bond_held) == (30_000, 30_000)


def test_a_lost_bond_request_is_sent_again_until_answered() -> None:
    net = Net()
    net.apply(A, net.nodes[A].post_bond(B, 30_000, net.now()))
    net.wire.clear()  # lost
    net.mono += net.nodes[A].config.clearing.bond_resend_ms
    net.apply(A, net.nodes[A].tick(net.now()))
    net.deliver()
    assert net.balance(B, "bond-held:a") == -30_000 and net.balance(A, "bond-posted:b") == 30_000


def test_a_bond_cannot_be_posted_beyond_the_capital() -> None:
    net = Net()
    net.apply(A, net.nodes[A].post_bond(B, 100_000_001, net.now()))
    assert not net.wire and net.nodes[A].stats["bond_post_without_capital"] == 1


def test_a_bond_is_withdrawn_when_nothing_is_owed() -> None:
    net = Net()
    net.bond(A, 30_000)
    net.apply(A, net.nodes[A].withdraw_bond(B, 10_000, net.now()))
    net.deliver()
    assert net.balance(A, "bond-posted:b") == 20_000 and net.balance(B, "bond-held:a") == -20_000
    assert net.balance(A, "node:capital") == 99_980_000


def test_a_bond_withdrawal_while_owing_is_refused_and_changes_nothing() -> None:
    net = Net(b=config(exposure_multiple_percent=1_000))
    net.bond(A, 30_000)
    net.bond(B, 100_000)
    net.rest(B, Side.SELL, 2, 5_100, "s1")
    net.place(A, Side.BUY, 2, 5_100, "b1", TimeInForce.IOC)  # above the mark of 5,000
    net.deliver()
    net.nodes[B].reference_prices[XYZ.product_id] = 4_000  # the price falls: A now owes B
    before = (net.balance(A, "bond-posted:b"), net.balance(B, "bond-held:a"))
    net.apply(A, net.nodes[A].withdraw_bond(B, 10_000, net.now()))
    net.deliver()
    assert (net.balance(A, "bond-posted:b"), net.balance(B, "bond-held:a")) == before
    assert net.nodes[B].stats["bond_refused:owing"] == 1
    assert net.nodes[A].stats["bond_refused_by_peer:owing"] == 1


# --------------------------------------------------------------- exposure


def test_without_a_bond_a_holder_offers_no_locks_and_says_why() -> None:
    net = Net()
    net.rest(B, Side.SELL, 5, 5_000, "s1")
    answer = ask(net, A, broadcast(1, 5, 5_000))
    assert answer.offers == () and answer.limited == "no_bond"


def test_exposure_may_reach_the_cap_exactly_and_not_beyond() -> None:
    # Quota generous, exposure cap = the bond: 4 lots at 5,000 exactly.
    quota = QuotaConfig(lock_notional_percent=10_000, ratio_min_offered_minor=UNJUDGED)
    net = Net(b=config(quota=quota))
    net.bond(A, 4 * 5_000)
    net.rest(B, Side.SELL, 10, 5_000, "s1")
    first = ask(net, A, broadcast(1, 10, 5_000))
    assert [o.quantity_lots for o in first.offers] == [4] and first.limited == "exposure_cap"
    assert net.nodes[B].peers[A].lock_notional == 20_000  # exactly at the cap
    second = ask(net, A, broadcast(2, 1, 5_000))
    assert second.offers == () and second.limited == "exposure_cap"


def test_an_originator_accepts_nothing_that_would_owe_more_than_it_posted() -> None:
    # B offers A plenty; A posted only 300 with B. Buying 4 lots at 5,100 when
    # the last price was 5,000 would leave A owing B 400 marked: refused.
    quota = QuotaConfig(lock_notional_percent=10_000, ratio_min_offered_minor=UNJUDGED)
    generous = config(exposure_multiple_percent=100_000, quota=quota)
    net = Net(b=generous)
    net.bond(A, 300)
    net.bond(B, 1_000_000)
    net.rest(B, Side.SELL, 4, 5_100, "s1")
    net.place(A, Side.BUY, 4, 5_100, "b1", TimeInForce.IOC)
    sent = net.deliver(drop=Acceptance)
    assert sent == [] and net.nodes[A].stats["acceptances_over_bond"] >= 1
    assert net.balance(A, "trader:t", XYZ.product_id) == 10_000  # nothing traded
    # At 5,075 the same order owes 300 marked: exactly what A posted, so it trades.
    net.rest(B, Side.SELL, 4, 5_075, "s2")
    net.place(A, Side.BUY, 4, 5_075, "b2", TimeInForce.IOC)
    net.deliver()
    assert net.balance(A, "trader:t", XYZ.product_id) == 10_004


# ------------------------------------------------------------------ quota


def test_a_lock_grabber_is_held_to_its_lock_count_and_rate() -> None:
    quota = QuotaConfig(
        lock_notional_percent=10_000,
        lock_count_unit_minor=1_000_000,
        broadcasts_per_s=1,
        broadcast_burst=5,
        ratio_min_offered_minor=UNJUDGED,
    )
    net = Net(b=config(exposure_multiple_percent=10_000, quota=quota))
    net.bond(A, 2_000_000)  # 1 + 2 locks by count
    for i in range(10):
        net.rest(B, Side.SELL, 1, 5_000 + i, f"s{i}")
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
    assert net.nodes[B].peers[A].lock_count == 3
    assert net.nodes[B].stats["limited:broadcast_rate"] == 1


def test_a_peer_that_locks_much_and_takes_little_gets_a_smaller_quota() -> None:
    quota = QuotaConfig(
        lock_notional_percent=100, ratio_floor_permille=100, ratio_min_offered_minor=0
    )
    net = Net(b=config(quota=quota))
    net.bond(A, 100_000)  # 20 lots at 5,000
    net.rest(B, Side.SELL, 100, 5_000, "s1")
    assert sum(o.quantity_lots for o in ask(net, A, broadcast(1, 100, 5_000)).offers) == 20
    # A releases every lock it is offered, many times over.
    for request in range(2, 12):
        net.mono += 1_000  # locks expire; the bucket refills
        net.apply(B, net.nodes[B].tick(net.now()))
        ask(net, A, broadcast(request, 100, 5_000))
    net.mono += 1_000
    net.apply(B, net.nodes[B].tick(net.now()))
    answer = ask(net, A, broadcast(99, 100, 5_000))
    # Took nothing: the quota is down to its floor (10 %), 2 lots.
    assert sum(o.quantity_lots for o in answer.offers) == 2 and answer.limited == "lock_quota"


# ------------------------------------------------------------- settlement


def traded_pair() -> Net:
    """A and B bonded both ways, with two trades between them: A's trader
    bought 3 lots at 5,000 and sold 1 at 5,000 to B's."""
    net = Net()
    net.bond(A, 1_000_000)
    net.bond(B, 1_000_000)
    net.rest(B, Side.SELL, 3, 5_000, "s1")
    net.place(A, Side.BUY, 3, 5_000, "b1", TimeInForce.IOC)
    net.deliver()
    net.rest(B, Side.BUY, 1, 5_000, "b2")
    net.place(A, Side.SELL, 1, 5_000, "s2", TimeInForce.IOC)
    net.deliver()
    return net


def cycle(net: Net) -> None:
    net.mono += net.nodes[A].config.clearing.settlement_cycle_ms
    for node_id, node in net.nodes.items():
        net.apply(node_id, node.tick(net.now()))


def test_a_cycle_settles_the_net_per_asset_and_both_ledgers_mirror() -> None:
    net = traded_pair()
    assert net.balance(A, "peer:b") == 10_000 and net.balance(A, "peer:b", XYZ.product_id) == -2
    cycle(net)
    net.deliver()
    for node_id, peer in ((A, "b"), (B, "a")):
        assert net.balance(node_id, f"peer:{peer}") == 0
        assert net.balance(node_id, f"peer:{peer}", XYZ.product_id) == 0
        assert not net.nodes[node_id].unsettled
    # A paid B the net 10,000 and B delivered the net 2 lots, over the rail.
    assert net.balance(A, "rail:b") == 10_000 and net.balance(B, "rail:a") == -10_000
    assert net.balance(A, "rail:b", XYZ.product_id) == -2
    assert net.balance(B, "rail:a", XYZ.product_id) == 2
    # Traders are untouched by settlement.
    assert net.balance(A, "trader:t", XYZ.product_id) == 10_002
    assert net.nodes[A].stats["statements_settled"] == net.nodes[B].stats["statements_settled"] == 1


def test_a_repeated_proposal_gets_the_same_answer_and_settles_once() -> None:
    net = traded_pair()
    cycle(net)
    proposal = next(s for n, s in net.wire if n == A)
    net.deliver()
    effects = net.nodes[B].receive(A, proposal.hlc, proposal.message, net.now())
    (again,) = [e for e in effects if isinstance(e, Send)]
    assert again.message.reason == ""  # type: ignore[union-attr]
    assert net.balance(B, "rail:a") == -10_000  # booked once
    net.nodes[A].receive(B, again.hlc, again.message, net.now())
    assert net.balance(A, "rail:b") == 10_000


def test_a_statement_the_peer_cannot_reproduce_moves_nothing_and_is_flagged() -> None:
    net = traded_pair()
    # B has not booked one of the trades yet (its record is set aside).
    lock_id, deltas = next(iter(net.nodes[B].unsettled[A].items()))
    del net.nodes[B].unsettled[A][lock_id]
    cycle(net)
    net.deliver()
    assert net.balance(A, "rail:b") == 0 and net.balance(B, "rail:a") == 0
    assert net.nodes[B].stats["statements_refused:unknown_trades"] == 1
    assert net.nodes[A].stats["statements_mismatched:unknown_trades"] == 1
    assert len(net.nodes[A].unsettled[B]) == 2  # still open for the next cycle
    # Once B has it, the next cycle settles everything.
    net.nodes[B].unsettled[A][lock_id] = deltas
    cycle(net)
    net.deliver()
    assert net.balance(A, "rail:b") == 10_000 and net.balance(B, "rail:a") == -10_000
    assert not net.nodes[A].unsettled and not net.nodes[B].unsettled


def test_once_settled_nothing_is_owed_and_the_bond_can_be_withdrawn() -> None:
    net = traded_pair()
    net.nodes[B].reference_prices[XYZ.product_id] = 4_000  # A owes B, marked
    net.apply(A, net.nodes[A].withdraw_bond(B, 1_000_000, net.now()))
    net.deliver()
    assert net.nodes[B].stats["bond_refused:owing"] == 1
    cycle(net)
    net.deliver()
    net.apply(A, net.nodes[A].withdraw_bond(B, 1_000_000, net.now()))
    net.deliver()
    assert net.balance(A, "bond-posted:b") == 0 and net.balance(B, "bond-held:a") == 0


# ---------------------------------------------------------------- default


def defaulting_pair() -> Net:
    """A bought 4 lots at 5,000 from B and posted only 3,000 with B, which
    lets A's exposure run to 100 times the bond."""
    lenient = config(
        exposure_multiple_percent=10_000, quota=QuotaConfig(lock_notional_percent=10_000)
    )
    net = Net(b=lenient)
    net.bond(A, 3_000)
    net.bond(B, 1_000_000)
    net.rest(B, Side.SELL, 4, 5_000, "s1")
    net.place(A, Side.BUY, 4, 5_000, "b1", TimeInForce.IOC)
    net.deliver()
    net.nodes[B].reference_prices[XYZ.product_id] = 4_000  # A now owes B 4,000 marked
    return net


def run_past_deadline(net: Net, drop: type) -> list[tuple[NodeId, Send]]:
    """Tick both nodes through the settlement deadline, dropping ``drop``."""
    clearing = net.nodes[B].config.clearing
    dropped = []
    for _ in range(clearing.settlement_deadline_ms // clearing.settlement_cycle_ms + 2):
        cycle(net)
        dropped += net.deliver(drop=drop)
    return dropped


def test_a_peer_that_never_settles_is_suspended_and_its_bond_claimed() -> None:
    net = defaulting_pair()
    run_past_deadline(net, drop=StatementProposal)  # A never gets a statement through
    b = net.nodes[B]
    assert b.peers[A].suspended == "default" and b.stats["defaults_declared"] == 1
    # Shortfall 4,000: the bond covers 3,000, B records the other 1,000 as its loss.
    assert net.balance(B, "collateral:a") == 0
    assert net.balance(B, "node:losses") == -1_000
    assert b.unsettled == {}
    # The claim and the loss close A's debt at B, marked.
    assert net.balance(B, "peer:a") == -20_000 + 3_000 + 1_000
    assert net.balance(B, "peer:a", XYZ.product_id) == 4
    # No more locks for A, whatever it asks.
    net.rest(B, Side.SELL, 1, 5_000, "s2")
    assert ask(net, A, broadcast(77, 1, 5_000)).limited == "suspended"


def test_default_during_settlement_ignores_the_late_answer() -> None:
    net = defaulting_pair()
    answers = run_past_deadline(net, drop=StatementAnswer)  # B answers; A never hears
    a = net.nodes[A]
    assert answers and a.peers[B].suspended == "default"
    # B settled the statement it was shown; A, in default of hearing, did not.
    for _, late in answers:
        net.nodes[A].receive(B, late.hlc, late.message, net.now())
    assert net.balance(A, "rail:b") == 0 and a.stats.get("statements_settled", 0) == 0
