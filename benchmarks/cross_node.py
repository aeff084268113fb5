"""Cross-node latency: a trader's order at one node filling a resting order
at another, through real node processes linked over loopback.

Three nodes (``datn node run``, SQLite: WAL, synchronous=FULL) are linked
and bonded as operators would. A maker at node B rests a large sell; a
taker at node A, on its WebSocket session, sends one IOC buy of one lot at
that price at a time and waits for its execution report. For each trade it
measures the time from sending the request to receiving the report.

The report is also the moment the trade is durable on both ledgers: the
holder B journals the fill before it sends its confirmation, and A journals
the booking before it releases the report (nothing leaves a node before the
journal entry behind it is durable). So one figure serves both.

The physical floor of that path, measured in the same run: the trader's
round trip to A, two loopback round trips between A and B (broadcast and
offer, acceptance and confirmation), and the five durable commits on the
way (A's order, B's lock, A's acceptance, B's fill, A's booking), each
timed as an SQLite WAL commit with synchronous=FULL in the same folder:
back to back, and each after a pause of a few milliseconds, as a node's
commits on the path come (on a virtual machine a disk that was idle for a
moment takes longer to sync than one kept busy).

Where the time went, from each node's own ``/metrics`` read before and
after the trades: its commits per trade and their mean duration (the rows'
writing and the sync), and its CPU per trade, the event loop's thread apart.

Nothing is asserted; the figures and conditions are printed.

Usage: python benchmarks/cross_node.py [--trades 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from websockets.asyncio.server import serve
from websockets.sync.client import connect

from datn.api.client import TraderClient
from datn.api.metrics import Moved, samples
from datn.launch import LocalNetwork, NodeProcess, wait_until

COMMITS_ON_PATH = 5
PAUSE_S = 0.002
"""The pause before each of the floor's spaced commits: about the time
between one node's commits on the path."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.contextmanager
def session(node: NodeProcess, client: TraderClient) -> Iterator[Any]:
    """The trader's authenticated WebSocket session at ``node``."""
    url = node.api_url.replace("http://", "ws://") + "/v1/ws"
    with connect(url, open_timeout=10, compression=None) as socket:
        stamp = str(int(time.time() * 1_000))
        socket.send(
            json.dumps(
                {
                    "op": "auth",
                    "key_id": client.key_id,
                    "timestamp": stamp,
                    "signature": client.signer.sign(stamp, "GET", "/v1/ws", b""),
                }
            )
        )
        assert json.loads(socket.recv(timeout=10))["ok"] is True
        yield socket


def cross_trades(network: LocalNetwork, trades: int) -> tuple[list[float], list[float]]:
    a, b, c = network.nodes
    maker = network.trader(b, "maker", {"XYZ": 10 * trades})
    far = network.trader(c, "far-maker", {"XYZ": 1_000})
    taker = network.trader(a, "taker", {"USD": 10_000 * 5_000 * trades})
    order = {"product": "XYZ", "side": "sell", "time_in_force": "gtc"}
    placed = maker.request(
        "POST",
        "/v1/orders",
        {**order, "client_order_id": "m", "quantity_lots": 10 * trades, "price_ticks": 5_000},
    )
    assert placed.status_code == 201, placed.text
    far.request(
        "POST",
        "/v1/orders",
        {**order, "client_order_id": "f", "quantity_lots": 1_000, "price_ticks": 5_100},
    )
    wait_until(
        "B's order in A's network book",
        lambda: any(
            level["price_ticks"] == 5_000 and level["network_lots"] > 0
            for level in taker.request("GET", "/v1/book/XYZ").json()["asks"]
        ),
    )
    to_report: list[float] = []
    to_ack: list[float] = []
    with session(a, taker) as socket:
        for number in range(trades):
            request = {
                "op": "place",
                "id": number,
                "order": {
                    "client_order_id": f"t{number}",
                    "product": "XYZ",
                    "side": "buy",
                    "quantity_lots": 1,
                    "price_ticks": 5_000,
                    "time_in_force": "ioc",
                },
            }
            text = json.dumps(request)
            started = time.perf_counter()
            socket.send(text)
            acked = None
            while True:
                message = json.loads(socket.recv(timeout=10))
                if message.get("id") == number:
                    acked = time.perf_counter()
                    assert message["ok"], message
                    order_id = message["order"]["order_id"]
                    if message["order"]["status"] == "filled":
                        break
                if (
                    message.get("event") == "executed"
                    and acked is not None
                    and message.get("order_id") == order_id
                ):
                    break
            done = time.perf_counter()
            to_report.append((done - started) * 1_000)
            to_ack.append(((acked or done) - started) * 1_000)
    return to_report, to_ack


# ------------------------------------------------------------------ floor


def echo_server(port_file: Path) -> None:
    """A WebSocket echo server in this process: run as a child."""

    async def main() -> None:
        async def echo(connection) -> None:  # type: ignore[no-untyped-def]
            async for message in connection:
                await connection.send(message)

        async with serve(echo, "127.0.0.1", 0, compression=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            port_file.write_text(str(port))
            await asyncio.Future()

    asyncio.run(main())


def loopback_rtt(folder: Path, samples: int) -> list[float]:
    """Round trips of a small message to a WebSocket echo in another process."""
    port_file = folder / "echo.port"
    child = subprocess.Popen(
        [sys.executable, __file__, "--echo", str(port_file)], stdin=subprocess.DEVNULL
    )
    try:
        wait_until("the echo server", lambda: port_file.exists() and port_file.read_text(), 30)
        with connect(f"ws://127.0.0.1:{port_file.read_text()}", compression=None) as socket:
            times = []
            payload = b"x" * 300
            for _ in range(samples):
                started = time.perf_counter()
                socket.send(payload)
                socket.recv(timeout=10)
                times.append((time.perf_counter() - started) * 1_000)
        return times
    finally:
        child.kill()
        child.wait()


def commit_times(folder: Path, count: int, pause_s: float = 0.0) -> list[float]:
    """One small durable commit each, as a node's store makes them, each
    after ``pause_s``."""
    connection = sqlite3.connect(folder / f"floor-{pause_s}.sqlite3", isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, b BLOB)")
    times = []
    for n in range(count):
        if pause_s:
            time.sleep(pause_s)
        started = time.perf_counter()
        connection.execute("BEGIN")
        connection.execute("INSERT INTO t VALUES (?, ?)", (n, b"x" * 200))
        connection.execute("COMMIT")
        times.append((time.perf_counter() - started) * 1_000)
    connection.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trades", type=int, default=2_000)
    parser.add_argument("--echo", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo is not None:
        echo_server(args.echo)
        return
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; "
        f"three node processes on 127.0.0.1, SQLite (WAL, synchronous=FULL); "
        f"{args.trades} trades, one at a time, one lot each"
    )
    with tempfile.TemporaryDirectory(prefix="datn-cross-") as folder:
        root = Path(folder)
        # A peer's broadcasts answered with locks are rate-limited (50 a
        # second by default, against a peer that grabs liquidity); this one
        # sends as fast as trades complete, so its holders allow that.
        quota = {"broadcasts_per_s": 100_000, "broadcast_burst": 100_000}
        with LocalNetwork(root / "net", ["a", "b", "c"], core=quota) as network:
            network.start()
            network.link()
            network.bond(10**10)
            before = {node.name: metrics(node) for node in network}
            to_report, to_ack = cross_trades(network, args.trades)
            after = {node.name: metrics(node) for node in network}
        rtt = loopback_rtt(root, 2_000)
        commits = commit_times(root, 500)
        spaced = commit_times(root, 500, PAUSE_S)
    rtt50, commit50 = statistics.median(rtt), statistics.median(commits)
    floor = 3 * rtt50 + COMMITS_ON_PATH * commit50
    spaced_floor = 3 * rtt50 + COMMITS_ON_PATH * statistics.median(spaced)
    p50, p99 = statistics.median(to_report), percentile(to_report, 0.99)
    print()
    print("request to execution report (= durable on both ledgers), ms:")
    print(f"  p50 {p50:.2f}   p99 {p99:.2f}   max {max(to_report):.2f}")
    print(
        f"request to acknowledgement at the originator, ms: p50 {statistics.median(to_ack):.2f}"
        f"   p99 {percentile(to_ack, 0.99):.2f}"
    )
    print()
    print(
        f"floor: 3 loopback round trips ({rtt50:.3f} ms each, median; p99 "
        f"{percentile(rtt, 0.99):.3f}) + {COMMITS_ON_PATH} durable commits ({commit50:.3f} ms "
        f"each, median; p99 {percentile(commits, 0.99):.3f}) = {floor:.2f} ms"
    )
    print(
        f"       with each commit after a {PAUSE_S * 1_000:.0f} ms pause, as on the path "
        f"({statistics.median(spaced):.3f} ms each, median; p99 {percentile(spaced, 0.99):.3f})"
        f" = {spaced_floor:.2f} ms"
    )
    print(f"p50 / floor: {p50 / floor:.1f}x   (targets: p50 <= 2 ms, p99 <= 10 ms)")
    print()
    print("where the time went, per trade, from each node's own counters:")
    roles = {"a": "A, the originator", "b": "B, the holder", "c": "C, a bystander"}
    for name, role in roles.items():
        print(f"  {role}: {account(before[name], after[name], args.trades)}")


def metrics(node: NodeProcess) -> dict[str, float]:
    """``node``'s ``/metrics``, by sample name."""
    assert node.admin is not None
    return samples(node.admin.request("GET", "/metrics").text)


def account(before: dict[str, float], after: dict[str, float], trades: int) -> str:
    moved = Moved(before, after)
    commits = moved("datn_commit_milliseconds_count")
    mean = moved("datn_commit_milliseconds_sum") / commits if commits else 0.0
    cpu = moved("process_cpu_seconds_total") * 1_000 / trades
    loop = moved.thread_cpu("MainThread") * 1_000 / trades
    kernel = moved.thread_cpu("MainThread", "system") * 1_000 / trades
    return (
        f"{commits / trades:.2f} commits of {mean:.2f} ms mean; "
        f"CPU {cpu:.2f} ms (event loop {loop:.2f}, {kernel:.2f} of it in the kernel)"
    )


if __name__ == "__main__":
    main()
