"""A trader's session that lets too many events wait is no longer fed, is
told to close, and is dropped if its client does not read on."""

from __future__ import annotations

import asyncio

from datn.api.stream import MAX_QUEUED_EVENTS, Queue, _offer


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
        # One more: the slow session's events are dropped and it is told to
        # close (None, next in its queue), its connection to be dropped if
        # its client does not read on; the other is fed as before.
        _offer(queues, b"one more")
        assert queues == {keeping_up} and dropped == ["slow"]
        assert slow.qsize() == 1 and slow.get_nowait() is None
        assert keeping_up.get_nowait() == b"one more"
        _offer(queues, b"and another")
        assert slow.empty() and dropped == ["slow"]

    asyncio.run(scenario())
