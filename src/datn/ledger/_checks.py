"""Edge validation shared by the ledger's value types.

The checks reuse the domain's validators but raise :class:`LedgerError`, so a
caller of the ledger catches one type whatever input was wrong.
"""

from __future__ import annotations

from datn.domain.errors import DomainError
from datn.domain.limits import MAX_AMOUNT_MINOR, check_int, check_text
from datn.ledger.errors import LedgerError
from datn.ledger.limits import MAX_LEDGER_ID_LENGTH


def check_amount(field: str, value: object) -> int:
    """Return ``value`` if it is a positive int no larger than ``MAX_AMOUNT_MINOR``."""
    return check_range(field, value, 1, MAX_AMOUNT_MINOR)


def check_range(field: str, value: object, low: int, high: int) -> int:
    """Return ``value`` if it is an int (not a bool) in ``[low, high]``."""
    # The common case without the calls that only a refusal needs: every
    # posting, hold and restored account passes through here.
    if type(value) is int and low <= value <= high:
        return value
    try:
        return check_int(field, value, low, high)
    except DomainError as error:
        raise LedgerError(error.field, error.code, error.message) from None


def check_ints(field: str, values: list[int], low: int, high: int) -> None:
    """Refuse, as :func:`check_range` would, any of ``values`` that is not an
    int in ``[low, high]``; in a few passes in C when all of them are."""
    if values and (set(map(type, values)) != {int} or min(values) < low or max(values) > high):
        for value in values:
            check_range(field, value, low, high)


def check_name(field: str, value: object, max_length: int = MAX_LEDGER_ID_LENGTH) -> str:
    """Return ``value`` if it is a non-empty printable string of bounded length."""
    if type(value) is str and 0 < len(value) <= max_length and value.isprintable():
        return value
    try:
        return check_text(field, value, max_length)
    except DomainError as error:
        raise LedgerError(error.field, error.code, error.message) from None
