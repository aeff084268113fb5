"""Order books and matching: price-time priority with locks (pure)."""

from datn.book.book import Fill, LevelView, OrderBook, Reentry, RestingView, SubmitResult
from datn.book.errors import BookError

__all__ = ["BookError", "Fill", "LevelView", "OrderBook", "Reentry", "RestingView", "SubmitResult"]
