"""Orders and executions as traders query them: built from the core's
events, stored with the inputs that caused them, found after a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_runtime import GENESIS, XYZ, funded

from datn.domain import USD, Side, TimeInForce
from datn.protocol.effects import CancelInput, DepositInput, PlaceInput
from datn.protocol.venue import OrderRequest
from datn.runtime import NodeRuntime
from datn.runtime.history import (
    EXECUTION_DECODER,
    ORDER_DECODER,
    OrderView,
    history_of,
    rejected_order_id,
)
from datn.store import Store
from datn.store.sqlite import SQLiteStore


def place(
    trader: str,
    client: str,
    side: Side,
    lots: int,
    price: int | None,
    tif: TimeInForce = TimeInForce.GTC,
) -> PlaceInput:
    return PlaceInput(OrderRequest(trader, client, XYZ.product_id, side, lots, price, tif))


def stored(store: Store, trader: str, client: str) -> OrderView:
    record = store.order_by_client_id(trader, client)
    assert record is not None, f"{trader}/{client} is not stored"
    view = ORDER_DECODER.decode(record.body)
    assert (record.status, record.open) == (view.status, view.open)
    return view


async def open_node(path: Path) -> NodeRuntime:
    store = SQLiteStore(path)
    return await NodeRuntime.open(store, GENESIS, history=history_of(store))


def test_orders_and_executions_are_stored_with_their_statuses(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"

    async def first() -> None:
        node = await open_node(path)
        await funded(node)
        await node.submit(DepositInput("bob", USD.code, 10_000_000_000))
        await node.submit(place("alice", "s1", Side.SELL, 10, 5_000))
        await node.submit(place("bob", "b1", Side.BUY, 4, 5_000))
        await node.submit(place("bob", "b2", Side.BUY, 20, 5_000, TimeInForce.IOC))
        await node.submit(place("alice", "s2", Side.SELL, 5, 5_100))
        await node.submit(place("bob", "m1", Side.BUY, 1, None, TimeInForce.FOK))
        await node.submit(place("bob", "bad", Side.BUY, 0, 5_000))
        await node.close()

    asyncio.run(first())
    with SQLiteStore(path) as store:
        s1 = stored(store, "alice", "s1")
        assert (s1.status, s1.filled_lots, s1.open) == ("filled", 10, False)
        b1 = stored(store, "bob", "b1")
        assert (b1.status, b1.filled_lots) == ("filled", 4)
        b2 = stored(store, "bob", "b2")
        assert (b2.status, b2.filled_lots, b2.reason) == ("expired", 6, "ioc_remainder")
        s2 = stored(store, "alice", "s2")
        assert (s2.status, s2.filled_lots, s2.open) == ("partially_filled", 1, True)
        m1 = stored(store, "bob", "m1")
        assert (m1.status, m1.type, m1.time_in_force, m1.filled_lots) == (
            "filled",
            "market",
            "fok",
            1,
        )
        bad = stored(store, "bob", "bad")
        assert bad.status == "rejected" and bad.reason and not bad.open
        assert bad.order_id == rejected_order_id("bob", "bad") < 0
        fills = [EXECUTION_DECODER.decode(r.body) for r in store.executions("bob")]
        assert [(f.quantity_lots, f.price_ticks, f.counterparty) for f in fills] == [
            (1, 5_100, "a"),
            (6, 5_000, "a"),
            (4, 5_000, "a"),
        ]
        assert sum(r.order_id == s1.order_id for r in store.executions("alice")) == 2
        assert [o.client_order_id for o in store.orders("alice", open_only=True)] == ["s2"]


def test_an_order_resting_across_a_restart_is_updated_in_the_store(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"

    async def first() -> None:
        node = await open_node(path)
        await funded(node)
        await node.submit(DepositInput("bob", USD.code, 10_000_000_000))
        await node.submit(place("alice", "s1", Side.SELL, 10, 5_000))
        await node.close()

    async def second() -> None:
        node = await open_node(path)
        await node.submit(place("bob", "b1", Side.BUY, 3, 5_000))
        order_id = (await node.read(lambda _core: None), stored(node.store, "alice", "s1"))[1]
        assert (order_id.status, order_id.filled_lots) == ("partially_filled", 3)
        await node.submit(CancelInput("alice", order_id.order_id))
        await node.close()

    asyncio.run(first())
    asyncio.run(second())
    with SQLiteStore(path) as store:
        s1 = stored(store, "alice", "s1")
        assert (s1.status, s1.filled_lots, s1.open) == ("cancelled", 3, False)


def test_a_retried_order_does_not_reset_its_view(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"

    async def test() -> None:
        node = await open_node(path)
        await funded(node)
        await node.submit(DepositInput("bob", USD.code, 10_000_000_000))
        await node.submit(place("alice", "s1", Side.SELL, 10, 5_000))
        await node.submit(place("bob", "b1", Side.BUY, 3, 5_000))
        await node.submit(place("alice", "s1", Side.SELL, 10, 5_000))  # the retry
        view = stored(node.store, "alice", "s1")
        assert (view.status, view.filled_lots) == ("partially_filled", 3)
        await node.close()

    asyncio.run(test())


def test_a_retry_in_the_same_commit_as_an_order_that_ended_keeps_its_final_view(
    tmp_path: Path,
) -> None:
    path = tmp_path / "node.sqlite3"

    async def test() -> None:
        node = await open_node(path)
        await funded(node)
        await node.submit(DepositInput("bob", USD.code, 10_000_000_000))
        await node.submit(place("alice", "s1", Side.SELL, 10, 5_000))
        # The IOC order fills and ends at once; its retry arrives before that
        # is durable, so only memory knows the order's final view.
        await asyncio.gather(
            node.submit(place("bob", "b1", Side.BUY, 4, 5_000, TimeInForce.IOC)),
            node.submit(place("bob", "b1", Side.BUY, 4, 5_000, TimeInForce.IOC)),
        )
        view = stored(node.store, "bob", "b1")
        assert (view.status, view.filled_lots, view.open) == ("filled", 4, False)
        assert node.history is not None
        assert node.history.view(view.order_id) == view
        await node.close()
        # After a restart the id is known from the store, and a retry is
        # answered with the original order, not placed again.
        again = await open_node(path)
        assert again.history is not None
        assert again.history.client_ids.may_hold("bob", "b1")
        await again.submit(place("bob", "b1", Side.BUY, 4, 5_000, TimeInForce.IOC))
        assert stored(again.store, "bob", "b1") == view
        assert stored(again.store, "alice", "s1").filled_lots == 4
        await again.close()

    asyncio.run(test())


def test_an_id_reused_for_other_terms_in_the_same_commit_stores_nothing_more(
    tmp_path: Path,
) -> None:
    path = tmp_path / "node.sqlite3"

    async def test() -> None:
        node = await open_node(path)
        await funded(node)
        # The second request reuses the id for other terms before the first
        # is durable: the core refuses it (client_order_id_reused), and the
        # store keeps the first order alone under the id. Storing the
        # refusal as a rejected order of the same id broke the store's
        # uniqueness, failed the commit and stopped the node.
        await asyncio.gather(
            node.submit(place("alice", "s1", Side.SELL, 10, 5_000)),
            node.submit(place("alice", "s1", Side.SELL, 11, 5_000)),
        )
        assert node.failure is None
        view = stored(node.store, "alice", "s1")
        assert (view.quantity_lots, view.status) == (10, "new")
        assert node.store.order(rejected_order_id("alice", "s1")) is None
        await node.close()

    asyncio.run(test())
