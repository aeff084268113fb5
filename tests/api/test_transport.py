"""The node's own connection protocols on a real uvicorn server and real
clients over 127.0.0.1: writes made in one turn of the loop leave together
and in order (HTTP responses, pipelined or closing, and WebSocket messages);
an order-entry message goes out at once only while the client keeps up, and
otherwise the framework's send waits for it; a closed socket takes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
import uvicorn
from litestar import Litestar, WebSocket, get, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath
from uvicorn.protocols.utils import ClientDisconnected
from websockets.asyncio.client import connect

from datn.api import transport as transport_module
from datn.api.stream import SEND_NOW, OrderEntryProtocol, _Session
from datn.api.transport import CoalescingHttpProtocol, CoalescingTransport

BIG = b'"' + b"x" * 65_534 + b'"'


class _Recorder:
    def __init__(self, buffered: int = 0) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False
        self.buffered = buffered

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str) -> str:
        return f"extra {name}"


def test_writes_in_one_turn_leave_in_one_call_and_close_sends_them_first() -> None:
    async def run() -> None:
        inner = _Recorder()
        transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"a")
        transport.write(b"")
        transport.write(b"b")
        assert inner.writes == []
        await asyncio.sleep(0)
        assert inner.writes == [b"ab"]
        transport.write(b"c")
        transport.close()
        assert inner.writes == [b"ab", b"c"] and inner.closed
        await asyncio.sleep(0)  # the flush it had asked for finds nothing
        assert inner.writes == [b"ab", b"c"]
        transport.write(b"d")
        transport.abort()
        await asyncio.sleep(0)
        assert inner.writes == [b"ab", b"c"] and inner.aborted
        assert transport.get_extra_info("peername") == "extra peername"

    asyncio.run(run())


def test_a_closed_connection_takes_no_writes_and_one_left_unread_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transport_module, "CLOSE_DRAIN_S", 0.05)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        # Reset by its client with an answer held: the answer is dropped
        # (uvloop logs an error for each write to a closed transport).
        inner = _Recorder()
        transport = CoalescingTransport(inner, loop)  # type: ignore[arg-type]
        transport.write(b"answer")
        inner.aborted = True
        await asyncio.sleep(0)
        assert inner.writes == []
        # Closed with bytes its client never reads: dropped after a while.
        unread = _Recorder(buffered=65_536)
        CoalescingTransport(unread, loop).close()  # type: ignore[arg-type]
        assert unread.closed and not unread.aborted
        await asyncio.sleep(0.1)
        assert unread.aborted
        # Closed with nothing left to send: the close is the end of it.
        drained = _Recorder()
        CoalescingTransport(drained, loop).close()  # type: ignore[arg-type]
        await asyncio.sleep(0.1)
        assert drained.closed and not drained.aborted

    asyncio.run(run())


def _server_app(seen: dict[str, Any]) -> Litestar:
    @websocket("/ws")
    async def handler(socket: WebSocket[Any, Any, Any]) -> None:
        await socket.accept()
        send_now = socket.scope["extensions"][SEND_NOW]
        command = await socket.receive_data("text")
        if command == "burst":
            seen["burst"] = [send_now(json.dumps({"n": n}).encode()) for n in range(200)]
        elif command == "flood":
            sent = 0
            while sent < 1_000 and send_now(BIG):
                sent += 1
                if sent % 8 == 0:
                    await asyncio.sleep(0)  # let the held writes leave
            seen["flood_sent"] = sent
            try:
                await asyncio.wait_for(socket.send_data(BIG), 0.3)
                seen["framework_send"] = "sent"
            except TimeoutError:
                seen["framework_send"] = "waited"
            seen["flood_ready"].set()
        with contextlib.suppress(WebSocketDisconnect):
            await socket.receive_data("text")  # until the client closes
        seen["after_close"] = send_now(b"{}")
        try:
            await socket.send_data(b"{}")
            seen["framework_after_close"] = "sent"
        except WebSocketDisconnect:
            seen["framework_after_close"] = "refused"
        seen["done"].set()

    @get("/echo/{n:int}")
    async def echo(n: FromPath[int]) -> dict[str, int]:
        await asyncio.sleep(0.001 * (n % 3))  # answers ready in different turns
        return {"n": n}

    return Litestar(route_handlers=[handler, echo], logging_config=None)


async def _serve(seen: dict[str, Any]) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    config = uvicorn.Config(
        _server_app(seen),
        host="127.0.0.1",
        port=0,
        http=CoalescingHttpProtocol,
        ws=OrderEntryProtocol,
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, task, port


def test_messages_sent_in_one_turn_arrive_whole_and_in_order() -> None:
    async def run() -> None:
        seen: dict[str, Any] = {"done": asyncio.Event()}
        server, task, port = await _serve(seen)
        try:
            async with connect(f"ws://127.0.0.1:{port}/ws") as client:
                await client.send("burst")
                got = [json.loads(await client.recv())["n"] for _ in range(200)]
                assert got == list(range(200))
            await asyncio.wait_for(seen["done"].wait(), 5)
            assert seen["burst"] == [True] * 200
            assert seen["after_close"] is False
            assert seen["framework_after_close"] == "refused"
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 10)

    asyncio.run(run())


def test_a_client_that_does_not_read_is_not_sent_more_than_its_buffers_hold() -> None:
    async def run() -> None:
        seen: dict[str, Any] = {"done": asyncio.Event(), "flood_ready": asyncio.Event()}
        server, task, port = await _serve(seen)
        opened: list[asyncio.StreamWriter] = []
        try:
            # A bare client: it opens the socket, asks for the flood, and
            # never reads.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            opened.append(writer)
            writer.write(
                b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
            mask = b"\x01\x02\x03\x04"
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"flood"))
            writer.write(b"\x81\x85" + mask + payload)
            await asyncio.wait_for(seen["flood_ready"].wait(), 10)
            # Refused once the kernel's buffers and the transport's high
            # water are full: a few MB, not all it was offered.
            assert 0 < seen["flood_sent"] < 1_000
            assert seen["framework_send"] == "waited"
            writer.close()
            await asyncio.wait_for(seen["done"].wait(), 5)
            assert seen["after_close"] is False
            assert seen["framework_after_close"] == "refused"
        finally:
            for opened_writer in opened:
                opened_writer.transport.abort()
            server.should_exit = True
            await asyncio.wait_for(task, 10)

    asyncio.run(run())


def test_pipelined_http_responses_arrive_whole_and_in_order_and_close_sends_first() -> None:
    async def run() -> None:
        server, task, port = await _serve({})
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for n in range(20):
                last = n == 19
                writer.write(
                    f"GET /echo/{n} HTTP/1.1\r\nhost: 127.0.0.1\r\n".encode()
                    + (b"connection: close\r\n" if last else b"")
                    + b"\r\n"
                )
            bodies = []
            for _ in range(20):
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                assert head.startswith(b"HTTP/1.1 200")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                bodies.append(json.loads(await reader.readexactly(length))["n"])
            assert bodies == list(range(20))
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed after the last
            writer.close()
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 10)

    asyncio.run(run())


class _GoneSocket:
    """A socket the server has seen close before the session heard of it:
    the framework's send raises uvicorn's ClientDisconnected."""

    def __init__(self) -> None:
        self.scope: dict[str, Any] = {"extensions": {}}

    async def send_data(self, data: bytes) -> None:
        raise ClientDisconnected()


def test_a_socket_gone_under_the_session_ends_its_sends_as_a_disconnect() -> None:
    async def run() -> None:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        session = _Session(None, _GoneSocket(), "t", "k", queue, 0, None)  # type: ignore[arg-type]
        try:
            await session.send(b"{}")
            raise AssertionError("a send to a gone socket returned")
        except WebSocketDisconnect:
            pass
        queue.put_nowait(b'{"event": "accepted"}')
        # The event sender stops quietly instead of dying with an error.
        assert await asyncio.wait_for(session._send_events(), 5) is None

    asyncio.run(run())
