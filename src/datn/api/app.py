"""The node's HTTP APIs (Litestar): the traders' API, signed per request
(:mod:`datn.api.auth`), and the operator's, behind a bearer token on its own
address.

Every answer is JSON. Every refusal is a 4xx with a stable ``code`` and a
``message``, and changes nothing: 400 for a request the API cannot read,
401 for one it cannot attribute, 404 for what does not exist, 422 for an
order the node rejected (its ``code`` is the reason, and the rejected order
is remembered: a retry with the same client order id gets the same answer).
A node whose store cannot commit answers 503 ``not_accepted``: nothing of
the request was acknowledged, and a retry with the same client order id is
safe. No request from outside produces a 5xx other than that 503.

Litestar was chosen over FastAPI by measuring both on uvicorn here: with a
validated JSON order body Litestar served 1.47 times the requests per
second (its msgspec validation is the same library the wire uses), and
uvicorn runs inside the node's own asyncio loop, beside the runtime.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal

import msgspec
from litestar import Litestar, MediaType, Request, Response, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import Link, OpenAPIResponse, Operation
from litestar.params import FromPath, FromQuery, JSONBody, PathParameter, QueryParameter

from datn import __version__
from datn.api.auth import (
    AuthError,
    Caller,
    SignedRequest,
    Verifier,
    check_admin,
    decode_signed,
    ed25519_key,
    encode_signed,
    new_hmac_key,
    valid_key_id,
)
from datn.api.errors import ApiError
from datn.api.expiry import Expirer
from datn.api.metrics import ApiCounters, render, store_bytes
from datn.api.process import process_use
from datn.api.references import Movement, Reference, Terms, movement
from datn.clearing.quota import TokenBucket
from datn.domain import Side, TimeInForce
from datn.domain.limits import MAX_AMOUNT_MINOR
from datn.ledger import EXTERNAL_OWNER
from datn.ledger.limits import MIN_BALANCE
from datn.net import PeerLinks
from datn.protocol.effects import (
    Accepted,
    CancelAllInput,
    CancelAnswer,
    CancelInput,
    DepositInput,
    Effect,
    FundInput,
    Input,
    PlaceInput,
    Publish,
    Rejected,
    Reply,
    WithdrawInput,
)
from datn.protocol.liability import CAPITAL_OWNER
from datn.protocol.node import NodeCore
from datn.protocol.venue import OrderRequest, trader_owner
from datn.runtime import InputRefusedError, NodeRuntime, NodeStoppedError
from datn.runtime.history import (
    EXECUTION_DECODER,
    ORDER_DECODER,
    ExecutionView,
    History,
    OrderView,
    rejected_order_id,
)
from datn.runtime.throttle import Throttled
from datn.store import EvidenceRecord, OrderRecord, Page, StoreError
from datn.wire import NodeKey

log = logging.getLogger("datn.api")
_throttled = Throttled(log)
"""Errors a caller can cause again and again, logged at most once a second per kind."""

MAX_BODY_BYTES = 64 * 1024
MAX_EXPIRY_MS = 366 * 86_400_000
ClientOrderId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[!-~]+$")]
Lots = Annotated[int, msgspec.Meta(gt=0, le=10**15)]
Ticks = Annotated[int, msgspec.Meta(gt=0, le=10**15)]
Amount = Annotated[int, msgspec.Meta(gt=0, le=10**18)]
TraderId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class ErrorBody(msgspec.Struct):
    """Every refusal's body: a stable machine-readable ``code``, a message
    for people, and sometimes more (the order's id, the field at fault)."""

    code: str
    message: str


_ERROR_MEANINGS = {
    400: "The request cannot be read or a value is out of range; nothing changed.",
    401: "Unsigned, badly signed, stale, replayed, or an unknown key; nothing changed.",
    404: "No such order or product of the caller's; nothing changed.",
    409: "The node gave no answer to the order; retry with the same client order id.",
    422: "The node refused the order; code is the reason, and a retry gets the same answer.",
    429: "Over the caller's request rate; retry after Retry-After seconds.",
    503: "Nothing of the request was made durable or acknowledged; a retry is safe.",
}


def _errors(*statuses: int) -> dict[int, ResponseSpec]:
    """The OpenAPI description of the refusals a route can answer."""
    return {
        status: ResponseSpec(
            ErrorBody, generate_examples=False, description=_ERROR_MEANINGS[status]
        )
        for status in statuses
    }


_SIGNED = (400, 401, 429, 503)


class PlaceOrder(msgspec.Struct, forbid_unknown_fields=True):
    client_order_id: ClientOrderId
    product: str
    side: Literal["buy", "sell"]
    quantity_lots: Lots
    type: Literal["limit", "market"] = "limit"
    price_ticks: Ticks | None = None
    time_in_force: Literal["gtc", "ioc", "fok", "gtd"] | None = None
    """Left out: ``gtc`` for a limit order, ``ioc`` for a market order
    (which never rests)."""
    expire_at_ms: Annotated[int, msgspec.Meta(gt=0, le=2**62)] | None = None
    """Good-till-date orders only: when what is left of it is cancelled,
    in milliseconds since the epoch (at most a year ahead)."""


class CancelResult(msgspec.Struct):
    order_id: int
    status: str
    cancelled_lots: int
    locked_lots: int


class Balance(msgspec.Struct):
    asset: str
    balance: int
    available: int
    held: int


class AccountRow(msgspec.Struct):
    owner: str
    asset: str
    symbol: str
    """The product's symbol for a product's account; the currency otherwise."""
    balance: int
    available: int
    held: int


class Product(msgspec.Struct):
    symbol: str
    product_id: str
    kind: str
    quote_currency: str
    tick_size_minor: int
    lot_size: int


RECENT_TRADES: Final = 1_000
"""Trade prints the API keeps per product and source node, the latest
(``GET /v1/trades`` serves at most this many)."""
MAX_TRADE_SOURCES: Final = 64
"""Source nodes whose prints the API keeps per product: one more forgets
the one that printed least recently."""


class Trade(msgspec.Struct):
    """A trade print: ``node``'s book set its price (this node's, or a peer's
    as it printed it); ``at_ms``, when it traded (a peer's print, when this
    node learned of it), in milliseconds since the epoch."""

    node: str
    price_ticks: int
    quantity_lots: int
    at_ms: int


class TradeFeed:
    """The latest trade prints of each product, kept per source node, so
    that a peer printing without end (a peer's adverts say what it likes)
    pushes out only its own: memory is bounded by products, sources and
    :data:`RECENT_TRADES`. Market data, not records: a restart begins
    them again."""

    def __init__(self) -> None:
        self._products: dict[str, dict[str, deque[tuple[int, Trade]]]] = {}
        self._seq = 0

    def record(self, effect: Publish) -> None:
        """Keep a trade print the core published (the runtime's outlet)."""
        sources = self._products.get(effect.product_id)
        if sources is None:
            sources = self._products[effect.product_id] = {}
        kept = sources.pop(effect.source, None)  # back in last: the latest to print
        if kept is None:
            kept = deque(maxlen=RECENT_TRADES)
            if len(sources) >= MAX_TRADE_SOURCES:
                del sources[next(iter(sources))]
        sources[effect.source] = kept
        self._seq += 1
        at_ms = effect.executed.wall_ms
        trade = Trade(effect.source, effect.price_ticks, effect.quantity_lots, at_ms)
        kept.append((self._seq, trade))

    def latest(self, product_id: str, limit: int) -> list[Trade]:
        """At most ``limit`` of ``product_id``'s prints, newest first."""
        sources = self._products.get(product_id, {})
        newest_first = heapq.merge(*map(reversed, sources.values()), key=lambda e: -e[0])
        return [trade for _, trade in itertools.islice(newest_first, limit)]


class Node:
    """What the API handlers reach: the runtime, its store and history."""

    def __init__(
        self,
        runtime: NodeRuntime,
        history: History,
        verifier: Verifier,
        rate_per_second: int = 50,
        rate_burst: int = 100,
    ) -> None:
        self.runtime = runtime
        self.history = history
        self.verifier = verifier
        self.counters = ApiCounters()
        self.rate_per_second = rate_per_second
        self.rate_burst = rate_burst
        self._buckets: dict[str, TokenBucket] = {}
        self.expirer = Expirer(self)
        self.key: NodeKey | None = None
        """The node's signing key, when it runs with it (``datn node run``):
        it seals the evidence bundles the operator exports."""
        self.links: PeerLinks | None = None
        """The node's peer links, when it runs them (``datn node run``)."""
        core = runtime.core
        self.products = {spec.symbol: spec for spec in core.context.products.values()}
        self.trades = TradeFeed()
        """What the node printed and heard since it started."""
        self.placing: dict[tuple[str, str], asyncio.Future[None]] = {}
        """Orders being placed, by (trader, client order id), until answered:
        a retry sent while the first is in flight waits for its answer."""
        self.moving: dict[str, asyncio.Future[None]] = {}
        """Operator movements being made, by reference, until answered
        (see :mod:`datn.api.references`)."""

    def admit(self, trader_id: str) -> None:
        """Spend one of the trader's request tokens, or refuse with 429."""
        now_ms = time.monotonic_ns() // 1_000_000
        bucket = self._buckets.get(trader_id)
        if bucket is None:
            if len(self._buckets) > 100_000:
                self._buckets.clear()  # full buckets for everyone: never stricter than the limit
            bucket = self._buckets[trader_id] = TokenBucket(
                self.rate_per_second, self.rate_burst, now_ms
            )
        if bucket.take(now_ms):
            return
        self.counters.rate_limited += 1
        _, _, milli, _ = bucket.state()
        wait_ms = -(-(1_000 - milli) // self.rate_per_second)  # a token's worth of refill
        wait_s = max(1, -(-wait_ms // 1_000))
        raise ApiError(
            429,
            "rate_limited",
            f"more than {self.rate_per_second} requests a second (burst {self.rate_burst}); "
            "retry after the seconds in Retry-After (retry_after_s on the WebSocket)",
            headers={
                "Retry-After": str(wait_s),
                "X-RateLimit-Limit": str(self.rate_per_second),
                "X-RateLimit-Remaining": "0",
            },
        )

    def product_id(self, symbol: str) -> str:
        spec = self.products.get(symbol)
        if spec is None:
            raise ApiError(
                404, "unknown_product", f"{symbol!r} is not listed; see GET /v1/products"
            )
        return spec.product_id

    def view(self, order_id: int) -> OrderView | None:
        return self.history.view(order_id)

    def view_of(self, record: OrderRecord) -> OrderView:
        """The latest view of a stored order (memory's, if newer)."""
        history = self.history
        found = history.live.get(record.order_id) or history.finished.get(record.order_id)
        return found if found is not None else ORDER_DECODER.decode(record.body)


# ------------------------------------------------------------------ errors


def _error_body(code: str, message: str, **extra: object) -> dict[str, object]:
    return {"code": code, "message": message, **extra}


@dataclass(frozen=True)
class Refusal:
    """What the API answers to an error: a status, a JSON body with a
    stable ``code``, and headers."""

    status: int
    body: dict[str, object]
    headers: dict[str, str] = field(default_factory=dict)


_HTTP_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def _process_status(uptime_s: float) -> dict[str, object]:
    """The node process's use of the machine, for the operator's status:
    the event loop's CPU against the uptime says how near its limit the
    node has run on average (None where the system cannot say)."""
    use = process_use()
    loop = use.thread_seconds("MainThread")
    resident = use.resident_bytes
    return {
        "uptime_s": round(uptime_s, 1),
        "cpu_seconds": round(use.cpu_seconds, 2),
        "loop_cpu_seconds": None if loop is None else round(loop, 2),
        "resident_mib": None if resident is None else round(resident / 2**20, 1),
    }


async def json_not_found(response: Response[Any]) -> Response[Any]:
    """The OpenAPI router's own page for a ``/schema/...`` path it does not
    serve (HTML) answered as every other unknown path is: a JSON refusal
    with its code, so a client meets one shape of 404 from the node."""
    if response.status_code == 404 and response.media_type == MediaType.HTML:
        body = _error_body("not_found", "no such path; the API is described at /schema")
        return Response(body, status_code=404, media_type=MediaType.JSON)
    return response


def refusal(error: Exception) -> Refusal:
    """The answer to ``error``, raised while answering a request: one
    mapping for the framework's routes and the order lane
    (:mod:`datn.api.lane`). Errors the API does not expect are logged
    and answered 503: nothing from outside gets a 5xx of another kind."""
    if isinstance(error, ApiError):
        body = _error_body(error.code, error.message, **error.fields)
        return Refusal(error.status_code, body, error.response_headers)
    if isinstance(error, ValidationException):
        return Refusal(400, _error_body("bad_request", str(error.detail), detail=error.extra))
    if isinstance(error, HTTPException):
        code = _HTTP_CODES.get(error.status_code, "bad_request")
        status = error.status_code if error.status_code < 500 else 400
        allowed = next((v for k, v in (error.headers or {}).items() if k.lower() == "allow"), None)
        headers = {"Allow": allowed} if allowed else {}
        return Refusal(status, _error_body(code, str(error.detail)), headers)
    if isinstance(error, NodeStoppedError):
        body = _error_body(
            "not_accepted",
            "the node could not make the request durable and accepted nothing of it; "
            "a retry with the same client order id is safe",
        )
        return Refusal(503, body, {"Retry-After": "1"})
    if isinstance(error, InputRefusedError):
        return Refusal(400, _error_body("bad_request", str(error.cause)))
    if isinstance(error, UnicodeDecodeError):
        # A body (or a query) whose text is not UTF-8: the JSON decoder's
        # own error is not one the framework turns into a 400.
        return Refusal(400, _error_body("bad_request", f"the request is not UTF-8 text: {error}"))
    if isinstance(error, RecursionError) and "deserializ" in str(error):
        return Refusal(400, _error_body("bad_request", "the body's JSON is nested too deeply"))
    if isinstance(error, StoreError):
        _throttled.log("store_error", logging.ERROR, "store error answering a request: %s", error)
        body = _error_body("not_accepted", "the node's store is unavailable; retry later")
        return Refusal(503, body, {"Retry-After": "1"})
    _throttled.log(
        type(error).__name__, logging.ERROR, "unexpected error answering a request", exc_info=error
    )
    body = _error_body("not_accepted", "the request could not be handled; nothing changed")
    return Refusal(503, body)


def _on_error(_request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    answer = refusal(error)
    return Response(answer.body, status_code=answer.status, headers=answer.headers)


# Every error type the API answers, each to the one mapping (refusal picks
# the answer by the error's type, most specific first).
_HANDLERS: dict[Any, Any] = {
    kind: _on_error
    for kind in (
        ApiError,
        ValidationException,
        NodeStoppedError,
        InputRefusedError,
        StoreError,
        HTTPException,
        Exception,
    )
}


# ------------------------------------------------------------------ traders


_INTEGER_PARAMETERS: Final = frozenset(
    {"limit", "before", "order_id", "depth", "since_ms", "until_ms"}
)
_INTEGER: Final = re.compile(r"-?[0-9]{1,20}")


async def strict_inputs(request: Request[Any, Any, Any]) -> None:
    """Refuse what the framework would read leniently and the OpenAPI
    document (and the WebSocket, and the order lane) does not allow: an
    integer parameter written as anything but digits (``0.0``, ``6e0``,
    ``1_0``), and a JSON body whose values are not of their declared types
    (``"quantity_lots": "1"`` or ``1.0``): the framework converts both."""
    values = list(request.query_params.multi_items())
    order_id = request.path_params.get("order_id")
    if isinstance(order_id, str):
        values.append(("order_id", order_id))
    for name, value in values:
        if name in _INTEGER_PARAMETERS and _INTEGER.fullmatch(value) is None:
            raise ApiError(400, "bad_request", f"{name} is an integer, in digits: not {value!r}")
    body = request.route_handler.parsed_data_field
    if body is not None:
        try:
            msgspec.json.decode(await request.body(), type=body.annotation)
        except msgspec.DecodeError as error:  # ValidationError is one too
            raise ApiError(400, "bad_request", f"the body is not valid: {error}") from None
        # Text that is not UTF-8 and JSON nested too deeply raise errors of
        # their own, which ``refusal`` answers 400 as it does for every route.


def request_target(scope: Any) -> str:
    """The path and query exactly as the request line carried them
    (percent-encoding and all): what a trader signs."""
    raw = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    target = raw + (b"?" + query if query else b"")
    return str(target.decode("latin-1"))


def authenticate(
    node: Node, headers: dict[str, str], method: str, target: str, body: bytes
) -> Caller:
    """The trader who signed the request (``headers``: names in lower
    case), with one of their request tokens spent; or an ApiError: 401 for
    a request that cannot be attributed, 429 over the trader's rate."""
    try:
        caller = node.verifier.verify(headers, method, target, body)
    except AuthError as error:
        node.counters.auth_refused[error.code] += 1
        raise ApiError(401, error.code, error.message) from None
    node.admit(caller.trader_id)
    return caller


async def _caller(request: Request[Any, Any, Any], node: Node) -> Caller:
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    return authenticate(node, headers, request.method, request_target(request.scope), body)


class _KeyTwiceError(Exception):
    pass


def _no_key_twice(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = {key for key, _ in pairs}
    if len(keys) != len(pairs):
        raise _KeyTwiceError
    return dict(pairs)


def _keys_once(body: bytes) -> bool:
    """Whether no JSON object in ``body`` gives a key twice (which the
    order's decoder reads as its last value, and another reader may read as
    its first). Asked of orders kept as evidence only."""
    try:
        json.loads(body, object_pairs_hook=_no_key_twice)
    except _KeyTwiceError:
        return False
    except (ValueError, RecursionError):
        return True  # not JSON: the decoder has refused it already
    return True


_SIDES: Final = {side.value: side for side in Side}
_TIMES_IN_FORCE: Final = {tif.value: tif for tif in TimeInForce}
"""The enums by the values PlaceOrder allows (a dict lookup: calling an
enum with its value costs half a microsecond an order)."""


async def place(
    node: Node, trader_id: str, data: PlaceOrder, signed: SignedRequest | None = None
) -> tuple[bool, OrderView]:
    """Place ``data`` for ``trader_id``: (new, the order's view), or an
    ApiError; a retry with the same client order id gives (False, the
    original). ``signed``: the request as the trader signed it, kept as
    evidence in the same transaction as the order."""
    if signed is not None and not _keys_once(signed.body):
        raise ApiError(
            400,
            "bad_request",
            "a key is given twice in the order: a signed order is kept as evidence,"
            " and must read one way to every reader",
        )
    if data.type == "limit" and data.price_ticks is None:
        raise ApiError(400, "price_required", "a limit order needs price_ticks")
    if data.type == "market" and data.price_ticks is not None:
        raise ApiError(400, "price_not_allowed", "a market order has no price_ticks")
    time_in_force = data.time_in_force or ("ioc" if data.type == "market" else "gtc")
    gtd = time_in_force == "gtd"
    if gtd != (data.expire_at_ms is not None):
        raise ApiError(
            400,
            "expiry_required" if gtd else "expiry_not_allowed",
            "a good-till-date order (gtd) needs expire_at_ms; no other has one",
        )
    if data.expire_at_ms is not None and data.type == "market":
        raise ApiError(400, "expiry_not_allowed", "a market order does not rest: no gtd")
    request = OrderRequest(
        trader_id,
        data.client_order_id,
        node.product_id(data.product),
        _SIDES[data.side],
        data.quantity_lots,
        data.price_ticks,
        TimeInForce.GTC if gtd else _TIMES_IN_FORCE[time_in_force],
    )
    # A retry sent while the first request is in flight (not yet durable,
    # so not in the store) waits for the first's answer, and is then
    # answered from the store like any retry: as the original, or refused
    # if its terms differ (a good-till-date's expiry included, which the
    # core does not keep).
    key = (trader_id, data.client_order_id)
    while (first := node.placing.get(key)) is not None:
        await asyncio.shield(first)
    # The core remembers a client order id for client_order_memory_ms; the
    # store remembers it for good. A retry the core has forgotten is answered
    # from the store, never placed again. An id the node has never seen
    # (most orders) costs no store read: see datn.runtime.seen.
    existing = None
    if node.history.client_ids.may_hold(trader_id, data.client_order_id):
        existing = node.runtime.store.order_by_client_id(trader_id, data.client_order_id)
    if existing is not None:
        stored = ORDER_DECODER.decode(existing.body)
        if not _same_terms(stored, request, time_in_force, data.expire_at_ms):
            raise ApiError(
                422,
                "client_order_id_reused",
                f"client order id {data.client_order_id!r} was used for other terms",
                order_id=stored.order_id,
            )
        if stored.status == "rejected":
            raise ApiError(422, stored.reason, stored.message, order_id=stored.order_id)
        return False, node.view(stored.order_id) or stored
    evidence = None
    if signed is not None:
        evidence = EvidenceRecord(
            f"trader:{trader_id}", int(signed.timestamp), "order", encode_signed(signed)
        )
    if data.expire_at_ms is not None:
        now_ms = int(time.time() * 1_000)
        if not now_ms < data.expire_at_ms <= now_ms + MAX_EXPIRY_MS:
            raise ApiError(
                400,
                "bad_expiry",
                "expire_at_ms must be in the future and at most a year ahead",
            )
        node.history.expiries[(trader_id, data.client_order_id)] = data.expire_at_ms
    placing = node.placing[key] = asyncio.get_running_loop().create_future()
    try:
        effects = await node.runtime.submit(PlaceInput(request), evidence)
    finally:
        # History.record takes it when the core sees the order; an input
        # refused before that must not leave it for a later order's id.
        node.history.expiries.pop((trader_id, data.client_order_id), None)
        del node.placing[key]
        placing.set_result(None)
    for effect in effects:
        if type(effect) is not Reply or effect.trader_id != trader_id:
            continue
        event = effect.event
        if type(event) is Accepted and event.client_order_id == data.client_order_id:
            view = node.view(event.order_id)
            if view is None:
                raise ApiError(404, "unknown_order", "the order is not known")
            if view.expire_at_ms is not None and view.open:
                node.expirer.schedule(view.expire_at_ms, trader_id, view.order_id)
            return True, view
        if type(event) is Rejected and event.client_order_id == data.client_order_id:
            raise ApiError(
                422,
                event.reason,
                event.message,
                order_id=rejected_order_id(trader_id, data.client_order_id),
            )
    raise ApiError(409, "no_answer", "the node gave no answer to the order")


def _same_terms(
    stored: OrderView, request: OrderRequest, time_in_force: str, expire_at_ms: int | None
) -> bool:
    return (
        stored.product_id,
        stored.side,
        stored.quantity_lots,
        stored.price_ticks,
        stored.time_in_force,
        stored.expire_at_ms,
    ) == (
        request.product_id,
        request.side.value,
        request.quantity_lots,
        request.price_ticks,
        time_in_force,
        expire_at_ms,
    )


def check_id(value: int | None, name: str) -> None:
    """Ids and page keys are 64-bit; anything else is refused at the edge."""
    if value is not None and not -(2**63) <= value < 2**63:
        raise ApiError(400, "bad_request", f"{name} is out of range")


async def cancel(node: Node, trader_id: str, order_id: int) -> CancelResult:
    if not node.runtime.core.has_open_order(trader_id, order_id) and not (
        # Answered once whatever closed it is durable.
        await node.runtime.read(lambda core: core.has_open_order(trader_id, order_id))
    ):
        # Nothing to journal: a cancel of no open order changes nothing.
        raise ApiError(404, "unknown_order", f"order {order_id} is not an open order of yours")
    effects = await node.runtime.submit(CancelInput(trader_id, order_id))
    for effect in effects:
        if type(effect) is Reply and type(effect.event) is CancelAnswer:
            answer = effect.event
            if answer.order_id != order_id:
                continue
            if answer.status == "unknown_order":
                break
            return CancelResult(order_id, answer.status, answer.cancelled_lots, answer.locked_lots)
    raise ApiError(404, "unknown_order", f"order {order_id} is not an open order of yours")


async def cancel_everything(
    node: Node, trader_id: str, product_id: str | None
) -> list[CancelResult]:
    effects = await node.runtime.submit(CancelAllInput(trader_id, product_id))
    return [
        CancelResult(e.event.order_id, e.event.status, e.event.cancelled_lots, e.event.locked_lots)
        for e in effects
        if type(e) is Reply and type(e.event) is CancelAnswer
    ]


# ------------------------------------------------------------------ links

# OpenAPI links: what a client can call next with a value from an answer.
# Where an order's id goes needs none (its name and schema say it); these
# say where the order's client order id and product lead, and that its
# holds show in the balances.
_LINKS: dict[str, dict[str, dict[str, Link]]] = {
    "V1OrdersPlaceOrder": {
        "201": {
            "GetOrderByClientOrderId": Link(
                operation_id="V1OrdersListOrders",
                parameters={"client_order_id": "$response.body#/client_order_id"},
            ),
            "GetBalances": Link(
                operation_id="V1BalancesBalances",
                description="The balances, with what the order holds while it is open.",
            ),
            "GetBook": Link(
                operation_id="V1BookSymbolNetworkBook",
                parameters={"symbol": "$request.body#/product"},
            ),
            "GetPrints": Link(
                operation_id="V1PrintsSymbolPrints",
                parameters={"symbol": "$request.body#/product"},
            ),
        }
    },
}


@dataclass
class _LinkedOperation(Operation):
    """An operation whose answers carry the links :data:`_LINKS` lists for it."""

    def __post_init__(self) -> None:
        for status, links in _LINKS.get(self.operation_id or "", {}).items():
            response = (self.responses or {}).get(status)
            if isinstance(response, OpenAPIResponse):
                response.links = {**(response.links or {}), **links}


@post(
    "/v1/orders",
    status_code=201,
    operation_class=_LinkedOperation,
    responses={
        200: ResponseSpec(
            OrderView,
            generate_examples=False,
            description="A retry: the order first placed with this client order id",
        ),
        **_errors(*_SIGNED, 404, 409, 422),
    },
)
async def place_order(
    data: JSONBody[PlaceOrder], caller: NamedDependency[Caller], node: NamedDependency[Node]
) -> Response[OrderView]:
    """Place an order. A retry with the same client order id returns the
    original order (200), never a second one."""
    new, view = await place(node, caller.trader_id, data, caller.signed)
    return Response(view, status_code=201 if new else 200)


# An order id in a path is taken as text and validated as an integer: the
# path's int converter would also take "1_0", " 7" or any Unicode digit.
@delete("/v1/orders/{order_id:str}", status_code=200, responses=_errors(*_SIGNED, 404))
async def cancel_order(
    order_id: FromPath[int], caller: NamedDependency[Caller], node: NamedDependency[Node]
) -> CancelResult:
    """Cancel one order: cancelled now, or pending (its locked lots are
    promised to a peer; their outcome follows when the lock ends)."""
    return await cancel(node, caller.trader_id, order_id)


@delete("/v1/orders", status_code=200, responses=_errors(*_SIGNED, 404))
async def cancel_all(
    request: Request[Any, Any, Any],
    caller: NamedDependency[Caller],
    node: NamedDependency[Node],
    product: FromQuery[str | None] = None,
) -> list[CancelResult]:
    """Cancel every open order of the caller (in one product, if given)."""
    # The framework also routes /v1/orders/ here (an order id left empty, or
    # an escaped slash): a client that built the one-order path from an empty
    # id must not cancel its whole book.
    if request.scope.get("raw_path", b"/v1/orders") != b"/v1/orders":
        raise ApiError(
            400,
            "bad_request",
            "no order id: DELETE /v1/orders/{order_id} cancels one order, "
            "DELETE /v1/orders every open one",
        )
    # A misspelt parameter, a product named twice or in a body the route
    # does not read must not widen the cancel to every product.
    unknown = sorted(set(request.query_params) - {"product"})
    if unknown:
        raise ApiError(
            400, "bad_request", f"unknown query parameter {unknown[0]!r}: the one taken is product"
        )
    if len(request.query_params.getall("product", [])) > 1:
        raise ApiError(400, "bad_request", "product is given more than once")
    if await request.body():
        raise ApiError(400, "bad_request", "DELETE /v1/orders takes no body: ?product=SYMBOL")
    product_id = None if product is None else node.product_id(product)
    return await cancel_everything(node, caller.trader_id, product_id)


@get(
    "/v1/orders/{order_id:str}",  # text, validated as an integer (see cancel_order)
    responses=_errors(*_SIGNED, 404),
)
async def get_order(
    order_id: FromPath[int], caller: NamedDependency[Caller], node: NamedDependency[Node]
) -> OrderView:
    check_id(order_id, "order_id")
    view = await node.runtime.read(lambda _core: node.view(order_id))
    if view is None or view.trader_id != caller.trader_id:
        raise ApiError(404, "unknown_order", f"order {order_id} is not an order of yours")
    return view


@get("/v1/orders", responses=_errors(*_SIGNED, 404))
async def list_orders(
    caller: NamedDependency[Caller],
    node: NamedDependency[Node],
    client_order_id: Annotated[
        str | None, QueryParameter(min_length=1, max_length=64, pattern=r"^[!-~]+$")
    ] = None,
    open_only: Annotated[bool, QueryParameter(name="open")] = False,
    product: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1_000)] = 100,
    before: FromQuery[int | None] = None,
) -> list[OrderView]:
    """The caller's orders, newest first; or the one with ``client_order_id``."""
    check_id(before, "before")
    await node.runtime.read(lambda _core: None)  # everything before this is durable
    store = node.runtime.store
    if client_order_id is not None:
        record = store.order_by_client_id(caller.trader_id, client_order_id)
        if record is None:
            raise ApiError(
                404, "unknown_order", f"no order with client order id {client_order_id!r}"
            )
        return [node.view_of(record)]
    product_id = None if product is None else node.product_id(product)
    records = store.orders(
        caller.trader_id, open_only=open_only, product_id=product_id, page=Page(limit, before)
    )
    return [node.view_of(r) for r in records]


@get("/v1/executions", responses=_errors(*_SIGNED))
async def list_executions(
    caller: NamedDependency[Caller],
    node: NamedDependency[Node],
    order_id: FromQuery[int | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1_000)] = 100,
    before: FromQuery[int | None] = None,
) -> list[ExecutionView]:
    """The caller's executions (of one order, if given), newest first; for
    the page after, ``before`` is the ``cursor`` of the last one listed."""
    check_id(before, "before")
    check_id(order_id, "order_id")
    await node.runtime.read(lambda _core: None)
    records = node.runtime.store.executions(
        caller.trader_id, order_id=order_id, page=Page(limit, before)
    )
    return [
        msgspec.structs.replace(EXECUTION_DECODER.decode(r.body), cursor=r.seq) for r in records
    ]


@get("/v1/balances", responses=_errors(*_SIGNED))
async def balances(caller: NamedDependency[Caller], node: NamedDependency[Node]) -> list[Balance]:
    def read(core: Any) -> list[Balance]:
        ledger = core.context.ledger
        return [
            Balance(key.asset, ledger.balance(key), ledger.available(key), ledger.held(key))
            for key in ledger.accounts_of(trader_owner(caller.trader_id))
        ]

    return await node.runtime.read(read)


class BookLevel(msgspec.Struct):
    price_ticks: int
    quantity_lots: int
    """Everything shown at this price: this node's own book and its peers'."""
    local_lots: int
    """Of it, resting at this node (locked lots included)."""
    network_lots: int
    """Of it, advertised by peers (what their adverts last said)."""


class Book(msgspec.Struct):
    product: str
    bids: list[BookLevel]
    asks: list[BookLevel]


class Print(msgspec.Struct):
    node: str
    price_ticks: int


class Prints(msgspec.Struct):
    product: str
    reference_price_ticks: int | None
    """The mark risk checks use: the median of the sources' last prices
    (once a quorum of them traded), else the opening reference."""
    last_by_node: list[Print]


def book_of(core: Any, symbol: str, product_id: str, depth: int) -> Book:
    """The network book of a product, read from ``core``: its resting orders
    and its peers' adverts, by price, best first."""
    sides: dict[Side, dict[int, list[int]]] = {Side.BUY: {}, Side.SELL: {}}
    book = core.resting.books.get(product_id)
    if book is not None:
        for side in (Side.BUY, Side.SELL):
            for level in book.depth(side, depth):
                sides[side].setdefault(level.price_ticks, [0, 0])[0] += level.quantity_lots
    for view in core.network.views.values():
        for side, books in ((Side.BUY, view.bids), (Side.SELL, view.asks)):
            adverts = books.get(product_id)
            if adverts is None:
                continue
            for advert in adverts.adverts.values():
                slot = sides[side].setdefault(advert.price_ticks, [0, 0])
                slot[1] += advert.quantity_lots

    def best(side: Side) -> list[BookLevel]:
        prices = sorted(sides[side], reverse=side is Side.BUY)[:depth]
        return [
            BookLevel(p, sum(sides[side][p]), sides[side][p][0], sides[side][p][1]) for p in prices
        ]

    return Book(symbol, best(Side.BUY), best(Side.SELL))


def prints_of(core: Any, symbol: str, product_id: str) -> Prints:
    """Each node's last trade price of a product, and the mark, from ``core``."""
    marks = core.context.marks
    last: list[Print] = []
    for listed, sources in marks.snapshot().sources:
        if listed == product_id:
            last = [Print(source, price) for source, price in sources]
    return Prints(symbol, marks.reference(product_id), last)


@get("/v1/book/{symbol:str}", responses=_errors(400, 404, 503))
async def network_book(
    symbol: FromPath[str],
    node: NamedDependency[Node],
    depth: Annotated[int, QueryParameter(ge=1, le=100)] = 10,
) -> Book:
    """The network book of a product: this node's resting orders and its
    peers' adverts, by price, best first."""
    product_id = node.product_id(symbol)
    return await node.runtime.read(lambda core: book_of(core, symbol, product_id, depth))


@get("/v1/prints/{symbol:str}", responses=_errors(400, 404, 503))
async def prints(symbol: FromPath[str], node: NamedDependency[Node]) -> Prints:
    """The latest trade price each node printed for a product, and the mark."""
    product_id = node.product_id(symbol)
    return await node.runtime.read(lambda core: prints_of(core, symbol, product_id))


@get("/v1/trades/{symbol:str}", responses=_errors(400, 404))
async def trades(
    symbol: FromPath[str],
    node: NamedDependency[Node],
    limit: Annotated[int, QueryParameter(ge=1, le=RECENT_TRADES)] = 100,
) -> list[Trade]:
    """A product's latest trades across the network, newest first: this
    node's own and those its peers printed, since the node started."""
    return node.trades.latest(node.product_id(symbol), limit)


@get("/v1/products")
async def products(node: NamedDependency[Node]) -> list[Product]:
    return [
        Product(
            s.symbol, s.product_id, s.kind.value, s.quote_currency, s.tick_size_minor, s.lot_size
        )
        for s in node.products.values()
    ]


def trader_app(node: Node, extra_handlers: Sequence[Any] = ()) -> Litestar:
    """The traders' API, with its OpenAPI document at /schema/openapi.json
    (and ``extra_handlers``: the WebSocket, :mod:`datn.api.stream`)."""

    async def provide_node() -> Node:
        return node

    # The caller depends on the node only so that Litestar resolves the two
    # one after the other: two independent dependencies are resolved in an
    # anyio task group, which cost a seventh of the loop's time under HTTP
    # order entry.
    async def provide_caller(
        request: Request[Any, Any, Any], node: NamedDependency[Node]
    ) -> Caller:
        return await _caller(request, node)

    async def count_response(message: Any, _scope: Any) -> None:
        if message.get("type") == "http.response.start":
            node.counters.responses[int(message.get("status", 0))] += 1

    return Litestar(
        route_handlers=[
            place_order,
            cancel_order,
            cancel_all,
            get_order,
            list_orders,
            list_executions,
            balances,
            products,
            network_book,
            prints,
            trades,
            *extra_handlers,
        ],
        dependencies={
            "node": Provide(provide_node),
            "caller": Provide(provide_caller),
        },
        exception_handlers=_HANDLERS,
        before_request=strict_inputs,
        after_request=json_not_found,
        before_send=[count_response],
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=OpenAPIConfig(title="datn node: traders' API", version="1"),
        logging_config=None,
        debug=False,
    )


# ------------------------------------------------------------------ operator


class NewTrader(msgspec.Struct, forbid_unknown_fields=True):
    trader_id: TraderId
    public_key: Annotated[str, msgspec.Meta(pattern="^[0-9a-fA-F]{64}$")] | None = None
    """The trader's Ed25519 public key, hex: the node keeps only it, and
    every signed order is evidence. Without it, an HMAC key is made."""


class TraderKey(msgspec.Struct):
    trader_id: str
    key_id: str
    kind: Literal["ed25519", "hmac"]
    secret: str | None = None
    """HMAC keys only, hex; shown once: the node keeps it to check
    signatures and never shows it again."""


class SignedOrder(msgspec.Struct):
    """An order request as its trader signed it (Ed25519)."""

    key_id: str
    public_key: str
    timestamp: str
    method: str
    target: str
    body: str
    signature: str
    valid: bool
    """Whether the signature is the public key's over the request."""


class Deposit(msgspec.Struct, forbid_unknown_fields=True):
    trader_id: TraderId
    asset: str
    amount: Amount
    reference: Reference | None = None
    """Makes a retry safe: the movement is made once (:mod:`datn.api.references`)."""


class Fund(msgspec.Struct, forbid_unknown_fields=True):
    asset: str
    amount: Amount
    reference: Reference | None = None


def admin_app(node: Node, token_digest: bytes) -> Litestar:
    """The operator's API: traders and their keys, deposits, funding, status."""
    started = time.monotonic()

    async def provide_node() -> Node:
        return node

    async def provide_admin(request: Request[Any, Any, Any]) -> bool:
        try:
            check_admin(token_digest, request.headers.get("authorization"))
        except AuthError as error:
            raise ApiError(401, error.code, error.message) from None
        return True

    async def admin_first(request: Request[Any, Any, Any]) -> None:
        """The operator's token before anything else of the request: a
        caller without it learns nothing of what a body must hold."""
        if "admin" in request.route_handler.parsed_fn_signature.parameters:
            await provide_admin(request)
        await strict_inputs(request)

    @post("/admin/traders", status_code=201)
    async def create_trader(
        data: JSONBody[NewTrader], admin: NamedDependency[bool], node: NamedDependency[Node]
    ) -> TraderKey:
        """A new key for a trader (a new trader id makes a new trader):
        Ed25519 with ``public_key``, else HMAC with a secret shown once."""
        now_ms = int(time.time() * 1_000)
        if data.public_key is not None:
            try:
                credential = ed25519_key(data.trader_id, bytes.fromhex(data.public_key), now_ms)
            except ValueError as error:
                raise ApiError(400, "bad_public_key", str(error)) from None
            # What a trader signs does not name its key: one public key for
            # two traders would make an order signed for one evidence of the
            # other's.
            holder = node.runtime.store.credential_with(credential.material)
            if holder is not None:
                raise ApiError(
                    409,
                    "public_key_in_use",
                    f"the public key is registered already, as key {holder.key_id}"
                    " (revoked keys included): each key is one trader's",
                )
            node.runtime.store.put_credential(credential)
            node.verifier.added(credential.key_id)
            return TraderKey(data.trader_id, credential.key_id, "ed25519")
        credential, secret = new_hmac_key(data.trader_id, now_ms)
        node.runtime.store.put_credential(credential)
        node.verifier.added(credential.key_id)
        return TraderKey(data.trader_id, credential.key_id, "hmac", secret.hex())

    @post("/admin/keys/{key_id:str}/revoke", status_code=200)
    async def revoke_key(
        key_id: FromPath[str], admin: NamedDependency[bool], node: NamedDependency[Node]
    ) -> dict[str, str]:
        if not valid_key_id(key_id) or not node.runtime.store.revoke_credential(key_id):
            raise ApiError(404, "unknown_key", f"no key {key_id}")
        node.verifier.revoked(key_id)
        return {"key_id": key_id, "status": "revoked"}

    @post("/admin/deposits", status_code=201)
    async def deposit(
        data: JSONBody[Deposit], admin: NamedDependency[bool], node: NamedDependency[Node]
    ) -> Response[dict[str, object]]:
        """Credit a trader with money that arrived for it: 404
        ``unknown_trader`` for a trader never given a key (money no one
        could reach), 404 ``unknown_asset`` for an asset the node does not
        keep, 422 ``beyond_maximum`` past the largest balance; nothing
        changes then. With a ``reference``, a retry is answered 200 as the
        first was, and credits nothing more."""
        terms: Terms = {"trader_id": data.trader_id, "asset": data.asset, "amount": data.amount}
        async with movement(node, data.reference, "deposit", terms) as step:
            if step.kept is None:
                if not node.runtime.store.has_trader(data.trader_id):
                    raise ApiError(
                        404,
                        "unknown_trader",
                        f"no trader {data.trader_id!r}: create it first (POST /admin/traders)",
                    )
                owner = trader_owner(data.trader_id)
                asset = _credit_checked(node, owner, data.asset, data.amount)
                event = DepositInput(data.trader_id, asset, data.amount)
                await submit_checked(node, event, _DEPOSIT_REFUSALS, step)
            return _moved(node, step, {"trader_id": data.trader_id})

    @post("/admin/withdrawals", status_code=201)
    async def withdraw(
        data: JSONBody[Deposit], admin: NamedDependency[bool], node: NamedDependency[Node]
    ) -> Response[dict[str, object]]:
        """Pay a trader out: at most what it has available (what its open
        orders hold stays); beyond that, 422 ``beyond_available``, and for
        a trader never given a key 404 ``unknown_trader``, as for a deposit;
        nothing changes then. With a ``reference``, a retry is answered 200
        as the first was, and pays nothing more."""
        terms: Terms = {"trader_id": data.trader_id, "asset": data.asset, "amount": data.amount}
        async with movement(node, data.reference, "withdrawal", terms) as step:
            if step.kept is None:
                if not node.runtime.store.has_trader(data.trader_id):
                    raise ApiError(404, "unknown_trader", f"no trader {data.trader_id!r}")
                asset = _known_asset(node, data.asset)
                context = node.runtime.core.context
                # Checked and submitted with no await between: nothing else applies.
                key = context.key(trader_owner(data.trader_id), asset)
                available = context.ledger.available(key)
                if available < data.amount:
                    raise ApiError(
                        422,
                        "beyond_available",
                        f"{data.trader_id} has {available} of {asset} available "
                        "(amounts held for open orders excluded)",
                        available=available,
                    )
                event = WithdrawInput(data.trader_id, asset, data.amount)
                await submit_checked(node, event, _WITHDRAW_REFUSALS, step)
            return _moved(node, step, {"trader_id": data.trader_id})

    @post("/admin/fund", status_code=201)
    async def fund(
        data: JSONBody[Fund], admin: NamedDependency[bool], node: NamedDependency[Node]
    ) -> Response[dict[str, object]]:
        """Add to the node's own capital. With a ``reference``, a retry is
        answered 200 as the first was, and adds nothing more."""
        terms: Terms = {"asset": data.asset, "amount": data.amount}
        async with movement(node, data.reference, "fund", terms) as step:
            if step.kept is None:
                asset = _credit_checked(node, CAPITAL_OWNER, data.asset, data.amount)
                await submit_checked(node, FundInput(asset, data.amount), _FUND_REFUSALS, step)
            return _moved(node, step, {})

    @get("/admin/status")
    async def status(
        admin: NamedDependency[bool], node: NamedDependency[Node]
    ) -> dict[str, object]:
        runtime = node.runtime
        core_status, logic = await runtime.read(
            lambda core: (core.status(), core.context.logic_version)
        )
        stats = runtime.stats
        return {
            "version": __version__,
            "core_logic_version": logic,
            **core_status,
            "journal_position": stats.position,
            "snapshot_position": stats.snapshot_position,
            "snapshot_in_flight": runtime.snapshot_in_flight,
            "last_snapshot_ms": round(stats.last_snapshot_ms, 1),
            "snapshot_failures": stats.snapshot_failures,
            "commits": stats.commits,
            "inline_commits": stats.inline_commits,
            "delayed_commits": stats.delayed_commits,
            "last_commit_ms": round(stats.last_commit_ms, 3),
            "commit_p99_ms": round(_p99(stats.commit_ms), 3),
            "inputs": stats.inputs,
            "intake_per_second": round(stats.intake_per_second(time.monotonic()), 1),
            "store_bytes": store_bytes(runtime.store),
            **_process_status(time.monotonic() - started),
        }

    @get("/admin/ledger")
    async def ledger(
        admin: NamedDependency[bool],
        node: NamedDependency[Node],
        owner_prefix: Annotated[str, QueryParameter(max_length=256)] = "",
    ) -> list[AccountRow]:
        """The node's trial balance: every account (or those whose owner
        starts with ``owner_prefix``: ``trader:``, ``peer:``, ``rail:``,
        ``bond-``, ``collateral:``, ``node:``) with its balance, what is
        available and what is held, by owner then asset; a product's
        account also names its symbol. Per asset, the balances sum to zero."""
        symbols = {spec.product_id: symbol for symbol, spec in node.products.items()}

        def rows(core: NodeCore) -> list[AccountRow]:
            ledger = core.context.ledger
            return [
                AccountRow(
                    key.owner,
                    key.asset,
                    symbols.get(key.asset, key.asset),
                    ledger.balance(key),
                    ledger.available(key),
                    ledger.held(key),
                )
                for key in sorted(ledger.accounts())
                if key.owner.startswith(owner_prefix)
            ]

        return await node.runtime.read(rows)

    @get("/admin/traders/{trader_id:str}/signed-orders")
    async def signed_orders(
        trader_id: Annotated[
            str, PathParameter(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
        ],
        admin: NamedDependency[bool],
        node: NamedDependency[Node],
        since_ms: Annotated[int, QueryParameter(ge=0, le=2**62)] = 0,
        until_ms: Annotated[int, QueryParameter(ge=0, le=2**62)] = 2**62,
    ) -> list[SignedOrder]:
        """The orders a trader placed with an Ed25519 key, exactly as signed
        (by the time it signed them): evidence that it placed them, which
        anyone with its public key can check."""
        await node.runtime.read(lambda _core: None)
        records = node.runtime.store.evidence(f"trader:{trader_id}", since_ms, until_ms)
        found = []
        for record in records:
            signed = decode_signed(record.frame)
            found.append(
                SignedOrder(
                    signed.key_id,
                    signed.public_key.hex(),
                    signed.timestamp,
                    signed.method,
                    signed.target,
                    signed.body.decode("utf-8", "replace"),
                    signed.signature.hex(),
                    signed.check(),
                )
            )
        return found

    @get("/metrics", media_type="text/plain; version=0.0.4")
    async def metrics(node: NamedDependency[Node]) -> str:
        links = node.links
        if links is None:
            return render(node.runtime, node.counters)
        return render(node.runtime, node.counters, links.counters, links.gauges())

    # Imported here: the peers' routes build on this module's Node and errors.
    from datn.api.peers import PEER_HANDLERS  # noqa: PLC0415

    return Litestar(
        route_handlers=[
            create_trader,
            revoke_key,
            deposit,
            withdraw,
            fund,
            status,
            ledger,
            signed_orders,
            metrics,
            *PEER_HANDLERS,
        ],
        dependencies={"node": Provide(provide_node), "admin": Provide(provide_admin)},
        exception_handlers=_HANDLERS,
        before_request=admin_first,
        after_request=json_not_found,
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=OpenAPIConfig(title="datn node: operator's API", version="1"),
        logging_config=None,
        debug=False,
    )


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)] if ordered else 0.0


def _credit_checked(node: Node, owner: str, name: str, amount: int) -> str:
    """The asset ``name`` names, if ``owner`` can be credited ``amount`` of
    it; else the ApiError that refuses the credit before anything is kept."""
    asset = _known_asset(node, name)
    context = node.runtime.core.context
    balance = context.ledger.balance(context.key(owner, asset))
    if balance + amount > MAX_AMOUNT_MINOR:
        raise ApiError(
            422,
            "beyond_maximum",
            f"{owner} holds {balance} of {asset}: {amount} more would pass the largest "
            f"balance a ledger keeps ({MAX_AMOUNT_MINOR})",
        )
    # What comes in is debited to the account of money from outside, which
    # the ledger bounds too: checked here, the core never has to refuse it.
    outside = context.ledger.balance(context.key(EXTERNAL_OWNER, asset))
    if outside - amount < MIN_BALANCE:
        raise ApiError(
            422,
            "beyond_maximum",
            f"{outside} of {asset} came in from outside already: {amount} more would pass "
            f"the largest total a ledger keeps ({-MIN_BALANCE})",
        )
    return asset


Refusals = Mapping[str, tuple[int, str]]
"""A core counter that counts a refusal -> the status and code to answer."""


async def submit_checked(
    node: Node,
    event: Input,
    refusals: Refusals,
    step: Movement | None = None,
    facts: Callable[[list[Effect]], Terms] = lambda _effects: {},
) -> list[Effect]:
    """Submit ``event``, checked already; if the core refused it after all
    (its counter moved), answer with that refusal. Only operator inputs move
    these counters, and the API checks them all before submitting, so a
    counter that moved is this input's. With ``step``, a movement the core
    made is kept under the step's reference, with its ``facts``, in the
    same transaction."""
    before = {name: node.runtime.core.stats.get(name, 0) for name in refusals}

    def refused() -> str | None:
        stats = node.runtime.core.stats
        return next((name for name in refusals if stats.get(name, 0) > before[name]), None)

    def made(effects: list[Effect]) -> Terms | None:
        return None if refused() is not None else facts(effects)

    keep = None if step is None else step.keeper(made)
    effects = await node.runtime.submit(event, keep=keep)
    name = refused()
    if name is not None:
        status, code = refusals[name]
        raise ApiError(status, code, f"the node refused the request ({name})")
    return effects


def _moved(node: Node, step: Movement, answer: dict[str, object]) -> Response[dict[str, object]]:
    """A movement's answer: its terms (the asset with its symbol) and its
    reference; 201 when made now, 200 for a retry of one made before."""
    asset = _asset(node, str(step.terms["asset"]))
    answer = {
        **answer,
        "asset": asset,
        "symbol": _symbol(node, asset),
        "amount": step.terms["amount"],
    }
    if step.reference is not None:
        answer["reference"] = step.reference
    return Response(answer, status_code=201 if step.kept is None else 200)


def _known_asset(node: Node, name: str) -> str:
    """The asset ``name`` names (:func:`_asset`), or 404 ``unknown_asset``."""
    asset = _asset(node, name)
    if asset not in node.runtime.core.context.asset_codes:
        raise ApiError(404, "unknown_asset", f"{name!r} is not an asset of this node")
    return asset


_REFUSED: Final = (422, "refused")
_DEPOSIT_REFUSALS: Final[Refusals] = dict.fromkeys(
    ("deposits_invalid", "deposit_invalid", "deposit_refused"), _REFUSED
)
_WITHDRAW_REFUSALS: Final[Refusals] = dict.fromkeys(
    ("withdrawals_invalid", "withdrawals_beyond_available", "withdrawals_refused"), _REFUSED
)
_FUND_REFUSALS: Final[Refusals] = dict.fromkeys(("fund_invalid", "fund_refused"), _REFUSED)


def _asset(node: Node, name: str) -> str:
    """A currency code as given, or a product's id for its symbol."""
    spec = node.products.get(name)
    return spec.product_id if spec is not None else name


def _symbol(node: Node, asset: str) -> str:
    """What an operator calls ``asset``: a product's symbol, a currency's code."""
    return next((s.symbol for s in node.products.values() if s.product_id == asset), asset)
