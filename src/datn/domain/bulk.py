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
from collections.abc import Callable, Iterator
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
def frozen_set_up() -> Iterator[Callable[[], None]]:
    """For a run whose set-up (nodes, peers, accounts, bonds) lives as long
    as the run: the collector is paused from entry until the block calls the
    function it is given, which moves every object then alive out of the
    collector's passes (in constant time) and lets it run again; on exit
    they are given back to it.

    Otherwise the collector would scan the set-up while it is built (a tenth
    of a 200-node simulation's set-up), once more when it resumes, and again
    and again during the run, finding nothing to free. Garbage cycles made
    during the set-up, if any, are freed only after the block; the
    simulator's set-up makes none (a full collection after it freed no
    object at 200 nodes)."""
    enabled = gc.isenabled()
    gc.disable()
    frozen = False

    def set_up_done() -> None:
        nonlocal frozen
        if not frozen:
            gc.freeze()
            frozen = True
            if enabled:
                gc.enable()

    try:
        yield set_up_done
    finally:
        if frozen:
            gc.unfreeze()
        if enabled:
            gc.enable()
