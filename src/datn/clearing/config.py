"""How a node clears with its peers: bond asset, caps, quotas, resend timing."""

from __future__ import annotations

from dataclasses import dataclass, field

from datn.clearing.quota import QuotaConfig
from datn.domain.errors import DomainError
from datn.domain.limits import check_int, check_text


@dataclass(frozen=True, slots=True)
class ClearingConfig:
    """Per-node clearing rules; every peer is held to the same ones."""

    bond_asset: str = "USD"
    """The cash asset bonds are posted in; exposure is measured in it."""
    exposure_multiple_percent: int = 100
    """A peer's exposure may reach this % of the bond it posted here; an
    originator's own obligations to a holder may reach this % of what it
    posted there."""
    quota: QuotaConfig = field(default_factory=QuotaConfig)
    bond_resend_ms: int = 200
    """An unanswered bond request or statement is sent again after this long."""
    settlement_cycle_ms: int = 1_000
    """How often the lower id of each pair proposes a settlement statement."""
    settlement_lag_ms: int = 500
    """Trades younger than this wait for the next statement, so that both
    sides have surely booked what a statement lists."""
    settlement_deadline_ms: int = 600_000
    """A peer with a trade unsettled this long is in default: suspended, its
    bond claimed for what it owes, and every other peer told.

    Ten minutes, not seconds: a default is drastic (the bond is claimed and
    every peer is told), and two honest nodes cut off from each other by a
    WAN partition of a minute or two, each seeing the other's trades
    unsettled, must not declare each other in default. Nothing is at risk
    meanwhile beyond what the bond covers: while a trade is unsettled the
    exposure cap counts it, so a silent peer gets no more locks than its
    bond allows. Time a node spends down does not count either (a restart
    re-bases every deadline). Networks that settle on a slower rail raise
    it; the simulator's defaulter runs lower it to see defaults quickly."""
    max_receipts_per_peer: int = 16
    """Funds received from a peer over the rail for bonds it has not claimed
    yet, kept until the claim arrives: at most this many per peer."""
    default_notice_quorum: int = 2
    """Suspend a peer once this many other peers declared it in default (0:
    never on others' word). More than one: a single peer's notice would let
    any peer cut anyone off the network."""

    def __post_init__(self) -> None:
        check_text("bond_asset", self.bond_asset, 16)
        check_int("exposure_multiple_percent", self.exposure_multiple_percent, 1, 100_000)
        check_int("bond_resend_ms", self.bond_resend_ms, 1, 3_600_000)
        check_int("settlement_cycle_ms", self.settlement_cycle_ms, 1, 86_400_000)
        check_int("settlement_lag_ms", self.settlement_lag_ms, 0, 86_400_000)
        check_int("settlement_deadline_ms", self.settlement_deadline_ms, 1, 86_400_000 * 30)
        if self.settlement_deadline_ms <= self.settlement_cycle_ms + self.settlement_lag_ms:
            raise DomainError(
                "settlement_deadline_ms",
                "deadline_too_short",
                f"must exceed a cycle plus the lag: {self.settlement_deadline_ms} <="
                f" {self.settlement_cycle_ms} + {self.settlement_lag_ms}",
            )
        check_int("max_receipts_per_peer", self.max_receipts_per_peer, 1, 1_000_000)
        check_int("default_notice_quorum", self.default_notice_quorum, 0, 1_000_000)
        if not isinstance(self.quota, QuotaConfig):
            raise DomainError("quota", "not_quota", "must be a QuotaConfig")
