"""A hostile peer against a real network of node cores (Hypothesis).

Nodes ``a`` and ``b`` are honest; ``c`` runs a real core too (it posts its
bonds and trades), and besides what its core sends, it sends whatever a
peer can: any message kind with any field values the wire schema lets
through, aimed at locks, orders, bonds and statements that exist or not,
stamped with any clock, duplicated and out of order. After every step: no
exception escaped any core, every ledger balances and no bounded account is
below its floor, and no trader of an honest node traded beyond its order's
limit. At the end the network heals and the honest pair must agree on every
trade between them.
"""

from __future__ import annotations

from typing import Any

from harness import CONFIG, TRADER, XYZ, A, B, C, Net
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from test_wire import MESSAGE_STRATEGIES, hlcs, messages

from datn.clearing.settlement import Statement
from datn.domain import USD, Side, TimeInForce
from datn.protocol.clock import Hlc
from datn.protocol.effects import Accepted, Executed
from datn.protocol.messages import (
    Acceptance,
    Advert,
    BondAnswer,
    BondRequest,
    Confirmation,
    DefaultNotice,
    Message,
    NodeId,
    Offer,
    OrderBroadcast,
    PotentialTrades,
    Refusal,
    Release,
    StatementAnswer,
    StatementProposal,
    TradePrint,
)
from datn.wire import ProtocolError, decode_message, encode_message

HONEST = (A, B)
small_lots = st.integers(1, 50)
near_prices = st.integers(4_900, 5_100)
any_prices = near_prices | st.integers(1, 10**12)
reasons = st.sampled_from(["", "expired", "awaiting_funds", "unknown_lock", "x" * 64, "hash"])


def on_the_wire(message: Message) -> Message | None:
    """The message as a peer's bytes deliver it, or None if no peer could send it."""
    try:
        return decode_message(encode_message(message))
    except ProtocolError:
        return None


class HostilePeer(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.net = Net(CONFIG, (A, B, C))
        self.requests: dict[tuple[NodeId, str], Any] = {}
        self.orders: dict[tuple[NodeId, int], Any] = {}
        self.seen_executions = 0
        self.count = 0

    # ------------------------------------------------------------ honest

    @rule(
        node=st.sampled_from((A, B, C)),
        side=st.sampled_from(Side),
        lots=small_lots,
        price=near_prices | st.none(),
        tif=st.sampled_from(TimeInForce),
    )
    def place(
        self, node: NodeId, side: Side, lots: int, price: int | None, tif: TimeInForce
    ) -> None:
        self.count += 1
        cid = f"h{self.count}"
        effects = self.net.place(node, side, lots, price, cid, tif)
        for effect in effects:
            event = getattr(effect, "event", None)
            if isinstance(event, Accepted):
                request = (side, price)
                self.orders[(node, event.order_id)] = request

    @rule(steps=st.integers(1, 30))
    def deliver_some(self, steps: int) -> None:
        net = self.net
        for _ in range(steps):
            if not net.wire:
                return
            sender, send = net.wire.popleft()
            net.receive(send.peer, sender, send.message, send)

    @rule(ms=st.integers(1, 400))
    def time_passes(self, ms: int) -> None:
        self.net.tick(ms)

    @rule(node=st.sampled_from(HONEST))
    def cancel_all(self, node: NodeId) -> None:
        self.net.apply(node, self.net.nodes[node].cancel_all(TRADER, self.net.now()))

    # ----------------------------------------------------------- hostile

    def _from_c(self, target: NodeId, message: Message, hlc: Hlc | None = None) -> None:
        wired = on_the_wire(message)
        if wired is None:
            return
        net = self.net
        stamp = hlc if hlc is not None else net.nodes[C].context.clock.tick(net.now().wall_ms)
        effects = net.nodes[target].receive(C, stamp, wired, net.now())
        net.apply(target, effects)

    @rule(to=st.sampled_from(HONEST), message=messages, hlc=hlcs | st.none())
    def any_message(self, to: NodeId, message: Message, hlc: Hlc | None) -> None:
        self._from_c(to, message, hlc)

    @rule(to=st.sampled_from(HONEST), data=st.data())
    def aimed_message(self, to: NodeId, data: st.DataObject) -> None:
        target = to
        """A message about something the target really has."""
        core = self.net.nodes[target]
        locks = [lock for lock, _ in core.originator._accepted] + list(core.holder.locks)
        locks += [lock_id for _, lock_id in core.originator._accepted]
        lock_ids = st.sampled_from(locks) if locks else st.integers(0, 2**63 - 1)
        requests = list(core.originator._requests) or [0]
        request_ids = st.sampled_from(requests)
        clearing = core.liability.peers[C]
        kind = data.draw(st.sampled_from(sorted(MESSAGE_STRATEGIES, key=lambda k: k.__name__)))
        offer = st.builds(Offer, lock_ids, any_prices, small_lots, hlcs, st.integers(1, 10**6))
        message: Message
        if kind is PotentialTrades:
            message = PotentialTrades(
                data.draw(request_ids),
                data.draw(st.integers(0, 4)),
                tuple(data.draw(st.lists(offer, max_size=4))),
                data.draw(reasons),
            )
        elif kind is Acceptance:
            message = Acceptance(
                data.draw(lock_ids), data.draw(small_lots | st.integers(1, 10**12))
            )
        elif kind is Release:
            message = Release(data.draw(lock_ids))
        elif kind is Confirmation:
            message = Confirmation(
                data.draw(lock_ids),
                data.draw(st.integers(0, 2**63 - 1)),
                data.draw(st.sampled_from([XYZ.product_id, "p1" + "0" * 64])),
                data.draw(st.sampled_from(Side)),
                data.draw(any_prices),
                data.draw(small_lots),
            )
        elif kind is Refusal:
            message = Refusal(data.draw(lock_ids), data.draw(reasons.filter(bool)))
        elif kind is OrderBroadcast:
            message = OrderBroadcast(
                data.draw(st.integers(0, 2**63 - 1)),
                data.draw(st.integers(0, 2**63 - 1)),
                XYZ.product_id,
                data.draw(st.sampled_from(Side)),
                data.draw(small_lots | st.integers(1, 10**12)),
                data.draw(any_prices | st.none()),
                data.draw(st.booleans()),
            )
        elif kind is BondRequest:
            message = BondRequest(
                data.draw(st.integers(0, clearing.last_bond_id + 2)),
                data.draw(st.sampled_from([USD.code, "EUR"])),
                data.draw(st.integers(1, 2**63 - 1)),
                data.draw(st.booleans()),
            )
        elif kind is BondAnswer:
            message = BondAnswer(
                data.draw(st.integers(0, clearing.next_bond_id + 1)), data.draw(reasons)
            )
        elif kind is StatementProposal:
            trades = sorted(core.liability.unsettled(C)) or [1]
            chosen = sorted(set(data.draw(st.lists(st.sampled_from(trades), max_size=3))))
            net = data.draw(
                st.lists(
                    st.tuples(
                        st.sampled_from([USD.code, XYZ.product_id]),
                        st.integers(-(10**9), 10**9).filter(bool),
                    ),
                    max_size=2,
                    unique_by=lambda pair: pair[0],
                )
            )
            low, high = sorted((C, target))
            cycle = data.draw(st.integers(0, clearing.cycle + 2))
            statement = Statement(low, high, cycle, tuple(chosen), tuple(sorted(net)))
            message = StatementProposal(statement)
        elif kind is StatementAnswer:
            message = StatementAnswer(
                data.draw(st.integers(0, clearing.cycle + 2)), "0" * 64, data.draw(reasons)
            )
        elif kind is DefaultNotice:
            message = DefaultNotice(
                data.draw(st.sampled_from([A, B, C, NodeId("zz")])),
                data.draw(st.integers(0, 10**12)),
                data.draw(st.integers(0, 10**12)),
            )
        elif kind is Advert:
            message = Advert(
                data.draw(st.integers(0, 2**63 - 1)),
                data.draw(st.sampled_from([XYZ.product_id, "p1" + "1" * 64])),
                data.draw(st.sampled_from(Side)),
                data.draw(any_prices),
                data.draw(st.integers(0, 10**12)),
                data.draw(hlcs),
                data.draw(st.integers(0, 2**63 - 1)),
            )
        elif kind is TradePrint:
            message = TradePrint(
                XYZ.product_id, data.draw(any_prices), data.draw(small_lots), data.draw(hlcs)
            )
        else:
            message = data.draw(MESSAGE_STRATEGIES[kind])
        self._from_c(target, message)
        if data.draw(st.booleans()):
            self._from_c(target, message)  # and once more: duplicated

    @precondition(lambda self: bool(self.net.wire))
    @rule(data=st.data())
    def replay_from_the_wire(self, data: st.DataObject) -> None:
        """C sends again a message some node sent (as its own, now)."""
        _, send = data.draw(st.sampled_from(list(self.net.wire)))
        for target in HONEST:
            self._from_c(target, send.message)

    # -------------------------------------------------------- invariants

    @invariant()
    def ledgers_balance_and_no_floor_is_broken(self) -> None:
        for node_id, core in self.net.nodes.items():
            problems = core.context.ledger.check_invariants()
            assert not problems, f"{node_id}: {problems}"

    @invariant()
    def no_trader_pays_beyond_its_limit(self) -> None:
        replies = self.net.replies
        for node_id, reply in replies[self.seen_executions :]:
            event = reply.event
            if node_id in HONEST and isinstance(event, Executed):
                side, price = self.orders.get((node_id, event.order_id), (None, None))
                if price is None:
                    continue
                if side is Side.BUY:
                    assert event.price_ticks <= price
                else:
                    assert event.price_ticks >= price
        self.seen_executions = len(replies)

    def teardown(self) -> None:
        """Heal: everything delivered, time moves on; the honest pair agrees."""
        net = self.net
        for _ in range(200):
            net.tick(50)
            net.deliver()
        for asset in (USD.code, XYZ.product_id):
            assert net.balance(A, "peer:b", asset) == -net.balance(B, "peer:a", asset)
        for node_id in HONEST:
            assert not net.nodes[node_id].holder.locks


TestHostilePeer = HostilePeer.TestCase
TestHostilePeer.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
