"""What a node remembers about its own traders' requests.

Every trader request gets one clear answer, exactly once: a retried order
(same trader, same client order id, same terms) gets the answer the first
one got, accepted or rejected, and a client order id cannot be used again
for other terms. The node remembers the answer while the order is open and
for ``client_order_memory_ms`` after it ended (or was rejected); past that,
the node's store answers. It also counts each trader's open orders and the
orders placed in the current rate window, which the risk policies read.

An open order's answer is not kept twice: the order itself (being worked or
resting) says what was asked, so only its id is remembered here until it
ends, when its request and answer are kept for the retention window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from mypy_extensions import mypyc_attr

from datn.domain import Order
from datn.domain.value import Value
from datn.protocol.clock import Now
from datn.protocol.context import Context
from datn.protocol.effects import Accepted, Rejected
from datn.protocol.snapshot import AnswerState, TradersState
from datn.protocol.venue import OrderRequest

Answer = Accepted | Rejected


class _Remembered(Value, frozen=True):
    request: OrderRequest
    answer: Answer


def request_of(order: Order) -> OrderRequest:
    """The request an order was made from."""
    return OrderRequest(
        order.trader_id,
        order.client_order_id,
        order.product_id,
        order.side,
        order.quantity_lots,
        order.price_ticks,
        order.time_in_force,
    )


@mypyc_attr(allow_interpreted_subclasses=True)  # strategies and tests extend it
class Traders:
    """Answers to trader requests, open order counts and recent order times."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.order_of: Callable[[int], Order | None] = lambda order_id: None
        """Finds an open order by id (set by the node core)."""
        self.answers: dict[tuple[str, str], _Remembered] = {}
        """Answers to requests whose orders ended or were rejected."""
        self.open: dict[tuple[str, str], int] = {}
        """(trader, client order id) -> order id, for open orders."""
        self._finished: deque[tuple[int, tuple[str, str]]] = deque()
        """(monotonic ms, key) of the answers above, oldest first."""
        self.open_orders: dict[str, int] = {}
        self._recent: dict[str, deque[int]] = {}
        """Per trader, when its recently accepted orders came (monotonic ms)."""

    # ============================================================= answers

    def previous(self, request: OrderRequest) -> Answer | None:
        """The answer a retry of ``request`` gets, if it is one; a request that
        reuses a remembered client order id for other terms is refused."""
        key = (request.trader_id, request.client_order_id)
        order_id = self.open.get(key)
        if order_id is not None:
            order = self.order_of(order_id)
            assert order is not None, "an open order is worked or rests"
            first: OrderRequest = request_of(order)
            answer: Answer = Accepted(request.client_order_id, order_id)
        else:
            remembered = self.answers.get(key)
            if remembered is None:
                return None
            first, answer = remembered.request, remembered.answer
        if first != request:
            return Rejected(
                request.client_order_id,
                "client_order_id_reused",
                "this client order id was used for another order",
            )
        return answer

    def rejected(self, request: OrderRequest, answer: Rejected, now: Now) -> None:
        key = (request.trader_id, request.client_order_id)
        self.answers[key] = _Remembered(request, answer)
        self._finished.append((now.mono_ms, key))

    def opened(self, order: Order, now: Now) -> None:
        trader_id = order.trader_id
        self.open[(trader_id, order.client_order_id)] = order.order_id
        self.open_orders[trader_id] = self.open_orders.get(trader_id, 0) + 1
        recent = self._recent.get(trader_id)
        if recent is None:
            recent = self._recent[trader_id] = deque()
        recent.append(now.mono_ms)

    def closed(self, order: Order, now: Now) -> None:
        """``order`` ended: its answer is kept for the retention window."""
        trader_id = order.trader_id
        key = (trader_id, order.client_order_id)
        del self.open[key]
        left = self.open_orders[trader_id] - 1
        if left:
            self.open_orders[trader_id] = left
        else:
            del self.open_orders[trader_id]
        answer = Accepted(order.client_order_id, order.order_id)
        self.answers[key] = _Remembered(request_of(order), answer)
        self._finished.append((now.mono_ms, key))

    def forget_old(self, now: Now) -> None:
        cutoff = now.mono_ms - self.context.config.client_order_memory_ms
        finished = self._finished
        while finished and finished[0][0] <= cutoff:
            _, key = finished.popleft()
            self.answers.pop(key, None)

    # =============================================================== risk

    def recent_orders(self, trader_id: str, now: Now) -> int:
        """Orders ``trader_id`` placed in the current rate window."""
        recent = self._recent.get(trader_id)
        if recent is None:
            return 0
        cutoff = now.mono_ms - self.context.config.risk.order_rate_window_ms
        while recent and recent[0] <= cutoff:
            recent.popleft()
        if not recent:
            del self._recent[trader_id]
            return 0
        return len(recent)

    # ============================================================ restart

    def rebase(self, delta_ms: int) -> None:
        """Move every remembered time onto the new monotonic clock."""
        self._finished = deque((t + delta_ms, key) for t, key in self._finished)
        for trader_id, recent in self._recent.items():
            self._recent[trader_id] = deque(t + delta_ms for t in recent)

    # ============================================================ snapshot

    def snapshot(self) -> TradersState:
        return TradersState(
            tuple(_answer_state(r) for r in self.answers.values()),
            tuple((trader, client, order_id) for (trader, client), order_id in self.open.items()),
            tuple((t, trader, client) for t, (trader, client) in self._finished),
            tuple(self.open_orders.items()),
            tuple((trader, tuple(times)) for trader, times in self._recent.items()),
        )

    def restore(self, state: TradersState) -> None:
        self.answers = {}
        for a in state.answers:
            request = OrderRequest(
                a.trader_id,
                a.client_order_id,
                a.product_id,
                a.side,
                a.quantity_lots,
                a.price_ticks,
                a.time_in_force,
            )
            answer: Answer = (
                Accepted(a.client_order_id, a.order_id)
                if a.order_id is not None
                else Rejected(a.client_order_id, a.reason, a.message)
            )
            self.answers[(a.trader_id, a.client_order_id)] = _Remembered(request, answer)
        self.open = {(trader, client): order_id for trader, client, order_id in state.open}
        self._finished = deque((t, (trader, client)) for t, trader, client in state.finished)
        self.open_orders = dict(state.open_orders)
        self._recent = {trader: deque(times) for trader, times in state.recent}


def _answer_state(remembered: _Remembered) -> AnswerState:
    r, answer = remembered.request, remembered.answer
    fields = (r.trader_id, r.client_order_id, r.product_id, r.side)
    terms = (r.quantity_lots, r.price_ticks, r.time_in_force)
    if isinstance(answer, Accepted):
        return AnswerState(*fields, *terms, answer.order_id)
    return AnswerState(*fields, *terms, None, answer.reason, answer.message)
