"""Accounts: who holds how much of which asset, and how low it may go.

An account is keyed by its owner and its asset. The owner is a plain string
whose prefix says what it stands for (``trader:alice``, ``peer:B``,
``external:bank``); the ledger itself never parses it. What the ledger does
care about is the account's rule: how far its available amount may fall below
zero, and whether it stands for the outside world.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import msgspec

from datn.domain.assets import AssetCode
from datn.ledger._checks import check_name, check_range
from datn.ledger.errors import LedgerError
from datn.ledger.limits import MAX_ASSET_CODE_LENGTH, MAX_BALANCE, MAX_LEDGER_ID_LENGTH


class AccountKey(msgspec.Struct, frozen=True, order=True, gc=False):
    """One account: ``owner``'s holding of ``asset``. Sorts by owner, then asset.

    A frozen msgspec struct rather than a dataclass: every ledger operation
    hashes several keys, and the struct's hash and equality are native code.
    """

    owner: str
    asset: AssetCode

    def __post_init__(self) -> None:
        owner, asset = self.owner, self.asset
        # What check_name checks, inline: keys are built on every ledger call
        # and by the hundred thousand on a restore, and only a refusal needs
        # check_name's reason codes.
        if not (
            type(owner) is str
            and 0 < len(owner) <= MAX_LEDGER_ID_LENGTH
            and owner.isprintable()
            and type(asset) is str
            and 0 < len(asset) <= MAX_ASSET_CODE_LENGTH
            and asset.isprintable()
        ):
            check_name("owner", owner)
            check_name("asset", asset, MAX_ASSET_CODE_LENGTH)

    def __str__(self) -> str:
        return f"{self.owner}/{self.asset}"


class AccountKind(enum.Enum):
    """What an account stands for, which decides whether it may go negative."""

    BOUNDED = "bounded"
    """A holding of a trader or of the node: available stays above its floor."""

    UNBOUNDED = "unbounded"
    """Money owed, e.g. a peer's obligations: may go negative without limit."""

    EXTERNAL = "external"
    """The world outside the ledger: unbounded, and what leaves it is issuance."""


# Looking an enum member up on its class is slow on CPython 3.11, and every
# posting checks its account's floor.
_BOUNDED_KIND = AccountKind.BOUNDED
_EXTERNAL_KIND = AccountKind.EXTERNAL


@dataclass(frozen=True, slots=True)
class AccountRule:
    """How low an account's available amount may go.

    A bounded account keeps ``available >= -credit_limit``; ``credit_limit`` is
    in the asset's smallest unit (minor units of cash, lots of a product) and is
    the margin or credit the node grants. Other kinds have no floor.
    """

    kind: AccountKind = AccountKind.BOUNDED
    credit_limit: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.kind, AccountKind):
            raise LedgerError("kind", "unknown_kind", f"must be an AccountKind, got {self.kind!r}")
        check_range("credit_limit", self.credit_limit, 0, MAX_BALANCE)
        if self.credit_limit and self.kind is not AccountKind.BOUNDED:
            raise LedgerError(
                "credit_limit", "credit_on_unbounded", "only a bounded account has a credit limit"
            )

    @classmethod
    def with_credit(cls, credit_limit: int) -> AccountRule:
        """A bounded account whose available may go down to ``-credit_limit``."""
        return cls(AccountKind.BOUNDED, credit_limit)

    @property
    def floor(self) -> int | None:
        """Lowest allowed available amount, or ``None`` when there is none."""
        if self.kind is _BOUNDED_KIND:
            return -self.credit_limit
        return None

    @property
    def is_external(self) -> bool:
        return self.kind is _EXTERNAL_KIND


BOUNDED = AccountRule(AccountKind.BOUNDED)
UNBOUNDED = AccountRule(AccountKind.UNBOUNDED)
EXTERNAL = AccountRule(AccountKind.EXTERNAL)
