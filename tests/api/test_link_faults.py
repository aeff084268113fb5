"""Peer links over a bad network: two real node processes, each link routed
through a fault proxy (:mod:`faultproxy`), so that what one node sends the
other reaches it only as the proxy lets it.

* Each message kind whose loss could stall the protocol is lost once (the
  first frame that carries it), in the flow that sends it: a bond posted
  and booked, a trade across the nodes, its settlement. The frame is carried
  again (by the link's resend, and for some kinds by the core's own retry
  too) and the trade ends alike on both nodes: the buyer's order filled, the
  seller's order at the other node filled by as much, every lock ended,
  every trade settled, every asset conserved, and nothing left unacknowledged.
  A refusal and a release are provoked first, by holding an acceptance
  back past its lock's life and an answer back past its collection window.
* A seeded run loses, duplicates, reorders and delays messages at random
  while orders trade both ways across the nodes, with a cut and a stall of
  the links on the way: once the network heals, every order has ended,
  every lock ended and the network conserves every asset exactly
  (``DATN_CHAOS_SEED`` picks another storm).
* A heartbeat probe the link had to resend must not stop the pair trading
  (it does today: see the test's mark).
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from faultproxy import FaultProxy, Packet, Rule, carrying
from nodes import counters, order

from datn.api.client import TraderClient
from datn.launch import LaunchError, LocalNetwork, NodeProcess, wait_until
from datn.protocol.messages import (
    Acceptance,
    Advert,
    BondAnswer,
    BondRequest,
    Confirmation,
    DefaultNotice,
    Heartbeat,
    OrderBroadcast,
    PotentialTrades,
    Refusal,
    Release,
    StatementAnswer,
    StatementProposal,
)

RESEND_MS = 100
"""The links resend an unacknowledged frame after this long."""
BOND = 50_000_000
PRICE = 5_000
SOLD = 40
"""What each seller rests: more than one order takes, so that a second
round finds lots when the first round's lock is still held."""
BOUGHT = 5
BUYER_USD = 1_000_000
TIMEOUT_S = 20.0
"""No single wait in these tests takes longer on a healthy network."""


@dataclass
class Pair:
    """Two linked nodes; ``to_b`` carries a's frames to b (and b's
    acknowledgements back), ``to_a`` b's frames to a."""

    network: LocalNetwork
    a: NodeProcess
    b: NodeProcess
    to_b: FaultProxy
    to_a: FaultProxy

    @property
    def proxies(self) -> tuple[FaultProxy, FaultProxy]:
        return self.to_b, self.to_a

    def explain(self) -> str:
        """What the proxies did and what the nodes said last: for failures."""
        lines = [f"{p.name}: {dict(sorted(p.counts().items()))}" for p in self.proxies]
        for node in (self.a, self.b):
            lines.append(f"--- {node.name}'s log, last lines:\n{node.tail(2_000)}")
        return "\n".join(lines)

    def wait(self, what: str, check: Callable[[], Any], timeout_s: float = TIMEOUT_S) -> None:
        try:
            wait_until(what, check, timeout_s)
        except LaunchError as error:
            raise AssertionError(f"{error}\n{self.explain()}") from None


def route_through_proxies(
    network: LocalNetwork,
    stack: contextlib.ExitStack,
    seed: int,
    nodes: tuple[NodeProcess, NodeProcess] | None = None,
) -> Pair:
    """Start a proxy for each direction between ``nodes`` (the network's
    two, by default) and make each node dial the other through it; return
    once both links are up through the proxies."""
    a, b = nodes or network.nodes
    to_b = stack.enter_context(FaultProxy(b.net_address, seed=seed, name="a->b"))
    to_a = stack.enter_context(FaultProxy(a.net_address, seed=seed + 1, name="b->a"))
    pair = Pair(network, a, b, to_b, to_a)
    a.call("POST", "/admin/peers", {"node_id": b.node_id, "address": to_b.address})
    b.call("POST", "/admin/peers", {"node_id": a.node_id, "address": to_a.address})
    for proxy in pair.proxies:
        pair.wait(
            f"a link opened through {proxy.name}", lambda p=proxy: p.counts().get("seen:welcome")
        )
    for node, peer in ((a, b), (b, a)):
        pair.wait(
            f"{node.name}'s link with {peer.name} up",
            lambda n=node, p=peer: network.peer(n, p)["link"]["state"] == "up",
        )
    return pair


def post_bonds(pair: Pair, amount: int) -> None:
    """Each node funds ``amount`` more capital and posts it as bond with the
    other, as over a real rail: the holder claims the bond and awaits the
    money, the poster pays on that answer, then the holder's operator
    confirms the money arrived. Return once both sides booked every bond."""
    network = pair.network
    for node in (pair.a, pair.b):
        node.call("POST", "/admin/fund", {"asset": "USD", "amount": amount})
    for node, peer in ((pair.a, pair.b), (pair.b, pair.a)):
        before = network.peer(node, peer)["bonds"]["posted_minor"]
        held = network.peer(peer, node)["bonds"]["held_minor"]
        posted = node.call("POST", "/admin/bonds", {"peer": peer.node_id, "amount": amount})

        def paid(n: NodeProcess = node, p: NodeProcess = peer) -> bool:
            outgoing = network.peer(n, p)["bonds"]["outgoing"]
            return outgoing is not None and bool(outgoing["paid"])

        pair.wait(f"{peer.name} to await {node.name}'s bond money", paid)
        peer.call(
            "POST",
            "/admin/bonds/receipts",
            {"peer": node.node_id, "bond_id": posted["bond_id"], "asset": "USD", "amount": amount},
        )
        pair.wait(
            f"{node.name}'s bond with {peer.name} booked on both sides",
            lambda n=node, p=peer, was=before, had=held: (
                network.peer(n, p)["bonds"]["posted_minor"] == was + amount
                and network.peer(p, n)["bonds"]["held_minor"] == had + amount
            ),
        )


def asks(client: TraderClient, symbol: str = "XYZ") -> int:
    """Lots offered in the network book as ``client``'s node shows it."""
    book = client.request("GET", f"/v1/book/{symbol}").json()
    return sum(level["quantity_lots"] for level in book["asks"])


def view(client: TraderClient, order_id: int) -> dict[str, Any]:
    seen: dict[str, Any] = client.request("GET", f"/v1/orders/{order_id}").json()
    return seen


def quiet(pair: Pair, timeout_s: float = TIMEOUT_S) -> None:
    """Wait until no node holds a lock, works an order or waits on a
    holder, and every pair has settled what it traded."""

    def settled(node: NodeProcess) -> bool:
        status = node.call("GET", "/admin/status")
        return not (
            status["open_locks"]
            or status["working_orders"]
            or status["unsettled_trades"]
            or status["waiting_on_holders"]
        )

    for node in (pair.a, pair.b):
        pair.wait(f"{node.name} to settle", lambda n=node: settled(n), timeout_s)


def drained(pair: Pair) -> None:
    """Every frame either node sent is acknowledged: nothing is left in an outbox."""
    for node, peer in ((pair.a, pair.b), (pair.b, pair.a)):
        pair.wait(
            f"{node.name}'s outbox for {peer.name} acknowledged",
            lambda n=node, p=peer: pair.network.peer(n, p)["link"]["unacked_frames"] == 0,
        )


def balance(rows: list[dict[str, Any]], owner: str, symbol: str) -> int:
    return sum(r["balance"] for r in rows if r["owner"] == owner and r["symbol"] == symbol)


def statements_match(pair: Pair) -> None:
    network = pair.network
    here = network.peer(pair.a, pair.b)["settlement"]["statements_settled"]
    there = network.peer(pair.b, pair.a)["settlement"]["statements_settled"]
    assert here == there, f"a settled {here} statements with b, b {there}"


def no_crash(pair: Pair) -> None:
    for node in (pair.a, pair.b):
        assert node.running, f"{node.name} stopped:\n{node.tail()}"
        log = node.log_path.read_text(errors="replace")
        assert "Traceback" not in log, f"{node.name} logged a traceback:\n{node.tail()}"


# ---------------------------------------------------------------- one loss


@dataclass(frozen=True)
class Loss:
    """A message kind lost once: the first frame that carries one (for
    which ``where`` holds) is dropped on the links ``on`` names."""

    name: str
    kind: type
    on: str
    """``a`` (a's frames to b), ``b`` (b's frames to a), or ``both``."""
    where: Callable[[Any], bool] | None = None
    provoke: Callable[[Pair], list[tuple[FaultProxy, Rule]]] | None = None
    """Other faults the trade needs to send a message of the kind at all."""
    bonds: bool = False
    """Post a bond in the case (bond messages flow only then)."""


def for_first_lock(kind: type) -> Callable[[Packet], bool]:
    """A predicate: a frame that carries a ``kind`` message for the lock of
    the first such message seen (its resends included)."""
    first: list[int] = []

    def match(packet: Packet) -> bool:
        locks = [m.lock_id for m in packet.messages if isinstance(m, kind)]
        if locks and not first:
            first.append(locks[0])
        return bool(first) and first[0] in locks

    return match


def late_acceptance(pair: Pair) -> list[tuple[FaultProxy, Rule]]:
    """Hold every copy of a's acceptance of its first lock back past the
    lock's life (250 ms at b), while the rest of the link flows: b's lock
    expires, and b refuses the acceptance when it comes. a asks again."""
    rule = Rule(for_first_lock(Acceptance), "delay", ms=300, times=1_000, name="late acceptance")
    return [(pair.to_b, pair.to_b.add_rule(rule))]


def late_answer(pair: Pair) -> list[tuple[FaultProxy, Rule]]:
    """Hold every copy of b's answer to a's first broadcast round back past
    a's collection window (at most half the lock's life): a asks again,
    trades on the second answer, and releases the lock in the first when
    it comes."""
    first_round = carrying(PotentialTrades, lambda m: m.round == 1)
    rule = Rule(first_round, "delay", ms=200, times=1_000, name="late answer")
    return [(pair.to_a, pair.to_a.add_rule(rule))]


LOSSES = [
    Loss("advert", Advert, "b"),
    Loss("order-broadcast", OrderBroadcast, "a"),
    Loss("potential-trades", PotentialTrades, "b"),
    Loss("acceptance", Acceptance, "a"),
    Loss("confirmation", Confirmation, "b"),
    Loss("refusal", Refusal, "b", provoke=late_acceptance),
    Loss("release", Release, "a", provoke=late_answer),
    Loss("heartbeat", Heartbeat, "both", where=lambda m: m.echo_mono_ms is None),
    Loss("heartbeat-echo", Heartbeat, "both", where=lambda m: m.echo_mono_ms is not None),
    Loss("bond-request", BondRequest, "both", bonds=True),
    Loss(
        "bond-answer-awaiting-funds",
        BondAnswer,
        "both",
        where=lambda m: m.reason == "awaiting_funds",
        bonds=True,
    ),
    Loss("bond-answer-booked", BondAnswer, "both", where=lambda m: m.reason == "", bonds=True),
    Loss("statement-proposal", StatementProposal, "both"),
    Loss("statement-answer", StatementAnswer, "both"),
]


def reset(pair: Pair) -> None:
    """No faults, no orders and no adverts left from an earlier case."""
    for proxy in pair.proxies:
        proxy.clear()
    for node in (pair.a, pair.b):
        for client in node.traders.values():
            cancelled = client.request("DELETE", "/v1/orders")
            assert cancelled.status_code == 200, cancelled.text
    for node, peer in ((pair.a, pair.b), (pair.b, pair.a)):
        pair.wait(
            f"{node.name}'s network book of {peer.name} empty",
            lambda n=node, p=peer: not pair.network.peer(n, p)["network_book"]["adverts"],
        )
    quiet(pair)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """One network for every loss: each case starts by clearing the
    proxies' rules and every order an earlier case left."""
    root = tmp_path_factory.mktemp("link-faults")
    with contextlib.ExitStack() as stack:
        network = stack.enter_context(LocalNetwork(root, ["a", "b"], resend_ms=RESEND_MS))
        network.start()
        network.link()
        found = route_through_proxies(network, stack, seed=1)
        post_bonds(found, BOND)
        yield found


@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: loss.name)
def test_a_lost_message_is_carried_again_and_the_trade_ends_alike_on_both_nodes(
    pair: Pair, loss: Loss
) -> None:
    network, a, b = pair.network, pair.a, pair.b
    reset(pair)
    provoked = loss.provoke(pair) if loss.provoke is not None else []
    on = {"a": [pair.to_b], "b": [pair.to_a], "both": list(pair.proxies)}[loss.on]
    drops = [(proxy, proxy.drop_first(loss.kind, loss.where)) for proxy in on]
    before = {p.name: p.dropped(loss.kind) for p in on}
    if loss.bonds:
        post_bonds(pair, BOND)

    seller = network.trader(b, f"seller-{loss.name}", {"XYZ": SOLD})
    buyer = network.trader(a, f"buyer-{loss.name}", {"USD": BUYER_USD})
    rested = seller.request("POST", "/v1/orders", order("s", "sell", SOLD, PRICE))
    assert rested.status_code == 201, rested.text
    sold = rested.json()["order_id"]
    pair.wait("the seller's order in a's network book", lambda: asks(buyer) == SOLD)
    placed = buyer.request("POST", "/v1/orders", order("b", "buy", BOUGHT, PRICE))
    assert placed.status_code == 201, placed.text
    bought = placed.json()["order_id"]
    pair.wait("the buyer's order to fill", lambda: view(buyer, bought)["status"] == "filled")
    # The loss happened (a heartbeat may come only after the trade).
    pair.wait(
        f"a frame carrying a {loss.kind.__name__} dropped",
        lambda: sum(rule.fired for _, rule in drops) >= 1,
        timeout_s=5,
    )
    quiet(pair)
    assert sum(p.dropped(loss.kind) - before[p.name] for p in on) >= 1, pair.explain()
    for proxy, rule in provoked:
        assert rule.fired, f"{rule.name} on {proxy.name} did not happen\n{pair.explain()}"

    # The trade ended alike on both nodes.
    sale = view(seller, sold)
    assert sale["filled_lots"] == BOUGHT, sale
    ledgers = network.ledgers()
    assert balance(ledgers["a"], f"trader:buyer-{loss.name}", "XYZ") == BOUGHT
    assert balance(ledgers["a"], f"trader:buyer-{loss.name}", "USD") == BUYER_USD - BOUGHT * PRICE
    assert balance(ledgers["b"], f"trader:seller-{loss.name}", "XYZ") == SOLD - BOUGHT
    assert balance(ledgers["b"], f"trader:seller-{loss.name}", "USD") == BOUGHT * PRICE
    assert network.conservation(timeout_s=TIMEOUT_S) == [], pair.explain()
    statements_match(pair)
    drained(pair)
    no_crash(pair)


# ---------------------------------------------------------------- a default


SETTLEMENT = {
    "settlement_cycle_ms": 500,
    "settlement_lag_ms": 2_000,
    "settlement_deadline_ms": 8_000,
}
"""Trades settle two seconds after they are booked, so the test can stop a
node first, and a node that leaves them unsettled for eight seconds is in
default: long enough that the restarted node, whose own deadline runs on
from where it stopped, does not declare the other in default before the
reinstated pair's next statement (at least the lag after reinstatement)."""


def test_a_lost_default_notice_is_carried_again_and_recorded_once(tmp_path: Path) -> None:
    """The table's last kind. b sells to a trader at a and is killed before
    the pair settles; eight seconds on, a declares b in default, claims its
    bond and tells c. The first frame carrying that notice to c is lost: the
    link carries it again, and c records a as a witness of b's default,
    once. Then b comes back, a's operator reinstates it, and the pair
    settles: the network conserves every asset."""
    with contextlib.ExitStack() as stack:
        network = stack.enter_context(
            LocalNetwork(tmp_path, ["a", "b", "c"], resend_ms=RESEND_MS, core=SETTLEMENT)
        )
        network.start()
        network.link()
        a, b, c = network.nodes
        pair = route_through_proxies(network, stack, seed=5, nodes=(a, c))
        network.bond(BOND)
        drops = [proxy.drop_first(DefaultNotice) for proxy in pair.proxies]

        seller = network.trader(b, "seller", {"XYZ": SOLD})
        buyer = network.trader(a, "buyer", {"USD": BUYER_USD})
        rested = seller.request("POST", "/v1/orders", order("s", "sell", SOLD, PRICE))
        assert rested.status_code == 201, rested.text
        wait_until("the seller's order in a's network book", lambda: asks(buyer) == SOLD)
        placed = buyer.request("POST", "/v1/orders", order("b", "buy", BOUGHT, PRICE))
        assert placed.status_code == 201, placed.text
        bought = placed.json()["order_id"]
        wait_until("the buyer's order to fill", lambda: view(buyer, bought)["status"] == "filled")
        b.kill()
        assert a.call("GET", "/admin/status")["unsettled_trades"], "settled before b stopped"

        def declared() -> bool:
            return bool(network.peer(a, b)["defaults"]["declared"])

        pair.wait("a to declare b in default", declared, timeout_s=TIMEOUT_S)
        assert len(network.peer(a, b)["defaults"]["open_claims"]) == 1
        pair.wait(
            "c to record a's notice",
            lambda: network.peer(c, b)["defaults"]["declared_by"] == [a.node_id],
        )
        assert sum(rule.fired for rule in drops) == 1, pair.explain()
        assert sum(proxy.dropped(DefaultNotice) for proxy in pair.proxies) == 1
        drained(pair)
        events = counters(c.admin, "datn_core_events_total") if c.admin else {}
        assert events.get("default_notices") == 1, events
        # One notice is below c's quorum (two): c still trades with b.
        assert not network.peer(c, b)["defaults"]["suspended"]

        network.restart(b)
        a.call("POST", f"/admin/peers/{b.node_id}/reinstate")
        network.wait_quiet(TIMEOUT_S * 3)
        assert not network.peer(a, b)["defaults"]["open_claims"]
        assert network.conservation(timeout_s=TIMEOUT_S) == [], pair.explain()
        here = network.peer(a, b)["settlement"]["statements_settled"]
        assert here and here == network.peer(b, a)["settlement"]["statements_settled"]
        for node in network.nodes:
            assert node.running, node.tail()


# ---------------------------------------------------------------- chaos


ORDERS = 20
CHAOS_SEED = int(os.environ.get("DATN_CHAOS_SEED", "7"))
"""The seed of the storm's faults and orders: another one replays another storm."""


@dataclass
class Market:
    """Buyers at one node take what a seller rests at the other."""

    symbol: str
    price: int
    seller: TraderClient
    buyer: TraderClient
    buyer_id: str
    seller_id: str
    placed: list[int] = field(default_factory=list)


def test_a_seeded_storm_of_losses_duplicates_reorders_delays_a_cut_and_a_stall(
    tmp_path: Path,
) -> None:
    rng = random.Random(CHAOS_SEED)
    with contextlib.ExitStack() as stack:
        network = stack.enter_context(
            LocalNetwork(tmp_path, ["a", "b"], resend_ms=RESEND_MS, products=[("ABC", 2_500)])
        )
        network.start()
        network.link()
        pair = route_through_proxies(network, stack, seed=CHAOS_SEED)
        a, b = pair.a, pair.b
        for proxy in pair.proxies:
            proxy.set_faults(drop=0.1, duplicate=0.1, reorder=0.1, delay_ms=(0, 20))
        post_bonds(pair, BOND)

        # XYZ rests at b and is bought from a; ABC rests at a and is bought
        # from b: each node is originator of one product and holder of the other.
        sides = [
            Market(
                "XYZ",
                PRICE,
                network.trader(b, "xyz-seller", {"XYZ": 3 * SOLD}),
                network.trader(a, "xyz-buyer", {"USD": 10 * BUYER_USD}),
                "xyz-buyer",
                "xyz-seller",
            ),
            Market(
                "ABC",
                2_500,
                network.trader(a, "abc-seller", {"ABC": 3 * SOLD}),
                network.trader(b, "abc-buyer", {"USD": 10 * BUYER_USD}),
                "abc-buyer",
                "abc-seller",
            ),
        ]
        for side in sides:
            for level in range(3):
                rested = side.seller.request(
                    "POST",
                    "/v1/orders",
                    order(f"s-{level}", "sell", SOLD, side.price, product=side.symbol),
                )
                assert rested.status_code == 201, rested.text
        for side in sides:
            pair.wait(
                f"{side.symbol} asks in the buyer's network book",
                lambda s=side: asks(s.buyer, s.symbol) == 3 * SOLD,
            )

        for number in range(ORDERS):
            if number == ORDERS // 3:
                assert sum(proxy.cut() for proxy in pair.proxies) >= 1
            if number == 2 * ORDERS // 3:
                for proxy in pair.proxies:
                    proxy.stall(300)
            side = sides[number % 2]
            placed = side.buyer.request(
                "POST",
                "/v1/orders",
                order(f"b-{number}", "buy", rng.randint(1, 5), side.price, product=side.symbol),
            )
            assert placed.status_code == 201, placed.text
            side.placed.append(placed.json()["order_id"])
            time.sleep(rng.uniform(0.02, 0.1))

        # The network heals: every order ends, every lock ends, every
        # trade settles and every frame is acknowledged.
        for proxy in pair.proxies:
            proxy.clear()
        quiet(pair, timeout_s=40)
        drained(pair)
        ledgers = network.ledgers()
        for side in sides:
            filled = 0
            for order_id in side.placed:
                seen = view(side.buyer, order_id)
                assert not seen["pending_lots"] and not seen["waiting_on"], seen
                assert seen["status"] in ("filled", "partially_filled", "new"), seen
                filled += seen["filled_lots"]
            buyer_node, seller_node = ("a", "b") if side.symbol == "XYZ" else ("b", "a")
            bought = balance(ledgers[buyer_node], f"trader:{side.buyer_id}", side.symbol)
            kept = balance(ledgers[seller_node], f"trader:{side.seller_id}", side.symbol)
            assert bought == filled, (side.symbol, bought, filled)
            assert kept == 3 * SOLD - filled, (side.symbol, kept, filled)
            assert filled, f"no {side.symbol} crossed the nodes\n{pair.explain()}"
        # What rests of the buyers' orders is cancelled: every order ends.
        for side in sides:
            cancelled = side.buyer.request("DELETE", "/v1/orders")
            assert cancelled.status_code == 200, cancelled.text
        for side in sides:
            for order_id in side.placed:
                pair.wait(
                    f"order {order_id} to end",
                    lambda s=side, o=order_id: (
                        view(s.buyer, o)["status"] in ("filled", "cancelled")
                    ),
                )
        quiet(pair)
        assert network.conservation(timeout_s=TIMEOUT_S) == [], pair.explain()
        statements_match(pair)
        no_crash(pair)

        # Every fault happened.
        counts = [proxy.counts() for proxy in pair.proxies]
        for name in ("dropped", "duplicated", "reordered", "delayed", "cuts", "stalls"):
            assert sum(c.get(name, 0) for c in counts) >= 1, (name, pair.explain())
        assert sum(c.get("connections", 0) for c in counts) >= 4, pair.explain()


# ---------------------------------------------------------------- round trips


def test_a_heartbeat_the_link_resent_does_not_stop_the_pair_trading(tmp_path: Path) -> None:
    """A lost frame is the link's business: once it is carried again, the
    pair trades as before. A heartbeat probe in that frame comes back late
    by the link's resend delay, which is not the round trip."""
    with contextlib.ExitStack() as stack:
        # The links' default resend_ms (500 ms): what a WAN deployment runs.
        network = stack.enter_context(LocalNetwork(tmp_path, ["a", "b"]))
        network.start()
        network.link()
        pair = route_through_proxies(network, stack, seed=3)
        a, b = pair.a, pair.b
        post_bonds(pair, BOND)
        seller = network.trader(b, "seller", {"XYZ": SOLD})
        buyer = network.trader(a, "buyer", {"USD": BUYER_USD})
        rested = seller.request("POST", "/v1/orders", order("s", "sell", SOLD, PRICE))
        assert rested.status_code == 201, rested.text
        pair.wait("the seller's order in a's network book", lambda: asks(buyer) == SOLD)

        def rtt() -> dict[str, Any]:
            link: dict[str, Any] = network.peer(a, b)["link"]
            return link

        pair.wait("two round trips measured", lambda: rtt()["rtt_samples"] >= 2)
        samples = rtt()["rtt_samples"]
        # a's next probe is lost, and so is what a sends in the 400 ms after
        # it, so no acknowledgement shows b a gap: a's link resends the probe
        # after resend_ms.
        lost: list[float] = []

        def outage(packet: Packet) -> bool:
            if packet.kind != "frame":
                return False
            if not lost and carrying(Heartbeat, lambda m: m.echo_mono_ms is None)(packet):
                lost.append(time.monotonic())
                return True
            return bool(lost) and time.monotonic() - lost[0] < 0.4

        pair.to_b.add_rule(Rule(outage, "drop", times=1_000, name="outage"))
        pair.wait("the resent probe answered", lambda: rtt()["rtt_samples"] > samples)
        pair.to_b.clear()
        measured = rtt()

        placed = buyer.request(
            "POST", "/v1/orders", {**order("b", "buy", BOUGHT, PRICE), "time_in_force": "ioc"}
        )
        assert placed.status_code == 201, placed.text
        bought = placed.json()["order_id"]
        pair.wait("the buyer's order to end", lambda: view(buyer, bought)["status"] != "new")
        seen = view(buyer, bought)
        assert seen["status"] == "filled", (seen, measured)
