"""Hybrid logical clocks and the node's view of time.

A node has two clocks, both inputs to the core: a monotonic clock (``mono_ms``)
that only the node itself reads, which times its locks, timers and round
trips; and a wall clock (``wall_ms``) that may be skewed or jump, which feeds
the hybrid logical clock stamped on every message. The HLC gives audit order
and cross-node time priority without synchronised clocks: it never runs
backwards and always moves past every timestamp the node has seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Now(NamedTuple):
    """The time of one input: the node's monotonic and wall clocks, in ms."""

    mono_ms: int
    wall_ms: int


@dataclass(frozen=True, slots=True, order=True)
class Hlc:
    """A hybrid logical clock timestamp: wall milliseconds, then a counter."""

    wall_ms: int
    logical: int = 0


class HybridClock:
    """The node's HLC. ``tick`` stamps a local event or a sent message;
    ``observe`` merges a received timestamp."""

    def __init__(self) -> None:
        self.last = Hlc(0, 0)

    def tick(self, wall_ms: int) -> Hlc:
        last = self.last
        self.last = (
            Hlc(wall_ms, 0) if wall_ms > last.wall_ms else Hlc(last.wall_ms, last.logical + 1)
        )
        return self.last

    def observe(self, remote: Hlc, wall_ms: int) -> Hlc:
        last = self.last
        top = max(wall_ms, last.wall_ms, remote.wall_ms)
        if top == last.wall_ms == remote.wall_ms:
            logical = max(last.logical, remote.logical) + 1
        elif top == last.wall_ms:
            logical = last.logical + 1
        elif top == remote.wall_ms:
            logical = remote.logical + 1
        else:
            logical = 0
        self.last = Hlc(top, logical)
        return self.last
