"""The node's hybrid logical clock (its timestamps are :class:`~datn.protocol.clock.Hlc`).

Apart from the timestamp values so that it can be compiled: every message a
node sends or receives goes through it.
"""

from __future__ import annotations

from datn.protocol.clock import MAX_LOGICAL, Hlc


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
