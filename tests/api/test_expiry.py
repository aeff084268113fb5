"""Good-till-date expiries kept by the node: orders that end long before
their expiry do not pile up in its schedule."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from types import SimpleNamespace
from typing import Any

from datn.api.expiry import Expirer
from datn.runtime.history import OrderView


def view(order_id: int, status: str) -> OrderView:
    return OrderView(
        order_id=order_id,
        client_order_id=f"c{order_id}",
        trader_id="alice",
        product_id="xyz",
        side="buy",
        type="limit",
        time_in_force="gtd",
        price_ticks=1,
        quantity_lots=1,
        status=status,
    )


def test_expiries_of_orders_that_ended_are_dropped_as_the_schedule_grows() -> None:
    live: dict[int, OrderView] = {}
    history = SimpleNamespace(live=live, finished=OrderedDict(), view=live.get)
    expirer = Expirer(SimpleNamespace(history=history))  # type: ignore[arg-type]
    far = 10**13  # centuries ahead: nothing expires during the test

    async def run() -> Any:
        for order_id in range(20_000):
            if order_id % 100 == 0:
                live[order_id] = view(order_id, "new")  # still open
            expirer.schedule(far, "alice", order_id)
        kept = sorted(entry[1] for entry in expirer._due)
        expirer.close()
        return kept

    kept = asyncio.run(run())
    assert len(kept) < 4_096 + 200
    assert set(range(0, 20_000, 100)) <= set(kept)
