"""Operator references: a movement of money the operator retries is made once.

A deposit, a withdrawal, a funding of the node's capital and a bond posted
or asked back each move money, so a retry after a lost answer must not move
it twice. The operator names each such request with a ``reference`` (the
rail's transfer id, say). The node keeps the movement under it in the same
transaction as the journal entry that made it, so a reference is kept
exactly when its movement is durable:

- a request whose reference is kept already is answered as the first was
  (200), if it asks the same; with other terms it is refused (422
  ``reference_reused``) and changes nothing;
- a request sent while one with its reference is in flight waits for that
  one's answer, then is answered the same way;
- a refused request keeps nothing: it changed nothing, and may be sent again.

A request without a reference is made every time it is sent, as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Final

import msgspec

from datn.api.errors import ApiError
from datn.protocol.effects import Effect
from datn.store import LedgerRecord

if TYPE_CHECKING:
    from datn.api.app import Node

Reference = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$",
        description="Names one movement: a retry with it is made once."
        " 1 to 64 letters, digits, '.', '_', ':' or '-'.",
    ),
]

Terms = dict[str, str | int | bool]
"""What a movement asks, or what the node decided when it made it."""

_PREFIX: Final = "operator:"
"""The store's ledger entries for references are named ``operator:REF``."""


class Kept(msgspec.Struct, forbid_unknown_fields=True):
    """A movement kept under its reference: what it asked and what it made."""

    kind: str
    terms: Terms
    facts: Terms
    """What the node decided when it made it (a bond's id, say)."""
    at_ms: int


_DECODER: Final = msgspec.json.Decoder(Kept)


class Movement:
    """One operator request under ``reference`` (None: none given):
    :attr:`kept` is the movement the reference names already, else None,
    and :meth:`keeper` what :meth:`NodeRuntime.submit` keeps it with."""

    def __init__(self, reference: str | None, kind: str, terms: Terms) -> None:
        self.reference = reference
        self.kind = kind
        self.terms = terms
        self.kept: Kept | None = None

    def keeper(
        self, made: Callable[[list[Effect]], Terms | None]
    ) -> Callable[[list[Effect]], LedgerRecord | None] | None:
        """Keep the movement if ``made`` says the core made it (the facts
        to keep, or None when the core refused it); None without a
        reference."""
        reference = self.reference
        if reference is None:
            return None

        def keep(effects: list[Effect]) -> LedgerRecord | None:
            facts = made(effects)
            if facts is None:
                return None
            at_ms = int(time.time() * 1_000)
            kept = Kept(self.kind, self.terms, facts, at_ms)
            return LedgerRecord(_PREFIX + reference, at_ms, msgspec.json.encode(kept))

        return keep


@asynccontextmanager
async def movement(
    node: Node, reference: str | None, kind: str, terms: Terms
) -> AsyncIterator[Movement]:
    """Hold ``reference`` while the request is made: a request with the same
    reference waits until this one is answered. Sets ``kept`` if the
    reference is kept for these terms already; raises ApiError 422
    ``reference_reused`` if it is kept for another request."""
    step = Movement(reference, kind, terms)
    if reference is None:
        yield step
        return
    while (first := node.moving.get(reference)) is not None:
        await asyncio.shield(first)
    stored = node.runtime.store.ledger_entry(_PREFIX + reference)
    if stored is not None:
        kept = _DECODER.decode(stored.body)
        if kept.kind != kind or kept.terms != step.terms:
            raise ApiError(
                422,
                "reference_reused",
                f"reference {reference!r} names a {kept.kind} of other terms, made already:"
                f" {msgspec.json.encode(kept.terms).decode()}",
            )
        step.kept = kept
        yield step
        return
    mine = node.moving[reference] = asyncio.get_running_loop().create_future()
    try:
        yield step
    finally:
        del node.moving[reference]
        mine.set_result(None)
