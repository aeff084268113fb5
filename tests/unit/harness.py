"""A hand-driven network of node cores for unit tests.

Messages wait on a wire until the test delivers them (or keeps some back);
bond money moves over a rail as soon as it is paid, unless the test closes
the rail to keep payments back; every node's journal is kept, so a test can
recover a node from it. Time moves only when the test says so.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import TypeVar

from datn.domain import USD, AssetCode, ProductKind, ProductSpec, Side, TimeInForce
from datn.ledger import AccountKey
from datn.protocol.clock import Hlc, Now
from datn.protocol.effects import (
    Effect,
    Genesis,
    Journal,
    JournalEntry,
    Pay,
    Reply,
    Send,
    TraderEvent,
)
from datn.protocol.messages import Message, NodeId
from datn.protocol.node import NodeConfig, NodeCore
from datn.protocol.venue import OrderRequest
from datn.risk import RiskConfig

E = TypeVar("E", bound=TraderEvent)
M = TypeVar("M", bound=Message)

XYZ = ProductSpec("XYZ", ProductKind.SHARE, USD.code)
A, B, C = NodeId("a"), NodeId("b"), NodeId("c")
TRADER = "trader-alice"
OWNER = f"trader:{TRADER}"
CONFIG = NodeConfig(RiskConfig(listed_products=frozenset({XYZ.product_id})))
BOND = 10_000_000
WALL_EPOCH_MS = 1_795_000_000_000
REFERENCE = 5_000


class Net:
    """Nodes and a hand-driven wire: messages wait until delivered."""

    def __init__(
        self,
        config: NodeConfig = CONFIG,
        ids: tuple[NodeId, ...] = (A, B),
        *,
        bonds: bool = True,
        kinds: dict[NodeId, type[NodeCore]] | None = None,
        configs: dict[NodeId, NodeConfig] | None = None,
    ) -> None:
        """``configs`` gives some nodes a configuration of their own; the
        others run ``config``."""
        self.mono = 1_000
        self.wire: deque[tuple[NodeId, Send]] = deque()
        self.rail_open = True
        """While False, bond payments wait in ``unpaid`` until :meth:`pay`."""
        self.unpaid: list[tuple[NodeId, Pay]] = []
        self.replies: list[tuple[NodeId, Reply]] = []
        self.effects: list[tuple[NodeId, Effect]] = []
        self.journals: dict[NodeId, list[JournalEntry]] = {n: [] for n in ids}
        self.ids = ids
        self.nodes: dict[NodeId, NodeCore] = {}
        for node_id in ids:
            kind = (kinds or {}).get(node_id, NodeCore)
            own = (configs or {}).get(node_id, config)
            core, effects = kind.start(self.genesis(node_id, own), self.now())
            self.nodes[node_id] = core
            self.apply(node_id, effects)
        for node_id, node in self.nodes.items():
            self.apply(node_id, node.deposit(TRADER, USD.code, 10_000_000, self.now()))
            self.apply(node_id, node.deposit(TRADER, XYZ.product_id, 1_000, self.now()))
            if bonds:
                self.apply(node_id, node.fund(USD.code, BOND * len(ids), self.now()))
                for peer in ids:
                    if peer != node_id:
                        self.apply(node_id, node.post_bond(peer, BOND, self.now()))
        self.deliver()

    @staticmethod
    def genesis(
        node_id: NodeId, config: NodeConfig, peers: tuple[NodeId, ...] = (A, B, C)
    ) -> Genesis:
        return Genesis(
            node_id,
            config,
            (XYZ,),
            peers,
            node_id.encode(),
            ((XYZ.product_id, REFERENCE),),
        )

    def now(self) -> Now:
        return Now(self.mono, WALL_EPOCH_MS + self.mono)

    def apply(self, node_id: NodeId, effects: list[Effect]) -> None:
        for effect in effects:
            self.effects.append((node_id, effect))
            if isinstance(effect, Send):
                if effect.peer in self.nodes:
                    self.wire.append((node_id, effect))
            elif isinstance(effect, Reply):
                self.replies.append((node_id, effect))
            elif isinstance(effect, Journal):
                self.journals[node_id].append(effect.entry)
            elif isinstance(effect, Pay) and effect.purpose == "bond" and effect.peer in self.nodes:
                if self.rail_open:
                    self.pay(node_id, effect)
                else:
                    self.unpaid.append((node_id, effect))

    def pay(self, payer: NodeId, payment: Pay) -> None:
        """The rail moves a bond payment: the payee's rail reports it received."""
        payee = self.nodes[payment.peer]
        received = payee.bond_received(
            payer, payment.ref, payment.asset, payment.amount, self.now()
        )
        self.apply(payment.peer, received)

    def payments(self, node_id: NodeId, purpose: str = "bond") -> list[Pay]:
        """Every payment ``node_id`` made for ``purpose``, in order."""
        return [
            e
            for n, e in self.effects
            if n == node_id and isinstance(e, Pay) and e.purpose == purpose
        ]

    def deliver(self, keep: type | None = None) -> list[tuple[NodeId, Send]]:
        """Deliver everything on the wire, except messages of type ``keep``."""
        held = []
        while self.wire:
            sender, send = self.wire.popleft()
            if keep is not None and isinstance(send.message, keep):
                held.append((sender, send))
                continue
            self.receive(send.peer, sender, send.message, send)
        return held

    def receive(
        self, node_id: NodeId, sender: NodeId, message: Message, send: Send | None = None
    ) -> list[Effect]:
        """``node_id`` receives ``message`` from ``sender`` (stamped as sent, or
        now: by the sender's clock, or the wall clock for a peer that is not
        one of the test's nodes)."""
        hlc = send.hlc if send is not None else self.stamp(sender)
        effects = self.nodes[node_id].receive(sender, hlc, message, self.now())
        self.apply(node_id, effects)
        return effects

    def stamp(self, sender: NodeId) -> Hlc:
        """A fresh stamp from ``sender``'s clock, or the wall clock for a peer
        that is not one of the test's nodes."""
        wall_ms = self.now().wall_ms
        node = self.nodes.get(sender)
        return Hlc(wall_ms, 0) if node is None else node.context.clock.tick(wall_ms)

    def place(
        self,
        node_id: NodeId,
        side: Side,
        quantity: int,
        price: int | None,
        cid: str,
        tif: TimeInForce = TimeInForce.GTC,
        trader: str = TRADER,
    ) -> list[Effect]:
        request = OrderRequest(trader, cid, XYZ.product_id, side, quantity, price, tif)
        effects = self.nodes[node_id].place(request, self.now())
        self.apply(node_id, effects)
        return effects

    def tick(self, advance_ms: int) -> None:
        self.mono += advance_ms
        for node_id, node in self.nodes.items():
            self.apply(node_id, node.tick(self.now()))

    def run(self, ms: int, step_ms: int = 10) -> None:
        """Tick and deliver for ``ms`` of time."""
        for _ in range(ms // step_ms):
            self.tick(step_ms)
            self.deliver()

    def crash_and_recover(self, node_id: NodeId, *, snapshot: bool = False) -> None:
        """Rebuild ``node_id`` from its journal (or a snapshot of it), check
        it is the node it was, and restart it."""
        node = self.nodes[node_id]
        before = node.state_hash()
        if snapshot:
            recovered = type(node).recover([], node.snapshot())
        else:
            recovered = type(node).recover(self.journals[node_id])
        assert recovered.state_hash() == before
        core, effects = recovered.restart(self.now())
        self.nodes[node_id] = core
        self.apply(node_id, effects)

    def balance(self, node_id: NodeId, owner: str, asset: str) -> int:
        return self.nodes[node_id].context.ledger.balance(AccountKey(owner, AssetCode(asset)))

    def balances(self, node_id: NodeId) -> dict[AccountKey, int]:
        """Every account of ``node_id``'s ledger whose balance is not zero."""
        ledger = self.nodes[node_id].context.ledger
        return {key: ledger.balance(key) for key in ledger.accounts() if ledger.balance(key)}

    def events(self, node_id: NodeId, kind: type[E]) -> list[E]:
        """What ``node_id`` told its traders, of one kind."""
        return [r.event for n, r in self.replies if n == node_id and isinstance(r.event, kind)]

    def sent(self, node_id: NodeId, kind: type[M]) -> list[M]:
        """What ``node_id`` sent its peers, of one kind."""
        return [
            e.message
            for n, e in self.effects
            if n == node_id and isinstance(e, Send) and isinstance(e.message, kind)
        ]


def events_in(effects: list[Effect], kind: type[E]) -> list[E]:
    """The trader events of one kind among ``effects``."""
    return [e.event for e in effects if isinstance(e, Reply) and isinstance(e.event, kind)]


def messages_in(effects: list[Effect], kind: type[M]) -> list[M]:
    """The peer messages of one kind among ``effects``."""
    return [e.message for e in effects if isinstance(e, Send) and isinstance(e.message, kind)]


def with_clearing(config: NodeConfig = CONFIG, **knobs: object) -> NodeConfig:
    """``config`` with other clearing knobs."""
    return replace(config, clearing=replace(config.clearing, **knobs))  # type: ignore[arg-type]
