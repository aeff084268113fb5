"""The node process's own use of the machine, for ``/metrics``: the standard
Prometheus process metrics, and the CPU each of the node's threads used.

A node's work is split between threads: the event loop's (the API, the
core, the links), the store's writer and its checkpointer. Whether the loop
is the one that is busy tells an operator (and a benchmark) more than the
process's total: the per-thread figures come from Linux's
``/proc/self/task``, and are left out where there is no such thing.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_TASKS = Path("/proc/self/task")
_STATM = Path("/proc/self/statm")
_FDS = Path("/proc/self/fd")


@dataclass(frozen=True, slots=True)
class ProcessUse:
    """What the process has used so far; None where the system cannot say."""

    cpu_seconds: float
    resident_bytes: int | None
    open_fds: int | None
    threads_cpu_seconds: dict[tuple[str, str], float]
    """CPU by thread name and mode (``user`` or ``system``), for the
    threads alive now."""

    def thread_seconds(self, name: str) -> float | None:
        """The CPU (user and system) of the threads named ``name``; None
        where the system cannot say."""
        if (name, "user") not in self.threads_cpu_seconds:
            return None
        return self.threads_cpu_seconds[name, "user"] + self.threads_cpu_seconds[name, "system"]


def process_use() -> ProcessUse:
    """The process's use of the machine, now."""
    return ProcessUse(
        cpu_seconds=time.process_time(),
        resident_bytes=_resident_bytes(),
        open_fds=_open_fds(),
        threads_cpu_seconds=_threads_cpu_seconds(),
    )


def _resident_bytes() -> int | None:
    try:
        pages = int(_STATM.read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def _open_fds() -> int | None:
    try:
        return sum(1 for _ in _FDS.iterdir())
    except OSError:
        return None


def _threads_cpu_seconds() -> dict[tuple[str, str], float]:
    if not _TASKS.is_dir():
        return {}
    ticks = os.sysconf("SC_CLK_TCK")
    seen: dict[tuple[str, str], float] = {}
    for thread in threading.enumerate():
        native = thread.native_id
        if native is None:
            continue
        try:
            stat = (_TASKS / str(native) / "stat").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        # The fields after the command name (which may hold spaces and
        # parentheses): utime and stime are the 12th and 13th of them.
        fields = stat.rpartition(")")[2].split()
        try:
            user, system = int(fields[11]) / ticks, int(fields[12]) / ticks
        except (IndexError, ValueError):
            continue
        for mode, used in (("user", user), ("system", system)):
            seen[thread.name, mode] = seen.get((thread.name, mode), 0.0) + used
    return seen
