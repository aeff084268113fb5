"""Marks: the prices a node values positions and exposures at.

A node must not take the last trade price as its mark: a peer that trades
once at an off-market price would then set the price at which everything it
owes is valued, and could make a large debt look small. Instead a node keeps,
per product, the latest trade price heard from each of a bounded number of
*sources* (the node whose book set the price: itself for its own trades as
holder, the holder for a trade it originated, the sender of a trade print),
and marks at their median, counted only once at least ``quorum`` sources
have traded the product: with fewer, one source would be the median, and
the opening reference from the node's genesis stands instead.

Exposure to a peer is marked at the median of the *other* sources, so that
peer's own prices never count towards its own mark: no single counterparty
controls it. When leaving the peer out would leave fewer than a quorum, the
median of all of them stands: with two other sources at least, the peer's
own price can only fall between theirs. However often one peer prints, it
is one source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datn.domain.value import NodeId
from datn.protocol.snapshot import MarksState


@dataclass(slots=True)
class _Product:
    sources: dict[NodeId, int] = field(default_factory=dict)
    """Latest price per source, least recently heard first."""
    ranked: list[tuple[int, NodeId]] | None = None
    """The same, sorted by price (None until asked for after a change)."""


class Marks:
    def __init__(self, opening: dict[str, int], max_sources: int, quorum: int) -> None:
        self.opening = dict(opening)
        self.max_sources = max_sources
        self.quorum = quorum
        self._products: dict[str, _Product] = {}

    def record(self, product_id: str, source: NodeId, price_ticks: int) -> None:
        """``source`` traded ``product_id`` at ``price_ticks``; the oldest
        source is forgotten once there are ``max_sources``."""
        product = self._products.get(product_id)
        if product is None:
            product = self._products[product_id] = _Product()
        sources = product.sources
        sources.pop(source, None)
        sources[source] = price_ticks
        if len(sources) > self.max_sources:
            del sources[next(iter(sources))]
        product.ranked = None

    def reference(self, product_id: str) -> int | None:
        """The product's mark for risk checks: the median of every source."""
        return self.mark(product_id, None)

    def mark(self, product_id: str, excluding: NodeId | None) -> int | None:
        """The median price of the product's sources other than
        ``excluding`` (the lower median of an even count), if a quorum of
        them remains; the median of all of them if a quorum is there with
        it; the opening reference otherwise."""
        product = self._products.get(product_id)
        if product is None or len(product.sources) < self.quorum:
            return self.opening.get(product_id)
        ranked = self._ranked(product)
        count = len(ranked)
        excluded = excluding is not None and excluding in product.sources
        if excluded and count - 1 >= self.quorum:
            assert excluding is not None
            # The median of the list without one entry: the entry at the
            # median index moves up by one when the removed entry is at or
            # below it.
            middle = (count - 2) // 2
            removed = ranked.index((product.sources[excluding], excluding))
            return ranked[middle + 1][0] if removed <= middle else ranked[middle][0]
        return ranked[(count - 1) // 2][0]

    @staticmethod
    def _ranked(product: _Product) -> list[tuple[int, NodeId]]:
        ranked = product.ranked
        if ranked is None:
            ranked = product.ranked = sorted((p, s) for s, p in product.sources.items())
        return ranked

    def add_opening(self, product_id: str, price_ticks: int) -> None:
        self.opening[product_id] = price_ticks

    # ----------------------------------------------------------- snapshot

    def snapshot(self) -> MarksState:
        return MarksState(
            tuple(self.opening.items()),
            tuple(
                (product_id, tuple(product.sources.items()))
                for product_id, product in self._products.items()
            ),
        )

    @classmethod
    def restore(cls, state: MarksState, max_sources: int, quorum: int) -> Marks:
        marks = cls(dict(state.opening), max_sources, quorum)
        for product_id, sources in state.sources:
            marks._products[product_id] = _Product(dict(sources))
        return marks
