"""The node core's configuration: protocol timings, retention windows and limits.

Every knob here bounds something: a time the node waits, a window it
remembers, or a count of what a peer may make it keep. Times are milliseconds
of the node's monotonic clock unless a name says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datn.clearing.config import ClearingConfig
from datn.domain import DomainError
from datn.domain.limits import check_int
from datn.risk import RiskConfig


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Protocol timings, retention windows and per-peer limits."""

    risk: RiskConfig
    lock_ttl_ms: int = 250
    collection_window_ms: int = 60
    acceptance_margin_ms: int = 10
    resend_ms: int = 40
    heartbeat_ms: int = 1_000
    heartbeat_peers: int = 8
    """At most this many peers are probed per heartbeat period, the ones probed
    longest ago first: each peer is probed every ``heartbeat_ms`` while there
    are at most this many peers, and every ``ceil(peers / heartbeat_peers)``
    periods beyond, so heartbeat traffic grows with N, not N squared. Answers
    to order broadcasts also measure round trips, so the peers a node trades
    with have fresh figures whatever the probe interval."""
    default_rtt_ms: int = 20
    max_rounds: int = 3
    broadcast_memory_ms: int = 60_000
    """A holder answers a broadcast the network delivered twice (the copy
    carries the original's HLC stamp) with the answer it gave the first,
    while that broadcast is at most this much older, by the sending peer's
    HLC, than the newest broadcast the peer sent; ..."""
    max_answers_per_peer: int = 4_096
    """...and keeps at most this many answers per peer. A broadcast older
    than that window, or stamped no later than an answer it forgot, is stale
    and gets no answer: its originator stopped waiting long ago, and new locks
    for it would tie up liquidity for nothing. Originators never resend a
    broadcast; a copy sent again under a new stamp is a new message to the
    holder, and refusing replayed frames is the link's job (per-link
    sequence numbers, :mod:`datn.wire`)."""
    targeted_routing: bool = True
    max_clock_drift_ms: int = 60_000
    """A peer's HLC stamp may be at most this far ahead of this node's own
    wall clock; a stamp beyond it is refused and counted, so no peer can drag
    the node's clock (and with it the time priority of every order it
    rests) into the future."""
    max_offer_ttl_ms: int = 10_000
    """An originator budgets an offer's life as at most this long, whatever
    TTL the holder claims for it, so a holder cannot make it keep a
    candidate for long."""
    decision_timeout_ms: int = 5_000
    """How long an order waits for holders to decide on its acceptances.
    After that it stops waiting: the rest of the order goes on (rests or
    ends), and the accepted lots stay held, in doubt, naming the holder,
    until the holder's decision arrives (the originator keeps asking)."""
    decision_memory_ms: int = 60_000
    """How long a holder remembers a refusal, to repeat it to a retried
    acceptance. A confirmation is remembered until its trade is settled: an
    originator that never got it must still be able to ask."""
    client_order_memory_ms: int = 900_000
    """How long a node remembers a finished order's client order id (and a
    rejected one), so a retry gets the same answer and the id cannot be
    reused with other terms; past this, the node's store answers. Open
    orders are always remembered."""
    finished_request_memory: int = 4_096
    """How many finished orders' broadcast request ids an originator
    remembers, to release locks in answers that arrive after the order
    ended. An answer to a request it never made is ignored and counted."""
    max_adverts_per_peer: int = 10_000
    """Most resting orders a peer may show in this node's network book; an
    advert beyond it is ignored and counted."""
    max_advert_gaps: int = 1_024
    """Most missing advert versions a node tracks per peer; beyond it the
    oldest gaps are given up (the view is advisory)."""
    max_mark_sources: int = 16
    """A product's mark is the median of the latest trade price from each of
    at most this many nodes, the most recently heard first..."""
    mark_quorum: int = 3
    """...counted once at least this many have traded it (with fewer, one
    source would be the median); until then the mark stays where the last
    quorum, or the opening reference, put it. A network of fewer nodes
    marks at its opening references, which its operators set."""
    max_clock_push_ms: int = 30_000
    """How far past this node's own wall clock a peer's stamp may move its
    clock. A stamp up to ``max_clock_drift_ms`` ahead is accepted, but moves
    the clock no further than this: the room left between the two keeps an
    honest node's messages, stamped with a clock a peer pushed, within every
    other node's drift despite the skew between their wall clocks."""
    unreliable_permille: int = 500
    """A holder whose accepted lots end confirmed less often than this (per
    thousand, decayed over time) is routed and ranked after every other."""
    ledger_id_memory: int = 1_024
    """How many recent ledger entries and ended hold ids the ledger remembers
    to catch a repeat. The core's ids come from counters (or a pair's own
    sequence) and never repeat, so this is a safety net, not history: the
    history is the store's."""
    max_violations_kept: int = 64
    """How many recent protocol violations per peer the node keeps in its
    state (with their messages); every one is also emitted for the store."""
    clearing: ClearingConfig = field(default_factory=ClearingConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.risk, RiskConfig):
            raise DomainError("risk", "not_risk_config", "must be a RiskConfig")
        if not isinstance(self.clearing, ClearingConfig):
            raise DomainError("clearing", "not_clearing_config", "must be a ClearingConfig")
        check_int("lock_ttl_ms", self.lock_ttl_ms, 2, 3_600_000)
        check_int("collection_window_ms", self.collection_window_ms, 1, 3_600_000)
        if not self.collection_window_ms < self.lock_ttl_ms:
            raise DomainError(
                "collection_window_ms",
                "bad_window",
                f"must be inside the lock TTL: {self.collection_window_ms} is not below"
                f" lock_ttl_ms = {self.lock_ttl_ms}",
            )
        for name, high in (
            ("acceptance_margin_ms", 3_600_000),
            ("resend_ms", 3_600_000),
            ("heartbeat_ms", 3_600_000),
            ("heartbeat_peers", 1_000_000),
            ("default_rtt_ms", 60_000),
            ("broadcast_memory_ms", 86_400_000),
            ("max_answers_per_peer", 1_000_000),
            ("max_clock_drift_ms", 86_400_000),
            ("max_offer_ttl_ms", 3_600_000),
            ("decision_timeout_ms", 86_400_000),
            ("decision_memory_ms", 86_400_000),
            ("client_order_memory_ms", 30 * 86_400_000),
            ("finished_request_memory", 1_000_000),
            ("max_adverts_per_peer", 10_000_000),
            ("max_advert_gaps", 1_000_000),
            ("max_mark_sources", 1_000),
            ("mark_quorum", 1_000),
            ("max_clock_push_ms", 86_400_000),
            ("ledger_id_memory", 100_000_000),
            ("max_violations_kept", 100_000),
        ):
            check_int(name, getattr(self, name), 1, high)
        check_int("unreliable_permille", self.unreliable_permille, 0, 1_000)
        if type(self.targeted_routing) is not bool:
            raise DomainError("targeted_routing", "not_boolean", "must be true or false")
        if self.broadcast_memory_ms < self.lock_ttl_ms:
            raise DomainError(
                "broadcast_memory_ms", "shorter_than_ttl", "must be at least lock_ttl_ms"
            )
        if self.decision_memory_ms < self.lock_ttl_ms:
            raise DomainError(
                "decision_memory_ms", "shorter_than_ttl", "must be at least lock_ttl_ms"
            )
        check_int("max_rounds", self.max_rounds, 1, 16)
        if self.max_clock_push_ms > self.max_clock_drift_ms:
            raise DomainError(
                "max_clock_push_ms",
                "beyond_drift",
                f"must be at most max_clock_drift_ms: {self.max_clock_push_ms} >"
                f" {self.max_clock_drift_ms}",
            )
        if self.mark_quorum > self.max_mark_sources:
            raise DomainError(
                "mark_quorum",
                "beyond_sources",
                f"must be at most max_mark_sources: {self.mark_quorum} > {self.max_mark_sources}",
            )
