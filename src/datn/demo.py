"""``datn demo``: a live network of node processes on this machine.

It starts ``nodes`` node processes on 127.0.0.1 (each with its own folder,
key and SQLite file, under a temporary folder or ``--dir``), links them,
has each post a bond with every other (each holder's operator confirms the
money, standing in for the rail), and funds two traders at each node: a
market maker that quotes both products around a price that wanders, a tick
apart from the other nodes' makers, and a taker that sends IOC orders at
the best price it sees in its node's network book. Everything goes through
the nodes' public APIs, signed, as any trader's or operator's tool would.

While it runs, the terminal shows the latest trades (with the two nodes of
each cross-node trade), the network book per product, and each link's
round trip, exposure against bond, and settlement statements. On Ctrl-C or
after ``--duration`` it stops the bots, cancels the resting quotes, waits
until no lock, order or statement is in flight, checks conservation across
every node's ledger through the operators' API, prints a summary, and stops
every process it started (also on an error).
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

from datn.api.client import TraderClient
from datn.launch import LaunchError, LocalNetwork, NodeProcess

PRODUCTS: Final = (("XYZ", 5_000), ("ABC", 2_500))
"""Symbol and opening price in ticks (cents): XYZ is the config template's."""
BOND_MINOR: Final = 100_000_000
"""Each node's bond with each peer: one million dollars."""
NODE_NAMES: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class DemoSettings:
    nodes: int = 3
    duration_s: float | None = None
    folder: Path | None = None
    seed: int = 1
    taker_interval_s: float = 0.15
    quote_interval_s: float = 1.0


@dataclass
class _Trade:
    at_ms: int
    taker_node: str
    maker_node: str
    symbol: str
    side: str
    lots: int
    price_ticks: int


@dataclass
class _Tally:
    """What the bots did, shared with the view (under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    orders: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    trades: deque[_Trade] = field(default_factory=lambda: deque(maxlen=12))
    trade_count: int = 0
    cross_node: int = 0
    lots: int = 0
    errors: list[str] = field(default_factory=list)


class _Market:
    """A price per product that wanders, seeded: what the makers quote around."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.fair = dict(PRODUCTS)

    def step(self) -> None:
        with self._lock:
            for symbol, price in self.fair.items():
                self.fair[symbol] = max(100, price + self._rng.choice((-2, -1, 0, 0, 1, 2)))

    def price(self, symbol: str) -> int:
        with self._lock:
            return self.fair[symbol]


def _order(
    client_id: str, symbol: str, side: str, lots: int, price: int, tif: str
) -> dict[str, Any]:
    return {
        "client_order_id": client_id,
        "product": symbol,
        "side": side,
        "quantity_lots": lots,
        "price_ticks": price,
        "time_in_force": tif,
    }


class _Bots:
    """One maker and one taker thread per node."""

    def __init__(
        self, network: LocalNetwork, settings: DemoSettings, tally: _Tally, names: dict[str, str]
    ) -> None:
        self.network = network
        self.settings = settings
        self.tally = tally
        self.names = names
        self.market = _Market(settings.seed)
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.makers: dict[str, TraderClient] = {}
        self.takers: dict[str, TraderClient] = {}

    def fund(self) -> None:
        lots = {symbol: 100_000 for symbol, _ in PRODUCTS}
        for node in self.network:
            self.makers[node.name] = self.network.trader(
                node, f"maker-{node.name}", {"USD": 1_000_000_000, **lots}
            )
            self.takers[node.name] = self.network.trader(
                node, f"taker-{node.name}", {"USD": 1_000_000_000, **lots}
            )

    def start(self) -> None:
        for index, node in enumerate(self.network.nodes):
            for target in (self._make, self._take):
                thread = threading.Thread(
                    target=self._guard,
                    args=(target, node, index),
                    name=f"{target.__name__}-{node.name}",
                    daemon=True,
                )
                thread.start()
                self.threads.append(thread)

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _guard(
        self, target: Callable[[NodeProcess, int], None], node: NodeProcess, index: int
    ) -> None:
        try:
            target(node, index)
        except Exception as error:  # a bot's failure ends the demo with its reason
            bot = _BOT_NAMES.get(target.__name__, target.__name__)
            with self.tally.lock:
                self.tally.errors.append(f"the {bot} at node {node.name} failed: {error}")
            self.stop.set()

    def _place(self, client: TraderClient, body: dict[str, Any]) -> dict[str, Any] | None:
        response = client.request("POST", "/v1/orders", body)
        with self.tally.lock:
            self.tally.orders += 1
            if response.status_code >= 400:
                self.tally.refused[response.json().get("code", str(response.status_code))] += 1
                return None
        answer: dict[str, Any] = response.json()
        return answer

    def _make(self, node: NodeProcess, index: int) -> None:
        """Quote every product: cancel the last quotes, rest a bid and an
        ask around the wandering price, each node a tick off the others."""
        client = self.makers[node.name]
        rng = random.Random(self.settings.seed * 1_000 + index)
        number = 0
        while not self.stop.is_set():
            if index == 0:
                self.market.step()
            client.request("DELETE", "/v1/orders")
            for symbol, _ in PRODUCTS:
                fair = self.market.price(symbol)
                offset = 1 + (index + number) % len(self.network.nodes)
                for side, price in (("buy", fair - offset), ("sell", fair + offset)):
                    number += 1
                    lots = rng.randint(5, 40)
                    self._place(client, _order(f"q{number}", symbol, side, lots, price, "gtc"))
            self.stop.wait(self.settings.quote_interval_s)

    def _take(self, node: NodeProcess, index: int) -> None:
        """Take the best price in the network book, wherever it rests."""
        client = self.takers[node.name]
        rng = random.Random(self.settings.seed * 7_919 + index)
        seen: set[str] = set()
        number = 0
        while not self.stop.is_set():
            symbol = rng.choice(PRODUCTS)[0]
            book = client.request("GET", f"/v1/book/{symbol}").json()
            side = rng.choice(("buy", "sell"))
            levels = book["asks"] if side == "buy" else book["bids"]
            if levels:
                number += 1
                best = levels[0]["price_ticks"]
                lots = rng.randint(1, 8)
                self._place(client, _order(f"t{number}", symbol, side, lots, best, "ioc"))
            self._collect(client, node, seen)
            self.stop.wait(self.settings.taker_interval_s * rng.uniform(0.5, 1.5))

    def _collect(self, client: TraderClient, node: NodeProcess, seen: set[str]) -> None:
        """The taker's new executions, as trades for the view."""
        executions = client.request("GET", "/v1/executions?limit=50").json()
        fresh = [e for e in reversed(executions) if e["execution_id"] not in seen]
        symbols = {spec_id: symbol for symbol, spec_id in self.network_products(client).items()}
        with self.tally.lock:
            for execution in fresh:
                seen.add(execution["execution_id"])
                maker = self.names.get(execution["counterparty"], node.name)
                trade = _Trade(
                    execution["at_ms"],
                    node.name,
                    maker,
                    symbols.get(execution["product_id"], "?"),
                    execution["side"],
                    execution["quantity_lots"],
                    execution["price_ticks"],
                )
                self.tally.trades.append(trade)
                self.tally.trade_count += 1
                self.tally.lots += trade.lots
                if maker != node.name:
                    self.tally.cross_node += 1

    _products: dict[str, str] | None = None

    def network_products(self, client: TraderClient) -> dict[str, str]:
        if self._products is None:
            listed = client.request("GET", "/v1/products").json()
            self._products = {p["symbol"]: p["product_id"] for p in listed}
        return self._products


# ------------------------------------------------------------------ the view


def _render(network: LocalNetwork, tally: _Tally, started: float, names: dict[str, str]) -> str:
    lines: list[str] = []
    elapsed = time.monotonic() - started
    with tally.lock:
        trades = list(tally.trades)
        orders, count, cross, lots = tally.orders, tally.trade_count, tally.cross_node, tally.lots
    lines.append(
        f"datn demo — {len(network.nodes)} nodes, {elapsed:5.0f} s: {orders} orders, "
        f"{count} trades ({cross} across nodes), {lots} lots        Ctrl-C to stop"
    )
    lines.append("")
    lines.append("latest trades            taker <- maker")
    for trade in sorted(trades, key=lambda t: t.at_ms, reverse=True)[:8]:
        stamp = time.strftime("%H:%M:%S", time.localtime(trade.at_ms / 1_000))
        route = (
            f"{trade.taker_node} <- {trade.maker_node}"
            if trade.taker_node != trade.maker_node
            else f"{trade.taker_node} (local)"
        )
        lines.append(
            f"  {stamp}  {trade.symbol:<4} {trade.side:<4} {trade.lots:>3} @ "
            f"{trade.price_ticks / 100:>8.2f}   {route}"
        )
    first = network.nodes[0]
    viewer = next(iter(first.traders.values()), None)
    if viewer is not None:
        for symbol, _ in PRODUCTS:
            book = viewer.request("GET", f"/v1/book/{symbol}").json()
            lines.append("")
            lines.append(f"network book {symbol} (as {first.name} sees it: local + peers' lots)")
            asks = list(reversed(book["asks"][:3]))
            for level in asks:
                lines.append(_level("ask", level))
            for level in book["bids"][:3]:
                lines.append(_level("bid", level))
    lines.append("")
    lines.append("link      rtt ms   exposure / cap (USD)       statements  frames unacked")
    for node in network:
        for peer in node.call("GET", "/admin/peers"):
            other = names.get(peer["node_id"], peer["node_id"][:8])
            link, exposure = peer["link"], peer["exposure"]
            rtt = "-" if link["rtt_ms"] is None else str(link["rtt_ms"])
            lines.append(
                f"{node.name} -> {other:<3} {rtt:>6}   "
                f"{exposure['exposure_minor'] / 100:>10,.0f} / "
                f"{exposure['cap_minor'] / 100:<12,.0f}"
                f" {peer['settlement']['statements_settled']:>6}      {link['unacked_frames']:>4}"
                f"   {link['state']}"
            )
    return "\n".join(lines)


def _level(side: str, level: dict[str, Any]) -> str:
    return (
        f"  {side} {level['price_ticks'] / 100:>8.2f}  {level['quantity_lots']:>5} lots"
        f"  (here {level['local_lots']}, peers {level['network_lots']})"
    )


# ------------------------------------------------------------------ the run


@contextlib.contextmanager
def _interrupts() -> Iterator[threading.Event]:
    """SIGINT and SIGTERM set the event instead of raising mid-request."""
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


_BOT_NAMES: Final = {"_make": "market-making bot", "_take": "taking bot"}


def run_demo(settings: DemoSettings, out: TextIO, *, live: bool) -> dict[str, Any]:
    """Run the demo; its summary. Raises LaunchError if the network could not
    be set up or a bot failed; every process is stopped either way."""
    if not 2 <= settings.nodes <= len(NODE_NAMES):
        raise LaunchError(f"--nodes must be from 2 to {len(NODE_NAMES)}")
    root = settings.folder or Path(tempfile.mkdtemp(prefix="datn-demo-"))
    keep = settings.folder is not None
    names = list(NODE_NAMES[: settings.nodes])
    tally = _Tally()

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    try:
        with (
            _interrupts() as interrupted,
            LocalNetwork(root, names, products=PRODUCTS[1:]) as network,
        ):
            say(f"starting {settings.nodes} nodes in {root} ...")
            network.start()
            by_id = {node.node_id: node.name for node in network}
            for node in network:
                say(
                    f"  node {node.name}  {node.node_id[:16]}…  api {node.api_url}"
                    f"  links {node.net_address}"
                )
            network.link()
            say("linked: every node a peer of every other, both ways")
            network.bond(BOND_MINOR)
            say(f"bonded: each node posted {BOND_MINOR / 100:,.0f} USD with each peer")
            bots = _Bots(network, settings, tally, by_id)
            bots.fund()
            started = time.monotonic()
            bots.start()
            try:
                _watch(network, tally, started, by_id, settings, interrupted, bots, out, live)
            finally:
                bots.join()
            summary = _finish(network, tally, started, by_id, out)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return summary


def _watch(
    network: LocalNetwork,
    tally: _Tally,
    started: float,
    names: dict[str, str],
    settings: DemoSettings,
    interrupted: threading.Event,
    bots: _Bots,
    out: TextIO,
    live: bool,
) -> None:
    last_line = 0.0
    while not interrupted.is_set() and not bots.stop.is_set():
        now = time.monotonic()
        if settings.duration_s is not None and now - started >= settings.duration_s:
            break
        for node in network:
            if not node.running:
                raise LaunchError(f"node {node.name} stopped:\n{node.tail()}")
        if live:
            out.write("\x1b[H\x1b[2J" + _render(network, tally, started, names) + "\n")
            out.flush()
        elif now - last_line >= 5:
            last_line = now
            with tally.lock:
                print(
                    f"{now - started:5.0f} s: {tally.orders} orders, {tally.trade_count} trades "
                    f"({tally.cross_node} across nodes)",
                    file=out,
                    flush=True,
                )
        interrupted.wait(1.0)
    with tally.lock:
        errors = list(tally.errors)
    if errors:
        # A bot fails first when a node it trades at dies: the node's end
        # is then the reason to give, with its log.
        gone = _stopped(network)
        if gone is not None:
            raise LaunchError(f"node {gone.name} stopped:\n{gone.tail()}")
        raise LaunchError("; ".join(errors))


def _stopped(network: LocalNetwork, grace_s: float = 1.0) -> NodeProcess | None:
    """A node whose process has ended, if any (a process killed a moment ago
    given ``grace_s`` to be seen ended)."""
    deadline = time.monotonic() + grace_s
    while True:
        gone = next((node for node in network if not node.running), None)
        if gone is not None or time.monotonic() >= deadline:
            return gone
        time.sleep(0.05)


def _finish(
    network: LocalNetwork, tally: _Tally, started: float, names: dict[str, str], out: TextIO
) -> dict[str, Any]:
    print("\nstopping the bots; cancelling resting quotes ...", file=out, flush=True)
    elapsed = time.monotonic() - started
    for node in network:
        for client in node.traders.values():
            client.request("DELETE", "/v1/orders")

    network.wait_quiet()
    problems = network.conservation(timeout_s=30)
    statements = {
        f"{node.name}-{names.get(peer['node_id'], '?')}": peer["settlement"]["statements_settled"]
        for node in network
        for peer in node.call("GET", "/admin/peers")
    }
    with tally.lock:
        summary: dict[str, Any] = {
            "nodes": len(network.nodes),
            "seconds": round(elapsed, 1),
            "orders": tally.orders,
            "refused": dict(tally.refused),
            "trades": tally.trade_count,
            "cross_node_trades": tally.cross_node,
            "lots": tally.lots,
            "statements_settled": statements,
            "conservation": "exact" if not problems else "BROKEN",
            "problems": problems,
        }
    return summary


def print_summary(summary: dict[str, Any], out: TextIO) -> None:
    print("", file=out)
    print(
        f"{summary['nodes']} nodes traded for {summary['seconds']} s: {summary['orders']} orders, "
        f"{summary['trades']} taker trades ({summary['cross_node_trades']} across nodes), "
        f"{summary['lots']} lots",
        file=out,
    )
    if summary["refused"]:
        refused = ", ".join(f"{code} {count}" for code, count in sorted(summary["refused"].items()))
        print(f"refused orders: {refused}", file=out)
    settled = sum(summary["statements_settled"].values())
    print(f"settlement statements settled (counted at both ends): {settled}", file=out)
    if summary["problems"]:
        print("CONSERVATION BROKEN:", file=out)
        for problem in summary["problems"]:
            print(f"  {problem}", file=out)
    else:
        print(
            "conservation checked through the operators' API: every ledger balances, each pair "
            "agrees on what it owes and settled, bonds match, and traders hold exactly what "
            "was deposited",
            file=out,
        )
    print("every node process stopped", file=out)


def is_terminal(stream: TextIO) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)()) and sys.platform != "win32"
