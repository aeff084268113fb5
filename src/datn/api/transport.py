"""The node's HTTP and WebSocket connections: writes coalesced per turn of
the event loop, and places counted as connections are accepted.

A node answers in bursts: a group commit releases many callers' answers and
their order updates in the same turn of the loop. Written one by one, each
costs a ``send`` system call (an HTTP response two: its head, then its
body). :class:`CoalescingTransport` holds a connection's writes until the
end of the turn and sends them joined, in order, in one call.

Every connection holds a socket, and a process's sockets, its peer links'
and its store's files all come out of one limit on open files. Anyone who
can reach the traders' API can open connections, so a server's connections
are bounded (:class:`Places`) in all and per address (an IPv6 address's /64
counted as one): a connection beyond either is dropped as it is accepted,
before it is read, and counted, and what it would have taken is left to the
peer links, the store and the traders already connected.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, ClassVar, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from datn.net.addresses import address_group


class Places:
    """The connections one server holds: at most ``total`` in all and
    ``per_address`` from one address group (:func:`address_group`)."""

    def __init__(self, total: int, per_address: int) -> None:
        self.total = total
        self.per_address = per_address
        self.held: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        """Connections dropped as they were accepted: ``total`` (every
        place taken) and ``address`` (every place of their address's)."""

    def take(self, peername: Any) -> Place | None:
        """A place for a connection from ``peername`` (a socket's remote
        address: an address and port, a Unix socket's name, or None for one
        already gone), or None (counted) if there is none."""
        if isinstance(peername, tuple):
            group = address_group(str(peername[0]))
        else:
            group = str(peername) if peername else "?"
        if self.held[group] >= self.per_address:
            self.refused["address"] += 1
            return None
        if self.held.total() >= self.total:
            self.refused["total"] += 1
            return None
        self.held[group] += 1
        return Place(self, group)

    def _give_back(self, group: str) -> None:
        self.held[group] -= 1
        if self.held[group] <= 0:
            del self.held[group]


class Place:
    """A connection's place, given back once, when its socket is gone."""

    __slots__ = ("_places", "group")

    def __init__(self, places: Places, group: str) -> None:
        self._places: Places | None = places
        self.group = group

    def give_back(self) -> None:
        if self._places is not None:
            self._places._give_back(self.group)
            self._places = None


CLOSE_DRAIN_S = 10.0
"""How long a closed connection may take to send what it still holds
before it is dropped."""


class CoalescingTransport:
    """A transport whose writes in one turn of the event loop leave in one
    system call, at the end of that turn. Everything else is the wrapped
    transport's own (flow control included: the wrapped transport pauses
    its protocol when the joined write passes its high water); closing
    sends what is held first, aborting drops it."""

    __slots__ = ("_held", "_loop", "_transport", "place")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self.place: Place | None = None
        """The connection's place in its server's :class:`Places`: it
        passes from the HTTP protocol to a WebSocket's with the transport,
        and is given back by whichever has the connection when it is lost."""

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
            # A connection closed meanwhile (its client reset it) takes no
            # more writes: uvloop's transports log an error for each.
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()
        if self._transport.get_write_buffer_size():
            # The close waits for what is buffered to leave: a client that
            # never reads would hold the socket for good.
            self._loop.call_later(CLOSE_DRAIN_S, self._transport.abort)

    def abort(self) -> None:
        self._held.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def give_place_back(transport: Any) -> None:
    """Give back the place of the connection of ``transport`` (see
    :attr:`CoalescingTransport.place`), if it holds one."""
    if isinstance(transport, CoalescingTransport) and transport.place is not None:
        transport.place.give_back()


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
from its opening or from the first byte it sends after an answer; and how
long its client may leave an answer unread (the socket's send buffer full)."""


class CoalescingHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools) with coalesced writes: a
    response's head and body leave in one ``send``, and so do responses
    that complete in the same turn of the loop. Reading is paused and
    resumed on the socket itself, as before.

    A connection that sends no request, or a request a byte at a time, or
    a request's headers and not its body, is closed after
    :data:`REQUEST_TIMEOUT_S` (uvicorn sets no timer before a connection's
    first request nor for a body, and its keep-alive timer stops at any
    byte, even the blank line a parser skips between requests): otherwise
    idle sockets, which anyone can open, would hold the server's
    connections for good. So is one whose client leaves an answer unread
    for as long (it may send requests it never reads the answers of, and
    uvicorn waits for each answer to leave before the next).

    A connection for which :attr:`places` has no place is dropped as it is
    accepted: the server never sees it."""

    places: ClassVar[Places | None] = None
    _request_timer: asyncio.TimerHandle | None = None
    _write_timer: asyncio.TimerHandle | None = None
    _admitted = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        place = None
        if self.places is not None:
            place = self.places.take(transport.get_extra_info("peername"))
            if place is None:
                transport.abort()
                return
        self._admitted = True
        super().connection_made(transport)
        self.transport = coalescing(transport)
        cast(CoalescingTransport, self.transport).place = place
        self._await_request()

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return
        if self._request_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._await_request()  # bytes between requests: a request must follow in time
        super().data_received(data)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._admitted and self._write_timer is None:
            self._write_timer = self.loop.call_later(REQUEST_TIMEOUT_S, self._unread)

    def resume_writing(self) -> None:
        self._stop_write_timer()
        super().resume_writing()

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
        self._stop_write_timer()
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return
        self._stop_waiting()
        self._stop_write_timer()
        give_place_back(self.transport)
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

    def _stop_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _unread(self) -> None:
        # Dropped, not closed: a close would wait for the unread answers.
        self._write_timer = None
        self.transport.abort()


def placed(protocol: type[CoalescingHttpProtocol], places: Places) -> type[CoalescingHttpProtocol]:
    """``protocol`` for a server whose connections take ``places``."""
    return type(f"Placed{protocol.__name__}", (protocol,), {"places": places})
