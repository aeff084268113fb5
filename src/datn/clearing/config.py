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
    settlement_deadline_ms: int = 15_000
    """A peer with a trade unsettled this long is in default: suspended, its
    bond claimed for what it owes, and every other peer told."""
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
                "settlement_deadline_ms", "deadline_too_short", "must exceed a cycle plus the lag"
            )
        check_int("default_notice_quorum", self.default_notice_quorum, 0, 1_000_000)
        if not isinstance(self.quota, QuotaConfig):
            raise DomainError("quota", "not_quota", "must be a QuotaConfig")
