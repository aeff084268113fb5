"""Log lines that callers outside the node can cause, at most once a second
per kind: a trader retrying as fast as it can against a store that cannot
be read, or strangers opening connection after connection, must not write
a line per request or per connection into the node's log."""

from __future__ import annotations

import logging
import time


class _Gate:
    """Per kind: whether a line may go now, and how many were left out."""

    __slots__ = ("_interval_s", "_last")

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._last: dict[object, tuple[float, int]] = {}
        """Kind -> when its last line went, and how many were left out since."""

    def admit(self, kind: object) -> int | None:
        """None if a line of ``kind`` is to be left out; else how many were
        left out since the last one that went."""
        now = time.monotonic()
        went_at, left_out = self._last.get(kind, (-self._interval_s, 0))
        if now - went_at < self._interval_s:
            self._last[kind] = (went_at, left_out + 1)
            return None
        self._last[kind] = (now, 0)
        return left_out


_LEFT_OUT = " (and %d more like it since the last line)"


class Throttled:
    """``logger``'s lines of one kind at most once every ``interval_s``; the
    next line of a kind says how many of it were left out since the last."""

    __slots__ = ("_gate", "_logger")

    def __init__(self, logger: logging.Logger, interval_s: float = 1.0) -> None:
        self._logger = logger
        self._gate = _Gate(interval_s)

    def log(
        self,
        kind: str,
        level: int,
        message: str,
        *args: object,
        exc_info: BaseException | None = None,
    ) -> None:
        left_out = self._gate.admit(kind)
        if left_out is None:
            return
        if left_out and args:
            message += _LEFT_OUT
            args = (*args, left_out)
        elif left_out:
            # No arguments: the message is not %-formatted, and must not be.
            message += _LEFT_OUT % left_out
        self._logger.log(level, message, *args, exc_info=exc_info)


class ThrottlingFilter(logging.Filter):
    """A filter that lets a logger's records of one message (its format
    string, whatever its arguments) through at most once every
    ``interval_s``, for a library's logger whose lines strangers can cause:
    uvicorn's, which logs each malformed request and each WebSocket
    opened."""

    def __init__(self, interval_s: float = 1.0) -> None:
        super().__init__()
        self._gate = _Gate(interval_s)

    def filter(self, record: logging.LogRecord) -> bool:
        left_out = self._gate.admit((record.name, record.levelno, str(record.msg)))
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
