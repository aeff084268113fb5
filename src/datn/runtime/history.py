"""Orders and executions as traders query them, built from what the core
says, and kept in the store in the same transaction as the inputs that
caused them.

The core answers each trader request with events (accepted, rejected,
rested, executed, done, waiting, wait over, cancel answers). This module
folds them into one :class:`OrderView` per order, with the statuses traders
know from the large exchanges — ``new``, ``partially_filled``, ``filled``,
``cancelled``, ``expired``, ``rejected``, and ``pending`` while lots the
order accepted from a peer are still promised — and turns each change into
a store record. Only orders that may still change are kept in memory; the
store holds the rest. A rejected order has no order id from the core: it is
stored under a negative id derived from its trader and client order id, so
a retry finds the same rejection.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable

import msgspec

from datn.protocol.effects import (
    Accepted,
    CancelAnswer,
    Done,
    Effect,
    Executed,
    Input,
    PlaceInput,
    Rejected,
    Reply,
    Rested,
    Waiting,
    WaitOver,
)
from datn.protocol.venue import OrderRequest
from datn.runtime.seen import ClientIds
from datn.store import Commit, ExecutionRecord, OrderRecord, Store


class OrderView(msgspec.Struct, kw_only=True):
    """An order as the API shows it."""

    order_id: int
    client_order_id: str
    trader_id: str
    product_id: str
    side: str
    type: str
    time_in_force: str
    price_ticks: int | None
    quantity_lots: int
    filled_lots: int = 0
    status: str = "new"
    reason: str = ""
    message: str = ""
    pending_lots: int = 0
    """Lots accepted from a peer that has not decided yet."""
    waiting_on: list[str] = msgspec.field(default_factory=list)
    created_ms: int = 0
    updated_ms: int = 0
    expire_at_ms: int | None = None
    """A good-till-date order's expiry (ms since the epoch): the node
    cancels what is left of it then, and it ends ``expired``."""

    @property
    def open(self) -> bool:
        return self.status in ("new", "partially_filled", "pending")


class ExecutionView(msgspec.Struct, kw_only=True):
    execution_id: str
    order_id: int
    trade_id: int
    trader_id: str
    product_id: str
    side: str
    price_ticks: int
    quantity_lots: int
    counterparty: str
    at_ms: int
    cursor: int | None = None
    """Where the execution stands among the trader's, as the store counts
    them (set when listed): ``before`` takes it, to list the page after."""


_ENCODER = msgspec.json.Encoder()
ORDER_DECODER = msgspec.json.Decoder(OrderView)
EXECUTION_DECODER = msgspec.json.Decoder(ExecutionView)

_FINAL = {"filled": "filled", "cancelled": "cancelled"}
"""Done reasons with a status of their own; every other reason (IOC or FOK
remainder, self-trade prevention, a peer that failed a FOK) is ``expired``."""


def rejected_order_id(trader_id: str, client_order_id: str) -> int:
    """The negative id a rejected order is stored under."""
    digest = hashlib.blake2b(
        f"{trader_id}\x00{client_order_id}".encode(), digest_size=8, person=b"datn-rejected"
    ).digest()
    return -(int.from_bytes(digest, "big") >> 2) - 1


class History:
    """See the module docstring. ``load`` reads an order's stored view when
    an event concerns an order not in memory (after a restart);
    ``client_ids`` must know every client order id the store holds
    (:meth:`ClientIds.load`): an id it has never seen is a new order's."""

    def __init__(
        self,
        load: Callable[[int], OrderView | None],
        client_ids: ClientIds,
        finished_limit: int = 10_000,
    ) -> None:
        self.live: dict[int, OrderView] = {}
        """Open orders' views (every one an event touched since the start)."""
        self.finished: OrderedDict[int, OrderView] = OrderedDict()
        """The views of the orders that ended last (at most ``finished_limit``):
        an order that ends as it is placed (IOC, FOK, rejected) is answered
        from here rather than read back from the store."""
        self.client_ids = client_ids
        self.expiries: dict[tuple[str, str], int] = {}
        """Good-till-date expiries of orders being placed, by (trader, client
        order id): the core knows only GTC; the API says which are GTD."""
        self._load = load
        self._finished_limit = finished_limit

    def view(self, order_id: int) -> OrderView | None:
        """An order's latest view: in memory, else the store's."""
        found = self.live.get(order_id) or self.finished.get(order_id)
        return found if found is not None else self._load(order_id)

    def record(self, event: Input, effects: list[Effect], at_ms: int, commit: Commit) -> None:
        """Fold the trader events of one input into views, and add the
        changed orders and the new executions to ``commit``."""
        request = None
        fresh = False
        if isinstance(event, PlaceInput):
            request = event.request
            fresh = self.client_ids.note(request.trader_id, request.client_order_id)
        changed: dict[int, OrderView] = {}
        expiry = None
        if request is not None:
            expiry = self.expiries.pop((request.trader_id, request.client_order_id), None)
        for effect in effects:
            if type(effect) is not Reply:
                continue
            reply = effect
            view = self._apply(reply.trader_id, reply.event, request, fresh, at_ms, commit)
            if (
                view is not None
                and expiry is not None
                and type(reply.event) in (Accepted, Rejected)
            ):
                view.time_in_force, view.expire_at_ms = "gtd", expiry  # the order placed
            if view is not None:
                view.updated_ms = at_ms
                changed[view.order_id] = view
        for view in changed.values():
            commit.orders.append(
                OrderRecord(
                    view.order_id,
                    view.trader_id,
                    view.client_order_id,
                    view.product_id,
                    view.status,
                    view.open,
                    view.created_ms,
                    view.updated_ms,
                    _ENCODER.encode(view),
                )
            )
            if not view.open:
                self.live.pop(view.order_id, None)
                finished = self.finished
                finished[view.order_id] = view
                if len(finished) > self._finished_limit:
                    finished.popitem(last=False)

    def _view(self, order_id: int) -> OrderView | None:
        view = self.live.get(order_id) or self.finished.get(order_id)
        if view is None:
            view = self._load(order_id)
            if view is not None and view.open:
                self.live[order_id] = view
        return view

    def _apply(
        self,
        trader_id: str,
        event: object,
        request: OrderRequest | None,
        fresh: bool,
        at_ms: int,
        commit: Commit,
    ) -> OrderView | None:
        if type(event) is Accepted:
            if request is None or request.client_order_id != event.client_order_id:
                return None
            if not fresh and self._view(event.order_id) is not None:
                return None  # a retry answered with the original order: nothing changed
            view = _new_view(event.order_id, request, at_ms)
            self.live[view.order_id] = view
            return view
        if type(event) is Rejected:
            if not fresh or request is None or request.client_order_id != event.client_order_id:
                # A retry answered again, or an id used before refused for
                # other terms: the first answer is the one stored.
                return None
            view = _new_view(rejected_order_id(trader_id, event.client_order_id), request, at_ms)
            view.status, view.reason, view.message = "rejected", event.reason, event.message
            return view
        order_id = getattr(event, "order_id", None)
        if order_id is None:
            return None
        found = self._view(order_id)
        if found is None:
            return None
        view = found
        if type(event) is Executed:
            view.filled_lots += event.quantity_lots
            if view.status in ("new", "partially_filled"):
                view.status = (
                    "filled" if view.filled_lots >= view.quantity_lots else "partially_filled"
                )
            execution = ExecutionView(
                execution_id=f"{event.trade_id}:{order_id}",
                order_id=order_id,
                trade_id=event.trade_id,
                trader_id=view.trader_id,
                product_id=view.product_id,
                side=view.side,
                price_ticks=event.price_ticks,
                quantity_lots=event.quantity_lots,
                counterparty=event.counterparty,
                at_ms=at_ms,
            )
            commit.executions.append(
                ExecutionRecord(
                    execution.execution_id,
                    order_id,
                    view.trader_id,
                    view.product_id,
                    at_ms,
                    _ENCODER.encode(execution),
                )
            )
        elif type(event) is Rested:
            view.status = "partially_filled" if view.filled_lots else "new"
        elif type(event) is Done:
            view.pending_lots = event.in_doubt_lots
            view.waiting_on = list(event.failed_holders) if event.in_doubt_lots else []
            view.reason = event.reason
            expire_at = view.expire_at_ms
            if event.reason == "cancelled" and expire_at is not None and at_ms >= expire_at:
                view.reason = "expired"  # the node's cancel at the order's expiry
            view.status = "pending" if event.in_doubt_lots else _final(view, view.reason)
        elif type(event) is Waiting:
            view.pending_lots = event.lots
            view.waiting_on = list(event.holders)
        elif type(event) is WaitOver:
            view.pending_lots = max(0, view.pending_lots - event.lots)
            if event.holder in view.waiting_on:
                view.waiting_on.remove(event.holder)
            if view.status == "pending" and not view.pending_lots:
                view.status = _final(view, view.reason)
        elif type(event) is CancelAnswer:
            if event.status == "pending":
                view.pending_lots = event.locked_lots
        else:
            return None
        return view


def _final(view: OrderView, reason: str) -> str:
    if view.filled_lots >= view.quantity_lots:
        return "filled"
    return _FINAL.get(reason, "expired") if reason != "filled" else "cancelled"


def _new_view(order_id: int, request: OrderRequest, at_ms: int) -> OrderView:
    return OrderView(
        order_id=order_id,
        client_order_id=request.client_order_id,
        trader_id=request.trader_id,
        product_id=request.product_id,
        side=request.side.value,
        type="market" if request.price_ticks is None else "limit",
        time_in_force=request.time_in_force.value,
        price_ticks=request.price_ticks,
        quantity_lots=request.quantity_lots,
        created_ms=at_ms,
        updated_ms=at_ms,
    )


def history_of(store: Store) -> History:
    """A History that reads back, from ``store``, orders not in memory."""

    def load(order_id: int) -> OrderView | None:
        record = store.order(order_id)
        return None if record is None else ORDER_DECODER.decode(record.body)

    return History(load, ClientIds.load(store))
