"""A WebSocket proxy that loses, delays, duplicates, reorders, stalls and
cuts what passes through it: a bad network between two real nodes.

A peer link is one WebSocket connection from the node that sends (the
dialler) to the node that receives (the target): frames go out, the
handshake's hello and welcome and the acknowledgements come back. Put the
proxy on a link by giving the dialler the proxy's :attr:`FaultProxy.address`
as the peer's address (``POST /admin/peers``); for each connection it takes
it dials the target and pumps every message both ways, each way on its own.

The proxy runs on an event loop in a thread of its own, so synchronous tests
can drive it: every setting can change at any time from any thread, and
:meth:`FaultProxy.close` stops the thread. Faults come in two forms:

* **Random faults** (:meth:`FaultProxy.set_faults`): per message, a drop, a
  duplicate, a reorder (held back and sent after the next message) or
  neither, from one ``random.Random(seed)``, and a delay drawn from a range
  that keeps the order of the messages it delays. They touch frames and
  acknowledgements only, unless ``handshake=True``.
* **Rules** (:meth:`FaultProxy.add_rule`): an action (drop, delay, duplicate,
  stall) for the first ``times`` messages a predicate picks, such as the
  first frame that carries a message of a given kind (:func:`carrying`).
  Rules go before random faults.

Besides, :meth:`FaultProxy.cut` aborts every current connection on both
sides (a network cut: no closing handshake), and :meth:`FaultProxy.stall`
stops all forwarding for a while; what arrives meanwhile waits, in order.

Everything the proxy did is counted (:meth:`FaultProxy.counts`), so a test
can show the fault it meant to inject happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from datn.protocol.messages import Message
from datn.wire import ProtocolError, open_frame

T = TypeVar("T")

MAX_MESSAGE_BYTES: Final = 2**20
REORDER_HOLD_S: Final = 0.05
"""A message held back to be sent after the next goes on its own after this
long if no next message comes."""
CALL_TIMEOUT_S: Final = 10.0

KINDS: Final = {0x48: "hello", 0x50: "proof", 0x57: "welcome", 0x41: "ack", 0x01: "frame"}
"""A message's kind by its first byte: the link's control messages, and frames."""
HANDSHAKE: Final = frozenset({"hello", "proof", "welcome"})

Direction = Literal["out", "back"]
"""``out``: from the dialler to the target (proof, frames); ``back``: from
the target to the dialler (hello, welcome, acknowledgements)."""
Action = Literal["drop", "delay", "duplicate", "stall"]


@dataclass(frozen=True)
class Packet:
    """One WebSocket message passing through the proxy."""

    direction: Direction
    kind: str
    """``frame``, ``ack``, ``hello``, ``proof``, ``welcome``, or ``other``."""
    data: bytes | str
    messages: tuple[Message, ...] = ()
    """A frame's messages, in order (its signature checked)."""

    def carries(self, kind: type) -> bool:
        return any(isinstance(message, kind) for message in self.messages)


def carrying(kind: type, where: Callable[[Any], bool] | None = None) -> Callable[[Packet], bool]:
    """A predicate: a frame that carries a message of ``kind`` (for which
    ``where`` holds, if given)."""

    def match(packet: Packet) -> bool:
        return any(
            isinstance(message, kind) and (where is None or where(message))
            for message in packet.messages
        )

    return match


def classify(direction: Direction, data: bytes | str) -> Packet:
    """What ``data`` is: a control message by its kind byte, or a frame
    with its messages."""
    if isinstance(data, str) or not data:
        return Packet(direction, "other", data)
    kind = KINDS.get(data[0], "other")
    if kind != "frame":
        return Packet(direction, kind, data)
    try:
        batch = open_frame(data)
    except ProtocolError:
        return Packet(direction, "other", data)
    return Packet(direction, kind, data, tuple(e.message for e in batch.envelopes))


@dataclass
class Rule:
    """``action`` for the first ``times`` messages ``match`` picks."""

    match: Callable[[Packet], bool]
    action: Action = "drop"
    ms: int = 0
    """How long a ``delay`` holds the message (others overtake it), or a
    ``stall`` stops forwarding (the message waits with the rest)."""
    times: int = 1
    name: str = ""
    fired: int = 0


@dataclass(frozen=True)
class Faults:
    """Random faults, each a probability per message (drop, duplicate and
    reorder exclude each other), and a delay range in milliseconds."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay_ms: tuple[int, int] = (0, 0)
    handshake: bool = False
    """Whether the handshake's messages may suffer them too."""


class _Pipe:
    """One way of one connection: messages read from ``source``, written to
    ``sink`` when due, earliest first."""

    def __init__(self, proxy: FaultProxy, direction: Direction, source: Any, sink: Any) -> None:
        self.proxy = proxy
        self.direction: Direction = direction
        self.source = source
        self.sink = sink
        self.queue: list[tuple[float, int, bytes | str]] = []
        self.order = itertools.count()
        self.last_due = 0.0
        """When the last message in order is due: a random delay keeps order."""
        self.wake = asyncio.Event()
        self.held: bytes | str | None = None
        self.held_timer: asyncio.TimerHandle | None = None

    def push(self, data: bytes | str, delay_s: float, *, in_order: bool = True) -> None:
        due = time.monotonic() + delay_s
        if in_order:
            due = self.last_due = max(due, self.last_due)
        heapq.heappush(self.queue, (due, next(self.order), data))
        self.wake.set()

    def hold(self, data: bytes | str) -> None:
        """Keep ``data`` back, to go after the next message."""
        self.held = data
        self.held_timer = asyncio.get_running_loop().call_later(REORDER_HOLD_S, self.release)

    def release(self) -> None:
        """Send what is held back (now, behind what was pushed before)."""
        if self.held_timer is not None:
            self.held_timer.cancel()
            self.held_timer = None
        if self.held is not None:
            data, self.held = self.held, None
            self.push(data, 0.0)

    async def read(self) -> None:
        async for data in self.source:
            self.proxy._take(self, data)

    async def write(self) -> None:
        while True:
            if not self.queue:
                self.wake.clear()
                await self.wake.wait()
                continue
            due = max(self.queue[0][0], self.proxy._stalled_until())
            wait = due - time.monotonic()
            if wait > 0:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), wait)
                continue
            _, _, data = heapq.heappop(self.queue)
            await self.sink.send(data)
            self.proxy._count(f"forwarded:{self.direction}")


class _Connection:
    """A dialler's connection to the proxy and the proxy's to the target."""

    def __init__(self, proxy: FaultProxy, inbound: ServerConnection, outbound: ClientConnection):
        self.inbound = inbound
        self.outbound = outbound
        self.pipes = (
            _Pipe(proxy, "out", inbound, outbound),
            _Pipe(proxy, "back", outbound, inbound),
        )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        readers = [loop.create_task(p.read()) for p in self.pipes]
        writers = [loop.create_task(p.write()) for p in self.pipes]
        tasks = readers + writers
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in self.pipes:
                if pipe.held_timer is not None:
                    pipe.held_timer.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(
                _close(self.inbound, self.outbound),
                _close(self.outbound, self.inbound),
                return_exceptions=True,
            )

    def abort(self) -> None:
        """Drop both TCP connections at once, without a closing handshake."""
        for connection in (self.inbound, self.outbound):
            connection.transport.abort()


async def _close(connection: Any, other: Any) -> None:
    """Close ``connection`` as ``other`` was closed (its code, if one a peer may send)."""
    code, reason = 1000, ""
    if other.close_code is not None and (
        other.close_code in (1000, 1001, 1011) or 3000 <= other.close_code <= 4999
    ):
        code, reason = other.close_code, other.close_reason or ""
    with contextlib.suppress(ConnectionClosed, OSError):
        await connection.close(code, reason)


class FaultProxy:
    """See the module docstring. Use it as a context manager, or call
    :meth:`start` and :meth:`close`."""

    def __init__(self, target: str, *, seed: int = 0, name: str = "proxy") -> None:
        self.target = target
        self.name = name
        self.port = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._faults = Faults()
        self._rules: list[Rule] = []
        self._counts: Counter[str] = Counter()
        self._stall_until = 0.0
        self._connections: set[_Connection] = set()
        self._server: Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"fault-{name}", daemon=True)

    # ------------------------------------------------------------ life

    @property
    def address(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        try:
            self.port = self._call(self._listen())
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Cut every connection, stop listening and stop the thread."""
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=CALL_TIMEOUT_S)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CALL_TIMEOUT_S)

    async def _listen(self) -> int:
        self._server = await serve(
            self._serve,
            "127.0.0.1",
            0,
            compression=None,
            max_size=MAX_MESSAGE_BYTES,
            ping_interval=None,
            close_timeout=1,
        )
        port: int = next(iter(self._server.sockets)).getsockname()[1]
        return port

    async def _shutdown(self) -> None:
        for connection in list(self._connections):
            connection.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        current = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _serve(self, inbound: ServerConnection) -> None:
        try:
            outbound = await connect(
                self.target,
                compression=None,
                max_size=MAX_MESSAGE_BYTES,
                ping_interval=None,
                open_timeout=5,
                close_timeout=1,
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError):
            self._count("dial_failures")
            with contextlib.suppress(ConnectionClosed, OSError):
                await inbound.close(1011, "target unreachable")
            return
        connection = _Connection(self, inbound, outbound)
        self._connections.add(connection)
        self._count("connections")
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)

    # ------------------------------------------------------------ settings

    def set_faults(
        self,
        *,
        drop: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        delay_ms: tuple[int, int] = (0, 0),
        handshake: bool = False,
    ) -> None:
        """Random faults from now on (all off by default: calling it with
        no argument turns them off)."""
        if drop + duplicate + reorder > 1 or min(drop, duplicate, reorder) < 0:
            raise ValueError("drop, duplicate and reorder are probabilities that sum to at most 1")
        if not 0 <= delay_ms[0] <= delay_ms[1]:
            raise ValueError(f"bad delay range {delay_ms}")
        with self._lock:
            self._faults = Faults(drop, duplicate, reorder, delay_ms, handshake)

    def add_rule(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def drop_first(
        self, kind: type, where: Callable[[Any], bool] | None = None, times: int = 1
    ) -> Rule:
        """Drop the first ``times`` frames that carry a message of ``kind``."""
        return self.add_rule(Rule(carrying(kind, where), "drop", times=times, name=kind.__name__))

    def clear(self) -> None:
        """No more random faults or rules (a stall under way runs out)."""
        with self._lock:
            self._faults = Faults()
            self._rules.clear()

    def cut(self) -> int:
        """Abort every current connection, both sides; how many there were."""

        async def cut() -> int:
            connections = list(self._connections)
            for connection in connections:
                connection.abort()
            return len(connections)

        count = self._call(cut())
        self._count("cuts")
        self._count("connections_cut", count)
        return count

    def stall(self, ms: int) -> None:
        """Forward nothing for ``ms``: what arrives meanwhile waits, in order."""
        with self._lock:
            self._stall_locked(ms)

    def _stall_locked(self, ms: int) -> None:
        # A writer checks the stall before each message it sends, so none
        # needs waking: one asleep wakes for its next message and waits on.
        self._stall_until = max(self._stall_until, time.monotonic() + ms / 1_000)
        self._counts["stalls"] += 1

    def _stalled_until(self) -> float:
        with self._lock:
            return self._stall_until

    # ------------------------------------------------------------ counts

    def counts(self) -> dict[str, int]:
        """What the proxy did so far: messages seen by kind and message
        carried, and every fault, by kind."""
        with self._lock:
            return dict(self._counts)

    def dropped(self, kind: type | None = None) -> int:
        """Frames dropped (those carrying a ``kind``, if given)."""
        key = "dropped" if kind is None else f"dropped:{kind.__name__}"
        return self.counts().get(key, 0)

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    # ------------------------------------------------------------ the pump

    def _take(self, pipe: _Pipe, data: bytes | str) -> None:
        """Decide what happens to a message that arrived on ``pipe``."""
        packet = classify(pipe.direction, data)
        with self._lock:
            counts = self._counts
            counts["messages"] += 1
            counts[f"seen:{packet.kind}"] += 1
            for name in {type(m).__name__ for m in packet.messages}:
                counts[f"carried:{name}"] += 1
            action, ms = self._decide_locked(packet)
            faults = self._faults
            delay_s = 0.0
            if action != "drop" and faults.delay_ms[1] and self._faulty(packet):
                delay_s = self._rng.uniform(*faults.delay_ms) / 1_000
                counts["delayed"] += 1
            if action == "drop":
                counts["dropped"] += 1
                counts[f"dropped:{packet.kind}"] += 1
                for name in {type(m).__name__ for m in packet.messages}:
                    counts[f"dropped:{name}"] += 1
            elif action == "duplicate":
                counts["duplicated"] += 1
            elif action == "reorder":
                counts["reordered"] += 1
            elif action == "stall":
                self._stall_locked(ms)
        if action == "drop":
            return
        if action == "delay":
            # Held aside: what comes after overtakes it.
            pipe.push(data, ms / 1_000, in_order=False)
            return
        if action == "reorder" and pipe.held is None:
            pipe.hold(data)
            return
        pipe.push(data, delay_s)
        if action == "duplicate":
            pipe.push(data, delay_s)
        pipe.release()

    def _faulty(self, packet: Packet) -> bool:
        """Whether random faults may touch ``packet``."""
        return packet.kind in ("frame", "ack") or (
            packet.kind in HANDSHAKE and self._faults.handshake
        )

    def _decide_locked(self, packet: Packet) -> tuple[str, int]:
        for rule in self._rules:
            if rule.fired < rule.times and rule.match(packet):
                rule.fired += 1
                self._counts[f"rule:{rule.name or rule.action}"] += 1
                return rule.action, rule.ms
        if not self._faulty(packet):
            return "pass", 0
        faults = self._faults
        draw = self._rng.random()
        if draw < faults.drop:
            return "drop", 0
        if draw < faults.drop + faults.duplicate:
            return "duplicate", 0
        if draw < faults.drop + faults.duplicate + faults.reorder:
            return "reorder", 0
        return "pass", 0
