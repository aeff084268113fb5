"""Good-till-date orders: the node cancels what is left of each at its expiry.

The core knows three times in force (GTC, IOC, FOK; see DESIGN.md); a
good-till-date order is a GTC order whose expiry the node keeps with the
order's history (stored in the same transaction as the order) and acts on:
at the expiry it submits the trader's cancel, journaled like any other, and
the order ends ``expired``. Expiries are read back from the store's open
orders at start, so an order outlives a restart and still expires on time;
one whose expiry passed while the node was down is cancelled as soon as the
node is up. A part locked by a peer at that moment ends as a cancel would
leave it: pending until its lock ends. A store that cannot be read when an
expiry is due delays that cancel, never drops it: it is tried again a
second later, and a prune keeps the expiries it cannot check.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from typing import TYPE_CHECKING

from datn.protocol.effects import CancelInput
from datn.runtime import NodeStoppedError
from datn.runtime.history import ORDER_DECODER
from datn.store import StoreError

if TYPE_CHECKING:
    from datn.api.app import Node

log = logging.getLogger("datn.api.expiry")

_PAGE = 10_000
_FIRST_PRUNE = 4_096
RETRY_MS = 1_000
"""When the store cannot read an order whose expiry is due, the schedule
waits this long and tries again (the outage is logged once)."""
_LOW_ORDER_ID = -(2**63)


class Expirer:
    """The expiries of a node's open good-till-date orders, and the task
    that cancels each order at its expiry."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._due: list[tuple[int, int, str]] = []
        """(expiry ms, order id, trader id), earliest first."""
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._prune_at = _FIRST_PRUNE
        self._store_failing = False
        self.expired = 0

    def load(self) -> int:
        """Schedule every open good-till-date order the store holds; how many."""
        store = self.node.runtime.store
        after, found = _LOW_ORDER_ID, 0
        while True:
            page = store.open_orders(after, _PAGE)
            for record in page:
                view = ORDER_DECODER.decode(record.body)
                if view.expire_at_ms is not None:
                    self.schedule(view.expire_at_ms, view.trader_id, view.order_id)
                    found += 1
            if len(page) < _PAGE:
                return found
            after = page[-1].order_id

    def schedule(self, expire_at_ms: int, trader_id: str, order_id: int) -> None:
        if len(self._due) >= self._prune_at:
            self._prune()
        heapq.heappush(self._due, (expire_at_ms, order_id, trader_id))
        self._changed.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _prune(self) -> None:
        """Drop the expiries of orders that ended before them (filled or
        cancelled), so that orders placed and cancelled far ahead of their
        expiry do not pile up; the bound doubles with what stays open."""
        history = self.node.history
        kept = []
        readable = True
        for entry in self._due:
            view = history.live.get(entry[1])
            if view is None and entry[1] not in history.finished:
                if not readable:
                    kept.append(entry)  # the store failed this prune: unchecked, kept
                    continue
                try:
                    view = history.view(entry[1])
                except StoreError:
                    # One failed read is enough: reads that fail slowly
                    # must not hold the loop once per entry.
                    readable = False
                    kept.append(entry)
                    continue
            if view is not None and view.open:
                kept.append(entry)
        heapq.heapify(kept)
        self._due[:] = kept
        self._prune_at = max(_FIRST_PRUNE, 2 * len(kept))

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        due = self._due
        while due:
            wait_s = (due[0][0] - time.time() * 1_000) / 1_000
            if wait_s > 0:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=min(wait_s, 60.0))
                continue
            _, order_id, trader_id = heapq.heappop(due)
            try:
                view = self.node.history.view(order_id)
            except StoreError as error:
                if not self._store_failing:
                    log.error("expiries wait for the store, tried again every second: %s", error)
                    self._store_failing = True
                heapq.heappush(due, (int(time.time() * 1_000) + RETRY_MS, order_id, trader_id))
                # The whole schedule waits, not only this entry: reads that
                # fail slowly must not keep the loop from everything else.
                await asyncio.sleep(RETRY_MS / 1_000)
                continue
            if self._store_failing:
                log.info("expiries: the store reads again")
                self._store_failing = False
            if view is None or not view.open:
                continue
            try:
                await self.node.runtime.submit(CancelInput(trader_id, order_id))
            except NodeStoppedError:
                return  # the node is stopping; a restart schedules it again
            self.expired += 1
            log.info("good-till-date order %d of %s expired", order_id, trader_id)
