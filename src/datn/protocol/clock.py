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
