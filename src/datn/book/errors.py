"""Errors of the order book."""

from __future__ import annotations


class BookError(Exception):
    """A book operation was refused; ``code`` says why, machine-readably.

    The book's callers (the node core) validate trader input before it gets
    here, so a BookError means a stale reference (an order that already left,
    a lock that already ended) or a caller bug, and the book is unchanged.
    :meth:`OrderBook.restore` raises it with code ``bad_snapshot`` for a
    snapshot that breaks the book's invariants, such as a corrupted one.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
