"""A core that no peer can break: the originator checks the holder's terms,
clocks and marks no peer can push, trader requests answered exactly once,
orders that stop waiting on silent holders, restarts on a new clock, and
memory bounded by what is live."""

from __future__ import annotations

from dataclasses import replace

from harness import (
    CONFIG,
    OWNER,
    REFERENCE,
    TRADER,
    XYZ,
    A,
    B,
    C,
    Net,
    events_in,
    messages_in,
)

from datn.domain import USD, Side, TimeInForce
from datn.protocol.clock import MAX_LOGICAL, Hlc
from datn.protocol.effects import (
    Accepted,
    CancelAnswer,
    Done,
    Executed,
    Rejected,
    Rested,
    SetTimer,
    Violation,
    Waiting,
    WaitOver,
    WithdrawInput,
)
from datn.protocol.marks import Marks
from datn.protocol.messages import (
    Acceptance,
    Advert,
    Confirmation,
    Heartbeat,
    Offer,
    OrderBroadcast,
    PotentialTrades,
    Refusal,
    Release,
    TradePrint,
)
from datn.protocol.venue import OrderRequest, trader_owner
from datn.risk import RiskConfig


def resting_sell(net: Net, node: str = B, lots: int = 10, price: int = 5_000) -> None:
    net.place(node, Side.SELL, lots, price, f"s-{node}-{price}")
    net.deliver()


def broadcast_of(net: Net) -> OrderBroadcast:
    """The broadcast A sent for its latest order (kept off the wire)."""
    held = net.deliver(keep=OrderBroadcast)
    assert held, "A broadcast its order"
    message = held[-1][1].message
    assert isinstance(message, OrderBroadcast)
    return message


# ====================================================== the holder's terms


def test_offers_beyond_the_limit_or_the_quantity_asked_are_ignored_and_released() -> None:
    net = Net()
    resting_sell(net)  # so that A asks B
    net.place(A, Side.BUY, 4, 5_000, "b1")
    asked = broadcast_of(net)
    priority = Hlc(net.now().wall_ms, 0)
    bad = PotentialTrades(
        asked.request_id,
        asked.round,
        (
            Offer(11, 5_001, 4, priority, 250),  # above the buyer's limit
            Offer(12, 5_000, 5, priority, 250),  # more lots than asked
        ),
    )
    net.receive(A, B, bad)
    net.tick(CONFIG.collection_window_ms)
    assert net.nodes[A].stats["offers_beyond_terms"] == 2
    assert not net.sent(A, Acceptance)
    assert {m.lock_id for m in net.sent(A, Release)} == {11, 12}
    assert not net.events(A, Executed)


def test_a_confirmation_on_other_terms_books_nothing_and_is_a_violation() -> None:
    net = Net()
    resting_sell(net)
    net.place(A, Side.BUY, 4, 5_100, "b1")
    held = net.deliver(keep=Acceptance)
    (acceptance,) = [send.message for _, send in held if isinstance(send.message, Acceptance)]
    lock_id = acceptance.lock_id
    before = net.balances(A)
    lie = Confirmation(lock_id, 99, XYZ.product_id, Side.BUY, 5_100, 4)  # offered at 5,000
    net.receive(A, B, lie)
    assert net.balances(A) == before  # nothing booked
    assert not net.events(A, Executed)
    violations = [e for n, e in net.effects if n == A and isinstance(e, Violation)]
    assert [(v.peer, v.reason) for v in violations] == [(B, "confirmed_other_terms")]
    assert violations[0].messages[-1] == lie  # the signed frames go to the store as evidence
    assert net.nodes[A].liability.peers[B].suspended == "violation"
    # The lock counts as refused: the order goes on without B, and rests.
    assert not net.nodes[A].originator.working
    assert [e.resting_lots for e in net.events(A, Rested)] == [4]


def test_a_holder_that_refused_is_asked_after_the_others() -> None:
    """B offers the better price and refuses; C's order stood all along at a
    worse one. The next round takes C's, not B's again."""
    net = Net(ids=(A, B, C))
    resting_sell(net, B, 10, 4_990)
    resting_sell(net, C, 10, 5_000)
    net.place(A, Side.BUY, 4, 5_100, "b1")
    held = net.deliver(keep=Acceptance)
    assert [s.peer for _, s in held] == [B]  # the better price first
    (acceptance,) = [send.message for _, send in held if isinstance(send.message, Acceptance)]
    net.receive(B, A, Release(acceptance.lock_id))
    net.receive(A, B, Refusal(acceptance.lock_id, "expired"))
    net.deliver()
    executions = net.events(A, Executed)
    assert [(e.counterparty, e.price_ticks) for e in executions] == [(C, 5_000)]


# ============================================================ clocks


def test_a_stamp_beyond_the_drift_is_refused_and_the_clock_does_not_move() -> None:
    net = Net()
    node = net.nodes[A]
    before = node.context.clock.last
    far = Hlc(net.now().wall_ms + CONFIG.max_clock_drift_ms + 1, 0)
    beat = Heartbeat(1, None, far.wall_ms, 0)
    effects = node.receive(B, far, beat, net.now())
    assert node.stats["refused_clock_drift"] == 1
    assert node.context.clock.last == before
    assert len(effects) == 1  # journaled, nothing else: no answer
    huge = Hlc(net.now().wall_ms, MAX_LOGICAL + 1)
    node.receive(B, huge, beat, net.now())
    assert node.stats["refused_clock_drift"] == 2
    # A stamp within the drift is accepted, but moves the clock only as far
    # as the push limit: room for the skew between honest nodes' clocks.
    near = Hlc(net.now().wall_ms + CONFIG.max_clock_drift_ms, 5)
    node.receive(B, near, beat, net.now())
    pushed = node.context.clock.last
    assert pushed.wall_ms == net.now().wall_ms + CONFIG.max_clock_push_ms
    within = Hlc(net.now().wall_ms + 1_000, 7)
    node.receive(B, within, beat, net.now())
    assert node.context.clock.last > pushed
    # And the node still sends.
    net.place(A, Side.BUY, 1, 5_000, "after")
    assert net.events(A, Accepted)


# ============================================================== marks


def test_one_source_alone_does_not_move_a_mark() -> None:
    marks = Marks({"p": 5_000}, max_sources=16, quorum=3)
    marks.record("p", B, 1)  # an absurd print from one peer
    assert marks.reference("p") == 5_000 == marks.mark("p", A)
    marks.record("p", C, 5_010)
    assert marks.reference("p") == 5_000  # two sources: still no quorum
    marks.record("p", A, 4_990)
    assert marks.reference("p") == 4_990  # the median of three: B's print is outvoted
    # Exposure to B is marked without B's own price; two sources are left,
    # below the quorum, so the last quorum's mark stands.
    assert marks.mark("p", B) == 4_990
    # However often one peer prints, it is one source.
    for _ in range(20):
        marks.record("p", B, 1)
    assert marks.reference("p") == 4_990
    assert len(marks.snapshot().sources[0][1]) == 3


def test_a_peer_cannot_set_the_mark_its_own_debt_is_valued_at() -> None:
    config = replace(CONFIG, mark_quorum=2)
    net = Net(config, ids=(A, B, C))
    marks = net.nodes[A].context.marks
    for price in (4_990, 5_010):
        net.receive(A, C, TradePrint(XYZ.product_id, price, 1, net.stamp(C)))
    net.receive(A, B, TradePrint(XYZ.product_id, 1, 1_000, net.stamp(B)))  # off-market
    assert marks.reference(XYZ.product_id) == 1  # the lower median of two...
    assert marks.mark(XYZ.product_id, B) == 1  # ...and without B, one source: the last quorum's
    resting_sell(net, A, 1, 5_000)
    net.apply(A, net.nodes[A].deposit("bob", USD.code, 10_000, net.now()))
    net.place(A, Side.BUY, 1, 5_000, "local", trader="bob")  # A's own trade: a third source
    net.deliver()
    assert marks.reference(XYZ.product_id) == 5_000
    assert marks.mark(XYZ.product_id, B) == 5_000  # B's own price does not count for B


# ====================================================== trader requests


def request(cid: str, lots: int = 1, price: int | None = 5_000) -> OrderRequest:
    return OrderRequest(TRADER, cid, XYZ.product_id, Side.BUY, lots, price, TimeInForce.GTC)


def test_a_rejected_order_is_remembered_like_an_accepted_one() -> None:
    net = Net()
    too_big = request("r1", lots=10**9)
    first = net.nodes[A].place(too_big, net.now())
    again = net.nodes[A].place(too_big, net.now())
    answers = events_in(first + again, Rejected)
    assert len(answers) == 2 and answers[0] == answers[1]
    # The id cannot now be used for an order on other terms.
    (other,) = events_in(net.nodes[A].place(request("r1"), net.now()), Rejected)
    assert other.reason == "client_order_id_reused"


def test_a_retried_order_gets_its_first_answer_and_no_second_order() -> None:
    net = Net()
    first = net.place(A, Side.BUY, 1, 4_000, "same")
    again = net.place(A, Side.BUY, 1, 4_000, "same")
    accepted = events_in(first + again, Accepted)
    assert len(accepted) == 2 and accepted[0] == accepted[1]
    assert net.nodes[A].stats["orders"] == 1


def test_every_cancel_gets_an_answer() -> None:
    net = Net()
    resting_sell(net, A, 10, 5_000)
    (order_id,) = net.nodes[A].resting.orders
    # B takes a lock on 4 of it and has not decided yet.
    net.place(B, Side.BUY, 4, 5_000, "b-lock")
    net.deliver(keep=Acceptance)
    net.apply(A, net.nodes[A].cancel(TRADER, order_id, net.now()))
    net.apply(A, net.nodes[A].cancel(TRADER, 999, net.now()))
    answers = net.events(A, CancelAnswer)
    assert answers == [
        CancelAnswer(order_id, "pending", 6, 4),
        CancelAnswer(999, "unknown_order"),
    ]
    # A second cancel while the lock is open: still pending, nothing more cancelled.
    net.apply(A, net.nodes[A].cancel(TRADER, order_id, net.now()))
    assert net.events(A, CancelAnswer)[-1] == CancelAnswer(order_id, "pending", 0, 4)
    # When the lock ends, the outcome is reported.
    net.tick(CONFIG.lock_ttl_ms)
    done = net.events(A, Done)
    assert done and done[-1].order_id == order_id and done[-1].reason == "done"


def test_cancel_all_cancels_every_open_order_of_the_trader() -> None:
    net = Net()
    for price in (4_000, 4_001, 4_002):
        net.place(A, Side.BUY, 1, price, f"c{price}")
    net.deliver()
    net.tick(100)
    net.deliver()
    assert len(net.nodes[A].resting.orders) == 3
    net.apply(A, net.nodes[A].cancel_all(TRADER, net.now()))
    answers = net.events(A, CancelAnswer)
    assert len(answers) == 3 and {a.status for a in answers} == {"cancelled"}
    assert not net.nodes[A].resting.orders


def silently(net: Net, ms: int, step_ms: int = 10) -> None:
    """Time passes; every acceptance is lost on its way."""
    for _ in range(ms // step_ms):
        net.tick(step_ms)
        net.deliver(keep=Acceptance)


def test_an_order_stops_waiting_on_a_holder_that_never_decides() -> None:
    net = Net()
    resting_sell(net)
    net.place(A, Side.BUY, 6, 5_100, "b1")
    held = net.deliver(keep=Acceptance)  # B never hears of the acceptance
    assert held
    order_id = next(iter(net.nodes[A].originator.working))
    silently(net, CONFIG.decision_timeout_ms // 2)
    assert net.nodes[A].status()["waiting_on_holders"] == {order_id: (B,)}
    silently(net, CONFIG.decision_timeout_ms)
    waiting = net.events(A, Waiting)
    assert waiting == [Waiting(order_id, (B,), 6)]
    # The order ended (nothing else crosses), its in-doubt lots still held...
    (done,) = net.events(A, Done)
    assert done.in_doubt_lots == 6
    assert net.nodes[A].status()["waiting_on_holders"] == {order_id: (B,)}
    ledger = net.nodes[A].context.ledger
    assert ledger.total_held(USD.code) == 6 * 5_100
    # ...until the holder's decision finally arrives.
    net.wire.extend(held)
    net.deliver()
    net.run(2 * CONFIG.heartbeat_ms)
    assert [e.outcome for e in net.events(A, WaitOver)] == ["refused"]
    assert ledger.total_held(USD.code) == 0
    assert net.nodes[A].status()["waiting_on_holders"] == {}


def test_a_fok_with_lots_in_doubt_has_no_other_round() -> None:
    """A FOK across B and C: B restarts and refuses its lots, C never hears
    of its acceptance. Once A gives up waiting, C's lots are in doubt, so
    another round for B's could fill the FOK in part: it ends, unfilled,
    and B is not asked again."""
    net = Net(ids=(A, B, C))
    for holder in (B, C):
        net.place(holder, Side.SELL, 2, 5_000, f"ask-{holder}")
    net.deliver()
    net.run(50)
    net.place(A, Side.BUY, 4, 5_100, "fok", TimeInForce.FOK)
    held = net.deliver(keep=Acceptance)
    assert sorted(send.peer for _, send in held) == [B, C]
    net.crash_and_recover(B)  # voids the lock A is taking from B
    net.wire.extend(pair for pair in held if pair[1].peer == B)
    net.deliver()
    assert net.sent(B, Refusal)
    broadcasts = len(net.sent(A, OrderBroadcast))
    silently(net, 2 * CONFIG.decision_timeout_ms)  # and C's acceptances are lost
    assert net.events(A, Waiting) and len(net.sent(A, OrderBroadcast)) == broadcasts
    (done,) = net.events(A, Done)
    assert (done.filled_lots, done.in_doubt_lots, done.reason) == (0, 2, "fok_unfillable")
    assert net.balance(A, OWNER, XYZ.product_id) == 1_000


def test_a_fok_that_filled_in_part_before_a_holder_failed_has_no_other_round() -> None:
    """A FOK for 4 takes 2 from A's own book and is accepted for 2 from B,
    which restarts and refuses them. Half of it filled: another round for
    the rest would fill it in two parts, so it ends as a FOK a holder
    failed, though B would offer its 2 again."""
    net = Net()
    net.apply(A, net.nodes[A].deposit("trader-bob", XYZ.product_id, 100, net.now()))
    net.place(A, Side.SELL, 2, 5_000, "bob-ask", trader="trader-bob")
    net.place(B, Side.SELL, 2, 4_990, "b-ask")
    net.deliver()
    net.run(50)
    net.place(A, Side.BUY, 4, 5_100, "fok", TimeInForce.FOK)
    held = net.deliver(keep=Acceptance)
    assert [send.peer for _, send in held] == [B]
    net.crash_and_recover(B)  # voids the lock A is taking from B
    net.wire.extend(held)
    net.deliver()
    assert net.sent(B, Refusal)
    net.run(200)
    (fok,) = [e.order_id for e in net.events(A, Accepted) if e.client_order_id == "fok"]
    done = [(d.filled_lots, d.reason) for d in net.events(A, Done) if d.order_id == fok]
    assert done == [(2, "fok_holder_failed")]
    assert [m.round for m in net.sent(A, OrderBroadcast)] == [1]


def test_a_late_confirmation_of_lots_in_doubt_is_booked_and_reported() -> None:
    config = replace(CONFIG, decision_timeout_ms=100)
    net = Net(config)
    resting_sell(net)
    net.place(A, Side.BUY, 6, 5_100, "b1")
    held = net.deliver(keep=Acceptance)
    sender, acceptance = held[0]
    # B decides (it took the lock) but the confirmation is lost for a while.
    effects = net.nodes[B].receive(sender, acceptance.hlc, acceptance.message, net.now())
    (confirmation,) = messages_in(effects, Confirmation)
    silently(net, 200)
    assert net.events(A, Waiting)
    net.receive(A, B, confirmation)
    assert [e.outcome for e in net.events(A, WaitOver)] == ["filled"]
    assert net.balance(A, OWNER, XYZ.product_id) == 1_006
    assert net.nodes[A].context.ledger.total_held(USD.code) == 0


# ============================================================= policies


def test_the_order_rate_limit_sees_the_traders_recent_orders() -> None:
    risk = RiskConfig(
        listed_products=frozenset({XYZ.product_id}),
        max_orders_per_window=2,
        order_rate_window_ms=1_000,
    )
    net = Net(replace(CONFIG, risk=risk))
    answers = [net.nodes[A].place(request(f"o{i}", price=4_000), net.now()) for i in range(3)]
    rejected = [e for effects in answers for e in events_in(effects, Rejected)]
    assert len(rejected) == 1 and rejected[0].reason == "order_rate"
    net.tick(1_001)
    later = net.nodes[A].place(request("o9", price=4_000), net.now())
    assert any(isinstance(getattr(e, "event", None), Accepted) for e in later)


def test_short_sale_margin_sees_the_traders_positions_at_mark() -> None:
    risk = RiskConfig(listed_products=frozenset({XYZ.product_id}), short_margin_bps=10_000)
    net = Net(replace(CONFIG, risk=risk))
    # 1,000 lots held at a mark of 5,000 and 10,000,000 cash: equity 15,000,000.
    # A short of 3,000 lots more needs 100 % margin on 2,000 x 5,000 = 10,000,000.
    covered = net.place(A, Side.SELL, 3_000, 5_000, "short-ok")
    assert any(isinstance(getattr(e, "event", None), Accepted) for e in covered)
    too_much = net.place(A, Side.SELL, 4_000, 5_000, "short-too-much")
    assert any(isinstance(getattr(e, "event", None), Rejected) for e in too_much)


def test_trade_prints_reach_every_peer() -> None:
    """Every trade at a node changes one of its resting orders, and the
    advert of that change carries the print to every peer."""
    net = Net(ids=(A, B, C))
    resting_sell(net)
    net.place(A, Side.BUY, 2, 5_000, "b1")
    net.deliver()
    printed = [m for m in net.sent(B, Advert) if m.traded_lots]
    assert {(m.price_ticks, m.traded_lots) for m in printed} == {(5_000, 2)}
    assert len(printed) == 2  # to A and to C: the holder prints, once per peer
    assert net.nodes[C].stats["prints_received"] == 1
    assert net.nodes[C].context.marks.snapshot().sources == ((XYZ.product_id, ((B, 5_000),)),)


# ============================================================= restarts


def test_a_restart_on_a_lower_clock_rebases_every_deadline() -> None:
    net = Net()
    resting_sell(net)
    net.place(A, Side.BUY, 2, 5_000, "b1")
    net.deliver()
    unsettled_before = dict(net.nodes[A].liability.peers[B].unsettled_at)
    age = net.mono - next(iter(unsettled_before.values()))
    net.mono = 10  # the new process's monotonic clock starts far lower
    net.crash_and_recover(A)
    (booked,) = net.nodes[A].liability.peers[B].unsettled_at.values()
    assert net.mono - booked == age  # the trade is as old as it was, on the new clock
    # Broadcast rate and quotas work on the new clock: A still trades.
    resting_sell(net, B, 5, 5_001)
    net.place(A, Side.BUY, 1, 5_001, "b2")
    net.deliver()
    assert len(net.events(A, Executed)) == 2


def test_recovery_takes_the_restart_first() -> None:
    net = Net()
    recovered = type(net.nodes[A]).recover(net.journals[A])
    assert recovered.state_hash() == net.nodes[A].state_hash()
    core, effects = recovered.restart(net.now())
    assert any(isinstance(e, SetTimer) for e in effects)
    assert not core.holder.locks


# ========================================================= bounded memory


def test_answers_to_finished_orders_are_forgotten_after_the_retention() -> None:
    config = replace(CONFIG, client_order_memory_ms=1_000)
    net = Net(config)
    net.place(A, Side.BUY, 1, 4_000, "gone", TimeInForce.IOC)
    net.deliver()
    traders = net.nodes[A].traders
    assert ("trader-alice", "gone") in traders.answers or ("trader-alice", "gone") in traders.open
    net.run(1_100, 100)
    assert ("trader-alice", "gone") not in net.nodes[A].traders.answers


def test_a_peer_cannot_grow_the_network_book_beyond_its_limit() -> None:
    net = Net(replace(CONFIG, max_adverts_per_peer=5, max_advert_gaps=3))
    for ref in range(1, 50):
        advert = Advert(ref, XYZ.product_id, Side.SELL, 5_000, 1, Hlc(0), 2 * ref)
        net.receive(A, B, advert)
    view = net.nodes[A].network.views[B]
    assert len(view.adverts) == 5 and len(view.adverts_seen_above) <= 3
    assert net.nodes[A].stats["adverts_over_limit"] > 0


def test_refusals_are_forgotten_and_confirmations_kept_until_settled() -> None:
    net = Net()
    resting_sell(net)
    net.place(A, Side.BUY, 2, 5_000, "b1")
    net.deliver()
    holder = net.nodes[B].holder
    confirmed = [k for k, d in holder.decisions.items() if isinstance(d.message, Confirmation)]
    assert len(confirmed) == 1
    net.run(3_000, 50)  # a settlement cycle or two
    assert not any(isinstance(d.message, Confirmation) for d in holder.decisions.values())
    # A lock that expires leaves a refusal, forgotten after the decision memory.
    net.receive(B, A, OrderBroadcast(77, 1, XYZ.product_id, Side.BUY, 1, 5_000, False))
    net.tick(CONFIG.lock_ttl_ms)
    assert any(isinstance(d.message, Refusal) for d in holder.decisions.values())
    net.tick(CONFIG.decision_memory_ms + 1)
    assert not holder.decisions


def test_answers_to_requests_never_made_are_ignored() -> None:
    net = Net()
    offers = tuple(Offer(i, 5_000, 1, Hlc(0), 250) for i in range(100))
    net.receive(A, B, PotentialTrades(123456, 1, offers))
    assert net.nodes[A].stats["answers_unknown_request"] == 1
    assert not net.sent(A, Release)  # no echo of a stranger's offers


def test_reference_marks_start_at_the_opening_reference() -> None:
    net = Net()
    assert net.nodes[A].context.marks.reference(XYZ.product_id) == REFERENCE


# ====================================================== withdrawals


def test_a_withdrawal_pays_out_only_what_the_trader_has_available() -> None:
    net = Net(CONFIG, ids=(A, B))
    node = net.nodes[A]
    net.apply(A, node.deposit("bob", USD.code, 100_000_000, net.now()))
    net.place(A, Side.BUY, 10, 5_000, "held", trader="bob")  # holds part of the cash
    key = node.context.key(trader_owner("bob"), USD.code)
    available = node.context.ledger.available(key)
    assert 0 < available < 100_000_000
    before = net.balances(A)
    for refused in (
        WithdrawInput("bob", USD.code, available + 1),  # reaches into the hold
        WithdrawInput("bob", USD.code, 0),
        WithdrawInput("bob", "NOPE", 1),
        WithdrawInput("", USD.code, 1),
        WithdrawInput("nobody", USD.code, 1),
    ):
        net.apply(A, node.handle(refused, net.now()))
    assert net.balances(A) == before
    assert node.stats["withdrawals_beyond_available"] == 2
    assert node.stats["withdrawals_invalid"] == 3
    net.apply(A, node.handle(WithdrawInput("bob", USD.code, available), net.now()))
    assert node.context.ledger.available(key) == 0
    assert node.context.ledger.balance(key) == 100_000_000 - available
    assert node.stats["withdrawals"] == 1
    # The order's hold is still whole: it can still trade what it holds.
    assert node.context.ledger.held(key) == 100_000_000 - available
