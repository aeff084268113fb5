"""Snapshot builds for the worker process that tests control: one that waits
at a gate the test opens, one that crashes its process once. The worker
imports them by name, so they live in a module of their own; a test binds
their first argument with ``functools.partial``."""

from __future__ import annotations

import os
from pathlib import Path

from datn.runtime.snapshots import build_snapshot


def build_at_gate(gate: str, snapshot: bytes | None, entries: list[bytes]) -> bytes:
    """Build once the test writes a line to the FIFO ``gate`` (opening a
    FIFO for reading blocks until a writer opens it)."""
    with open(gate, "rb") as fifo:
        fifo.readline()
    return build_snapshot(snapshot, entries)


def crash_once(marker: str, snapshot: bytes | None, entries: list[bytes]) -> bytes:
    """End the worker process abruptly the first time, as the kernel's
    out-of-memory killer would; build normally after that."""
    path = Path(marker)
    if not path.exists():
        path.touch()
        os._exit(70)
    return build_snapshot(snapshot, entries)
