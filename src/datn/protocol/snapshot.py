"""The node's state as values: what a snapshot of each part holds.

A snapshot is an explicit, versioned value of the whole node, part by part
(not pickle: compiled and pure builds read each other's), in the order that
decides how the node behaves next. :class:`NodeSnapshot` is the whole;
each part of the core makes its own state value and restores from it. The
state hash is the hash of the snapshot's canonical encoding.

These values live in a module of their own, apart from the parts (which are
compiled with mypyc), so that their field types stay plain annotations the
decoder reads.
"""

from __future__ import annotations

from datn.book import BookSnapshot
from datn.clearing.settlement import Deltas
from datn.domain import (
    AssetCode,
    Order,
    OrderId,
    OrderType,
    ProductSpec,
    Side,
    TimeInForce,
    TraderId,
)
from datn.domain.value import NodeId, Value
from datn.ledger.snapshot import LedgerSnapshot
from datn.protocol.clock import Hlc
from datn.protocol.config import NodeConfig
from datn.protocol.effects import Genesis
from datn.protocol.messages import (
    Advert,
    BondAnswer,
    BondRequest,
    Confirmation,
    Offer,
    PotentialTrades,
    Refusal,
    StatementAnswer,
    StatementProposal,
)

SNAPSHOT_VERSION = 1
"""The shape of :class:`NodeSnapshot`; a snapshot of another shape is refused."""


class MarksState(Value, frozen=True):
    """The marks' whole state: per product, sources in recency order."""

    opening: tuple[tuple[str, int], ...]
    sources: tuple[tuple[str, tuple[tuple[NodeId, int], ...]], ...]


class ContextState(Value, frozen=True):
    genesis: Genesis
    config: NodeConfig
    products: tuple[ProductSpec, ...]
    peers: tuple[NodeId, ...]
    counter: int
    clock: Hlc
    last_mono_ms: int
    stats: tuple[tuple[str, int], ...]
    marks: MarksState
    ledger: LedgerSnapshot
    logic_version: int = 1
    """The core logic of the node's latest genesis or restart entry: what
    wrote the journal after it. Absent from snapshots before it was kept."""


class AnswerState(Value, frozen=True):
    """A remembered answer with the request it answered, flat: an accepted
    order's id, or a rejection's reason and message."""

    trader_id: str
    client_order_id: str
    product_id: str
    side: Side
    quantity_lots: int
    price_ticks: int | None
    time_in_force: TimeInForce
    order_id: int | None
    reason: str = ""
    message: str = ""


class TradersState(Value, frozen=True):
    answers: tuple[AnswerState, ...]
    open: tuple[tuple[str, str, int], ...]
    finished: tuple[tuple[int, str, str], ...]
    open_orders: tuple[tuple[str, int], ...]
    recent: tuple[tuple[str, tuple[int, ...]], ...]


class OrderState(Value, frozen=True):
    """An order's fields, as a snapshot keeps them."""

    order_id: int
    trader_id: str
    product_id: str
    side: Side
    quantity_lots: int
    price_ticks: int | None
    order_type: OrderType
    time_in_force: TimeInForce
    client_order_id: str

    @classmethod
    def of(cls, order: Order) -> OrderState:
        return cls(
            order.order_id,
            order.trader_id,
            order.product_id,
            order.side,
            order.quantity_lots,
            order.price_ticks,
            order.order_type,
            order.time_in_force,
            order.client_order_id,
        )

    def order(self) -> Order:
        return Order(
            OrderId(self.order_id),
            TraderId(self.trader_id),
            AssetCode(self.product_id),
            self.side,
            self.quantity_lots,
            self.price_ticks,
            self.order_type,
            self.time_in_force,
            self.client_order_id,
        )


class RestingMetaState(Value, frozen=True):
    """One resting order beside its book: a GTC limit order of its book's
    product, its hold named after it (or none), kept compact because a node
    may rest hundreds of thousands."""

    order_id: int
    trader_id: str
    side: Side
    quantity_lots: int
    price_ticks: int
    time_in_force: TimeInForce
    client_order_id: str
    held: bool
    priority: Hlc
    order_ref: int
    filled_lots: int


class ProductRestingState(Value, frozen=True):
    book: BookSnapshot
    orders: tuple[RestingMetaState, ...]


class RestingState(Value, frozen=True):
    products: tuple[ProductRestingState, ...]
    advert_version: int


class LockState(Value, frozen=True):
    lock_id: int
    originator: NodeId
    order_id: int
    quantity_lots: int
    expires_mono_ms: int
    notional: int


class DecisionState(Value, frozen=True):
    lock_id: int
    originator: NodeId
    confirmation: Confirmation | None
    refusal: Refusal | None


class MemoryState(Value, frozen=True):
    peer: NodeId
    answers: tuple[tuple[int, int, Hlc, PotentialTrades], ...]
    forgotten_through: Hlc | None
    newest: Hlc | None


class HolderState(Value, frozen=True):
    locks: tuple[LockState, ...]
    decisions: tuple[DecisionState, ...]
    refusals: tuple[tuple[int, int], ...]
    memories: tuple[MemoryState, ...]


class CandidateState(Value, frozen=True):
    holder: NodeId
    offer: Offer
    received_mono_ms: int


class AcceptedState(Value, frozen=True):
    holder: NodeId
    lots: int
    offer: Offer


class WorkingState(Value, frozen=True):
    order: OrderState
    hold_id: str | None
    request_id: int
    limit_ticks: int
    remaining_lots: int
    filled_lots: int
    round: int
    asked_lots: int
    awaiting: tuple[NodeId, ...]
    candidates: tuple[CandidateState, ...]
    deadline_mono_ms: int
    broadcast_mono_ms: int | None
    accepted: tuple[AcceptedState, ...]
    waiting_since_mono_ms: int
    resend_mono_ms: int
    refused: bool
    failed_holders: tuple[NodeId, ...]
    cancel_requested: bool
    exhausted: tuple[NodeId, ...]
    in_doubt_lots: int
    expected: tuple[tuple[NodeId, int], ...]


class InDoubtState(Value, frozen=True):
    holder: NodeId
    order_id: int
    trader_id: str
    product_id: str
    side: Side
    lots: int
    offer: Offer
    hold_id: str | None
    resend_mono_ms: int


class OriginatorState(Value, frozen=True):
    working: tuple[WorkingState, ...]
    in_doubt: tuple[InDoubtState, ...]
    finished_requests: tuple[int, ...]
    reliability: tuple[tuple[NodeId, tuple[int, int, int, int]], ...]
    credibility: tuple[tuple[NodeId, tuple[int, int, int, int]], ...]


class DefaultRecord(Value, frozen=True):
    """One default this node declared on a peer and has not reversed."""

    number: int
    claimed: int
    loss: int


class PeerClearingState(Value, frozen=True):
    peer: NodeId
    bond_posted: int
    next_bond_id: int
    outgoing: BondRequest | None
    outgoing_paid: bool
    queued: tuple[BondRequest, ...]
    bond_resend_mono_ms: int
    bond_held: int
    last_bond_id: int
    last_answer: BondAnswer | None
    claim: BondRequest | None
    receipts: tuple[tuple[int, str, int], ...]
    received: int
    returned: int
    broadcasts: tuple[int, int, int, int] | None
    ratio: tuple[int, int, int, int] | None
    cycle: int
    proposal: StatementProposal | None
    proposal_resend_mono_ms: int
    last_statement_answer: StatementAnswer | None
    settled: int
    unsettled: tuple[tuple[int, Deltas, int], ...]
    suspended: str
    defaults: int
    open_defaults: tuple[DefaultRecord, ...]
    witnesses: tuple[NodeId, ...]
    declared_us: int
    violations: tuple[tuple[str, int], ...]


class LiabilityState(Value, frozen=True):
    peers: tuple[PeerClearingState, ...]
    next_settlement_mono_ms: int | None


class PeerViewState(Value, frozen=True):
    peer: NodeId
    srtt_ms: int
    rttvar_ms: int
    rtt_samples: int
    offset_ms: int
    adverts: tuple[Advert, ...]
    adverts_seen_through: int
    adverts_seen_above: tuple[int, ...]
    advert_version_announced: int
    withdrawn: tuple[tuple[int, int], ...] = ()
    """(order ref, version) of withdrawals that came before an earlier
    advert version; absent from snapshots taken before they were kept."""
    reworked: tuple[tuple[int, int], ...] = ()
    """(order ref, version) of adverts that made the node work one of its
    orders again; absent from snapshots taken before they were kept."""
    heard_mono_ms: int | None = None
    """When the node last heard from the peer; absent from snapshots taken
    before it was kept (the peer then counts as in reach until its silence
    limit passes after the next message or restart)."""


class NetworkState(Value, frozen=True):
    views: tuple[PeerViewState, ...]
    next_heartbeat_ms: int | None
    probe_queue: tuple[NodeId, ...]


class NodeSnapshot(Value, frozen=True):
    """The whole state of a node between two inputs: restoring it and
    replaying the journal after it gives exactly the state of a full replay."""

    version: int
    context: ContextState
    traders: TradersState
    resting: RestingState
    holder: HolderState
    originator: OriginatorState
    liability: LiabilityState
    network: NetworkState
    strategy: bytes = b""
    """The state of a node subclass that plays a strategy (the simulator's
    adversaries), in its own encoding; empty for a plain node."""
