"""The node core between two nodes, driven by hand: the trade protocol's rules."""

from __future__ import annotations

from collections import deque
from dataclasses import replace

import pytest

from datn.clearing.config import ClearingConfig
from datn.clearing.quota import QuotaConfig
from datn.domain import USD, AssetCode, DomainError, ProductKind, ProductSpec, Side, TimeInForce
from datn.ledger import AccountKey
from datn.protocol.clock import Hlc, Now
from datn.protocol.effects import Done, Effect, Executed, Reply, Send
from datn.protocol.messages import (
    Acceptance,
    Confirmation,
    NodeId,
    OrderBroadcast,
    PotentialTrades,
    Refusal,
)
from datn.protocol.node import NodeConfig, NodeCore
from datn.protocol.venue import OrderRequest
from datn.risk import RiskConfig

XYZ = ProductSpec("XYZ", ProductKind.SHARE, USD.code)
A, B = NodeId("a"), NodeId("b")
TRADER = "trader-alice"
OWNER = f"trader:{TRADER}"
CONFIG = NodeConfig(RiskConfig(listed_products=frozenset({XYZ.product_id})))
BOND = 10_000_000


class Pair:
    """Two nodes and a hand-driven network: messages wait until delivered."""

    def __init__(self, config: NodeConfig = CONFIG) -> None:
        self.nodes = {
            n: NodeCore(n, [XYZ], [A, B], config, n.encode(), {XYZ.product_id: 5_000})
            for n in (A, B)
        }
        self.mono = 1_000
        self.wire: deque[tuple[NodeId, Send]] = deque()
        self.replies: list[tuple[NodeId, Reply]] = []
        for node_id, node in self.nodes.items():
            self.apply(node_id, node.deposit(TRADER, USD.code, 10_000_000, self.now()))
            self.apply(node_id, node.deposit(TRADER, XYZ.product_id, 1_000, self.now()))
            # Each posts a bond with the other: no holder offers locks without one.
            self.apply(node_id, node.fund(USD.code, BOND, self.now()))
            peer = B if node_id == A else A
            self.apply(node_id, node.post_bond(peer, BOND, self.now()))
        self.deliver()

    def now(self) -> Now:
        return Now(self.mono, self.mono)

    def apply(self, node_id: NodeId, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self.wire.append((node_id, effect))
            elif isinstance(effect, Reply):
                self.replies.append((node_id, effect))

    def deliver(self, keep: type | None = None) -> list[tuple[NodeId, Send]]:
        """Deliver everything on the wire, except messages of type ``keep``."""
        held = []
        while self.wire:
            sender, send = self.wire.popleft()
            if keep is not None and isinstance(send.message, keep):
                held.append((sender, send))
                continue
            node = self.nodes[send.peer]
            self.apply(send.peer, node.receive(sender, send.hlc, send.message, self.now()))
        return held

    def place(self, node_id: NodeId, side: Side, quantity: int, price: int, cid: str) -> None:
        request = OrderRequest(TRADER, cid, XYZ.product_id, side, quantity, price, TimeInForce.GTC)
        self.apply(node_id, self.nodes[node_id].place(request, self.now()))

    def tick(self, advance_ms: int) -> None:
        self.mono += advance_ms
        for node_id, node in self.nodes.items():
            self.apply(node_id, node.tick(self.now()))

    def balance(self, node_id: NodeId, owner: str, asset: str) -> int:
        return self.nodes[node_id].ledger.balance(AccountKey(owner, AssetCode(asset)))


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
    assert not pair.nodes[A].working and not pair.nodes[B].locks


def test_an_acceptance_after_expiry_is_refused_and_the_originator_tries_again(
    pair: Pair,
) -> None:
    pair.place(A, Side.BUY, 4, 5_100, "b1")
    held = pair.deliver(keep=Acceptance)
    late_lock = held[0][1].message.lock_id  # type: ignore[union-attr]
    pair.mono += CONFIG.lock_ttl_ms  # the lock expires at B before the acceptance lands
    pair.wire.extend(held)
    pair.deliver()
    assert pair.nodes[B].decisions[late_lock] == Refusal(late_lock, "expired")
    # The refusal left the quantity open: A broadcast again and traded on a new lock.
    pair.deliver()
    trades = [d for d in pair.nodes[B].decisions.values() if isinstance(d, Confirmation)]
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
    holder = pair.nodes[B]
    assert pre_crash_lock in holder.locks
    rebuilt = NodeCore.rebuild(
        B, [XYZ], [A, B], CONFIG, b"b", holder.journal, {XYZ.product_id: 5_000}
    )
    assert rebuilt.state_hash() == holder.state_hash()
    pair.nodes[B] = rebuilt
    pair.apply(B, rebuilt.restart(pair.now()))
    assert not rebuilt.locks
    pair.wire.extend(held)
    pair.deliver()
    decision = rebuilt.decisions[pre_crash_lock]
    assert isinstance(decision, Refusal) and decision.reason == "expired_by_restart"
    # Whatever traded afterwards did so on a lock offered after the restart.
    taken = [d.lock_id for d in rebuilt.decisions.values() if isinstance(d, Confirmation)]
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
    assert not pair.nodes[B].locks


def test_cancelling_a_partly_filled_resting_order_reports_what_filled(pair: Pair) -> None:
    pair.place(A, Side.BUY, 4, 5_100, "b1")
    pair.deliver()
    resting_id = next(iter(pair.nodes[B].resting))
    pair.apply(B, pair.nodes[B].cancel(TRADER, resting_id, pair.now()))
    pair.deliver()
    done = [r.event for n, r in pair.replies if n == B and isinstance(r.event, Done)]
    assert [(d.filled_lots, d.cancelled_lots, d.reason) for d in done] == [(4, 6, "cancelled")]
    # The hold behind the cancelled lots is free again; the advert withdrew the order.
    assert pair.nodes[B].ledger.total_held(XYZ.product_id) == 0
    assert not any(v.adverts for v in pair.nodes[A].peers.values())


def test_a_fok_refused_by_a_restarted_holder_names_the_holder(pair: Pair) -> None:
    request = OrderRequest(TRADER, "f2", XYZ.product_id, Side.BUY, 4, 5_100, TimeInForce.FOK)
    pair.apply(A, pair.nodes[A].place(request, pair.now()))
    held = pair.deliver(keep=Acceptance)
    pair.apply(B, pair.nodes[B].restart(pair.now()))  # voids the lock A is taking
    pair.wire.extend(held)
    pair.deliver()
    done = [r.event for n, r in pair.replies if n == A and isinstance(r.event, Done)]
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
    effects = pair.nodes[B].receive(A, Hlc(wall_ms, 0), message, pair.now())
    return [e.message for e in effects if isinstance(e, Send)]  # type: ignore[misc]


def test_a_repeated_broadcast_gets_the_answer_it_got_before(pair: Pair) -> None:
    (first,) = _ask(pair, 7, 10_000)
    assert first.offers
    assert _ask(pair, 7, 10_000) == [first]  # the same locks, none new
    assert len(pair.nodes[B].locks) == len(first.offers)


def test_the_holder_keeps_a_bounded_number_of_answers_per_peer() -> None:
    pair = Pair(replace(CONFIG, max_answers_per_peer=3))
    pair.place(B, Side.SELL, 10, 5_000, "s1")
    pair.deliver()
    for request_id in range(1, 6):
        _ask(pair, request_id, 10_000 + request_id)
    view = pair.nodes[B].peers[A]
    assert list(view.answers) == [(3, 1), (4, 1), (5, 1)]
    # A repeat of a forgotten broadcast is stale: no answer, no new locks.
    locks = dict(pair.nodes[B].locks)
    assert _ask(pair, 1, 10_001) == []
    assert pair.nodes[B].locks == locks
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
    assert list(pair.nodes[B].peers[A].answers) == [(2, 1)]
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
