"""Typed errors for values that come from outside the core.

A rejected input is a value with a machine-readable ``code`` and the ``field`` it
concerns, never an assertion: assertions state invariants of the core itself.
"""

from __future__ import annotations


class DomainError(ValueError):
    """A value failed validation; ``field`` names which input was wrong."""

    def __init__(self, field: str, code: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.code = code
        self.message = message
