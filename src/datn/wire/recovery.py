"""Recovering a node from what its store kept: a snapshot and the journal
entries after it, as bytes.

Recovery builds hundreds of thousands of long-lived objects at once, so it
runs with CPython's cyclic collector paused, and freezes what it built out of
the collector's later passes (:mod:`datn.domain.bulk`): the recovered node is
the process's state for the rest of its life, and scanning it again and
again would find nothing to free.
"""

from __future__ import annotations

from collections.abc import Iterable

from datn.domain.bulk import collector_paused
from datn.protocol.node import NodeCore, Recovered
from datn.wire.journal import decode_entry
from datn.wire.snapshot import decode_snapshot


def recover_node(
    snapshot: bytes | None, entries: Iterable[bytes], kind: type[NodeCore] = NodeCore
) -> Recovered:
    """The node a store's bytes describe: its latest snapshot (None: none
    was taken, and the entries start with the genesis) and every journal
    entry after it. Damaged bytes raise :class:`~datn.wire.JournalError`
    naming what is wrong; the result takes its restart first."""
    with collector_paused(freeze=True):
        state = None if snapshot is None else decode_snapshot(snapshot)
        journal = [decode_entry(data) for data in entries]
        recovered = kind.recover(journal, state)
        del state, journal  # the node holds what it needs; the rest goes before the freeze
    return recovered
