"""Running a node: the asyncio loop that feeds its core, commits its journal
to its store in groups, and releases what the core decided only once it is
durable (:class:`NodeRuntime`)."""

from __future__ import annotations

from datn.runtime.node import (
    Clock,
    InputRefusedError,
    NodeRuntime,
    NodeStoppedError,
    Outlets,
    RuntimeStats,
    SystemClock,
)

__all__ = [
    "Clock",
    "InputRefusedError",
    "NodeRuntime",
    "NodeStoppedError",
    "Outlets",
    "RuntimeStats",
    "SystemClock",
]
