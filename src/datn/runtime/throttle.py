"""Log lines that callers outside the node can cause, at most once a second
per kind: a trader retrying as fast as it can against a store that cannot
be read, or strangers opening connection after connection, must not write
a line per request or per connection into the node's log.

The lines left out are not lost from view: the next line of their kind says
how many there were, and when no next line comes, :func:`say_left_out`
(which a running node calls every second) writes the last one left out, once
its interval has passed, saying how many more there were."""

from __future__ import annotations

import itertools
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any


class _Gate:
    """Per kind: whether a line may go now, how many were left out, and the
    last line left out, which ``write`` writes when no next line came
    (:func:`say_left_out`)."""

    __slots__ = ("__weakref__", "_interval_s", "_last", "_left", "_write")

    def __init__(self, interval_s: float, write: Callable[[Any], None]) -> None:
        self._interval_s = interval_s
        self._write = write
        self._last: dict[object, tuple[float, int]] = {}
        """Kind -> when its last line went, and how many were left out since."""
        self._left: dict[object, tuple[int, Any]] = {}
        """Kind -> the last line of it left out (numbered in the order lines
        are left out, by every gate), while some are."""
        _GATES.add(self)

    def admit(self, kind: object, line: Any = None) -> int | None:
        """None if ``line``, of ``kind``, is to be left out; else how many
        were left out since the last one that went."""
        now = time.monotonic()
        went_at, left_out = self._last.get(kind, (-self._interval_s, 0))
        if now - went_at < self._interval_s:
            self._last[kind] = (went_at, left_out + 1)
            self._left[kind] = (next(_LEFT_OUT_ORDER), line)
            return None
        self._last[kind] = (now, 0)
        self._left.pop(kind, None)
        return left_out

    def due(self, now: float) -> list[tuple[int, _Gate, object]]:
        """(its number, this gate, kind) of the last line left out of each
        kind whose interval has passed since its last line."""
        last = self._last
        return [
            (left_at, self, kind)
            for kind, (left_at, _) in self._left.items()
            if now - last[kind][0] >= self._interval_s
        ]

    def write_left_out(self, kind: object) -> None:
        """Write the last line of ``kind`` left out; it goes through
        :meth:`admit`, which counts the others left out."""
        _, line = self._left.pop(kind)
        went_at, left_out = self._last[kind]
        self._last[kind] = (went_at, left_out - 1)  # the line written is not left out
        self._write(line)


_GATES: weakref.WeakSet[_Gate] = weakref.WeakSet()
_LEFT_OUT_ORDER = itertools.count()


def say_left_out() -> None:
    """Write, for every kind of line some were left out of and none went
    for an interval since, the last one left out and how many more there
    were: a burst that ends leaves its count in the log, not only in the
    next line of its kind, which may never come. They go in the order they
    were left out."""
    now = time.monotonic()
    due = [line for gate in list(_GATES) for line in gate.due(now)]
    for _, gate, kind in sorted(due, key=lambda entry: entry[0]):
        gate.write_left_out(kind)


_LEFT_OUT = " (and %d more like it since the last line)"


class Throttled:
    """``logger``'s lines of one kind at most once every ``interval_s``; the
    next line of a kind says how many of it were left out since the last."""

    __slots__ = ("_gate", "_logger")

    def __init__(self, logger: logging.Logger, interval_s: float = 1.0) -> None:
        self._logger = logger
        self._gate = _Gate(interval_s, self._write_left_out)

    def log(
        self,
        kind: str,
        level: int,
        message: str,
        *args: object,
        exc_info: BaseException | None = None,
    ) -> None:
        # A line left out keeps no exception (nor what its traceback holds).
        left_out = self._gate.admit(kind, (kind, level, message, args))
        if left_out is None:
            return
        if left_out and args:
            message += _LEFT_OUT
            args = (*args, left_out)
        elif left_out:
            # No arguments: the message is not %-formatted, and must not be.
            message += _LEFT_OUT % left_out
        self._logger.log(level, message, *args, exc_info=exc_info)

    def _write_left_out(self, line: tuple[str, int, str, tuple[object, ...]]) -> None:
        kind, level, message, args = line
        self.log(kind, level, message, *args)


class ThrottlingFilter(logging.Filter):
    """A filter that lets a logger's records of one message (its format
    string, whatever its arguments) through at most once every
    ``interval_s``, for a library's logger whose lines strangers can cause:
    uvicorn's, which logs each malformed request and each WebSocket
    opened."""

    def __init__(self, interval_s: float = 1.0) -> None:
        super().__init__()
        self._gate = _Gate(interval_s, self._write_left_out)

    def filter(self, record: logging.LogRecord) -> bool:
        left_out = self._gate.admit((record.name, record.levelno, str(record.msg)), record)
        if left_out is None:
            return False
        if left_out and isinstance(record.args, tuple):
            if record.args:
                record.msg = str(record.msg) + _LEFT_OUT
                record.args = (*record.args, left_out)
            else:
                # No arguments: the message is not %-formatted, and must not be.
                record.msg = str(record.msg) + _LEFT_OUT % left_out
        return True

    @staticmethod
    def _write_left_out(record: logging.LogRecord) -> None:
        """The record left out goes to its logger again."""
        logging.getLogger(record.name).handle(record)
