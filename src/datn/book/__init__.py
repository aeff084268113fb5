"""Order books and matching: price-time priority with locks (pure)."""

from datn.book.book import Fill, LevelView, OrderBook, Reentry, RestingView, SubmitResult
from datn.book.errors import BookError
from datn.book.snapshot import BookSnapshot, LockSnapshot, RestingSnapshot

__all__ = [
    "BookError",
    "BookSnapshot",
    "Fill",
    "LevelView",
    "LockSnapshot",
    "OrderBook",
    "Reentry",
    "RestingSnapshot",
    "RestingView",
    "SubmitResult",
]
