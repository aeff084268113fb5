"""The network book: what a node keeps of its peers' adverts."""

from __future__ import annotations

from harness import XYZ, A, B, Net

from datn.domain import Side
from datn.protocol.clock import Hlc
from datn.protocol.messages import Advert


def test_an_advert_that_arrives_after_its_orders_withdrawal_does_not_bring_it_back() -> None:
    """Adverts may arrive out of order: an order's advert overtaken by its
    withdrawal (no lots, a later version) must not leave a ghost order in
    the peer's network book, which would look crossed forever."""
    net = Net()
    stamp = Hlc(net.now().wall_ms, 0)
    other = Advert(8, XYZ.product_id, Side.BUY, 4_000, 1, stamp, 1, 0)
    shown = Advert(9, XYZ.product_id, Side.SELL, 5_000, 4, stamp, 2, 0)
    gone = Advert(9, XYZ.product_id, Side.SELL, 5_000, 0, stamp, 3, 0)
    net.receive(A, B, gone)
    net.crash_and_recover(A, snapshot=True)  # the withdrawal is kept in snapshots
    view = net.nodes[A].network.views[B]
    assert view.withdrawn == {9: 3}
    net.receive(A, B, shown)
    assert 9 not in view.adverts
    assert not any(book.adverts for book in view.asks.values())
    net.receive(A, B, other)  # the last missing version: nothing older can come
    assert view.adverts_seen_through == 3 and set(view.adverts) == {8}
    net.receive(A, B, Advert(8, XYZ.product_id, Side.BUY, 4_000, 0, stamp, 4, 0))
    assert not view.adverts and not view.withdrawn
