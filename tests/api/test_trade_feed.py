"""The API's trade feed (``GET /v1/trades``): newest first, and kept per
source node, so that a peer printing without end pushes out only its own."""

from __future__ import annotations

from datn.api.app import MAX_TRADE_SOURCES, RECENT_TRADES, TradeFeed
from datn.protocol.clock import Hlc
from datn.protocol.effects import Publish


def printed(source: str, price: int, at_ms: int = 1, product: str = "p") -> Publish:
    return Publish(product, price, 1, Hlc(at_ms, 0), source)


def test_prints_come_newest_first_up_to_the_limit() -> None:
    feed = TradeFeed()
    for n, source in enumerate(["a", "b", "a", "c"]):
        feed.record(printed(source, 100 + n))
    assert [(t.node, t.price_ticks) for t in feed.latest("p", 10)] == [
        ("c", 103),
        ("a", 102),
        ("b", 101),
        ("a", 100),
    ]
    assert [t.price_ticks for t in feed.latest("p", 2)] == [103, 102]
    assert feed.latest("other", 10) == []


def test_a_peer_printing_without_end_pushes_out_only_its_own() -> None:
    feed = TradeFeed()
    for price in (5_000, 5_001, 5_002):
        feed.record(printed("honest", price))
    for _ in range(5 * RECENT_TRADES):
        feed.record(printed("flood", 1, at_ms=2**62))
    latest = feed.latest("p", 2 * RECENT_TRADES)
    assert len(latest) == RECENT_TRADES + 3
    assert [t.price_ticks for t in latest if t.node == "honest"] == [5_002, 5_001, 5_000]


def test_sources_are_bounded_per_product_the_least_recent_forgotten() -> None:
    feed = TradeFeed()
    for n in range(MAX_TRADE_SOURCES + 1):
        feed.record(printed(f"s{n}", n))
    sources = {t.node for t in feed.latest("p", RECENT_TRADES)}
    assert len(sources) == MAX_TRADE_SOURCES and "s0" not in sources
