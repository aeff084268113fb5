"""CPython's cyclic garbage collector, paced for a node process.

A node's heap grows with its book: every order that rests adds a handful of
objects the collector tracks. CPython collects the youngest generation after
a number of net allocations and the oldest (a scan of every tracked object)
whenever it has grown by a quarter, so on a node taking orders the full scans
come while traders wait, and take longer as the book grows: 44 ms for a heap
of 133,000 tracked objects, measured in a node after 15,000 orders
(benchmarks/intake.py's WebSocket latency phase, SQLite, one core).

So a node keeps the two young generations small and frequent, and runs the
full scan itself (:class:`Collector`): when the node has been quiet for a
second (at most :data:`QUIET_INPUTS` inputs: a linked node takes its own
heartbeat and its peers' every second, so it is never wholly idle), or once
every ten minutes however busy it is, and only when something has reached
the oldest generation since the last one. Cyclic garbage (rare in a
node: the collections in that run found 89 objects in the oldest generation)
is still reclaimed, only at a time traders do not wait for, or at worst once
every ten minutes.

How small: a young scan's pause is the count of objects in the generations
it scans, and in a node taking orders nearly all of them survive (an order
that rests, its request, its place in the book, its view for the API; an
IOC order's view kept among the recently finished), so every scan covers
about as many objects as its threshold allows, and each object is scanned
about twice on its way to the oldest generation, however the thresholds are
set. Thresholds only choose between many short pauses and a few long ones.
At 10,000 allocations, with a middle scan in place of every fourth young
one, a middle scan covered 31,000 to 33,000 objects and took 10 to 26 ms;
under 4,500 WebSocket orders a second (benchmarks/intake.py's half rate)
one came about every second, and the orders it held up were the slowest
hundred and more, the p99 of the run. At 1,000 and every seventh, a young
scan takes about 0.3 ms and a middle one (at most 7,000 objects) 1.5 to
2.5 ms.
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from collections.abc import Callable
from typing import Final

log = logging.getLogger("datn.runtime")

YOUNG_THRESHOLD: Final = 1_000
"""Net allocations of tracked objects between collections of the youngest
generation (CPython's default is 700)."""
MIDDLE_THRESHOLD: Final = 5
"""Collections of the youngest generation between collections of the middle
one (the default is 10): CPython scans the middle generation, with the
youngest, in place of every seventh young scan, so such a scan covers at most
``YOUNG_THRESHOLD * (MIDDLE_THRESHOLD + 2)`` objects; what survives it moves
on to the oldest generation, which only :class:`Collector` scans."""
QUIET_INPUTS: Final = 50
"""Inputs in a period of :attr:`Collector.idle_s` that still count as quiet:
heartbeats and their answers, a trader now and then; a full scan then
delays a few of them by its pause, rather than a flow of orders."""
NEVER: Final = 2**30
"""A threshold the oldest generation's count never reaches."""


class Collector:
    """Runs full collections when they cost traders least (module docstring).

    :meth:`install` sets the process's thresholds; :meth:`tick`, called about
    every ``idle_s`` with the count of inputs the node has taken in, runs a
    full collection when one is due."""

    def __init__(
        self,
        *,
        idle_s: float = 1.0,
        quiet_inputs: int = QUIET_INPUTS,
        longest_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        collect: Callable[[int], int] = gc.collect,
        pending: Callable[[], int] = lambda: gc.get_count()[2],
    ) -> None:
        self.idle_s = idle_s
        self.quiet_inputs = quiet_inputs
        self.longest_s = longest_s
        self._clock = clock
        self._collect = collect
        self._pending = pending
        self._activity: int | None = None
        self._last_full = clock()
        self.full_collections = 0
        self.last_pause_ms = 0.0

    @staticmethod
    def install() -> None:
        if sys.version_info >= (3, 14):
            # CPython 3.14 collects the old generation a part at a time and
            # reads the thresholds otherwise; its own pacing is left as is.
            return
        gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, NEVER)

    def due(self, activity: int) -> bool:
        """Whether a full collection is due, ``activity`` being the count of
        inputs taken in now (quiet: at most ``quiet_inputs`` more than at the
        previous call)."""
        previous, self._activity = self._activity, activity
        quiet = previous is not None and activity - previous <= self.quiet_inputs
        if self._pending() == 0:
            return False  # nothing has reached the oldest generation since the last
        return quiet or self._clock() - self._last_full >= self.longest_s

    def tick(self, activity: int) -> bool:
        """Run a full collection if one is due; whether one ran."""
        if not self.due(activity):
            return False
        started = self._clock()
        found = self._collect(2)
        self._last_full = now = self._clock()
        self.full_collections += 1
        self.last_pause_ms = (now - started) * 1_000
        log.debug("full collection: %d objects freed in %.1f ms", found, self.last_pause_ms)
        return True
