"""The order lane answers a place exactly as the framework's route does.

Two nodes start alike (same genesis, same clock that stands still, the same
traders' keys): one serves the traders' app as it is, the other behind the
order lane. The same requests, byte for byte, go to both, one after the
other: new orders and retries, orders the node rejects, refusals of the
order's own terms, bodies the lane leaves to the app (malformed, of the
wrong types, unknown fields, too large), unsigned, badly signed, stale and
replayed requests, a trader over the rate limit, a node that has stopped.
Every answer must match: status, JSON body and the headers a client reads;
and the lane must have answered every request whose body is an order
itself, so the comparison is between the two paths, not the app twice.
Afterwards the traders' balances and orders read the same on both nodes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from nacl.signing import SigningKey

from datn.api.app import MAX_BODY_BYTES, Node, trader_app
from datn.api.auth import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Verifier,
    sign,
    sign_ed25519,
)
from datn.api.lane import MAX_PARTS, OrderLane, _read, _replay
from datn.domain import USD, ProductKind, ProductSpec
from datn.protocol.clock import Now
from datn.protocol.effects import DepositInput, Genesis
from datn.protocol.messages import NodeId
from datn.protocol.node import NodeConfig
from datn.risk import RiskConfig
from datn.runtime import NodeRuntime
from datn.runtime.history import history_of
from datn.store import MemoryStore
from datn.store.base import Credential

XYZ = ProductSpec("XYZ", ProductKind.SHARE, USD.code)
GENESIS = Genesis(
    NodeId("a" * 64),
    NodeConfig(RiskConfig(listed_products=frozenset({XYZ.product_id}))),
    (XYZ,),
    (),
    b"order lane test secret",
    ((XYZ.product_id, 5_000),),
)
BURST = 60
"""Each trader's request budget: the hasty trader spends it all."""
READ_HEADERS = ("content-type", "content-length", "retry-after", "x-ratelimit-limit", "allow")


@dataclass
class StillClock:
    def now(self) -> Now:
        return Now(1_000_000, 1_800_000_000_000)


@dataclass
class Signer:
    """A trader's key, the same at both nodes."""

    trader_id: str
    key_id: str
    ed25519: SigningKey | None = None
    secret: bytes = b""

    def credential(self) -> Credential:
        if self.ed25519 is not None:
            public = self.ed25519.verify_key.encode()
            return Credential(self.key_id, self.trader_id, "ed25519", public, 0)
        return Credential(self.key_id, self.trader_id, "hmac", self.secret, 0)

    def headers(
        self, body: bytes, target: str = "/v1/orders", method: str = "POST", **change: str
    ) -> dict[str, str]:
        stamp = change.pop("stamp", str(int(time.time() * 1_000)))
        if self.ed25519 is not None:
            signature = sign_ed25519(self.ed25519, stamp, method, target, body)
        else:
            signature = sign(self.secret, stamp, method, target, body)
        headers = {
            "content-type": "application/json",
            KEY_HEADER: self.key_id,
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: signature,
        }
        headers.update(change)
        return headers


@dataclass
class Counted:
    """The app behind the lane, counting the places the lane left to it."""

    app: Any
    places: int = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            self.places += 1
        await self.app(scope, receive, send)


@dataclass
class Request:
    what: str
    target: str
    body: bytes
    headers: dict[str, str]
    lane: bool
    """Whether the lane answers it itself (its body is an order it reads)."""
    parts: int = 1
    """Sent in this many parts, without a content length, when more than one."""

    def content(self) -> bytes | AsyncIterator[bytes]:
        if self.parts == 1:
            return self.body
        size = -(-len(self.body) // self.parts)

        async def parts() -> AsyncIterator[bytes]:
            for start in range(0, len(self.body), size):
                yield self.body[start : start + size]

        return parts()


@dataclass
class Pair:
    runtimes: list[NodeRuntime]
    clients: list[httpx.AsyncClient]
    behind_lane: Counted
    answered: list[str] = field(default_factory=list)

    async def same(self, request: Request) -> dict[str, Any]:
        """Send ``request`` to both nodes; their answers must match."""
        before = self.behind_lane.places
        answers = [
            await client.post(request.target, content=request.content(), headers=request.headers)
            for client in self.clients
        ]
        plain, laned = (_seen(answer) for answer in answers)
        assert laned == plain, f"{request.what}: the lane answered\n{laned}\nthe app\n{plain}"
        passed_on = self.behind_lane.places - before
        assert passed_on == (0 if request.lane else 1), (
            f"{request.what}: the lane {'passed it on' if request.lane else 'answered it'}"
        )
        self.answered.append(f"{request.what}: {plain['status']}")
        return plain


def _seen(answer: httpx.Response) -> dict[str, Any]:
    return {
        "status": answer.status_code,
        "body": answer.json(),
        "headers": {name: answer.headers.get(name) for name in READ_HEADERS},
    }


async def _pair(signers: list[Signer]) -> Pair:
    runtimes, clients = [], []
    behind_lane: Counted | None = None
    for laned in (False, True):
        store = MemoryStore()
        history = history_of(store)
        runtime = await NodeRuntime.open(store, GENESIS, clock=StillClock(), history=history)
        for signer in signers:
            store.put_credential(signer.credential())
            await runtime.submit(DepositInput(signer.trader_id, USD.code, 10_000_000))
            await runtime.submit(DepositInput(signer.trader_id, XYZ.product_id, 1_000))
        node = Node(runtime, history, Verifier(store), rate_per_second=1, rate_burst=BURST)
        app: Any = trader_app(node)
        if laned:
            behind_lane = Counted(app)
            app = OrderLane(behind_lane, node)
        transport = httpx.ASGITransport(app=app)
        runtimes.append(runtime)
        clients.append(httpx.AsyncClient(transport=transport, base_url="http://node"))
    assert behind_lane is not None
    return Pair(runtimes, clients, behind_lane)


def order(client_order_id: str, side: str = "buy", lots: object = 2, **terms: Any) -> bytes:
    fields = {
        "client_order_id": client_order_id,
        "product": "XYZ",
        "side": side,
        "quantity_lots": lots,
        "price_ticks": 5_000,
        **terms,
    }
    return json.dumps({k: v for k, v in fields.items() if v is not None}).encode()


def test_the_order_lane_answers_every_place_as_the_framework_route_does() -> None:
    alice = Signer("alice", "key-alice", ed25519=SigningKey(b"a" * 32))
    bob = Signer("bob", "key-bob", ed25519=SigningKey(b"b" * 32))
    carol = Signer("carol", "key-carol", secret=b"carol's secret")
    hasty = Signer("hasty", "key-hasty", secret=b"hasty's secret")

    def signed(
        what: str, signer: Signer, body: bytes, lane: bool = True, target: str = "/v1/orders"
    ) -> Request:
        return Request(what, target, body, signer.headers(body, target), lane)

    async def test() -> None:
        pair = await _pair([alice, bob, carol, hasty])
        resting = order("s1", "sell", 10)
        first = signed("a sell that rests", alice, resting)
        in_a_year = int(time.time() * 1_000) + 86_400_000
        cases: list[Callable[[], Request]] = [
            lambda: first,
            lambda: signed("its retry, signed anew", alice, resting),
            lambda: signed("the same id, other terms", alice, order("s1", "sell", 9)),
            lambda: signed("a buy that fills", bob, order("b1", "buy", 4)),
            lambda: signed(
                "an IOC with nothing to fill it",
                bob,
                order("b2", price_ticks=10, time_in_force="ioc"),
            ),
            lambda: signed(
                "a FOK larger than the book", bob, order("b3", lots=500, time_in_force="fok")
            ),
            lambda: signed(
                "a market order",
                carol,
                order("m1", type="market", price_ticks=None, time_in_force="ioc"),
            ),
            lambda: signed(
                "a market order with a price",
                carol,
                order("m2", type="market", time_in_force="ioc"),
            ),
            lambda: signed("a limit order without a price", carol, order("p1", price_ticks=None)),
            lambda: signed("gtd without expiry", carol, order("g1", time_in_force="gtd")),
            lambda: signed(
                "gtd with expiry", carol, order("g2", time_in_force="gtd", expire_at_ms=in_a_year)
            ),
            lambda: signed(
                "gtd in the past", carol, order("g3", time_in_force="gtd", expire_at_ms=1_000)
            ),
            lambda: signed("expiry on a gtc", carol, order("g4", expire_at_ms=in_a_year)),
            lambda: signed("an unlisted product", carol, order("u1", product="NOPE")),
            lambda: signed("more than the cash covers", carol, order("r1", lots=10**6)),
            lambda: signed("that rejection retried", carol, order("r1", lots=10**6)),
            lambda: signed("with a query string", carol, order("q1"), target="/v1/orders?x=1"),
            lambda: signed("malformed JSON", carol, b'{"client_order_id": ', lane=False),
            lambda: signed("an unknown field", carol, order("f1", colour="red"), lane=False),
            lambda: signed("lots as text", carol, order("f2", lots="3"), lane=False),
            lambda: signed("lots as a float", carol, order("f3", lots=3.0), lane=False),
            lambda: signed("a bad side", carol, order("f4", side="hold"), lane=False),
            lambda: signed("zero lots", carol, order("f5", lots=0), lane=False),
            lambda: signed("an empty body", carol, b"", lane=False),
            lambda: signed(
                "text that is not UTF-8",
                carol,
                order("x1", product="X").replace(b"X", b"X\xff"),
                lane=False,
            ),
            lambda: signed(
                "JSON nested too deep", carol, b"[" * 30_000 + b"]" * 30_000, lane=False
            ),
            lambda: signed("a JSON list", carol, b"[]", lane=False),
            lambda: signed("too large", carol, order("big", note="x" * MAX_BODY_BYTES), lane=False),
            lambda: Request(
                "an order sent in parts",
                "/v1/orders",
                order("c1"),
                carol.headers(order("c1")),
                lane=True,
                parts=3,
            ),
            lambda: Request(
                "too large, in parts without a length",
                "/v1/orders",
                order("c2", note="x" * MAX_BODY_BYTES),
                carol.headers(order("c2", note="x" * MAX_BODY_BYTES)),
                lane=False,
                parts=40,
            ),
            lambda: signed(
                "a key repeated", carol, order("d1").replace(b'"buy"', b'"buy", "side": "sell"')
            ),
            lambda: Request("unsigned", "/v1/orders", order("n1"), {}, True),
            lambda: Request(
                "signed over another body",
                "/v1/orders",
                order("n2"),
                carol.headers(order("n3")),
                True,
            ),
            lambda: Request(
                "a stale timestamp",
                "/v1/orders",
                order("n4"),
                carol.headers(order("n4"), stamp=str(int(time.time() * 1_000) - 600_000)),
                True,
            ),
            lambda: Request(
                "an unknown key",
                "/v1/orders",
                order("n5"),
                carol.headers(order("n5"), **{KEY_HEADER: "key-nobody"}),
                True,
            ),
            lambda: Request(
                "as text/plain",
                "/v1/orders",
                order("t1"),
                carol.headers(order("t1"), **{"content-type": "text/plain"}),
                True,
            ),
            lambda: Request(
                "a trailing slash",
                "/v1/orders/",
                order("t2"),
                carol.headers(order("t2"), "/v1/orders/"),
                False,
            ),
        ]
        for case in cases:
            answer = await pair.same(case())
            assert answer["status"] < 500, pair.answered[-1]
        # A request replayed as it was first sent: the headers are the first's.
        await pair.same(Request("a replay", first.target, first.body, first.headers, True))

        # The hasty trader spends the burst; the rest are refused with 429.
        for n in range(BURST + 2):
            await pair.same(
                signed(f"hasty {n}", hasty, order(f"h{n}", price_ticks=10, time_in_force="ioc"))
            )
        assert pair.answered[-1].endswith("429"), pair.answered[-3:]

        # Both nodes hold the same orders and balances.
        for signer in (alice, bob, carol):
            for target in ("/v1/balances", "/v1/orders", "/v1/executions"):
                reads = []
                for client in pair.clients:
                    headers = signer.headers(b"", target, "GET")
                    reads.append(await client.get(target, headers=headers))
                assert [r.status_code for r in reads] == [200, 200], reads[0].text
                assert reads[0].json() == reads[1].json(), f"{signer.trader_id}: {target}"

        # A node that stopped taking input accepts nothing, on either path.
        for runtime in pair.runtimes:
            await runtime.close()
        await pair.same(signed("after the node stopped", bob, order("late")))
        for client in pair.clients:
            await client.aclose()

    asyncio.run(asyncio.wait_for(test(), timeout=60))


def test_the_lane_reads_no_more_of_a_body_than_the_api_takes_and_hands_all_of_it_on() -> None:
    """A body sent in parts without a length: the lane stops reading once it
    is larger than the API takes, or comes in too many parts, and the app
    then receives every part, the ones the lane read first and then the
    rest, in order. A length it cannot read, or too large, it leaves unread."""
    part = b"x" * 4_000
    count = 2 * MAX_BODY_BYTES // len(part)
    sent = [
        {"type": "http.request", "body": part, "more_body": n < count - 1} for n in range(count)
    ]

    async def test() -> None:
        source = iter(sent)

        async def receive() -> dict[str, Any]:
            return next(source)

        scope = {"type": "http", "headers": []}
        read, body = await _read(scope, receive)
        assert body is None
        assert len(read) == MAX_BODY_BYTES // len(part) + 1 < count
        replayed = _replay(read, receive)
        assert [await replayed() for _ in range(count)] == sent

        # With a length over the limit, or one it cannot read, nothing is read.
        for length in (b"%d" % (MAX_BODY_BYTES + 1), b"0" * 5_000 + b"88", b"-1", b"1e3"):
            too_long = {"type": "http", "headers": [(b"content-length", length)]}
            assert await _read(too_long, receive) == ([], None)

        # However small the body, the lane holds at most MAX_PARTS of its parts.
        body = order("p1")
        pieces = [
            {"type": "http.request", "body": body[n : n + 1], "more_body": n < len(body) - 1}
            for n in range(len(body))
        ]
        source = iter(pieces)
        read, whole = await _read({"type": "http", "headers": []}, receive)
        assert whole is None and len(read) == MAX_PARTS + 1 < len(pieces)
        replayed = _replay(read, receive)
        assert [await replayed() for _ in pieces] == pieces

    asyncio.run(test())
