"""A store that cannot commit or cannot be read: what a trader is told.

The node answers 503 with the code ``not_accepted`` (and ``Retry-After``)
on the order lane and on the framework's route alike, accepts nothing more,
and after a restart a retry of the same client order id places the order
exactly once. A WebSocket session answers the same code for the same
failures and for an error the API does not expect, under the request's
id, rather than leaving the request unanswered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from typing import Any

import httpx
import pytest
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient
from nacl.signing import SigningKey
from test_lane import GENESIS, XYZ, Signer, StillClock, order

import datn.api.app as app_module
from datn.api.app import Node, trader_app
from datn.api.auth import Verifier, sign_ed25519
from datn.api.lane import OrderLane
from datn.api.stream import Sessions, _Session, stream_handler
from datn.domain import USD
from datn.protocol.effects import DepositInput
from datn.runtime import NodeRuntime
from datn.runtime.history import history_of
from datn.runtime.throttle import Throttled
from datn.store import Commit, MemoryStore, OrderRecord, StoreError
from datn.store.base import Credential

ALICE = Signer("alice", "key-alice", ed25519=SigningKey(b"a" * 32))


class FailingStore(MemoryStore):
    """A memory store whose disk can fill up and whose reads can fail."""

    def __init__(self) -> None:
        super().__init__()
        self.full = False
        self.unreadable = False
        self.corrupt_bodies = False

    def reopen(self) -> None:
        """What the next process finds: what was stored before the close."""
        self._closed = False

    def commit(self, commit: Commit) -> int:
        if self.full:
            raise StoreError("full", "the disk is full")
        return super().commit(commit)

    def credential(self, key_id: str) -> Credential | None:
        if self.unreadable:
            raise StoreError("unavailable", "the store cannot be read")
        return super().credential(key_id)

    def order_by_client_id(self, trader_id: str, client_order_id: str) -> OrderRecord | None:
        if self.unreadable:
            raise StoreError("unavailable", "the store cannot be read")
        found = super().order_by_client_id(trader_id, client_order_id)
        if found is not None and self.corrupt_bodies:
            return dataclasses.replace(found, body=b'{"order_id": "not a number"}')
        return found


async def _node(store: FailingStore, *, fund: bool) -> Node:
    history = history_of(store)
    runtime = await NodeRuntime.open(
        store, None if store.position() else GENESIS, clock=StillClock(), history=history
    )
    if fund:
        store.put_credential(ALICE.credential())
        await runtime.submit(DepositInput(ALICE.trader_id, USD.code, 10_000_000))
        await runtime.submit(DepositInput(ALICE.trader_id, XYZ.product_id, 1_000))
    return Node(runtime, history, Verifier(store), rate_per_second=1_000, rate_burst=1_000)


def _client(node: Node, laned: bool) -> httpx.AsyncClient:
    app: Any = trader_app(node)
    if laned:
        app = OrderLane(app, node)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node")


_STAMPS = [0]


def _stamp() -> str:
    """A time stamp later than the last: the same request signed twice in
    one millisecond is the same signature, refused as a replay."""
    _STAMPS.append(max(int(time.time() * 1_000), _STAMPS[-1] + 1))
    return str(_STAMPS[-1])


async def _place(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await client.post(
        "/v1/orders", content=body, headers=ALICE.headers(body, stamp=_stamp())
    )


def test_a_full_store_answers_not_accepted_and_a_retry_after_restart_places_once() -> None:
    async def test(laned: bool) -> None:
        store = FailingStore()
        node = await _node(store, fund=True)
        client = _client(node, laned)
        kept = await _place(client, order("kept", "sell", 3))
        assert kept.status_code == 201, kept.text

        store.full = True
        lost = order("lost", "sell", 4)
        for body in (lost, order("later", "sell", 5)):
            answer = await _place(client, body)
            assert answer.status_code == 503, answer.text
            assert answer.json()["code"] == "not_accepted"
            assert answer.headers["retry-after"] == "1"
        assert node.runtime.stopped.is_set()
        await client.aclose()
        await node.runtime.close()
        store.reopen()

        # The disk has room again and the node restarts from what it stored:
        # the retry of the refused order places it, once; the retry of the
        # acknowledged one is answered with the original.
        store.full = False
        node = await _node(store, fund=False)
        client = _client(node, laned)
        retried = await _place(client, lost)
        assert retried.status_code == 201, retried.text
        again = await _place(client, lost)
        assert again.status_code == 200 and again.json() == retried.json()
        original = await _place(client, order("kept", "sell", 3))
        assert original.status_code == 200
        assert original.json()["order_id"] == kept.json()["order_id"]
        headers = ALICE.headers(b"", "/v1/orders", "GET", stamp=_stamp())
        listed = await client.get("/v1/orders", headers=headers)
        ids = sorted(o["client_order_id"] for o in listed.json())
        assert ids == ["kept", "lost"], ids
        await client.aclose()
        await node.runtime.close()

    for laned in (False, True):
        asyncio.run(asyncio.wait_for(test(laned), timeout=30))


class _Socket:
    """What a session reads of its socket before it sends: the scope."""

    def __init__(self) -> None:
        self.scope: dict[str, Any] = {"extensions": {}}


def test_a_websocket_request_the_store_cannot_serve_is_answered_not_accepted() -> None:
    async def test() -> None:
        store = FailingStore()
        node = await _node(store, fund=True)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        session = _Session(node, _Socket(), ALICE.trader_id, ALICE.key_id, queue, 0, None)  # type: ignore[arg-type]

        def place(request_id: int, client_order_id: str) -> str:
            body = json.loads(order(client_order_id, "sell", 2))
            return json.dumps({"op": "place", "id": request_id, "order": body})

        placed = await session._answer(place(1, "w1"))
        assert placed["ok"] is True and placed["new"] is True, placed
        # A retry is looked up in the store; a store that cannot be read
        # gets the retry refused, with its id, and nothing placed.
        store.unreadable = True
        position = store.position()
        refused = await session._answer(place(2, "w1"))
        assert refused["id"] == 2 and refused["ok"] is False, refused
        assert refused["code"] == "not_accepted"
        assert store.position() == position
        store.unreadable = False
        # An error the API does not expect (a stored order that cannot be
        # read back) is refused the same way, not answered as the client's
        # own bad request.
        store.corrupt_bodies = True
        refused = await session._answer(place(5, "w1"))
        assert (refused["id"], refused["code"]) == (5, "not_accepted"), refused
        store.corrupt_bodies = False
        # A store that cannot commit: refused the same way, and the node stops.
        store.full = True
        refused = await session._answer(place(3, "w2"))
        assert (refused["id"], refused["code"]) == (3, "not_accepted"), refused
        assert node.runtime.stopped.is_set()
        refused = await session._answer(place(4, "w3"))
        assert (refused["id"], refused["code"]) == (4, "not_accepted"), refused
        await node.runtime.close()

    asyncio.run(asyncio.wait_for(test(), timeout=30))


def test_a_store_that_cannot_be_read_is_logged_once_a_second_not_once_a_request(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What earlier tests logged in this process does not count against this one.
    monkeypatch.setattr(app_module, "_throttled", Throttled(app_module.log))

    async def test() -> None:
        store = FailingStore()
        node = await _node(store, fund=True)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        session = _Session(node, _Socket(), ALICE.trader_id, ALICE.key_id, queue, 0, None)  # type: ignore[arg-type]
        body = json.loads(order("w1", "sell", 2))
        retry = json.dumps({"op": "place", "id": 1, "order": body})
        assert (await session._answer(retry))["ok"] is True
        caplog.clear()
        # A trader retrying as fast as it can against a store that cannot be
        # read, then against stored orders that cannot be read back: every
        # request is answered, and the log gets a line per kind and second
        # (saying how many were left out), not a line per request.
        started = time.monotonic()
        for failure in ("unreadable", "corrupt_bodies"):
            setattr(store, failure, True)
            for _ in range(300):
                refused = await session._answer(retry)
                assert refused["code"] == "not_accepted", refused
            setattr(store, failure, False)
        seconds = time.monotonic() - started
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert 2 <= len(errors) <= 2 * (2 + int(seconds)), [r.getMessage() for r in errors]
        await node.runtime.close()

    with caplog.at_level(logging.INFO):
        asyncio.run(asyncio.wait_for(test(), timeout=30))


def test_a_websocket_that_cannot_be_authenticated_is_told_why_and_closed() -> None:
    store = FailingStore()
    node = asyncio.run(_node(store, fund=True))
    app = trader_app(node, [stream_handler(node, Sessions())])

    def auth() -> str:
        stamp = _stamp()
        assert ALICE.ed25519 is not None
        signature = sign_ed25519(ALICE.ed25519, stamp, "GET", "/v1/ws", b"")
        return json.dumps(
            {"op": "auth", "key_id": ALICE.key_id, "timestamp": stamp, "signature": signature}
        )

    def refused(first: str) -> tuple[dict[str, Any], int]:
        with client.websocket_connect("/v1/ws") as socket:
            socket.send_text(first)
            answer = socket.receive_json(timeout=10)
            with pytest.raises(WebSocketDisconnect) as closed:
                socket.receive(timeout=10)
        return answer, closed.value.code

    with TestClient(app) as client:
        # A first message that is no auth message, from a caller not yet
        # known: refused as a bad request.
        answer, code = refused("[" * 5_000 + "]" * 5_000)
        assert (answer["ok"], answer["code"], code) == (False, "bad_request", 4401), answer
        # The key cannot be looked up: the caller is told to come back.
        store.unreadable = True
        answer, code = refused(auth())
        assert (answer["ok"], answer["code"], code) == (False, "not_accepted", 1013), answer
        store.unreadable = False
        with client.websocket_connect("/v1/ws") as socket:
            socket.send_text(auth())
            assert socket.receive_json(timeout=10) == {"ok": True, "trader_id": "alice"}
    asyncio.run(node.runtime.close())
