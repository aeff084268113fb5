"""Hybrid logical clocks and the node's view of time.

A node has two clocks, both inputs to the core: a monotonic clock (``mono_ms``)
that only the node itself reads, which times its locks, timers and round
trips; and a wall clock (``wall_ms``) that may be skewed or jump, which feeds
the hybrid logical clock stamped on every message. The HLC gives audit order
and cross-node time priority without synchronised clocks: it never runs
backwards and always moves past every timestamp the node has seen.
"""

from __future__ import annotations

from typing import Final

from datn.domain.value import Value

MAX_LOGICAL: Final = 2**40
"""The highest logical counter a node accepts in a peer's stamp. A node's own
counter grows by one per event within a wall millisecond, so it stays far
below this; a peer's stamp near the 64-bit edge would otherwise push the
node's clock to a value it could no longer send."""


class Now(Value, frozen=True):
    """The time of one input: the node's monotonic and wall clocks, in ms."""

    mono_ms: int
    wall_ms: int


class Hlc(Value, frozen=True, order=True):
    """A hybrid logical clock timestamp: wall milliseconds, then a counter;
    ordered field by field."""

    wall_ms: int
    logical: int = 0


class HybridClock:
    """The node's HLC. ``tick`` stamps a local event or a sent message;
    ``observe`` merges a received timestamp."""

    def __init__(self) -> None:
        self.last = Hlc(0, 0)

    def tick(self, wall_ms: int) -> Hlc:
        last = self.last
        last_wall = last.wall_ms
        stamp = Hlc(wall_ms, 0) if wall_ms > last_wall else Hlc(last_wall, last.logical + 1)
        self.last = stamp
        return stamp

    def admits(self, remote: Hlc, wall_ms: int, max_drift_ms: int) -> bool:
        """Whether merging ``remote`` keeps this clock within ``max_drift_ms``
        of the node's own wall clock and its counter far from overflow: a
        stamp that fails is refused, and the clock is left as it was."""
        return remote.wall_ms <= wall_ms + max_drift_ms and remote.logical <= MAX_LOGICAL

    def observe_capped(self, remote: Hlc, wall_ms: int, max_push_ms: int) -> Hlc:
        """Merge ``remote``, moving the clock no further than ``max_push_ms``
        past ``wall_ms``: a stamp beyond that counts as if it were there."""
        cap = wall_ms + max_push_ms
        if remote.wall_ms > cap:
            remote = Hlc(cap, 0)
        return self.observe(remote, wall_ms)

    def observe(self, remote: Hlc, wall_ms: int) -> Hlc:
        last = self.last
        last_wall, last_logical = last.wall_ms, last.logical
        remote_wall, remote_logical = remote.wall_ms, remote.logical
        if wall_ms > last_wall and wall_ms > remote_wall:
            stamp = Hlc(wall_ms, 0)
        elif last_wall > remote_wall:
            stamp = Hlc(last_wall, last_logical + 1)
        elif remote_wall > last_wall:
            stamp = Hlc(remote_wall, remote_logical + 1)
        else:
            top = last_logical if last_logical > remote_logical else remote_logical
            stamp = Hlc(last_wall, top + 1)
        self.last = stamp
        return stamp
