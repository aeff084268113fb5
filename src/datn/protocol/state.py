"""The node core's state, and the small helpers both halves of it use.

A node's state is split by what it is for: the trade protocol (books,
working orders, locks, decisions) and clearing with peers (bonds,
settlement, defaults; see :mod:`datn.protocol.liability`). :class:`NodeState`
holds all of it, so that :class:`~datn.protocol.node.NodeCore` and the
clearing half it inherits read and write the same fields; the peer views and
records here are what both keep per peer, per order and per lock.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from datn.book import OrderBook
from datn.clearing.quota import AcceptanceRatio, TokenBucket
from datn.clearing.settlement import Deltas
from datn.domain import AssetCode, Order, ProductSpec
from datn.ledger import UNBOUNDED, AccountKey, Ledger
from datn.protocol.clock import Hlc, HybridClock, Now
from datn.protocol.config import NodeConfig
from datn.protocol.effects import Accepted, Effect, JournalEntry, Send
from datn.protocol.messages import (
    Advert,
    BondAnswer,
    BondRequest,
    Confirmation,
    Message,
    NodeId,
    Offer,
    PotentialTrades,
    Refusal,
    StatementAnswer,
    StatementProposal,
)


def peer_owner(node_id: str) -> str:
    """The ledger owner of a peer's accounts at this node: what it owes and is owed."""
    return f"peer:{node_id}"


CAPITAL_OWNER: Final = "node:capital"
"""The node's own money: what it posts as bond comes from here."""


def bond_posted_owner(node_id: str) -> str:
    """The bond this node posted with ``node_id``: its own cash, pledged there."""
    return f"bond-posted:{node_id}"


def bond_held_owner(node_id: str) -> str:
    """The bond ``node_id`` posted with this node, as owed back to it
    (negative). It mirrors that peer's ``bond-posted`` account here."""
    return f"bond-held:{node_id}"


def rail_owner(node_id: str) -> str:
    """The settlement rail to ``node_id``, as seen from this ledger: an external
    account, since what is settled leaves this ledger for the peer's."""
    return f"rail:{node_id}"


LOSSES_OWNER: Final = "node:losses"
"""What peers in default owed this node beyond their bonds: its recorded loss."""


def collateral_owner(node_id: str) -> str:
    """Where this node keeps the cash a peer posted with it as bond."""
    return f"collateral:{node_id}"


@dataclass(slots=True)
class PeerAccounts:
    """The keys of the ledger accounts this node keeps for one peer, each
    opened on first use and kept: bonds, trades and the exposure check touch
    them all the time, and a key built once is not validated again."""

    peer: dict[str, AccountKey] | None = None
    """What the peer owes and is owed, by asset (None until the first trade)."""
    rail: dict[str, AccountKey] = field(default_factory=dict)
    bond_posted: AccountKey | None = None
    bond_held: AccountKey | None = None
    collateral: AccountKey | None = None


@dataclass(slots=True)
class PeerView:
    rtt_ms: int
    offset_ms: int = 0
    adverts: dict[int, Advert] = field(default_factory=dict)
    bids: dict[str, dict[int, Advert]] = field(default_factory=dict)
    asks: dict[str, dict[int, Advert]] = field(default_factory=dict)
    """The same adverts by side and product: routing reads only one side."""
    adverts_seen_through: int = 0
    """Every advert version up to this one has arrived..."""
    adverts_seen_above: set[int] = field(default_factory=set)
    """...and these beyond it (a lost or late advert leaves a gap), so what a
    node remembers per peer stays small however many adverts it received."""
    advert_version_announced: int = 0
    # Clearing (DESIGN.md section 7).
    bond_posted: int = 0
    """What this node posted with the peer, as the peer acknowledged."""
    bond_held: int = 0
    """What the peer posted with this node."""
    bond_requests: dict[int, BondRequest] = field(default_factory=dict)
    """This node's bond requests the peer has not answered yet."""
    bond_resend_mono_ms: int = 0
    bond_answers: dict[int, BondAnswer] = field(default_factory=dict)
    """Answers this node gave the peer's bond requests, repeated on retries."""
    lock_notional: int = 0
    lock_count: int = 0
    """The locks this node holds open for the peer, as originator."""
    broadcasts: TokenBucket | None = None
    ratio: AcceptanceRatio | None = None
    cycle: int = 0
    """The last settlement cycle of this pair that was answered."""
    proposal: StatementProposal | None = None
    """As the lower id: the statement proposed and not yet answered."""
    proposal_resend_mono_ms: int = 0
    statement_answers: dict[int, StatementAnswer] = field(default_factory=dict)
    """As the higher id: the answer given for each cycle, repeated on retries."""
    settled: int = 0
    """How many statements this node has settled with the peer: two peers that
    count alike have settled the same statements (one is proposed at a time)."""
    suspended: str = ""
    """Why this node trades no more with the peer ("" while it does)."""
    accounts: PeerAccounts = field(default_factory=PeerAccounts)
    answers: dict[tuple[int, int], tuple[Hlc, PotentialTrades]] = field(default_factory=dict)
    """As holder: the answer given to each of the peer's recent broadcasts, by
    (request id, round), with the broadcast's HLC, oldest first."""
    answers_forgotten_through: Hlc | None = None
    """The latest HLC of an answer forgotten: broadcasts up to it are stale."""
    newest_broadcast: Hlc | None = None
    """The latest HLC of any broadcast from the peer: the memory window ends there."""

    @property
    def stale(self) -> bool:
        """True when the peer announced adverts this node has not seen."""
        return self.adverts_seen_through < self.advert_version_announced

    def see_advert(self, version: int) -> bool:
        """Note that advert ``version`` arrived; False if it had already."""
        if version <= self.adverts_seen_through or version in self.adverts_seen_above:
            return False
        above = self.adverts_seen_above
        if version == self.adverts_seen_through + 1:
            self.adverts_seen_through = version
            while self.adverts_seen_through + 1 in above:
                self.adverts_seen_through += 1
                above.discard(self.adverts_seen_through)
        else:
            above.add(version)
        self.advert_version_announced = max(self.advert_version_announced, version)
        return True


@dataclass(slots=True)
class Candidate:
    """A potential trade under consideration by an originator."""

    holder: NodeId
    offer: Offer
    received_mono_ms: int


@dataclass(slots=True)
class Working:
    """An order this node originated and is still working across the network."""

    order: Order
    product: ProductSpec
    hold_id: str | None
    request_id: int
    remaining_lots: int
    filled_lots: int = 0
    round: int = 0
    awaiting: set[NodeId] = field(default_factory=set)
    candidates: list[Candidate] = field(default_factory=list)
    deadline_mono_ms: int = 0
    broadcast_mono_ms: int | None = None
    """When the current round's broadcast left; None after a restart, when a
    late answer would measure the old process's clock."""
    accepted: dict[tuple[NodeId, int], int] = field(default_factory=dict)
    resend_mono_ms: int = 0
    refused: bool = False
    failed_holders: list[NodeId] = field(default_factory=list)
    cancel_requested: bool = False
    exhausted: set[NodeId] = field(default_factory=set)
    """Peers that answered this order without refusing: they offered all they had."""


@dataclass(slots=True)
class RestingMeta:
    order: Order
    product: ProductSpec
    hold_id: str | None
    priority: Hlc
    order_ref: int
    filled_lots: int = 0


@dataclass(slots=True)
class Lock:
    lock_id: int
    originator: NodeId
    order_id: int
    quantity_lots: int
    expires_mono_ms: int
    notional: int = 0


class NodeState:
    """Everything a node knows, and helpers every part of the core uses."""

    def __init__(
        self,
        node_id: NodeId,
        products: Iterable[ProductSpec],
        peers: Iterable[NodeId],
        config: NodeConfig,
        secret: bytes,
        reference_prices: dict[str, int] | None = None,
    ) -> None:
        self.node_id = node_id
        self.config = config
        self.products: dict[str, ProductSpec] = {p.product_id: p for p in products}
        self.peers = {p: PeerView(config.default_rtt_ms) for p in sorted(peers) if p != node_id}
        self._secret = secret
        self.ledger = Ledger()
        self.books: dict[str, OrderBook] = {pid: OrderBook(pid) for pid in self.products}
        self.reference_prices = dict(reference_prices or {})
        self.clock = HybridClock()
        self.journal: list[JournalEntry] = []
        self.working: dict[int, Working] = {}
        self.resting: dict[int, RestingMeta] = {}
        self.locks: dict[int, Lock] = {}
        self.decisions: dict[int, Confirmation | Refusal] = {}
        self._hlc_in = Hlc(0, 0)
        """The HLC stamped on the peer message being handled."""
        self.answers: dict[tuple[str, str], Accepted] = {}
        self.open_orders: dict[str, int] = {}
        self.stats: dict[str, int] = {}
        self._requests: dict[int, int] = {}
        self._accepted_locks: dict[tuple[NodeId, int], int] = {}
        self._counter = 0
        self._advert_version = 0
        self._next_heartbeat_ms: int | None = None
        self._probe_queue: deque[NodeId] = deque(self.peers)
        assets = {p.product_id for p in self.products.values()}
        assets.update(p.quote_currency for p in self.products.values())
        self._asset_codes: tuple[str, ...] = tuple(sorted(assets))
        # Clearing with peers (datn.protocol.liability).
        self._bonds_waiting: dict[NodeId, None] = {}
        """Peers with unanswered bond requests, in a replayable order."""
        self._capital = AccountKey(CAPITAL_OWNER, AssetCode(config.clearing.bond_asset))
        """The node's own cash, from which it posts bonds."""
        self.unsettled: dict[NodeId, dict[int, Deltas]] = {}
        """Per peer, the trades not settled yet: lock id -> what each changed
        in the peer's accounts here."""
        self._unsettled_at: dict[NodeId, dict[int, int]] = {}
        """Per peer, when each unsettled trade was booked (monotonic ms)."""
        self._next_settlement_mono_ms: int | None = None
        self._default_notices: dict[NodeId, dict[NodeId, None]] = {}
        """Per peer, the other peers that declared it in default."""

    # ============================================================ helpers

    def _send(self, peer: NodeId, message: Message, now: Now, out: list[Effect]) -> None:
        out.append(Send(peer, self.clock.tick(now.wall_ms), message))

    def _count(self, name: str, amount: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + amount

    def _new_id(self, kind: str) -> str:
        self._counter += 1
        return f"{kind}:{self._counter}"

    def _random_id(self, *parts: object) -> int:
        """An id peers cannot link to a trader or guess: a keyed hash of a counter."""
        digest = hashlib.blake2b(repr(parts).encode(), key=self._secret, digest_size=8).digest()
        return int.from_bytes(digest, "big") >> 1

    def _peer_account(self, peer: NodeId) -> str:
        """The ledger owner of ``peer``'s accounts, opened on its first trade."""
        self._peer_keys(peer)
        return peer_owner(peer)

    def _peer_keys(self, peer: NodeId) -> dict[str, AccountKey]:
        """``peer``'s accounts by asset, opened on its first trade: a node
        with hundreds of peers keeps accounts only for those it trades with
        (an account never opened reads as zero)."""
        accounts = self.peers[peer].accounts
        if accounts.peer is None:
            owner = peer_owner(peer)
            accounts.peer = {
                asset: self.ledger.open_account(owner, asset, UNBOUNDED)
                for asset in self._asset_codes
            }
        return accounts.peer

    def _end_locks_of(self, peer: NodeId, reason: str, now: Now, out: list[Effect]) -> None:
        """End every lock held open for ``peer``, refusing it with ``reason``:
        the holder's part of the core (:class:`~datn.protocol.node.NodeCore`)."""
        raise NotImplementedError
