"""What a peer link spends on a peer is bounded by the node, not by the
peer: strangers at one address cannot take every handshake place, a
connection reads little before its handshake, an acknowledgement said again
or claiming the impossible makes nothing go out again, a burst of frames is
taken in a frame a turn of the loop, and an address no link can dial is a
counted failure, not a dead dialler. One node in process (its runtime and
links on 127.0.0.1), hostile peers dialling it or dialled by it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from datn.domain import USD, ProductKind, ProductSpec, Side
from datn.net import LinkSettings, PeerLinks, handshake
from datn.net.addresses import address_group
from datn.net.handshake import CHALLENGE_BYTES, MAX_CONTROL_BYTES, Window
from datn.net.links import (
    MAX_FRAMES_A_TURN,
    MAX_HANDSHAKES,
    MAX_HANDSHAKES_PER_ADDRESS,
    MAX_PEER_ADDRESSES,
)
from datn.protocol.clock import Hlc
from datn.protocol.effects import AddPeerInput, BondInput, FundInput, Genesis, Send
from datn.protocol.messages import BondRequest, Heartbeat, OrderBroadcast, Release
from datn.protocol.node import NodeConfig
from datn.risk import RiskConfig
from datn.runtime import NodeRuntime, Outlets
from datn.store import Commit
from datn.store.memory import MemoryStore
from datn.wire import Batch, Envelope, NodeKey, RemoteProtocolError, open_frame, seal
from datn.wire.limits import MAX_BATCH_ENVELOPES, MAX_INT64, REPLAY_WINDOW
from datn.wire.link import ReplayWindow

XYZ = ProductSpec("XYZ", ProductKind.SHARE, USD.code)
CONFIG = NodeConfig(RiskConfig(listed_products=frozenset({XYZ.product_id})), heartbeat_ms=3_600_000)
NODE = NodeKey(bytes([11]) * 32)
HOSTILE = NodeKey(bytes([12]) * 32)
HONEST = NodeKey(bytes([13]) * 32)


@dataclass
class Running:
    links: PeerLinks
    runtime: NodeRuntime
    address: str
    port: int


class Reopened(MemoryStore):
    """A memory store that a node can open again after it closed it, as a
    restarted node opens its file."""

    def close(self) -> None:
        super().close()
        self._closed = False


@contextlib.asynccontextmanager
async def node(
    settings: LinkSettings | None = None, store: MemoryStore | None = None
) -> AsyncIterator[Running]:
    settings = settings or LinkSettings()
    store = store or MemoryStore()
    new = not store.position()
    links = PeerLinks(NODE, store.links(settings.max_held_frames), settings=settings)
    genesis = Genesis(NODE.node_id, CONFIG, (XYZ,), (), b"links test", ((XYZ.product_id, 5_000),))
    runtime = await NodeRuntime.open(
        store, genesis if new else None, outlets=Outlets(seal=links.seal)
    )
    links.attach(runtime)
    if new:
        for peer in (HOSTILE, HONEST):
            await runtime.submit(AddPeerInput(peer.node_id))
    port = await links.start("127.0.0.1", 0)
    try:
        yield Running(links, runtime, f"ws://127.0.0.1:{port}", port)
    finally:
        await links.close()
        await runtime.close()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=60))


async def dial_as(address: str, key: NodeKey, **options: Any) -> ClientConnection:
    """A connection to the node on which ``key`` has proven itself."""
    ws = await connect(address, compression=None, max_size=None, ping_interval=None, **options)
    their = handshake.read_hello(await ws.recv(), NODE.node_id)
    challenge = os.urandom(CHALLENGE_BYTES)
    await ws.send(handshake.proof(key, their, challenge))
    handshake.read_welcome(await ws.recv(), key, NODE.node_id, challenge)
    return ws


def probes(key: NodeKey, seqs: range) -> bytes:
    """A frame of heartbeat probes, each of which the node answers."""
    now = int(time.time() * 1_000)
    envelopes = tuple(
        Envelope(key.node_id, NODE.node_id, seq, Hlc(now, n), Heartbeat(1, None, now, 0))
        for n, seq in enumerate(seqs)
    )
    return seal(key, Batch(key.node_id, NODE.node_id, envelopes))


async def until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def most_in_a_turn(n: Running, counter: str) -> AsyncIterator[list[int]]:
    """The most that ``counter`` grew by between two turns of the loop while
    the block ran (in a list, read after the block)."""
    largest = [0]

    async def watch() -> None:
        last = n.links.counters[counter]
        while True:
            await asyncio.sleep(0)
            now = n.links.counters[counter]
            largest[0], last = max(largest[0], now - last), now

    watcher = asyncio.create_task(watch())
    try:
        yield largest
    finally:
        watcher.cancel()


def test_strangers_at_one_address_cannot_keep_a_peer_from_its_handshake() -> None:
    async def scenario() -> None:
        async with node() as n:
            # 64 connections from 127.0.0.1 that read the hello and say nothing
            # (as many as there were places for every address at once); those
            # beyond the places are dropped before their upgrade is answered.
            squatters: list[ClientConnection] = []
            for _ in range(64):
                with contextlib.suppress(ConnectionClosed, InvalidHandshake, OSError):
                    ws = await connect(n.address, compression=None, ping_interval=None)
                    squatters.append(ws)
                    await ws.recv()
            assert n.links.counters["handshake:too_many"] >= 64 - MAX_HANDSHAKES_PER_ADDRESS
            # A peer dialling from another address opens its link.
            honest = await dial_as(n.address, HONEST, local_addr=("127.0.0.2", 0))
            await honest.close()
            for ws in squatters:
                await ws.close()

    run(scenario)


def test_connections_that_never_upgrade_take_places_from_the_moment_they_are_accepted() -> None:
    async def scenario() -> None:
        async with node() as n:
            # 64 bare TCP connections from 127.0.0.1 that never send their
            # HTTP upgrade: each would hold a socket for the handshake
            # timeout, uncounted, if places were taken only after it.
            squatters = [await asyncio.open_connection("127.0.0.1", n.port) for _ in range(64)]

            async def dropped(reader: asyncio.StreamReader) -> bool:
                try:
                    return await asyncio.wait_for(reader.read(1), 0.5) == b""
                except ConnectionError:
                    return True
                except TimeoutError:
                    return False

            outcomes = await asyncio.gather(*(dropped(reader) for reader, _ in squatters))
            assert outcomes.count(False) == MAX_HANDSHAKES_PER_ADDRESS
            assert n.links.counters["handshake:too_many"] == 64 - MAX_HANDSHAKES_PER_ADDRESS
            # A peer dialling from another address opens its link meanwhile.
            honest = await dial_as(n.address, HONEST, local_addr=("127.0.0.2", 0))
            await honest.close()
            # Once the squatters go, their places are free again.
            for _, writer in squatters:
                writer.close()
            await until(lambda: not n.links._handshaking)
            again = await dial_as(n.address, HONEST)
            await again.close()

    run(scenario)


def test_connections_that_are_no_websocket_are_counted_and_not_logged_one_by_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with node(LinkSettings(handshake_timeout_s=0.3)) as n:
            caplog.clear()
            garbage = (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", bytes(9_000), b"")

            async def stranger(payload: bytes, address: str) -> None:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", n.port, local_addr=(address, 0)
                )
                writer.write(payload)
                with contextlib.suppress(ConnectionError):
                    await asyncio.wait_for(reader.read(), 5)  # closed by the node
                writer.close()

            # Not HTTP, no upgrade, a request line too long, nothing at all
            # (till the timeout): four of each, from four addresses at once.
            await asyncio.gather(
                *(stranger(payload, f"127.0.0.{2 + i}") for i in range(4) for payload in garbage)
            )
            await until(lambda: n.links.counters["handshake:no_upgrade"] == 16)
            assert not n.links._handshaking
            # One line for the kind, not a line or more per connection.
            lines = [r for r in caplog.records if r.name.startswith("datn.net")]
            assert len(lines) == 1, [r.getMessage() for r in lines]

    with caplog.at_level(logging.INFO):
        run(scenario)


async def refused_and_silent(port: int) -> asyncio.StreamWriter:
    """A connection that upgrades, sends a text message where the proof
    goes (refused), and never answers the node's close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    mask = os.urandom(4)
    writer.write(bytes([0x81, 0x82]) + mask + bytes(b ^ mask[i] for i, b in enumerate(b"hi")))
    return writer


def test_a_refused_connection_holds_its_place_until_it_is_gone() -> None:
    async def scenario() -> None:
        async with node() as n:
            # Refused strangers from one address that never answer the
            # close: each holds a socket for the close timeout, and so a
            # place; beyond the address's places the next is dropped.
            writers = []
            for _ in range(MAX_HANDSHAKES_PER_ADDRESS):
                writers.append(await refused_and_silent(n.port))
            await until(lambda: n.links.counters["handshake:text_message"] == len(writers))
            assert n.links._handshaking["127.0.0.1"] == MAX_HANDSHAKES_PER_ADDRESS
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                writers.append(await refused_and_silent(n.port))
            assert n.links.counters["handshake:too_many"] == 1
            # Once their sockets are gone (the close timeout), so are their places.
            await until(lambda: not n.links._handshaking)
            for writer in writers:
                writer.close()

    run(scenario)


def test_strangers_holding_every_place_give_one_up_to_a_peer_at_another_address() -> None:
    async def scenario() -> None:
        async with node() as n:
            # 32 addresses, 8 bare connections each: every place is taken.
            squatters = [
                await asyncio.open_connection(
                    "127.0.0.1", n.port, local_addr=(f"127.0.1.{1 + i // 8}", 0)
                )
                for i in range(MAX_HANDSHAKES)
            ]
            await until(lambda: n.links._handshaking.total() == MAX_HANDSHAKES)
            # A peer at an address of its own still opens its link: the
            # oldest connection of an address holding the most gives way.
            honest = await dial_as(n.address, HONEST, local_addr=("127.0.0.2", 0))
            await honest.close()
            assert n.links.counters["handshake:evicted"] == 1
            assert n.links.counters["handshake:too_many"] == 0
            # One more from an address that holds its eight is dropped.
            extra = await asyncio.open_connection("127.0.0.1", n.port, local_addr=("127.0.1.5", 0))
            await until(lambda: n.links.counters["handshake:too_many"] == 1)
            for _, writer in [*squatters, extra]:
                writer.close()
            await until(lambda: not n.links._handshaking)

    run(scenario)


async def squat(port: int, addresses: Iterable[str]) -> list[asyncio.StreamWriter]:
    """A bare connection to the node from each of ``addresses`` (a stranger
    that says nothing)."""
    writers = []
    for address in addresses:
        _, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
        writers.append(writer)
    return writers


async def bare_from(port: int, address: str) -> socket.socket:
    """A connection to the node from ``address`` that has sent nothing yet
    (a peer's, before its upgrade)."""
    sock = socket.socket()
    sock.bind((address, 0))
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def go_away(n: Running, squatters: list[asyncio.StreamWriter]) -> None:
    """Close ``squatters``; their places are free again."""
    for writer in squatters:
        writer.close()
    await until(lambda: not n.links._handshaking)


def stranger_addresses(first: int, count: int) -> list[str]:
    """``count`` loopback addresses, one place each, from 127.0.<first>.1 on."""
    return [f"127.0.{first + i // 250}.{1 + i % 250}" for i in range(count)]


@contextlib.asynccontextmanager
async def honest_listening(host: str) -> AsyncIterator[int]:
    """The honest peer's own node, as far as a link to it goes: it welcomes
    a node that dials it, then reads; its port."""

    async def handler(connection: ServerConnection) -> None:
        challenge = os.urandom(CHALLENGE_BYTES)
        await connection.send(handshake.hello(HONEST, challenge))
        _, proof = handshake.read_proof(await connection.recv(decode=False), HONEST, challenge)
        await connection.send(handshake.welcome(HONEST, proof, Window()))
        async for _ in connection:
            pass

    async with serve(handler, host, 0, compression=None, ping_interval=None) as server:
        yield next(iter(server.sockets)).getsockname()[1]


@pytest.mark.parametrize(
    "known_by", ["its proof", "the address it is dialled at", "where it was reached"]
)
def test_strangers_at_many_addresses_cannot_keep_a_peer_at_its_address_out(
    known_by: str,
) -> None:
    async def scenario() -> None:
        async with node() as n, contextlib.AsyncExitStack() as stack:
            at = "127.0.0.3"
            if known_by == "its proof":
                # The peer linked from there once before.
                earlier = await dial_as(n.address, HONEST, local_addr=(at, 0))
                await earlier.close()
            elif known_by == "the address it is dialled at":
                # The operator gave it as where the peer listens (nothing
                # answers there: the dialler only retries).
                n.links.dial(HONEST.node_id, f"ws://{at}:9")
            else:
                # Dialled by a name; its address is known once the link is up.
                at = "127.0.0.1"
                port = await stack.enter_async_context(honest_listening(at))
                n.links.dial(HONEST.node_id, f"ws://localhost:{port}")
                await until(lambda: n.links.status(HONEST.node_id)["sending"] == "up")
            # Every place taken, one connection from each of 256 addresses.
            squatters = await squat(n.port, stranger_addresses(2, MAX_HANDSHAKES))
            await until(lambda: n.links._handshaking.total() == MAX_HANDSHAKES)
            # The peer dials again; before its upgrade, strangers at as many
            # new addresses again arrive, each taking the oldest place whose
            # address holds the most: every other place, not the peer's.
            sock = await bare_from(n.port, at)
            await until(lambda: n.links._handshaking[at] == 1)
            squatters += await squat(n.port, stranger_addresses(4, MAX_HANDSHAKES))
            await until(lambda: n.links.counters["handshake:evicted"] == 1 + MAX_HANDSHAKES)
            assert n.links._handshaking[at] == 1
            assert n.links.counters["handshake:too_many"] == 0
            # Its handshake then completes on that connection.
            honest = await dial_as(n.address, HONEST, sock=sock)
            await honest.close()
            # Strangers are still only dropped for strangers.
            squatters += await squat(n.port, stranger_addresses(6, 8))
            await until(lambda: n.links.counters["handshake:evicted"] == 8 + MAX_HANDSHAKES)
            await go_away(n, squatters)

    run(scenario)


def test_one_peer_s_addresses_cannot_keep_another_peer_out() -> None:
    async def scenario() -> None:
        async with node() as n:
            # The hostile peer is known at 32 addresses, the honest one at
            # one; the hostile one takes every place from its 32, 8 each.
            hostile_at = stranger_addresses(2, MAX_HANDSHAKES // MAX_HANDSHAKES_PER_ADDRESS)
            for address in hostile_at:
                n.links.dial(HOSTILE.node_id, f"ws://{address}:9")
            n.links.dial(HONEST.node_id, "ws://127.0.0.3:9")
            squatters = await squat(
                n.port, [a for a in hostile_at for _ in range(MAX_HANDSHAKES_PER_ADDRESS)]
            )
            await until(lambda: n.links._handshaking.total() == MAX_HANDSHAKES)
            # The honest peer takes the place of an address holding the most...
            sock = await bare_from(n.port, "127.0.0.3")
            await until(lambda: n.links.counters["handshake:evicted"] == 1)
            # ...and keeps it: the hostile peer's next connections each take
            # one of its own addresses' places, or are dropped.
            squatters += await squat(n.port, hostile_at[:4])
            await until(
                lambda: (
                    n.links.counters["handshake:evicted"] + n.links.counters["handshake:too_many"]
                    == 5
                )
            )
            assert n.links._handshaking["127.0.0.3"] == 1
            honest = await dial_as(n.address, HONEST, sock=sock)
            await honest.close()
            await go_away(n, squatters)

    run(scenario)


def test_the_addresses_peers_are_known_at_are_bounded() -> None:
    async def scenario() -> None:
        async with node() as n:
            for i in range(MAX_PEER_ADDRESSES + 1):
                n.links.dial(HONEST.node_id, f"ws://10.{i // 250}.{i % 250}.1:9")
            known = n.links._peer_addresses
            assert len(known) == MAX_PEER_ADDRESSES
            assert "10.0.0.1" not in known and f"10.4.{MAX_PEER_ADDRESSES % 250}.1" in known
            # A name is known once a link to it opens; a zone is read as one.
            n.links.dial(HONEST.node_id, "ws://peer.invalid:9")
            n.links.dial(HONEST.node_id, "ws://[fe80::1%25lo]:9")
            assert next(reversed(known)) == "fe80::/64%lo"

    run(scenario)


def test_places_are_counted_by_address_and_by_an_ipv6_address_s_64() -> None:
    assert address_group("192.0.2.7") == "192.0.2.7"
    assert address_group("::ffff:192.0.2.7") == "192.0.2.7"
    # One host is commonly given a whole /64: its addresses share places.
    assert address_group("2001:db8:1:2::1") == address_group("2001:db8:1:2:ffff::9")
    assert address_group("2001:db8:1:2::1") != address_group("2001:db8:1:3::1")
    assert address_group("fe80::1%eth0") == address_group("fe80::2%eth0") == "fe80::/64%eth0"
    assert address_group("fe80::1%eth0") != address_group("fe80::1%eth1")


def test_before_its_handshake_a_connection_reads_no_more_than_a_control_message() -> None:
    async def scenario() -> None:
        async with node() as n:
            ws = await connect(n.address, compression=None, max_size=None, ping_interval=None)
            await ws.recv()
            await ws.send(bytes(MAX_CONTROL_BYTES + 1))
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 1009
            await until(lambda: n.links.counters["handshake:control_too_large"] == 1)
            # After it, frames as large as frames are (a full batch here).
            peer = await dial_as(n.address, HONEST)
            await peer.send(probes(HONEST, range(1, MAX_BATCH_ENVELOPES + 1)))
            await until(lambda: n.links.status(HONEST.node_id)["received_seq"] > 0)
            await peer.close()

    run(scenario)


def test_handshakes_that_time_out_or_are_abandoned_are_counted() -> None:
    async def scenario() -> None:
        async with node(LinkSettings(handshake_timeout_s=0.3)) as n:
            idle = await connect(n.address, compression=None, ping_interval=None)
            await idle.recv()
            with contextlib.suppress(ConnectionClosed):
                await asyncio.wait_for(idle.recv(), 5)
            gone = await connect(n.address, compression=None, ping_interval=None)
            await gone.recv()
            await gone.close()
            await until(lambda: n.links.counters["handshakes_abandoned"] == 1)
            assert n.links.counters["handshakes_timed_out"] == 1

    run(scenario)


@contextlib.asynccontextmanager
async def dialled_by(
    n: Running,
    receive: Callable[[ServerConnection, bytes, bytes], Any],
    welcome: Window | None = None,
) -> Any:
    """A hostile peer the node dials: it welcomes the node with an empty
    window, then ``receive(connection, node's challenge + its own, ...)``."""

    async def handler(connection: ServerConnection) -> None:
        challenge = os.urandom(CHALLENGE_BYTES)
        await connection.send(handshake.hello(HOSTILE, challenge))
        _, proof = handshake.read_proof(await connection.recv(), HOSTILE, challenge)
        await connection.send(handshake.welcome(HOSTILE, proof, welcome or Window()))
        await receive(connection, proof.challenge + challenge, b"")

    server = await serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None)
    port = next(iter(server.sockets)).getsockname()[1]
    n.links.dial(HOSTILE.node_id, f"ws://127.0.0.1:{port}")
    try:
        yield server
    finally:
        server.close()


async def fill_outbox(n: Running, frames: int) -> None:
    """``frames`` answers to the hostile peer waiting in the node's outbox."""
    ws = await dial_as(n.address, HOSTILE)
    for seq in range(1, frames + 1):
        await ws.send(probes(HOSTILE, range(seq, seq + 1)))
        await until(lambda s=seq: n.links.status(HOSTILE.node_id)["unacked_frames"] >= s)
    await ws.close()


def test_an_acknowledgement_said_again_makes_nothing_go_out_again() -> None:
    frames = 40

    async def scenario() -> None:
        async with node(LinkSettings(resend_ms=60_000)) as n:
            await fill_outbox(n, frames)
            received: list[bytes] = []
            done = asyncio.Event()

            async def receive(connection: ServerConnection, challenges: bytes, _: bytes) -> None:
                async def read() -> None:
                    async for data in connection:
                        received.append(bytes(data))

                reader = asyncio.create_task(read())
                await until(lambda: len(received) == frames)
                # A gap: it has every frame but the first. Said 20 times.
                gap = handshake.ack(
                    HOSTILE, NODE.node_id, challenges, Window(0, tuple(range(2, frames + 1)))
                )
                for _ in range(20):
                    await connection.send(gap)
                await asyncio.sleep(0.3)
                # Numbers no receiver could hold, said 20 times.
                wild = handshake.ack(HOSTILE, NODE.node_id, challenges, Window(0, (MAX_INT64,)))
                for _ in range(20):
                    await connection.send(wild)
                # Numbers never sent, held contiguously: it would make the
                # node forget frames the peer never had.
                beyond = handshake.ack(HOSTILE, NODE.node_id, challenges, Window(frames + 1))
                for _ in range(5):
                    await connection.send(beyond)
                await asyncio.sleep(0.3)
                reader.cancel()
                done.set()

            async with dialled_by(n, receive):
                await asyncio.wait_for(done.wait(), 30)
            counters = n.links.counters
            # The first frame went out once more, for the gap, and nothing else did.
            assert len(received) == frames + 1 and received[-1] == received[0]
            assert counters["frames_sent"] == frames + 1 and counters["frames_resent"] == 1
            assert counters["ack:implausible_window"] == 25
            assert n.links.status(HOSTILE.node_id)["unacked_frames"] == 1

    run(scenario)


def test_a_burst_of_frames_is_taken_in_a_batch_s_worth_a_turn() -> None:
    count = 20

    async def scenario() -> None:
        async with node() as n:
            ws = await dial_as(n.address, HOSTILE)
            size = MAX_BATCH_ENVELOPES
            frames = [
                probes(HOSTILE, range(1 + i * size, 1 + (i + 1) * size)) for i in range(count)
            ]
            async with most_in_a_turn(n, "frames_received") as largest:
                for frame in frames:
                    await ws.send(frame)
                await until(lambda: n.links.counters["frames_received"] == count, 30)
            await ws.close()
            # Between two turns of the loop, at most a full batch's worth of
            # messages (a frame here) and the frame that passed it.
            assert largest[0] <= 2, largest
            await until(lambda: n.links.status(HOSTILE.node_id)["received_seq"] == count * size)

    run(scenario)


def test_an_address_no_link_can_dial_is_a_counted_failure() -> None:
    async def scenario() -> None:
        async with node(LinkSettings(backoff_min_ms=10, backoff_max_ms=20)) as n:
            # An address stored before addresses were checked as they are now.
            n.links.dial(HOSTILE.node_id, "ws://127.0.0.1:\uff18\uff10")
            await until(lambda: n.links.counters["link_failures"] >= 2)
            task = n.links._out[HOSTILE.node_id].task
            assert task is not None and not task.done()

    run(scenario)


def test_a_peer_that_acknowledges_nothing_is_not_sent_news_nor_answers_beyond_its_backlog() -> None:
    backlog = 32

    async def scenario() -> None:
        async with node(LinkSettings(max_backlog=backlog)) as n:
            # 400 probes, each of which asks for an answer; the peer takes
            # none of them (the node has no address to send them to).
            ws = await dial_as(n.address, HOSTILE)
            for i in range(100):
                await ws.send(probes(HOSTILE, range(1 + 4 * i, 5 + 4 * i)))
            await until(lambda: n.links.status(HOSTILE.node_id)["received_seq"] == 400)
            await ws.close()
            assert n.links.status(HOSTILE.node_id)["last_sent_seq"] == backlog
            assert n.links.counters["withheld:Heartbeat"] == 400 - backlog
            # Another peer is answered all the same: a backlog is one peer's.
            honest = await dial_as(n.address, HONEST)
            await honest.send(probes(HONEST, range(1, 21)))
            await until(lambda: n.links.status(HONEST.node_id)["last_sent_seq"] == 20)
            await honest.close()

    run(scenario)


def test_a_request_the_core_asks_again_goes_once_while_the_first_is_on_its_way() -> None:
    async def scenario() -> None:
        async with node() as n:
            await n.runtime.submit(FundInput(USD.code, 1_000_000))
            await n.runtime.submit(BondInput(HOSTILE.node_id, 500_000, False))
            # The core asks again every bond_resend_ms (200 ms); the peer is
            # unreachable, and the first request waits in the outbox.
            await until(lambda: n.links.counters["merged:BondRequest"] >= 4)
            assert n.links.status(HOSTILE.node_id)["last_sent_seq"] == 1
            # Once the peer has it (and says so), the next time the core
            # asks, the request goes again.
            seen: list[BondRequest] = []

            async def receive(connection: ServerConnection, challenges: bytes, _: bytes) -> None:
                async for data in connection:
                    batch = open_frame(bytes(data))
                    seen.extend(
                        e.message for e in batch.envelopes if isinstance(e.message, BondRequest)
                    )
                    top = batch.envelopes[-1].seq
                    await connection.send(
                        handshake.ack(HOSTILE, NODE.node_id, challenges, Window(top))
                    )

            async with dialled_by(n, receive):
                await until(lambda: len(seen) >= 3)
            assert len({(r.bond_id, r.amount) for r in seen}) == 1

    run(scenario)


def test_frames_seen_before_do_not_hold_the_loop_either() -> None:
    count = 20

    async def scenario() -> None:
        async with node() as n:
            ws = await dial_as(n.address, HOSTILE)
            frame = probes(HOSTILE, range(1, MAX_BATCH_ENVELOPES + 1))
            await ws.send(frame)
            await until(lambda: n.links.status(HOSTILE.node_id)["received_seq"] > 0)
            async with most_in_a_turn(n, "frames_duplicate") as largest:
                # The same valid frame again and again: each costs its
                # signature and its decoding, and changes nothing.
                for _ in range(count):
                    await ws.send(frame)
                await until(lambda: n.links.counters["frames_duplicate"] == count, 30)
            await ws.close()
            # Between two turns of the loop, at most a frame's worth of bytes
            # (64 KiB: four of these) and the frame that passed it.
            assert largest[0] <= 5, largest

    run(scenario)


def test_small_frames_refused_do_not_hold_the_loop_either() -> None:
    count = 1_000

    async def scenario() -> None:
        async with node() as n:
            ws = await dial_as(n.address, HOSTILE)
            # Frames of one probe each, their signatures spoiled: each costs
            # its signature check, and a frame's worth of bytes (64 KiB)
            # holds hundreds of them.
            bad = []
            for seq in range(1, count + 1):
                frame = probes(HOSTILE, range(seq, seq + 1))
                bad.append(frame[:-1] + bytes([frame[-1] ^ 1]))
            async with most_in_a_turn(n, "frame:bad_signature") as largest:
                for frame in bad:
                    await ws.send(frame)
                await until(lambda: n.links.counters["frame:bad_signature"] == count, 30)
            # The honest frame after them is taken in as ever.
            await ws.send(probes(HOSTILE, range(1, 2)))
            await until(lambda: n.links.status(HOSTILE.node_id)["received_seq"] == 1)
            await ws.close()
            assert largest[0] <= MAX_FRAMES_A_TURN, largest

    run(scenario)


def test_a_peer_that_asks_and_never_acknowledges_is_not_answered_beyond_its_backlog() -> None:
    backlog = 32

    async def scenario() -> None:
        async with node(LinkSettings(max_backlog=backlog)) as n:
            ws = await dial_as(n.address, HOSTILE)
            now = int(time.time() * 1_000)
            # 100 order broadcasts, each of which a holder answers (with no
            # offer here: nothing rests).
            envelopes = tuple(
                Envelope(
                    HOSTILE.node_id,
                    NODE.node_id,
                    seq,
                    Hlc(now, seq),
                    OrderBroadcast(seq, 1, XYZ.product_id, Side.BUY, 1, 5_000, False),
                )
                for seq in range(1, 101)
            )
            await ws.send(seal(HOSTILE, Batch(HOSTILE.node_id, NODE.node_id, envelopes)))
            await until(lambda: n.links.status(HOSTILE.node_id)["received_seq"] == 100)
            await ws.close()
            assert n.links.status(HOSTILE.node_id)["last_sent_seq"] == backlog
            assert n.links.counters["withheld:PotentialTrades"] == 100 - backlog

    run(scenario)


def test_a_peer_that_dials_again_is_welcomed_at_once() -> None:
    async def scenario() -> None:
        async with node() as n:
            first = await dial_as(n.address, HOSTILE)
            # The first connection reads nothing more: a close handshake on
            # it would wait for an answer that never comes.
            first.transport.pause_reading()
            started = time.monotonic()
            second = await dial_as(n.address, HOSTILE)
            assert time.monotonic() - started < 2.0
            await second.send(probes(HOSTILE, range(1, 2)))
            await until(lambda: n.links.status(HOSTILE.node_id)["received_seq"] == 1)
            await second.close()
            first.transport.abort()

    run(scenario)


def test_a_peer_that_does_not_acknowledge_is_resent_to_less_and_less_often() -> None:
    async def scenario() -> None:
        async with node(LinkSettings(resend_ms=100)) as n:
            await n.runtime.submit(FundInput(USD.code, 1_000_000))
            await n.runtime.submit(BondInput(HOSTILE.node_id, 500_000, False))
            received: list[float] = []

            async def receive(connection: ServerConnection, challenges: bytes, _: bytes) -> None:
                async for _data in connection:
                    received.append(time.monotonic())

            async with dialled_by(n, receive):
                await until(lambda: len(received) >= 1)
                await asyncio.sleep(2.5)
            # Every 100 ms would be 25 copies; backing off (0.1, 0.2, 0.4,
            # 0.8 s, ...) about five.
            assert 3 <= len(received) <= 7, len(received)
            gaps = [b - a for a, b in itertools.pairwise(received)]
            assert all(later > earlier for earlier, later in itertools.pairwise(gaps))

    run(scenario)


def test_a_welcome_claiming_what_was_never_sent_is_refused() -> None:
    async def scenario() -> None:
        async with node(LinkSettings(backoff_min_ms=10, backoff_max_ms=20)) as n:
            await n.runtime.submit(FundInput(USD.code, 1_000_000))
            await n.runtime.submit(BondInput(HOSTILE.node_id, 500_000, False))

            async def receive(connection: ServerConnection, challenges: bytes, _: bytes) -> None:
                await connection.wait_closed()

            # "I have everything up to 2**62": the node would forget its
            # outbox and take the peer for one that keeps up.
            async with dialled_by(n, receive, welcome=Window(2**62)):
                await until(lambda: n.links.counters["handshake:implausible_window"] >= 2)
            status = n.links.status(HOSTILE.node_id)
            assert status["acked_seq"] == 0 and status["unacked_frames"] == 1

    run(scenario)


def test_releases_beyond_the_backlog_are_withheld_and_repeats_merged() -> None:
    async def scenario() -> None:
        async with node(LinkSettings(max_backlog=2)) as n:
            hlc = Hlc(int(time.time() * 1_000), 0)
            sends = [Send(HOSTILE.node_id, hlc, Release(lock_id)) for lock_id in (1, 1, 2, 3, 4)]
            n.links.seal(sends, Commit())
            counters = n.links.counters
            assert n.links._out[HOSTILE.node_id].link.last_seq == 2
            assert counters["merged:Release"] == 1 and counters["withheld:Release"] == 2

    run(scenario)


def test_a_receiver_catching_up_slowly_is_not_sent_its_window_again() -> None:
    frames = 40

    async def scenario() -> None:
        async with node(LinkSettings(resend_ms=200)) as n:
            await fill_outbox(n, frames)

            async def receive(connection: ServerConnection, challenges: bytes, _: bytes) -> None:
                async def read() -> None:
                    with contextlib.suppress(ConnectionClosed):
                        async for _data in connection:
                            pass

                reader = asyncio.create_task(read())
                # It takes in a frame every 30 ms: slower than the node
                # sends, always faster than resend_ms.
                for top in range(1, frames + 1):
                    await asyncio.sleep(0.03)
                    await connection.send(
                        handshake.ack(HOSTILE, NODE.node_id, challenges, Window(top))
                    )
                await asyncio.sleep(0.3)
                reader.cancel()

            async with dialled_by(n, receive):
                await until(lambda: n.links.status(HOSTILE.node_id)["unacked_frames"] == 0)
            # Each acknowledgement restarts the wait of the frames still out:
            # none waited resend_ms without one.
            assert n.links.counters["frames_resent"] <= 3, n.links.counters

    run(scenario)


def taker_in_order(
    received: list[int], held: Callable[[], int], most_held: list[int]
) -> Callable[[ServerConnection, bytes, bytes], Awaitable[None]]:
    """A peer that takes in every frame the node sends and acknowledges
    what it has in order; ``received`` gets each sequence number it sees
    (again if resent), ``most_held`` the most frames the node held."""

    async def receive(connection: ServerConnection, challenges: bytes, _: bytes) -> None:
        seen: set[int] = set()
        contiguous = 0
        with contextlib.suppress(ConnectionClosed):
            async for data in connection:
                most_held[0] = max(most_held[0], held())
                for envelope in open_frame(bytes(data)).envelopes:
                    received.append(envelope.seq)
                    seen.add(envelope.seq)
                while contiguous + 1 in seen:
                    contiguous += 1
                ack = handshake.ack(HOSTILE, NODE.node_id, challenges, Window(contiguous))
                await connection.send(ack)

    return receive


def test_a_peer_that_is_away_costs_the_store_not_memory_and_gets_everything_in_order() -> None:
    frames, held = 24, 4

    async def scenario() -> None:
        async with node(LinkSettings(max_held_frames=held, resend_ms=300)) as n:
            await fill_outbox(n, frames)
            out = n.links._out[HOSTILE.node_id]
            # Twenty-four frames wait for the peer; four of them in memory.
            assert n.links.status(HOSTILE.node_id)["unacked_frames"] == frames
            assert len(out.frames) == held
            received: list[int] = []
            most_held = [0]
            taker = taker_in_order(received, lambda: len(out.frames), most_held)
            async with dialled_by(n, taker):
                await until(lambda: n.links.status(HOSTILE.node_id)["unacked_frames"] == 0)
            # Every frame came, first to last, read back from the store a
            # few at a time as the peer took them in.
            assert sorted(set(received)) == list(range(1, frames + 1))
            assert [seq for n, seq in enumerate(received) if seq not in received[:n]] == sorted(
                set(received)
            )
            assert most_held[0] <= held

    run(scenario)


def test_a_restarted_node_resumes_a_long_outbox_a_part_at_a_time() -> None:
    frames, held = 20, 4

    async def scenario() -> None:
        store = Reopened()
        settings = LinkSettings(max_held_frames=held, resend_ms=300)
        async with node(settings, store) as n:
            await fill_outbox(n, frames)
        async with node(settings, store) as n:
            out = n.links._out[HOSTILE.node_id]
            # The restart's own frames for the peer come after the stored ones.
            status = n.links.status(HOSTILE.node_id)
            assert status["unacked_frames"] >= frames and len(out.frames) == held
            received: list[int] = []
            most_held = [0]
            taker = taker_in_order(received, lambda: len(out.frames), most_held)
            async with dialled_by(n, taker):
                await until(lambda: n.links.status(HOSTILE.node_id)["unacked_frames"] == 0)
            assert sorted(set(received)) == list(range(1, status["last_sent_seq"] + 1))
            assert most_held[0] <= held

    run(scenario)


def test_a_link_holds_frames_up_to_a_size_in_bytes_too() -> None:
    """Frames may be up to 64 KiB each: the bound on what a link holds is
    also one of bytes, after a restart too, and the peer still gets
    everything, in order."""
    frames, budget = 24, 1_000

    async def scenario() -> None:
        store = Reopened()
        settings = LinkSettings(max_held_frames=1_000, max_held_bytes=budget, resend_ms=300)
        async with node(settings, store) as n:
            await fill_outbox(n, frames)
            out = n.links._out[HOSTILE.node_id]
            assert n.links.status(HOSTILE.node_id)["unacked_frames"] == frames
            assert 1 <= len(out.frames) < frames and out.spilled
            assert out.held_bytes == sum(len(f.frame) for f in out.frames.values()) <= budget
        async with node(settings, store) as n:
            out = n.links._out[HOSTILE.node_id]
            status = n.links.status(HOSTILE.node_id)
            assert status["unacked_frames"] >= frames and out.spilled
            assert out.held_bytes == sum(len(f.frame) for f in out.frames.values()) <= budget
            received: list[int] = []
            most_held = [0]
            taker = taker_in_order(received, lambda: out.held_bytes, most_held)
            async with dialled_by(n, taker):
                await until(lambda: n.links.status(HOSTILE.node_id)["unacked_frames"] == 0)
            assert sorted(set(received)) == list(range(1, status["last_sent_seq"] + 1))
            assert [seq for n, seq in enumerate(received) if seq not in received[:n]] == sorted(
                set(received)
            )
            assert most_held[0] <= budget and out.held_bytes == 0 and not out.frames

    run(scenario)


def test_a_frame_larger_than_the_byte_bound_is_still_held_alone_and_sent() -> None:
    async def scenario() -> None:
        settings = LinkSettings(max_held_bytes=1, resend_ms=300)
        async with node(settings) as n:
            await fill_outbox(n, 5)
            out = n.links._out[HOSTILE.node_id]
            assert len(out.frames) == 1  # the oldest, whatever its size
            received: list[int] = []
            taker = taker_in_order(received, lambda: len(out.frames), [0])
            async with dialled_by(n, taker):
                await until(lambda: n.links.status(HOSTILE.node_id)["unacked_frames"] == 0)
            assert sorted(set(received)) == [1, 2, 3, 4, 5]

    run(scenario)


async def fill_in_threes(n: Running, frames: int) -> None:
    """``frames`` frames of three heartbeat answers each for the hostile peer."""
    ws = await dial_as(n.address, HOSTILE)
    for k in range(frames):
        await ws.send(probes(HOSTILE, range(3 * k + 1, 3 * k + 4)))
        await until(lambda k=k: n.links.status(HOSTILE.node_id)["last_sent_seq"] >= 3 * k + 3)
    await ws.close()


async def acknowledge(
    connection: ServerConnection, challenges: bytes, window: ReplayWindow
) -> None:
    """Acknowledge, as the hostile peer, what ``window`` holds, gaps and all."""
    held = Window(window.contiguous, tuple(sorted(window.above)))
    await connection.send(handshake.ack(HOSTILE, NODE.node_id, challenges, held))


def lossy_taker(
    state: dict[str, Any], rng: random.Random, hang_up_after: int
) -> Callable[[ServerConnection, bytes, bytes], Awaitable[None]]:
    """A peer that loses a quarter of the frames it is sent, acknowledges
    what it has (gaps and all), and hangs up after ``hang_up_after`` frames;
    what it has lives on in ``state`` for its next connection."""

    async def receive(connection: ServerConnection, challenges: bytes, _: bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            taken = 0
            async for data in connection:
                if rng.random() < 0.25:
                    continue
                seqs = [e.seq for e in open_frame(bytes(data)).envelopes]
                with contextlib.suppress(RemoteProtocolError):  # seen before
                    state["window"] = state["window"].admit(seqs)
                    state["got"] += seqs
                await acknowledge(connection, challenges, state["window"])
                taken += 1
                if taken >= hang_up_after:
                    return

    return receive


def test_a_lossy_peer_that_hangs_up_gets_every_message_once_from_a_small_memory() -> None:
    async def scenario() -> None:
        for held, seed in ((1, 1), (3, 2)):
            settings = LinkSettings(
                max_held_frames=held, resend_ms=100, backoff_min_ms=10, backoff_max_ms=50
            )
            async with node(settings) as n:
                await fill_in_threes(n, 10)
                out = n.links._out[HOSTILE.node_id]
                last = out.link.last_seq
                state: dict[str, Any] = {"window": ReplayWindow(), "got": []}
                rng = random.Random(seed)
                most = 0
                while state["window"].contiguous < last:
                    window = state["window"]
                    welcome = Window(window.contiguous, tuple(sorted(window.above)))
                    async with dialled_by(n, lossy_taker(state, rng, rng.randint(2, 6)), welcome):
                        for _ in range(20):
                            most = max(most, len(out.frames))
                            await asyncio.sleep(0.02)
                await until(lambda n=n: n.links.status(HOSTILE.node_id)["unacked_frames"] == 0)
                assert sorted(state["got"]) == list(range(1, last + 1))
                assert most <= held and not out.spilled

    run(scenario)


def test_a_peer_acknowledging_part_of_a_stored_frame_is_still_sent_the_rest() -> None:
    async def scenario() -> None:
        async with node(LinkSettings(max_held_frames=2, resend_ms=100)) as n:
            # Frames 1-3 and 4-6 held, 7-9 to 16-18 in the store only.
            await fill_in_threes(n, 6)
            got: list[int] = []

            async def receive(connection: ServerConnection, challenges: bytes, _: bytes) -> None:
                # It says it has 1 to 8: of frame 7-9, only a part (no
                # honest peer does: it takes frames whole, and its replay
                # window now refuses frame 7-9 for the numbers it holds).
                window = ReplayWindow(8)
                await connection.send(handshake.ack(HOSTILE, NODE.node_id, challenges, Window(8)))
                with contextlib.suppress(ConnectionClosed):
                    async for data in connection:
                        seqs = [e.seq for e in open_frame(bytes(data)).envelopes]
                        got.extend(seqs)
                        with contextlib.suppress(RemoteProtocolError):
                            window = window.admit(seqs)
                        await acknowledge(connection, challenges, window)

            async with dialled_by(n, receive):
                # The frame holding 9 goes out, and every frame after it.
                await until(lambda: set(range(9, 19)) <= set(got))

    run(scenario)


assert REPLAY_WINDOW >= 40  # the acknowledgement test's frames fit in the window


def test_a_peer_that_floods_is_read_at_its_message_budget_and_others_are_served() -> None:
    rate, size, count = 2_000, MAX_BATCH_ENVELOPES, 16

    async def scenario() -> None:
        async with node(LinkSettings(inbound_per_second=rate)) as n:
            ws = await dial_as(n.address, HOSTILE)
            frames = [
                probes(HOSTILE, range(1 + i * size, 1 + (i + 1) * size)) for i in range(count)
            ]
            started = time.monotonic()

            async def flood() -> None:
                for frame in frames:
                    await ws.send(frame)

            flooding = asyncio.create_task(flood())
            await asyncio.sleep(0.5)
            # Another peer's frame is taken in at once, the flood meanwhile.
            honest = await dial_as(n.address, HONEST)
            sent = time.monotonic()
            await honest.send(probes(HONEST, range(1, 5)))
            await until(lambda: n.links.status(HONEST.node_id)["received_seq"] == 4)
            assert time.monotonic() - sent < 1.0
            await until(lambda: n.links.counters["frames_received"] >= 4, 30)
            taken = (n.links.counters["frames_received"] - 1) * size
            elapsed = time.monotonic() - started
            # A second's worth saved, then the budget's rate: 8,192 messages
            # take about three seconds, not the milliseconds they take unthrottled.
            assert taken <= rate + rate * elapsed + size, (taken, elapsed)
            assert n.links.counters["inbound_throttled"] > 0
            flooding.cancel()
            await ws.close()
            await honest.close()

    run(scenario)


class SlowStore(Reopened):
    """A store whose every commit takes 20 ms: a disk slower than the core."""

    def commit(self, commit: Commit) -> int:
        time.sleep(0.02)
        return super().commit(commit)

    def commit_if_free(self, commit: Commit) -> int | None:
        return None


def test_what_a_peer_makes_the_node_hold_before_the_disk_is_bounded() -> None:
    size, count = MAX_BATCH_ENVELOPES, 24
    bound = 2 * size

    async def scenario() -> None:
        settings = LinkSettings(inbound_per_second=1_000_000, max_inbound_pending=bound)
        async with node(settings, SlowStore()) as n:
            ws = await dial_as(n.address, HOSTILE)
            most = [0]

            async def watch() -> None:
                while True:
                    inbound = n.links._in.get(HOSTILE.node_id)
                    if inbound is not None:
                        most[0] = max(most[0], inbound.pending_messages)
                    await asyncio.sleep(0)

            watcher = asyncio.create_task(watch())
            for i in range(count):
                await ws.send(probes(HOSTILE, range(1 + i * size, 1 + (i + 1) * size)))
            await until(lambda: n.links.status(HOSTILE.node_id)["received_seq"] == count * size, 30)
            watcher.cancel()
            await ws.close()
            # Frames are read on only once what is applied and not yet
            # durable is within the bound (and the frame that passed it).
            assert 0 < most[0] <= bound + size, most

    run(scenario)


def test_a_frame_is_kept_as_evidence_at_the_node_s_time_whatever_its_stamps() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        async with node(store=store) as n:
            ws = await dial_as(n.address, HOSTILE)
            now = int(time.time() * 1_000)
            far = Hlc(MAX_INT64 >> 1, 0)
            envelopes = (
                Envelope(
                    HOSTILE.node_id, NODE.node_id, 1, Hlc(now, 0), BondRequest(1, "USD", 7, False)
                ),
                Envelope(HOSTILE.node_id, NODE.node_id, 2, far, Heartbeat(1, None, now, 0)),
            )
            await ws.send(seal(HOSTILE, Batch(HOSTILE.node_id, NODE.node_id, envelopes)))
            await until(lambda: n.links.status(HOSTILE.node_id)["received_seq"] == 2)
            await ws.close()
            await n.runtime.read(lambda _core: None)
            kept = store.evidence(HOSTILE.node_id, now - 60_000, now + 60_000)
            received = [record for record in kept if record.kind == "received"]
            assert len(received) == 1 and abs(received[0].at_ms - now) < 10_000

    run(scenario)
