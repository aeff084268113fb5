"""A trader's session that lets too many events wait, and takes none for a
while, is no longer fed, is told to close, and is dropped if its client
does not read on."""

from __future__ import annotations

import asyncio
import contextlib
import json
from types import SimpleNamespace
from typing import Any, cast

from datn.api.stream import (
    MAX_IN_FLIGHT_BYTES,
    MAX_QUEUED_EVENTS,
    SLOW_READER_S,
    Queue,
    _offer,
    _Session,
)


def test_a_session_too_slow_for_its_events_is_closed_and_dropped() -> None:
    async def scenario() -> None:
        dropped: list[str] = []
        slow = Queue(lambda: dropped.append("slow"))
        keeping_up = Queue(lambda: dropped.append("keeping up"))
        queues = {slow, keeping_up}
        for n in range(MAX_QUEUED_EVENTS):
            _offer(queues, b"event %d" % n)
            keeping_up.get_nowait()
        assert not dropped and queues == {slow, keeping_up}
        # One more while its sender took an event a moment ago (a burst of
        # one request's events, a client reading on): it is fed.
        _offer(queues, b"burst")
        keeping_up.get_nowait()
        assert not dropped and slow.qsize() == MAX_QUEUED_EVENTS + 1
        slow.get_nowait()
        # Once it has taken nothing for SLOW_READER_S, one more: the slow
        # session's events are dropped and it is told to close (None, next
        # in its queue), its connection to be dropped if its client does not
        # read on; the other is fed as before.
        slow.taken_at -= SLOW_READER_S
        keeping_up.taken_at -= SLOW_READER_S  # idle, but keeping up
        _offer(queues, b"one more")
        assert queues == {keeping_up} and dropped == ["slow"]
        assert slow.qsize() == 1 and slow.get_nowait() is None
        assert keeping_up.get_nowait() == b"one more"
        _offer(queues, b"and another")
        assert slow.empty() and dropped == ["slow"]

    asyncio.run(scenario())


class _Unread:
    """A trader's socket whose client sends ``messages`` and reads nothing:
    every answer's send waits for good."""

    def __init__(self, messages: list[str]) -> None:
        self.scope: dict[str, object] = {}
        self.messages = messages
        self.taken = 0

    async def receive_data(self, mode: str) -> str:
        if self.taken == len(self.messages):
            await asyncio.Future()  # the client sends nothing more
        self.taken += 1
        return self.messages[self.taken - 1]

    async def send_data(self, data: bytes) -> None:
        await asyncio.Future()  # never read


def test_requests_a_client_never_reads_the_answers_of_hold_at_most_their_bytes() -> None:
    async def scenario() -> None:
        request = json.dumps({"op": "heartbeat", "id": 1}) + " " * 60_000
        socket = _Unread([request] * 200)
        node = SimpleNamespace(verifier=SimpleNamespace(active=lambda key_id: True))
        session = _Session(
            cast(Any, node), cast(Any, socket), "t", "k", Queue(), 0, cast(Any, None)
        )
        running = asyncio.create_task(session.run())
        for _ in range(50):
            await asyncio.sleep(0)
        # Reading waits once the requests in flight hold MAX_IN_FLIGHT_BYTES
        # (the one that passes it included): 18 of these, not 200.
        assert socket.taken == MAX_IN_FLIGHT_BYTES // len(request) + 1
        assert session._in_flight_bytes <= MAX_IN_FLIGHT_BYTES + len(request)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running

    asyncio.run(scenario())
