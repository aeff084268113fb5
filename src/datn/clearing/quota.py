"""Lock quotas: how much a peer may tie up at this node (DESIGN.md section 7).

A holder that offers locks to any peer that asks can be drained by a peer
that asks a lot and takes nothing: every lock it holds is liquidity no honest
peer can trade against. The defences here are pure and integer-only:

* :class:`TokenBucket` limits how often a peer's order broadcasts are answered
  with locks;
* :class:`AcceptanceRatio` tracks, with exponential decay, how much of what
  was offered to a peer it took;
* :func:`lock_quota` turns the peer's bond and its ratio into caps on open
  lock notional and count: a peer that locks much and takes little gets a
  shrinking quota, down to a floor.

Times are the holder's monotonic milliseconds; amounts are minor units.
"""

from __future__ import annotations

from dataclasses import dataclass

from datn.domain.limits import MAX_AMOUNT_MINOR, check_int

PERMILLE = 1_000


@dataclass(frozen=True, slots=True)
class QuotaConfig:
    """Per-peer limits, each derived from what the peer posted as bond."""

    lock_notional_percent: int = 100
    """Open lock notional offered to a peer: at most this % of its bond."""
    lock_count_unit_minor: int = 100_000
    """One open lock allowed per this much bond (at least one with any bond)."""
    max_open_locks: int = 1_000
    """A hard ceiling on open locks per peer, whatever its bond."""
    broadcasts_per_s: int = 50
    """Sustained rate of a peer's broadcasts answered with locks."""
    broadcast_burst: int = 100
    """Broadcasts a quiet peer may send at once."""
    ratio_half_life_ms: int = 60_000
    """How fast the acceptance ratio forgets: weight halves every this long."""
    ratio_target_permille: int = 200
    """A peer taking at least this share of what it is offered keeps its full
    quota; below it the quota shrinks in proportion."""
    ratio_floor_permille: int = 10
    """The quota never shrinks below this share of the full one (and never
    below one lock). Kept low: a peer that takes nothing keeps its floor
    forever, on the best-priced orders, re-locked as each lock expires."""
    ratio_min_offered_minor: int = 0
    """Below this much decayed offered notional the ratio is not yet judged.
    Zero judges from the first offer: full trust until some amount was
    offered is exactly the window a lock-grabber needs."""

    def __post_init__(self) -> None:
        # check_int refuses bools and floats too, naming the field.
        check_int("lock_notional_percent", self.lock_notional_percent, 1, 10_000)
        check_int("lock_count_unit_minor", self.lock_count_unit_minor, 1, MAX_AMOUNT_MINOR)
        check_int("max_open_locks", self.max_open_locks, 1, 1_000_000)
        check_int("broadcasts_per_s", self.broadcasts_per_s, 1, 1_000_000)
        check_int("broadcast_burst", self.broadcast_burst, 1, 1_000_000)
        check_int("ratio_half_life_ms", self.ratio_half_life_ms, 1, 86_400_000)
        check_int("ratio_target_permille", self.ratio_target_permille, 1, PERMILLE)
        check_int("ratio_floor_permille", self.ratio_floor_permille, 1, PERMILLE)
        check_int("ratio_min_offered_minor", self.ratio_min_offered_minor, 0, MAX_AMOUNT_MINOR)


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` saved; one per take.

    Kept in thousandths of a token so that a rate in tokens per second refills
    exactly ``rate_per_s`` thousandths per millisecond: no rounding drift.
    """

    __slots__ = ("_burst_milli", "_last_ms", "_milli", "_rate")

    def __init__(self, rate_per_s: int, burst: int, now_ms: int) -> None:
        self._rate = rate_per_s
        self._burst_milli = burst * 1_000
        self._milli = self._burst_milli
        self._last_ms = now_ms

    def take(self, now_ms: int) -> bool:
        """Spend one token if there is one; refill first for the time passed."""
        elapsed = now_ms - self._last_ms
        if elapsed > 0:
            self._milli = min(self._burst_milli, self._milli + elapsed * self._rate)
            self._last_ms = now_ms
        if self._milli >= 1_000:
            self._milli -= 1_000
            return True
        return False

    @property
    def tokens(self) -> int:
        """Whole tokens left at the last take."""
        return self._milli // 1_000

    def rebase(self, delta_ms: int) -> None:
        """Move onto a new clock that reads ``delta_ms`` more for the same moment."""
        self._last_ms += delta_ms

    def state(self) -> tuple[int, int, int, int]:
        """Everything the bucket is: rate, burst and level in thousandths, last refill."""
        return self._rate, self._burst_milli, self._milli, self._last_ms

    @classmethod
    def from_state(cls, state: tuple[int, int, int, int]) -> TokenBucket:
        rate, burst_milli, milli, last_ms = state
        bucket = cls(rate, burst_milli // 1_000, last_ms)
        bucket._burst_milli = burst_milli
        bucket._milli = milli
        return bucket


class AcceptanceRatio:
    """Notional offered to a peer and taken by it, both decayed over time.

    Decay halves the weight every ``half_life_ms``: whole half-lives by a
    shift, the rest linearly (exact at both ends of each half-life, within
    6 % between), so the figure is an integer function of the inputs and
    replays identically.
    """

    __slots__ = ("_half_life", "_last_ms", "offered", "taken")

    def __init__(self, half_life_ms: int, now_ms: int) -> None:
        self._half_life = half_life_ms
        self._last_ms = now_ms
        self.offered = 0
        self.taken = 0

    def _decay(self, now_ms: int) -> None:
        elapsed = now_ms - self._last_ms
        if elapsed <= 0:
            return
        self._last_ms = now_ms
        halvings, rest = divmod(elapsed, self._half_life)
        if halvings >= 62:
            self.offered = self.taken = 0
            return
        offered, taken = self.offered >> halvings, self.taken >> halvings
        keep = 2 * self._half_life - rest  # of 2 * half_life
        self.offered = offered * keep // (2 * self._half_life)
        self.taken = taken * keep // (2 * self._half_life)

    def offer(self, notional: int, now_ms: int) -> None:
        self._decay(now_ms)
        self.offered += notional

    def take(self, notional: int, now_ms: int) -> None:
        self._decay(now_ms)
        self.taken += notional

    def rebase(self, delta_ms: int) -> None:
        """Move onto a new clock that reads ``delta_ms`` more for the same moment."""
        self._last_ms += delta_ms

    def state(self) -> tuple[int, int, int, int]:
        """Everything the ratio is: half-life, last decay, offered, taken."""
        return self._half_life, self._last_ms, self.offered, self.taken

    @classmethod
    def from_state(cls, state: tuple[int, int, int, int]) -> AcceptanceRatio:
        half_life, last_ms, offered, taken = state
        ratio = cls(half_life, last_ms)
        ratio.offered = offered
        ratio.taken = taken
        return ratio

    def permille(self, now_ms: int, min_offered: int) -> int:
        """Taken per thousand offered; 1000 while too little was offered to judge."""
        self._decay(now_ms)
        if self.offered <= min_offered or self.offered == 0:
            return PERMILLE
        return min(PERMILLE, self.taken * PERMILLE // self.offered)


@dataclass(frozen=True, slots=True)
class Quota:
    """What a peer may hold open at this node at once."""

    max_lock_notional: int
    max_locks: int


def lock_quota(bond_minor: int, ratio_permille: int, config: QuotaConfig) -> Quota:
    """The peer's quota: its bond's full allowance, shrunk by a poor ratio.

    A peer with no bond gets no locks. A peer whose acceptance ratio is below
    the target gets ``ratio / target`` of the full quota, never less than the
    floor share, and always at least one lock while it has a bond (so it can
    still trade and mend its ratio).
    """
    if bond_minor <= 0:
        return Quota(0, 0)
    share = min(PERMILLE, ratio_permille * PERMILLE // config.ratio_target_permille)
    share = max(share, config.ratio_floor_permille)
    full_notional = bond_minor * config.lock_notional_percent // 100
    full_count = min(config.max_open_locks, 1 + bond_minor // config.lock_count_unit_minor)
    return Quota(full_notional * share // PERMILLE, max(1, full_count * share // PERMILLE))
