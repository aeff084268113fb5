"""Good-till-date expiries kept by the node: orders that end long before
their expiry do not pile up in its schedule, and a store that cannot be
read delays an expiry without dropping it."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from datn.api import expiry
from datn.api.expiry import Expirer
from datn.protocol.effects import CancelInput
from datn.runtime.history import OrderView
from datn.store import StoreError


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


def expirer_over(
    from_store: Callable[[int], OrderView | None],
) -> tuple[Expirer, list[CancelInput]]:
    """An Expirer whose orders are read with ``from_store`` (none in
    memory), and the cancels it submits."""
    cancels: list[CancelInput] = []

    async def submit(event: CancelInput) -> list[object]:
        cancels.append(event)
        return []

    history = SimpleNamespace(live={}, finished=OrderedDict(), view=from_store)
    node = SimpleNamespace(history=history, runtime=SimpleNamespace(submit=submit))
    return Expirer(node), cancels  # type: ignore[arg-type]


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


def test_a_store_that_cannot_be_read_delays_an_expiry_and_drops_none() -> None:
    """The store fails to read an order back (it is not in memory) when
    its expiry comes, and when the schedule is pruned: the cancel is sent
    once the store reads again, and the prune keeps what it cannot check,
    reading no further once a read has failed."""
    stored = {n: view(n, "new") for n in (1, 2, 3)}
    failing = {"on": True}
    reads: list[int] = []

    def from_store(order_id: int) -> OrderView | None:
        reads.append(order_id)
        if failing["on"]:
            raise StoreError("unavailable", "the store cannot be read")
        return stored.get(order_id)

    expirer, cancels = expirer_over(from_store)

    async def run() -> None:
        expirer.schedule(0, "alice", 1)  # due at once
        await asyncio.sleep(0.05)
        assert cancels == [] and [entry[1] for entry in expirer._due] == [1]
        expirer._prune()  # cannot check order 1: keeps it
        assert [entry[1] for entry in expirer._due] == [1]
        # With more to check, the prune stops reading at the first failure
        # (reads that fail slowly would each hold the loop) and keeps all.
        expirer.schedule(10**13, "alice", 2)
        expirer.schedule(10**13, "alice", 3)
        before = len(reads)
        expirer._prune()
        assert len(reads) == before + 1
        assert sorted(entry[1] for entry in expirer._due) == [1, 2, 3]
        failing["on"] = False
        deadline = time.monotonic() + 5
        while not cancels:
            assert time.monotonic() < deadline, "the expiry was never retried"
            await asyncio.sleep(0.05)
        assert cancels == [CancelInput("alice", 1)] and expirer.expired == 1
        expirer.close()

    asyncio.run(asyncio.wait_for(run(), timeout=10))


def test_reads_that_fail_slowly_do_not_keep_the_loop_from_other_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four expiries due at once, each read blocking for longer than the
    retry interval before it fails: between two failed reads the loop
    serves other work, and once the store reads again every order
    expires, once."""
    monkeypatch.setattr(expiry, "RETRY_MS", 50)
    timeline: list[str] = []

    def from_store(order_id: int) -> OrderView | None:
        failed = timeline.count("read failed")
        if failed < 6:
            time.sleep(0.1)  # a store that takes its time to fail
            timeline.append("read failed")
            raise StoreError("unavailable", "the store cannot be read")
        return view(order_id, "new")

    expirer, cancels = expirer_over(from_store)

    async def ticker() -> None:
        while True:
            timeline.append("tick")
            await asyncio.sleep(0.01)

    async def run() -> None:
        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        for order_id in range(1, 5):
            expirer.schedule(0, "alice", order_id)
        deadline = time.monotonic() + 8
        while len(cancels) < 4:
            assert time.monotonic() < deadline, timeline
            await asyncio.sleep(0.05)
        ticking.cancel()
        expirer.close()

    asyncio.run(asyncio.wait_for(run(), timeout=10))
    failures = [n for n, event in enumerate(timeline) if event == "read failed"]
    assert len(failures) == 6
    for first, second in itertools.pairwise(failures):
        assert "tick" in timeline[first:second], timeline
    assert sorted(c.order_id for c in cancels) == [1, 2, 3, 4]
