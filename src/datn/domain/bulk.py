"""Building many long-lived objects at once.

Restoring a node from its store builds hundreds of thousands of objects that
all stay alive (orders, holds, book entries). CPython's cyclic collector
runs after every few hundred allocations and, as the heap grows, scans it
whole again and again while finding nothing to free: half of a restore's
time. The values of the core make no reference cycles, so the collector can
be paused while they are built and resumed after. It is not state and
changes nothing a node computes.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused(*, freeze: bool = False) -> Iterator[None]:
    """Pause CPython's cyclic collector for the block (it runs again after,
    if it ran before). With ``freeze``, every object alive at the end is
    first moved out of the collector's later passes (in constant time): for
    a process that has just built the state it will keep, whose first
    collection would otherwise scan all of it at once."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        if freeze:
            gc.freeze()
    finally:
        if enabled:
            gc.enable()


@contextmanager
def set_up_frozen() -> Iterator[None]:
    """Keep every object alive on entry out of the collector's passes for
    the block, and give them back to it after: for a run whose set-up
    (nodes, peers, accounts, bonds) lives as long as the run, which the
    collector would otherwise scan again and again while finding nothing
    to free."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
