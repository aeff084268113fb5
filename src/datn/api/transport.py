"""Writes coalesced per turn of the event loop, for the node's HTTP and
WebSocket connections.

A node answers in bursts: a group commit releases many callers' answers and
their order updates in the same turn of the loop. Written one by one, each
costs a ``send`` system call (an HTTP response two: its head, then its
body). :class:`CoalescingTransport` holds a connection's writes until the
end of the turn and sends them joined, in order, in one call.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport whose writes in one turn of the event loop leave in one
    system call, at the end of that turn. Everything else is the wrapped
    transport's own (flow control included: the wrapped transport pauses
    its protocol when the joined write passes its high water); closing
    sends what is held first, aborting drops it."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)

    def flush(self) -> None:
        if self._held:
            data = b"".join(self._held)
            self._held.clear()
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def coalescing(transport: asyncio.BaseTransport) -> asyncio.Transport:
    """``transport`` with its writes coalesced (itself if they are already:
    a WebSocket is handed its HTTP connection's transport)."""
    if isinstance(transport, CoalescingTransport):
        return cast(asyncio.Transport, transport)
    return cast(
        asyncio.Transport,
        CoalescingTransport(cast(asyncio.Transport, transport), asyncio.get_running_loop()),
    )


REQUEST_TIMEOUT_S = 10.0
"""How long a connection has for a whole request (line, headers and body),
from its opening or from the request's first byte."""


class CoalescingHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools) with coalesced writes: a
    response's head and body leave in one ``send``, and so do responses
    that complete in the same turn of the loop. Reading is paused and
    resumed on the socket itself, as before.

    A connection that sends no request, or a request a byte at a time, or
    a request's headers and not its body, is closed after
    :data:`REQUEST_TIMEOUT_S` (uvicorn sets no timer before a connection's
    first request nor for a body, and its keep-alive timer stops at any
    byte): otherwise idle sockets, which anyone can open, would hold the
    server's connections for good."""

    _request_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = coalescing(transport)
        self._await_request()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._request_timer is None:
            self._await_request()

    def on_message_complete(self) -> None:
        self._stop_waiting()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        # The connection is the WebSocket's from now on, with its own limits.
        self._stop_waiting()
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _await_request(self) -> None:
        self._request_timer = self.loop.call_later(REQUEST_TIMEOUT_S, self._request_late)

    def _stop_waiting(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_late(self) -> None:
        self._request_timer = None
        if not self.transport.is_closing():
            self.transport.close()
