"""Intake: durable orders one node accepts per second, and how fast it answers.

A real node process (``datn node run``) on 127.0.0.1, pinned to core 1; the
load generator (this script) pinned to core 0. An order counts once its
acknowledgement arrives, and a node acknowledges only after the order's
journal entry is durable (SQLite: WAL, synchronous=FULL; PostgreSQL:
synchronous_commit=on): group commit is what makes the rate.

The load generator is lean so that it measures the node, not itself: HTTP
requests are built and signed before the clock starts and written over
raw keep-alive connections; WebSocket orders are pre-encoded and sent with
a window in flight per session.

HTTP is sent as HTTP clients send a POST: over a pool of connections (128
by default), one request in flight on each. A client does not pipeline
requests behind a POST (RFC 9112, section 9.3.2), and a server answers a
connection's pipelined requests one after another in any case, so that
pipelining puts no more orders in a group commit than there are
connections. The ceiling is measured the same way; ``--pipeline`` sends
both pipelined, for comparison. For each store (SQLite, and
PostgreSQL when it answers), over ``--seconds`` each:

* the ceiling: an unauthenticated GET of the product list, same server;
* orders over the WebSocket, acknowledged per second;
* orders over HTTP (each signed, HMAC), acknowledged per second;
* acknowledgement latency p50/p99 at half of each rate.

The order flow never crosses (limit buys below 5,000 ticks, sells above,
half IOC), so each order is one journal entry and the book stays small.
For each order phase it also prints where the time went, from the node's
own ``/metrics`` read before and after: the node's CPU per order (the
event loop's thread and the store's writer apart), how busy its one core
was, how many inputs shared a commit and how long a commit took. These are
steadier than rates on a machine whose speed moves between runs.

Nothing is asserted; the figures and conditions are printed.

Usage: python benchmarks/intake.py [--seconds 4] [--connections 128]
       [--pipeline 1] [--sessions 4] [--window 64] [--no-postgres]
       [--event-loop uvloop|asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgspec
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from datn.api.auth import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from datn.api.metrics import Moved, samples
from datn.runtime.config import init_folder

DATN = str(Path(sys.executable).parent / "datn")
POSTGRES_URL = os.environ.get("DATN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
Trader = tuple[str, bytes]


class Node:
    """A node process in ``folder``, its traders' and operator's addresses."""

    def __init__(self, folder: Path, storage: str | None, event_loop: str | None = None) -> None:
        config, _ = init_folder(folder)
        text = config.read_text()
        if event_loop is not None:
            text = text.replace('event_loop = "asyncio"', f'event_loop = "{event_loop}"')
        for old, new in (
            ('listen = "127.0.0.1:8480"', 'listen = "127.0.0.1:0"'),
            ('admin_listen = "127.0.0.1:8481"', 'admin_listen = "127.0.0.1:0"'),
            ('listen = "127.0.0.1:8482"', 'listen = "127.0.0.1:0"'),
            ("rate_per_second = 50", "rate_per_second = 1000000"),
            ("rate_burst = 100", "rate_burst = 1000000"),
            ("signing_window_ms = 5000", "signing_window_ms = 60000"),
        ):
            text = text.replace(old, new)
        if storage is not None:
            text = text.replace('storage = "sqlite:///node.sqlite3"', f'storage = "{storage}"')
        config.write_text(text)
        command = [DATN, "node", "run", str(folder)]
        if shutil.which("taskset"):
            command = ["taskset", "-c", "1", *command]
        self.log = open(folder / "node.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, stdout=self.log, stderr=self.log)
        ready = folder / "ready.json"
        deadline = time.monotonic() + 30
        while not ready.exists() or not ready.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit((folder / "node.log").read_text()[-2000:])
            time.sleep(0.05)
        ports = json.loads(ready.read_text())
        self.port = int(ports["api_port"])
        self.admin = f"http://127.0.0.1:{ports['admin_port']}"
        self.token = (folder / "admin.token").read_text().strip()

    def trader(self, trader_id: str) -> Trader:
        headers = {"authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.admin, headers=headers) as admin:
            key = admin.post("/admin/traders", json={"trader_id": trader_id}).json()
            for asset, amount in (("USD", 10**15), ("XYZ", 10**12)):
                body = {"trader_id": trader_id, "asset": asset, "amount": amount}
                admin.post("/admin/deposits", json=body).raise_for_status()
        return key["key_id"], bytes.fromhex(key["secret"])

    def metrics(self) -> dict[str, float]:
        """The node's ``/metrics``, by sample name."""
        headers = {"authorization": f"Bearer {self.token}"}
        return samples(httpx.get(f"{self.admin}/metrics", headers=headers).text)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class Flow:
    """Orders that never cross, half of them IOC."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.prefix = uuid.uuid4().hex[:10]
        self.count = 0

    def order(self) -> dict[str, Any]:
        self.count += 1
        buy = self.rng.random() < 0.5
        return {
            "client_order_id": f"{self.prefix}-{self.count}",
            "product": "XYZ",
            "side": "buy" if buy else "sell",
            "quantity_lots": self.rng.randint(1, 10),
            "price_ticks": self.rng.randint(4_000, 4_999)
            if buy
            else self.rng.randint(5_001, 6_000),
            "time_in_force": "ioc" if self.rng.random() < 0.5 else "gtc",
        }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# ------------------------------------------------------------------ HTTP


def get_request() -> bytes:
    return b"GET /v1/products HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"


def order_request(trader: Trader, order: dict[str, Any]) -> bytes:
    body = msgspec.json.encode(order)
    stamp = str(int(time.time() * 1_000))
    signature = sign(trader[1], stamp, "POST", "/v1/orders", body)
    head = (
        f"POST /v1/orders HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{KEY_HEADER}: {trader[0]}\r\n"
        f"{TIMESTAMP_HEADER}: {stamp}\r\n{SIGNATURE_HEADER}: {signature}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response; its status."""
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def http_rate(
    port: int, requests: list[list[bytes]], seconds: float, pipeline: int
) -> tuple[float, int]:
    """Answers with a 2xx per second over one connection per list of
    ``requests``, keeping ``pipeline`` requests in flight on each; (rate, errors)."""
    end = time.perf_counter() + seconds
    ok = 0
    errors = 0

    async def connection(queue: list[bytes]) -> None:
        nonlocal ok, errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = answered = 0
        while answered < sent or (time.perf_counter() < end and sent < len(queue)):
            while sent - answered < pipeline and sent < len(queue) and time.perf_counter() < end:
                writer.write(queue[sent])
                sent += 1
            await writer.drain()
            status = await read_response(reader)
            answered += 1
            if 200 <= status < 300:
                ok += 1
            else:
                errors += 1
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection(queue) for queue in requests))
    return ok / (time.perf_counter() - start), errors


async def http_latency(port: int, requests: list[bytes], rate: float) -> list[float]:
    """Ack latencies (ms) of ``requests`` sent at ``rate`` a second, one
    connection each in a small pool (no pipelining: each waits its answer)."""
    latencies: list[float] = []
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(32):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))

    async def one(request: bytes) -> None:
        reader, writer = await pool.get()
        started = time.perf_counter()
        writer.write(request)
        status = await read_response(reader)
        if 200 <= status < 300:
            latencies.append((time.perf_counter() - started) * 1_000)
        pool.put_nowait((reader, writer))

    tasks = []
    with collector_paused():
        start = time.perf_counter()
        for n, request in enumerate(requests, start=1):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(request)))
        await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait()[1].close()
    return latencies


# ------------------------------------------------------------------ WebSocket


async def ws_open(port: int, trader: Trader) -> Any:
    socket = await connect(f"ws://127.0.0.1:{port}/v1/ws", max_queue=None, compression=None)
    stamp = str(int(time.time() * 1_000))
    auth = {
        "op": "auth",
        "key_id": trader[0],
        "timestamp": stamp,
        "signature": sign(trader[1], stamp, "GET", "/v1/ws", b""),
    }
    await socket.send(json.dumps(auth))
    assert json.loads(await socket.recv())["ok"]
    return socket


def ws_orders(seed: int, count: int) -> list[str]:
    flow = Flow(seed)
    return [
        json.dumps({"op": "place", "id": n, "order": flow.order()}) for n in range(1, count + 1)
    ]


async def ws_rate(port: int, traders: list[Trader], seconds: float, window: int) -> float:
    # Built before the clock starts, and more than a session can send in the time.
    prepared = [ws_orders(index, int(seconds * 20_000)) for index in range(len(traders))]
    sockets = [await ws_open(port, trader) for trader in traders]
    end = time.perf_counter() + seconds
    ok = 0

    async def session(index: int) -> None:
        nonlocal ok
        socket = sockets[index]
        orders = prepared[index]
        sent = answered = 0
        while answered < sent or time.perf_counter() < end:
            while sent - answered < window and time.perf_counter() < end and sent < len(orders):
                await socket.send(orders[sent])
                sent += 1
            message = await socket.recv()
            if '"id"' in message[:8]:
                answered += 1
                ok += '"ok":true' in message
        await socket.close()

    start = time.perf_counter()
    await asyncio.gather(*(session(i) for i in range(len(traders))))
    return ok / (time.perf_counter() - start)


async def ws_latency(socket: Any, rate: float, seconds: float) -> list[float]:
    """Ack latencies (ms) of orders sent on ``socket`` at ``rate`` a second."""
    orders = ws_orders(77, int(rate * seconds))
    sent_at: dict[int, float] = {}
    latencies: list[float] = []

    async def receive() -> None:
        # Lean, so that the client's own work does not add to what is
        # measured: events are skipped unparsed, an answer's id is sliced
        # out of its first field ({"id":N,...}).
        while True:
            message = await socket.recv()
            if not message.startswith('{"id":'):
                continue
            arrived = time.perf_counter()
            request_id = int(message[6 : message.index(",", 6)])
            started = sent_at.pop(request_id, None)
            if started is not None:
                latencies.append((arrived - started) * 1_000)

    with collector_paused():
        receiver = asyncio.create_task(receive())
        start = time.perf_counter()
        for n, order in enumerate(orders, start=1):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at[n] = time.perf_counter()
            await socket.send(order)
        deadline = time.perf_counter() + 5
        while sent_at and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        receiver.cancel()
    await socket.close()
    return latencies


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """This process's garbage collector off while latencies are timed: a
    scan of the load generator's own heap (20 to 30 ms for its prepared
    requests) would otherwise be counted as the node's."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


# ------------------------------------------------------------------ the tail's floor


def durable_echo(port_file: Path) -> None:
    """The least a durable order path can be, for the latency phases'
    comparison: a WebSocket server (the same library as the load generator)
    that writes each message to SQLite (WAL, synchronous=FULL) in group
    commits on a writer thread, and answers it, by its id, once it is
    durable. Run as a child, on the node's core, after the node stopped."""
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1})
    database = sqlite3.connect(
        port_file.with_suffix(".sqlite3"), isolation_level=None, check_same_thread=False
    )
    database.execute("PRAGMA journal_mode=WAL")
    database.execute("PRAGMA synchronous=FULL")
    database.execute("CREATE TABLE messages (body TEXT)")
    writer = ThreadPoolExecutor(1)

    def write(bodies: list[str]) -> None:
        database.execute("BEGIN")
        database.executemany("INSERT INTO messages VALUES (?)", [(b,) for b in bodies])
        database.execute("COMMIT")

    async def session(connection: Any) -> None:
        loop = asyncio.get_running_loop()
        pending: list[tuple[int, str]] = []
        committing: asyncio.Task[None] | None = None

        async def commit() -> None:
            nonlocal pending, committing
            while pending:
                group, pending = pending, []
                await loop.run_in_executor(writer, write, [body for _, body in group])
                for request_id, _ in group:
                    await connection.send(f'{{"id":{request_id},"ok":true}}')
            committing = None

        async for message in connection:
            pending.append((json.loads(message)["id"], message))
            if committing is None:
                committing = asyncio.create_task(commit())

    async def main() -> None:
        async with serve(session, "127.0.0.1", 0, compression=None) as server:
            port_file.write_text(str(next(iter(server.sockets)).getsockname()[1]))
            await asyncio.Future()

    asyncio.run(main())


async def floor_latency(folder: Path, rate: float, seconds: float) -> list[float]:
    """:func:`ws_latency` against :func:`durable_echo`."""
    port_file = folder / "echo.port"
    child = subprocess.Popen(
        [sys.executable, __file__, "--durable-echo", str(port_file)], stdin=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if child.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the durable echo did not start")
            await asyncio.sleep(0.05)
        socket = await connect(
            f"ws://127.0.0.1:{port_file.read_text()}", max_queue=None, compression=None
        )
        return await ws_latency(socket, rate, seconds)
    finally:
        child.kill()
        child.wait()


# ------------------------------------------------------------------ accounting


class Accounts:
    """Where a phase's time went, from the node's own counters read before
    and after it: the node's CPU per order and per thread, how many inputs
    shared a commit and how long commits took."""

    def __init__(self, node: Node, seconds: float) -> None:
        self.node = node
        self.seconds = seconds
        """How long each phase sends orders (its setup and its last answers
        aside): what the node's busy share is reckoned over."""
        self.lines: list[str] = []

    async def phase(self, name: str, work: Any) -> Any:
        before = self.node.metrics()
        result = await work
        after = self.node.metrics()
        self.lines.append(f"  {name}: {self.account(before, after, self.seconds)}")
        return result

    @staticmethod
    def account(before: dict[str, float], after: dict[str, float], seconds: float) -> str:
        moved = Moved(before, after)
        orders = moved('datn_orders_total{outcome="accepted"}')
        commits = moved("datn_commit_milliseconds_count")
        if not orders or not commits:
            return "no orders"
        cpu = moved("process_cpu_seconds_total")
        loop, loop_system = moved.thread_cpu("MainThread"), moved.thread_cpu("MainThread", "system")
        writer = moved.thread_cpu("datn-store_0")
        writer_system = moved.thread_cpu("datn-store_0", "system")
        per_order = 1e6 / orders
        return (
            f"node CPU {cpu * per_order:.0f} us/order (event loop {loop * per_order:.0f}, "
            f"{loop_system * per_order:.0f} of it in the kernel; store writer "
            f"{writer * per_order:.0f}, {writer_system * per_order:.0f} in the kernel), "
            f"node busy {cpu / seconds:.0%}; "
            f"{moved('datn_commit_group_size_sum') / commits:.1f} inputs a commit, "
            f"commit {moved('datn_commit_milliseconds_sum') / commits:.2f} ms mean"
        )


# ------------------------------------------------------------------ main


async def measure(label: str, node: Node, args: argparse.Namespace) -> float:
    """Measure ``node`` and print the figures; the WebSocket's half rate."""
    traders = [node.trader(f"t{i}") for i in range(max(args.sessions, args.connections))]
    room = int(args.seconds * 40_000)  # more than any connection can send in the time
    gets = [[get_request()] * (room // args.connections * 2) for _ in range(args.connections)]
    accounts = Accounts(node, args.seconds)
    ceiling, _ = await http_rate(node.port, gets, args.seconds, args.pipeline)
    ws = await accounts.phase(
        "WebSocket orders",
        ws_rate(node.port, traders[: args.sessions], args.seconds, args.window),
    )
    per = room // args.connections
    flows = [Flow(1_000 + i) for i in range(args.connections)]
    posts = [
        [order_request(traders[i], flows[i].order()) for _ in range(per)]
        for i in range(args.connections)
    ]
    http, errors = await accounts.phase(
        "HTTP orders", http_rate(node.port, posts, args.seconds, args.pipeline)
    )
    ws_lat = await accounts.phase(
        "WebSocket at half rate",
        ws_latency(await ws_open(node.port, traders[0]), ws / 2, args.seconds),
    )
    flow = Flow(5)
    timed = [order_request(traders[1], flow.order()) for _ in range(int(http / 2 * args.seconds))]
    http_lat = await accounts.phase("HTTP at half rate", http_latency(node.port, timed, http / 2))
    print(f"\n{label}")
    print(f"  ceiling, GET /v1/products: {ceiling:,.0f} req/s")
    print(
        f"  durable orders over the WebSocket: {ws:,.0f}/s "
        f"({args.sessions} sessions x {args.window} in flight)"
    )
    print(
        f"  durable orders over HTTP: {http:,.0f}/s ({args.connections} connections x "
        f"{args.pipeline} in flight, {errors} refused): {http / ceiling:.2f} of the ceiling"
    )
    for name, values, rate in (("WebSocket", ws_lat, ws / 2), ("HTTP", http_lat, http / 2)):
        if values:
            print(
                f"  {name} ack latency at {rate:,.0f}/s: p50 {statistics.median(values):.2f} ms, "
                f"p99 {percentile(values, 0.99):.2f} ms ({len(values):,} orders)"
            )
    print("  where the time went, from the node's own counters (node pinned to one core):")
    print("\n".join(accounts.lines))
    return float(ws) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument("--pipeline", type=int, default=1)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--event-loop",
        choices=("uvloop", "asyncio"),
        help="the node's event loop (default: the node's own default, asyncio)",
    )
    parser.add_argument("--durable-echo", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.durable_echo is not None:
        durable_echo(args.durable_echo)
        return
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {0})
    print(
        f"datn intake: python {platform.python_version()}, {os.cpu_count()} cores; "
        "node on core 1, load generator on core 0"
        + (f"; the node's event loop: {args.event_loop}" if args.event_loop else "")
    )
    stores: list[tuple[str, str | None]] = [("SQLite (WAL, synchronous=FULL)", None)]
    if not args.no_postgres:
        schema = f"intake_{uuid.uuid4().hex[:8]}"
        stores.append(("PostgreSQL (synchronous_commit=on)", f"{POSTGRES_URL}?schema={schema}"))
    for label, storage in stores:
        with tempfile.TemporaryDirectory() as folder:
            try:
                node = Node(Path(folder) / "node", storage, args.event_loop)
            except SystemExit as error:
                print(f"\n{label}: the node did not start: {error}")
                continue
            try:
                half_rate = asyncio.run(measure(label, node, args))
            finally:
                node.stop()
            if storage is None:
                floor = asyncio.run(floor_latency(Path(folder), half_rate, args.seconds))
                print(
                    f"  the tail's floor at {half_rate:,.0f}/s, a minimal durable WebSocket "
                    f"server on the node's core: p50 {statistics.median(floor):.2f} ms, "
                    f"p99 {percentile(floor, 0.99):.2f} ms"
                )


if __name__ == "__main__":
    main()
