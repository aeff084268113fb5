"""The node's pacing of CPython's garbage collector: full scans only when the
node is idle, or after the longest wait however busy it is, and never when
nothing has reached the oldest generation."""

from __future__ import annotations

import gc
import sys

import pytest

from datn.runtime.collector import MIDDLE_THRESHOLD, NEVER, YOUNG_THRESHOLD, Collector


class Fake:
    """A clock, the oldest generation's count, and the collections made."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pending = 1
        self.collections: list[int] = []

    def collect(self, generation: int) -> int:
        self.collections.append(generation)
        self.now += 0.002  # the scan's own time
        self.pending = 0
        return 0

    def collector(self) -> Collector:
        return Collector(
            idle_s=1.0,
            longest_s=600.0,
            clock=lambda: self.now,
            collect=self.collect,
            pending=lambda: self.pending,
        )


def test_a_full_scan_runs_once_the_node_has_been_idle_a_period() -> None:
    fake = Fake()
    collector = fake.collector()
    assert not collector.tick(10)  # first look: no idea yet whether idle
    fake.now += 1.0
    assert not collector.tick(1_000)  # the node works: traders would wait
    fake.now += 1.0
    assert collector.tick(1_040)  # heartbeats only for a period: scan now
    assert fake.collections == [2]
    assert collector.full_collections == 1 and collector.last_pause_ms == pytest.approx(2.0)
    fake.now += 1.0
    assert not collector.tick(1_040)  # still idle, but nothing new to scan
    fake.pending = 3
    fake.now += 1.0
    assert collector.tick(1_040)
    assert fake.collections == [2, 2]


def test_a_busy_node_still_scans_after_the_longest_wait() -> None:
    fake = Fake()
    collector = fake.collector()
    activity = 0
    for _ in range(599):
        activity += 100
        fake.now += 1.0
        assert not collector.tick(activity)
    activity += 100
    fake.now += 1.0
    assert collector.tick(activity)  # 600 s since the start, busy throughout
    fake.pending = 1
    activity += 100
    fake.now += 1.0
    assert not collector.tick(activity)  # the wait starts again from the scan


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="CPython 3.14 paces its own collector")
def test_install_leaves_the_oldest_generation_to_the_collector() -> None:
    before = gc.get_threshold()
    try:
        Collector.install()
        assert gc.get_threshold() == (YOUNG_THRESHOLD, MIDDLE_THRESHOLD, NEVER)
    finally:
        gc.set_threshold(*before)


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="CPython 3.14 paces its own collector")
def test_young_scans_stay_small_however_many_objects_survive() -> None:
    """A node's heap grows with its book, and nearly everything it allocates
    survives; each young scan still covers no more than the thresholds allow
    (its pause is the count of objects it scans)."""
    scanned: list[int] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] < 2:
            scanned.append(sum(len(gc.get_objects(g)) for g in range(info["generation"] + 1)))

    before = gc.get_threshold()
    switch = sys.getswitchinterval()
    kept: list[list[int]] = []
    gc.collect()
    gc.callbacks.append(watch)
    # Only this loop's objects are counted: another thread of the test
    # process (a server an earlier test left to wind down) gets no turn.
    sys.setswitchinterval(10.0)
    try:
        Collector.install()
        for n in range(100_000):
            kept.append([n])  # a tracked object that lives on, as a resting order
    finally:
        sys.setswitchinterval(switch)
        gc.callbacks.remove(watch)
        gc.set_threshold(*before)
    assert len(scanned) >= 100_000 // YOUNG_THRESHOLD - 2
    # 7,000 objects (and a few of slack: get_objects() allocates its list)
    # are a pause of 1.5 to 2.5 ms in a node; the thresholds before, 10,000
    # allocations and a middle scan every fourth, let a scan cover 40,000.
    assert max(scanned) <= 7_050
