"""What every part of the node core shares: who the node is, its rules, its
ledger, its clocks and marks, and the small services every part uses
(sending a message, counting an event, making an id).

The parts of the core (:mod:`~datn.protocol.traders`,
:mod:`~datn.protocol.resting`, :mod:`~datn.protocol.holder`,
:mod:`~datn.protocol.originator`, :mod:`~datn.protocol.liability`,
:mod:`~datn.protocol.network`) each own their own state; this is the state
they all read, and it is snapshotted once, here.
"""

from __future__ import annotations

import hashlib
from typing import Final

from datn.domain import AssetCode, ProductSpec
from datn.domain.value import NodeId
from datn.ledger import AccountKey, Ledger
from datn.protocol.clock import Hlc, Now
from datn.protocol.effects import Effect, Genesis, Publish, Send
from datn.protocol.hybrid import HybridClock
from datn.protocol.marks import Marks
from datn.protocol.messages import Message
from datn.protocol.snapshot import ContextState

OTHER_REASON: Final = "other"
"""What a counter names a peer's reason as when it is not one this node
knows: a peer chooses the text, and counters must not grow with it."""


class Context:
    """The node's identity, rules, ledger and clocks; see the module docstring."""

    def __init__(self, genesis: Genesis) -> None:
        self.genesis = genesis
        self.node_id = genesis.node_id
        self.config = genesis.config
        self.secret = genesis.secret
        self.products: dict[str, ProductSpec] = {p.product_id: p for p in genesis.products}
        self.peers: list[NodeId] = sorted({p for p in genesis.peers if p != self.node_id})
        self.ledger = Ledger(id_memory=self.config.ledger_id_memory)
        self.clock = HybridClock()
        config = self.config
        self.marks = Marks(
            dict(genesis.reference_prices), config.max_mark_sources, config.mark_quorum
        )
        self.stats: dict[str, int] = {}
        self.counter = 0
        self.logic_version = 1
        """The core logic version of the latest genesis or restart entry
        (:data:`datn.protocol.effects.CORE_LOGIC_VERSION` of the code that
        wrote the journal from there on)."""
        self.last_mono_ms = 0
        """The monotonic time of the latest input: a restart re-bases every
        deadline by how far the new clock is from it."""
        self.hlc_in = Hlc(0, 0)
        """The HLC stamped on the peer message being handled."""
        self.asset_codes: tuple[str, ...] = ()
        self._index_assets()
        self._keys: dict[tuple[str, str], AccountKey] = {}
        """Account keys built (and checked) once: a trade names four."""
        self._keyed = hashlib.blake2b(key=self.secret, digest_size=8)

    def _index_assets(self) -> None:
        assets = set(self.products)
        assets.update(p.quote_currency for p in self.products.values())
        assets.add(self.config.clearing.bond_asset)
        self.asset_codes = tuple(sorted(assets))

    def add_product(self, product: ProductSpec) -> None:
        self.products[product.product_id] = product
        self._index_assets()

    # ============================================================ services

    def send(self, peer: NodeId, message: Message, now: Now, out: list[Effect]) -> None:
        out.append(Send(peer, self.clock.tick(now.wall_ms), message))

    def publish_trade(
        self, product_id: str, price_ticks: int, lots: int, now: Now, out: list[Effect]
    ) -> None:
        """Tell this node's market-data feed about a trade. Peers hear of it
        from the advert of the resting order that made its price (see
        :class:`~datn.protocol.messages.Advert`): each trade is printed once,
        by the node whose book set the price."""
        out.append(
            Publish(product_id, price_ticks, lots, self.clock.tick(now.wall_ms), self.node_id)
        )

    def count(self, name: str, amount: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + amount

    def next_counter(self) -> int:
        self.counter += 1
        return self.counter

    def new_id(self, kind: str) -> str:
        return f"{kind}:{self.next_counter()}"

    def random_id(self, *parts: object) -> int:
        """An id peers cannot link to a trader or guess: a keyed hash of its
        parts (a kind and a counter, say)."""
        digest = self._keyed.copy()
        digest.update(":".join(map(str, parts)).encode())
        return int.from_bytes(digest.digest(), "big") >> 1

    def key(self, owner: str, asset: str) -> AccountKey:
        """The key of ``owner``'s account of ``asset``, checked once and kept."""
        key = self._keys.get((owner, asset))
        if key is None:
            key = self._keys[(owner, asset)] = AccountKey(owner, AssetCode(asset))
        return key

    # ============================================================ snapshot

    def snapshot(self) -> ContextState:
        return ContextState(
            self.genesis,
            self.config,
            tuple(self.products.values()),
            tuple(self.peers),
            self.counter,
            self.clock.last,
            self.last_mono_ms,
            tuple(self.stats.items()),
            self.marks.snapshot(),
            self.ledger.snapshot(),
            self.logic_version,
        )

    @classmethod
    def restore(cls, state: ContextState) -> Context:
        context = cls(state.genesis)
        context.config = state.config
        context.products = {p.product_id: p for p in state.products}
        context._index_assets()
        context.peers = list(state.peers)
        context.counter = state.counter
        context.clock.last = state.clock
        context.last_mono_ms = state.last_mono_ms
        context.logic_version = state.logic_version
        context.stats = dict(state.stats)
        config = state.config
        context.marks = Marks.restore(state.marks, config.max_mark_sources, config.mark_quorum)
        context.ledger = Ledger.restore(state.ledger)
        return context
