"""Log lines that callers outside the node can cause, at most once a second
per kind: a trader retrying as fast as it can against a store that cannot
be read must not write a line per request into the node's log."""

from __future__ import annotations

import logging
import time


class Throttled:
    """``logger``'s lines of one kind at most once every ``interval_s``; the
    next line of a kind says how many of it were left out since the last."""

    __slots__ = ("_interval_s", "_last", "_logger")

    def __init__(self, logger: logging.Logger, interval_s: float = 1.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last: dict[str, tuple[float, int]] = {}
        """Kind -> when its last line was logged, and how many were left out since."""

    def log(
        self,
        kind: str,
        level: int,
        message: str,
        *args: object,
        exc_info: BaseException | None = None,
    ) -> None:
        now = time.monotonic()
        logged_at, left_out = self._last.get(kind, (-self._interval_s, 0))
        if now - logged_at < self._interval_s:
            self._last[kind] = (logged_at, left_out + 1)
            return
        self._last[kind] = (now, 0)
        if left_out:
            message += " (and %d more like it since the last line)"
            args = (*args, left_out)
        self._logger.log(level, message, *args, exc_info=exc_info)
