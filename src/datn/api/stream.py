"""The traders' WebSocket (``/v1/ws``): the low-latency order entry, and a
live stream of the trader's own order updates and executions.

The first message authenticates the session, signed like a request::

    {"op": "auth", "key_id": K, "timestamp": T, "signature": S,
     "cancel_on_disconnect": false, "dead_man_s": 0}

where ``S`` is the HMAC of ``T + "\\nGET\\n/v1/ws\\n"`` (no body). Then the
client sends requests, each with its own ``id``::

    {"op": "place", "id": 1, "order": {...the body of POST /v1/orders...}}
    {"op": "cancel", "id": 2, "order_id": 17}
    {"op": "cancel_all", "id": 3, "product": "XYZ"}
    {"op": "heartbeat", "id": 4}
    {"op": "subscribe", "id": 5, "product": "XYZ"}
    {"op": "unsubscribe", "id": 6, "product": "XYZ"}

A place may carry ``"timestamp"`` and ``"signature"``: the signature the
REST request ``POST /v1/orders`` with the ``order`` member's exact bytes as
its body would carry, made with the session's key. The node checks it (a
bad or replayed one is refused, and nothing is placed) and, for an Ed25519
key, keeps the signed order as evidence that the trader placed it, as for
a REST order. Unsigned places are the session's, trusted as authenticated.

Each request gets one answer, ``{"id": 1, "ok": true, "order": {...}}``
or ``{"id": 1, "ok": false, "code": ..., "message": ...}`` with the fields
the REST API's refusal of the same request carries (``order_id`` for an
order rejected or a client order id reused; ``retry_after_s`` for a
``rate_limited`` one: place, cancel and cancel_all spend the trader's
request budget, the same one its REST requests spend). Events for the
trader's orders arrive as ``{"event": "accepted" | "rested" | "executed" |
"done" | ..., ...}``, each only after the input behind it is durable.

A subscription to a product streams its market data: ``{"event": "book",
"product": ..., "bids": [...], "asks": [...]}`` (the network book's best ten
levels, as ``GET /v1/book/{product}`` gives it) and ``{"event": "prints",
...}`` (each node's last trade price and the mark, as ``GET
/v1/prints/{product}``), each sent at once on subscribing and then whenever
it changes, at most every 100 ms: updates in between are conflated into
the latest state, as exchanges' market-data feeds do, so a busy book costs
a session no more than ten messages a second per product and channel.

``cancel_on_disconnect``: when the socket closes, every open order of the
trader is cancelled. ``dead_man_s``: if N seconds pass without a message
from the client, every open order is cancelled (the session stays open),
and again every N seconds while it stays silent; the client is told the
first time, and again only when orders were cancelled.
A client that reads too slowly (more than 10,000 events waiting, none
taken for 5 s) is disconnected rather than let the node's memory grow.
A request with a field it does not have, or of the wrong type, is refused
(``bad_request``) with its ``id`` when that can be read (an integer, or a
string of at most 64 characters); subscriptions spend the request budget
as place and cancel do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

from datn.api.app import (
    MAX_BODY_BYTES,
    Node,
    PlaceOrder,
    authenticate,
    book_of,
    cancel,
    cancel_everything,
    place,
    prints_of,
    refusal,
)
from datn.api.auth import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, AuthError
from datn.api.errors import ApiError
from datn.api.transport import coalescing, give_place_back
from datn.protocol.effects import Reply
from datn.runtime.node import NodeStoppedError
from datn.runtime.throttle import Throttled
from datn.store import StoreError

log = logging.getLogger("datn.api.stream")
_throttled = Throttled(log)
"""Errors a caller can cause again and again, logged at most once a second per kind."""

SEND_NOW = "datn.send_now"
"""The scope extension under which :class:`OrderEntryProtocol` offers its
:meth:`~OrderEntryProtocol.send_now` to the application."""
DROP = "datn.drop"
"""The scope extension under which :class:`OrderEntryProtocol` offers its
:meth:`~OrderEntryProtocol.drop_later` to the application."""
DROP_AFTER_S = 5.0
"""How long a session that let too many events wait has to take in its
close (4008) before its connection is dropped."""
MAX_MESSAGE_BYTES = MAX_BODY_BYTES + 1_024
"""The largest message a trader's WebSocket takes: an order's body, which
the REST API takes up to MAX_BODY_BYTES, in its request's envelope. A
larger one closes the socket (1009, message too big) before it is read
whole, so what a session holds stays bounded (the protocol reads at most
HIGH_WATER messages ahead)."""
MAX_QUEUED_EVENTS = 10_000
SLOW_READER_S = 5.0
"""A session is too slow, and closed, when more than MAX_QUEUED_EVENTS
wait and it has taken none for this long: one request's own burst of
events (a cancel of thousands of orders) does not close a client that
reads on."""
MAX_IN_FLIGHT = 1_024
"""Requests of one session being handled at once; beyond, reading waits."""
MAX_IN_FLIGHT_BYTES = 1 << 20
"""...and their messages' bytes at most this (one request at a time may
pass it): a client that sends large requests and never reads the answers
holds at most this much of the node's memory per session."""
MAX_ID_CHARS = 64
"""The longest string a request's ``id`` may be (it is echoed in the answer)."""
AUTH_TIMEOUT_S = 10.0
MAX_SESSIONS_PER_TRADER = 16
"""Sessions one trader may hold open at once: each holds a socket, a task
and an event queue, and the server's connections are shared by every
trader. One more is refused (``too_many_sessions``, closed 1008)."""
CLOSE_POLICY = 1008
_EVENTS = msgspec.json.Encoder()


class Auth(msgspec.Struct, forbid_unknown_fields=True):
    op: str
    key_id: str
    timestamp: str
    signature: str
    cancel_on_disconnect: bool = False
    dead_man_s: int = 0


RequestId = (
    Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
    | Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)]
    | None
)


class Request(msgspec.Struct, forbid_unknown_fields=True):
    op: str
    id: RequestId = None
    order: msgspec.Raw = msgspec.Raw()
    """Decoded as a PlaceOrder only for a place, so that a bad order is
    answered with its request's id (empty when absent)."""
    order_id: int | None = None
    product: str | None = None
    timestamp: str | None = None
    signature: str | None = None
    """A place may be signed as its REST request would be (``POST``,
    ``/v1/orders``, the ``order`` member's bytes as the body), with the
    session's key: an Ed25519-signed order is then kept as evidence."""


_UNREADABLE = (msgspec.ValidationError, msgspec.DecodeError, RecursionError)
"""What decoding a message raises for one it cannot read (msgspec raises
RecursionError for JSON nested deeper than it follows)."""


def _unreadable(error: Exception) -> str:
    if isinstance(error, RecursionError):
        return "the message's JSON is nested too deeply"
    return str(error)


_BUDGETED = frozenset({"place", "cancel", "cancel_all", "subscribe", "unsubscribe"})
"""Requests that spend the trader's request budget (``rate_per_second``,
``rate_burst``), shared with the REST API: the ones that change something,
and subscriptions, each of which reads the book. A heartbeat never does,
so a trader over budget keeps its dead-man's switch fed."""


class _Id(msgspec.Struct):
    id: Any = None


_ID = msgspec.json.Decoder(_Id)


def _request_id(raw: bytes | str) -> int | str | None:
    """The ``id`` of a request that cannot be read as a whole, where it is
    one a request may carry, so that its refusal names it."""
    try:
        value = _ID.decode(raw).id
    except _UNREADABLE:
        return None
    if type(value) is int and -(2**63) <= value < 2**63:
        return value
    if type(value) is str and len(value) <= MAX_ID_CHARS:
        return value
    return None


_AUTH = msgspec.json.Decoder(Auth)
_REQUEST = msgspec.json.Decoder(Request)
_ORDER = msgspec.json.Decoder(PlaceOrder)
_NAMES: dict[type, str] = {}
"""Event names by type: ``Executed`` -> ``executed``, ``WaitOver`` -> ``wait_over``."""


class Queue(asyncio.Queue[bytes | None]):
    """A session's events waiting to be sent (None: close it, too slow)."""

    def __init__(self, drop: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.drop = drop
        """What ends the session's connection if its client does not read
        on: a client that stopped reading never takes in its close."""
        self.taken_at = time.monotonic()
        """When the session's sender last took an event to send."""

    def stalled(self) -> bool:
        """Too many events wait, and none was taken for SLOW_READER_S."""
        return (
            self.qsize() >= MAX_QUEUED_EVENTS and time.monotonic() - self.taken_at >= SLOW_READER_S
        )


MARKET_DATA_INTERVAL_S = 0.1
BOOK_DEPTH = 10


def _offer(queues: set[Queue], data: bytes) -> None:
    """Queue ``data`` for every session in ``queues``; a session that has
    let too much wait is closed instead (it cannot keep up)."""
    for queue in list(queues):
        if queue.stalled():
            queues.discard(queue)
            # Its events are dropped, so that its close comes next: a client
            # that reads on takes it in (4008) at once; one that does not is
            # dropped by ``drop``.
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(None)
            if queue.drop is not None:
                queue.drop()
        else:
            queue.put_nowait(data)


class Sessions:
    """Open sessions by trader; fed by the runtime's released replies."""

    def __init__(self) -> None:
        self.by_trader: dict[str, set[Queue]] = {}
        self.open: Counter[str] = Counter()
        """Sessions by trader, from their admission to their handler's end
        (a session too slow for its events is no longer fed, and still open)."""

    def publish(self, effect: Reply) -> None:
        queues = self.by_trader.get(effect.trader_id)
        if not queues:
            return
        event = effect.event
        kind = type(event)
        name = _NAMES.get(kind)
        if name is None:
            name = _NAMES[kind] = _event_name(kind.__name__)
        payload = {"event": name, **msgspec.structs.asdict(event)}
        _offer(queues, _EVENTS.encode(payload))


class MarketData:
    """Book and print updates for the sessions subscribed to a product:
    checked every ``interval_s`` while anyone is subscribed, read only when
    the journal has moved, sent only when changed, and never ahead of the
    store (read through :meth:`NodeRuntime.read`)."""

    def __init__(self, node: Node, interval_s: float = MARKET_DATA_INTERVAL_S) -> None:
        self.node = node
        self.interval_s = interval_s
        self.subscribers: dict[str, set[Queue]] = {}
        self._last: dict[tuple[str, str], bytes] = {}
        self._position = -1
        self._task: asyncio.Task[None] | None = None

    async def subscribe(self, symbol: str, queue: Queue) -> None:
        """Add ``queue`` to ``symbol``'s subscribers and queue its current
        book and prints for it (ApiError for a product not listed)."""
        product_id = self.node.product_id(symbol)
        for data in await self.node.runtime.read(lambda core: self._read(core, symbol, product_id)):
            _offer({queue}, data)
        self.subscribers.setdefault(symbol, set()).add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    def unsubscribe(self, queue: Queue, symbol: str | None = None) -> None:
        for listed, queues in list(self.subscribers.items()):
            if symbol is None or listed == symbol:
                queues.discard(queue)
                if not queues:
                    del self.subscribers[listed]

    def _read(self, core: Any, symbol: str, product_id: str) -> list[bytes]:
        book = book_of(core, symbol, product_id, BOOK_DEPTH)
        prints = prints_of(core, symbol, product_id)
        return [
            _EVENTS.encode({"event": "book", **msgspec.to_builtins(book)}),
            _EVENTS.encode({"event": "prints", **msgspec.to_builtins(prints)}),
        ]

    async def _run(self) -> None:
        runtime = self.node.runtime
        while self.subscribers and runtime.failure is None:
            await asyncio.sleep(self.interval_s)
            position = runtime.stats.position
            if position == self._position:
                continue
            self._position = position
            symbols = [(s, self.node.product_id(s)) for s in self.subscribers]
            try:
                fresh = await runtime.read(
                    lambda core: {s: self._read(core, s, p) for s, p in symbols}  # noqa: B023
                )
            except NodeStoppedError:
                return  # the node is stopping: its sessions close with it
            for symbol, (book, prints) in fresh.items():
                for channel, data in (("book", book), ("prints", prints)):
                    if self._last.get((channel, symbol)) == data:
                        continue
                    self._last[(channel, symbol)] = data
                    _offer(self.subscribers.get(symbol, set()), data)


def _event_name(kind: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in kind).lstrip("_")


def stream_handler(node: Node, sessions: Sessions) -> Any:
    market = MarketData(node)

    @websocket("/v1/ws")
    async def stream(socket: WebSocket[Any, Any, Any]) -> None:
        await socket.accept()
        try:
            raw = await asyncio.wait_for(socket.receive_data("text"), AUTH_TIMEOUT_S)
            auth = _AUTH.decode(raw)
            if auth.op != "auth":
                raise AuthError("unsigned", "the first message is op auth")
            if not 0 <= auth.dead_man_s <= 3_600:
                raise AuthError("bad_request", f"dead_man_s is 0 to 3600, not {auth.dead_man_s}")
            headers = {
                KEY_HEADER: auth.key_id,
                TIMESTAMP_HEADER: auth.timestamp,
                SIGNATURE_HEADER: auth.signature,
            }
            caller = node.verifier.verify(headers, "GET", "/v1/ws", b"", once=True)
        except (AuthError, TimeoutError, *_UNREADABLE) as error:
            if isinstance(error, AuthError):
                code, message = error.code, str(error)
            elif isinstance(error, TimeoutError):
                code, message = "bad_request", f"no auth message within {AUTH_TIMEOUT_S:.0f} s"
            else:
                code, message = "bad_request", _unreadable(error)
            await socket.send_data(_EVENTS.encode({"ok": False, "code": code, "message": message}))
            await socket.close(code=4401)
            return
        except StoreError as error:
            # The key could not be looked up: nothing was decided about the
            # caller, who may try again (1013: try again later).
            _throttled.log(
                "store_error",
                logging.ERROR,
                "store error authenticating a WebSocket session: %s",
                error,
            )
            message = "the node's store is unavailable; retry later"
            await socket.send_data(
                _EVENTS.encode({"ok": False, "code": "not_accepted", "message": message})
            )
            await socket.close(code=1013)
            return
        except WebSocketDisconnect:
            return
        trader_id = caller.trader_id
        open_now = sessions.open[trader_id]
        if open_now >= MAX_SESSIONS_PER_TRADER:
            message = f"{open_now} sessions open already; at most {MAX_SESSIONS_PER_TRADER}"
            with contextlib.suppress(WebSocketDisconnect, ClientDisconnected):
                await socket.send_data(
                    _EVENTS.encode({"ok": False, "code": "too_many_sessions", "message": message})
                )
                await socket.close(code=CLOSE_POLICY, reason="too many sessions")
            return
        # From here the session holds its place until the handler ends,
        # whatever ends it (the client gone before its welcome included).
        sessions.open[trader_id] += 1
        extensions: Any = socket.scope.get("extensions") or {}
        queue = Queue(extensions.get(DROP))
        sessions.by_trader.setdefault(trader_id, set()).add(queue)
        try:
            with contextlib.suppress(WebSocketDisconnect, ClientDisconnected):
                await socket.send_data(_EVENTS.encode({"ok": True, "trader_id": trader_id}))
                await _Session(
                    node, socket, trader_id, auth.key_id, queue, auth.dead_man_s, market
                ).run()
        finally:
            sessions.open[trader_id] -= 1
            if not sessions.open[trader_id]:
                del sessions.open[trader_id]
            held = sessions.by_trader.get(trader_id)
            if held is not None:
                held.discard(queue)
                if not held:
                    del sessions.by_trader[trader_id]
            market.unsubscribe(queue)
            if auth.cancel_on_disconnect:
                try:
                    await cancel_everything(node, trader_id, None)
                except (NodeStoppedError, StoreError) as error:
                    _throttled.log(
                        "cancel_on_disconnect",
                        logging.ERROR,
                        "a session's cancel on disconnect failed: %s",
                        error,
                    )

    return stream


class _Session:
    def __init__(
        self,
        node: Node,
        socket: WebSocket[Any, Any, Any],
        trader_id: str,
        key_id: str,
        queue: Queue,
        dead_man_s: int,
        market: MarketData,
    ) -> None:
        self.node = node
        self.socket = socket
        self.trader_id = trader_id
        self.key_id = key_id
        self.queue = queue
        self.dead_man_s = dead_man_s
        self.market = market
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._pending: set[asyncio.Task[None]] = set()
        self._revoked = False
        self._closing = False
        self._in_flight_bytes = 0
        self._room = asyncio.Event()
        """Set as a request in flight ends: room for a large one."""
        extensions: Any = socket.scope.get("extensions") or {}
        self._send_now: Callable[[bytes], bool] | None = extensions.get(SEND_NOW)

    async def send(self, data: bytes) -> None:
        """Send ``data`` as a text message: at once when the server's
        protocol can (:meth:`OrderEntryProtocol.send_now`), else through
        the ASGI send, which waits while the client reads too slowly and
        raises WebSocketDisconnect once the socket is closed."""
        if self._closing:
            # Closed by this side: the server takes nothing more on it.
            raise WebSocketDisconnect(detail="the session is closing")
        send_now = self._send_now
        if send_now is None or not send_now(data):
            try:
                await self.socket.send_data(data)
            except ClientDisconnected:
                # The server saw the socket go before the session was told.
                raise WebSocketDisconnect(detail="the client has gone") from None

    async def _close(self, code: int, reason: str) -> None:
        """Close the session, once; answers still in flight are dropped."""
        if not self._closing:
            self._closing = True
            await self.socket.close(code=code, reason=reason)

    async def run(self) -> None:
        sender = asyncio.create_task(self._send_events())
        try:
            await self._receive()
        finally:
            sender.cancel()

    async def _send_events(self) -> None:
        while True:
            data = await self.queue.get()
            self.queue.taken_at = time.monotonic()
            if data is None:
                await self._close(4008, "too slow: events were dropped")
                return
            try:
                await self.send(data)
            except WebSocketDisconnect:
                return  # the receiving side ends the session

    async def _receive(self) -> None:
        # The dead man's switch fires every dead_man_s while the client is
        # silent (an order placed meanwhile, over REST or another session,
        # is cancelled too); it tells the client the first time, and again
        # only when it cancelled something.
        told = False
        while True:
            try:
                if self.dead_man_s:
                    raw = await asyncio.wait_for(self.socket.receive_data("text"), self.dead_man_s)
                else:
                    raw = await self.socket.receive_data("text")
            except TimeoutError:
                try:
                    cancelled = await cancel_everything(self.node, self.trader_id, None)
                except StoreError as error:
                    # Tried again at the next period of silence.
                    _throttled.log(
                        "dead_man", logging.ERROR, "a dead man's switch could not cancel: %s", error
                    )
                    continue
                if cancelled or not told:
                    await self.send(_EVENTS.encode({"event": "dead_man_cancelled"}))
                    told = True
                continue
            except WebSocketDisconnect:
                await asyncio.gather(*self._pending, return_exceptions=True)
                return
            told = False
            # Requests are applied in the order they arrive (a task's first
            # step runs in creation order, and a place or cancel reaches the
            # core in its first step); their answers go out as each becomes
            # durable, so a session with many in flight shares group commits.
            size = len(raw)
            while self._pending and self._in_flight_bytes + size > MAX_IN_FLIGHT_BYTES:
                self._room.clear()
                await self._room.wait()
            await self._slots.acquire()
            self._in_flight_bytes += size
            task = asyncio.create_task(self._answer_and_send(raw, size))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _answer_and_send(self, raw: bytes | str, size: int) -> None:
        try:
            answer = await self._answer(raw)
            del raw
            await self.send(_EVENTS.encode(answer))
            if self._revoked:
                await self._close(4401, "the key was revoked")
        except WebSocketDisconnect:
            pass
        finally:
            self._in_flight_bytes -= size
            self._room.set()
            self._slots.release()

    async def _answer(self, raw: bytes | str) -> dict[str, Any]:
        if not raw:
            # A binary frame reads as no text at all.
            return {
                "id": None,
                "ok": False,
                "code": "bad_request",
                "message": "an empty message or a binary frame: a request is JSON text",
            }
        try:
            request = _REQUEST.decode(raw)
        except _UNREADABLE as error:
            return {
                "id": _request_id(raw),
                "ok": False,
                "code": "bad_request",
                "message": _unreadable(error),
            }
        node, trader = self.node, self.trader_id
        if not node.verifier.active(self.key_id):
            # Revoked while the session was open: nothing more is taken on
            # it, and it closes once this answer is sent.
            self._revoked = True
            return {
                "id": request.id,
                "ok": False,
                "code": "unknown_key",
                "message": "the session's key was revoked: the session closes",
            }
        try:
            signed = None
            if request.op == "place" and (
                request.signature is not None or request.timestamp is not None
            ):
                # Signed as its REST request would be, with the session's
                # key: checked, and the budget spent, as that request's.
                headers = {
                    KEY_HEADER: self.key_id,
                    TIMESTAMP_HEADER: request.timestamp or "",
                    SIGNATURE_HEADER: request.signature or "",
                }
                body = bytes(request.order)
                signed = authenticate(node, headers, "POST", "/v1/orders", body).signed
            elif request.op in _BUDGETED:
                node.admit(trader)  # the trader's request budget, as over REST
            if request.op == "place" and request.order:
                try:
                    order = _ORDER.decode(request.order)
                except _UNREADABLE as error:
                    # The client's own order: its error, not the node's.
                    raise ApiError(400, "bad_request", _unreadable(error)) from None
                new, view = await place(node, trader, order, signed)
                return {"id": request.id, "ok": True, "new": new, "order": view}
            if request.op == "cancel" and request.order_id is not None:
                result = await cancel(node, trader, request.order_id)
                return {"id": request.id, "ok": True, "cancel": result}
            if request.op == "cancel_all":
                product_id = None if request.product is None else node.product_id(request.product)
                results = await cancel_everything(node, trader, product_id)
                return {"id": request.id, "ok": True, "cancels": results}
            if request.op == "heartbeat":
                return {"id": request.id, "ok": True}
            if request.op == "subscribe" and request.product is not None:
                await self.market.subscribe(request.product, self.queue)
                return {"id": request.id, "ok": True, "subscribed": request.product}
            if request.op == "unsubscribe" and request.product is not None:
                self.market.unsubscribe(self.queue, request.product)
                return {"id": request.id, "ok": True, "unsubscribed": request.product}
            return {
                "id": request.id,
                "ok": False,
                "code": "bad_request",
                "message": "op is place (with order), cancel (with order_id), cancel_all, "
                "heartbeat, subscribe or unsubscribe (with product)",
            }
        except Exception as error:
            # What the REST API answers (datn.api.app.refusal), so nothing a
            # session asks goes unanswered: a store that cannot be read, or
            # an error the API does not expect (logged), is not_accepted.
            refused = refusal(error)
            answer = {"id": request.id, "ok": False, **refused.body}
            retry_after = refused.headers.get("Retry-After")
            if retry_after is not None:
                answer["retry_after_s"] = int(retry_after)
            return answer


class OrderEntryProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, reading and writing in bulk.

    uvicorn stops reading the socket after every message until the app has
    taken it, and starts again when its queue is empty: two system calls per
    message, which order entry (one small message per order) cannot afford.
    This one stops reading only when ``HIGH_WATER`` messages, or
    ``HIGH_WATER_BYTES`` of them, wait, and starts again below
    ``LOW_WATER`` and ``LOW_WATER_BYTES``, so a session's memory stays
    bounded all the same (with a session's own limits on requests in
    flight). Its writes are coalesced per turn of the loop
    (:class:`~datn.api.transport.CoalescingTransport`).

    A text message that is not UTF-8 closes the connection (1007) as
    uvicorn's does, without the error and traceback uvicorn logs for it:
    anyone can send one, before any key is asked for."""

    HIGH_WATER = 256
    LOW_WATER = 64
    HIGH_WATER_BYTES = 1 << 20
    LOW_WATER_BYTES = 1 << 18
    """Bytes of messages waiting (a text's by its characters)."""
    _queued_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport = coalescing(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        give_place_back(self.transport)  # taken by the HTTP connection it upgraded
        super().connection_lost(exc)

    async def run_asgi(self) -> None:
        extensions: Any = self.scope.get("extensions")
        if extensions is not None:
            extensions[SEND_NOW] = self.send_now
            extensions[DROP] = self.drop_later
        await super().run_asgi()

    def drop_later(self) -> None:
        """Drop the connection in :data:`DROP_AFTER_S` unless it has closed
        by then: the session's close waits for a client that may never read."""
        asyncio.get_running_loop().call_later(DROP_AFTER_S, self._drop)

    def _drop(self) -> None:
        if not self.disconnected:
            self.transport.abort()

    def send_now(self, data: bytes) -> bool:
        """Send ``data`` (UTF-8 text) as a text message now, if the socket is
        open and its client keeps up; False if not, and nothing sent.

        The application's messages otherwise pass through four coroutines
        (the framework's wrappers and this protocol's ``send``) and are
        decoded to ``str`` and encoded back, which costs more than the
        message's own encoding. What ``send`` checks first is checked here;
        a False sends the caller to ``send``, which waits for a slow client
        or raises for a closed socket, as before."""
        if (
            self.disconnected
            or self.close_sent
            or not self.handshake_complete
            or self.initial_response is not None
            or not self.writable.is_set()
        ):
            return False
        try:
            self.conn.send_text(data)
        except InvalidState:
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True

    def send_receive_event_to_app(self) -> None:
        frames = self.frames
        size = sum(len(frame) for frame in frames)
        if self.curr_msg_data_type == "text" and not self.close_sent:
            size = _text_length(frames)
            if size < 0:
                self.frames = []
                self.conn.send_close(1007)
                self.handle_parser_exception()
                return
        paused = self.read_paused
        self.read_paused = True  # queue the message without pausing
        queued = self.queue.qsize()
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = paused
        if self.queue.qsize() > queued:
            self._queued_bytes += size
        if not paused and (
            self.queue.qsize() >= self.HIGH_WATER or self._queued_bytes >= self.HIGH_WATER_BYTES
        ):
            self.read_paused = True
            self.transport.pause_reading()

    async def receive(self) -> Any:
        message = await self.queue.get()
        data: Any = message.get("text") or message.get("bytes")
        if data:
            self._queued_bytes -= len(data)  # a text by its characters, as it was counted
        if (
            self.read_paused
            and self.queue.qsize() <= self.LOW_WATER
            and self._queued_bytes <= self.LOW_WATER_BYTES
        ):
            self.read_paused = False
            self.transport.resume_reading()
        return message


def _text_length(frames: list[bytes]) -> int:
    """The length in characters of a text message's frames, or -1 if they
    are not UTF-8 (ASCII, as JSON mostly is, is not decoded here)."""
    if all(frame.isascii() for frame in frames):
        return sum(len(frame) for frame in frames)
    try:
        return len(b"".join(frames).decode())
    except UnicodeDecodeError:
        return -1
