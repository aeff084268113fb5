"""The node core's configuration: protocol timings and limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from datn.clearing.config import ClearingConfig
from datn.domain import DomainError
from datn.risk import RiskConfig


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Protocol timings (milliseconds of the node's monotonic clock) and limits."""

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
    clearing: ClearingConfig = field(default_factory=ClearingConfig)

    def __post_init__(self) -> None:
        if not 0 < self.collection_window_ms < self.lock_ttl_ms:
            raise DomainError("collection_window_ms", "bad_window", "must be inside the lock TTL")
        for name in (
            "acceptance_margin_ms",
            "resend_ms",
            "heartbeat_ms",
            "heartbeat_peers",
            "default_rtt_ms",
            "broadcast_memory_ms",
            "max_answers_per_peer",
        ):
            if getattr(self, name) <= 0:
                raise DomainError(name, "not_positive", "must be positive")
        if self.broadcast_memory_ms < self.lock_ttl_ms:
            raise DomainError(
                "broadcast_memory_ms", "shorter_than_ttl", "must be at least lock_ttl_ms"
            )
        if not 1 <= self.max_rounds <= 16:
            raise DomainError("max_rounds", "bad_rounds", "must be 1 to 16")
