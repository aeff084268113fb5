"""The one error type of the ledger.

Every refusal carries a machine-readable ``code`` (for example
``insufficient_available`` or ``unknown_hold``) and the ``field`` of the input
it concerns. A refused operation has changed nothing.
"""

from __future__ import annotations

from datn.domain.errors import DomainError


class LedgerError(DomainError):
    """The ledger refused an input or an operation; its state is unchanged."""
