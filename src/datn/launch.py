"""A network of real node processes on one machine: what ``datn demo``,
the network tests and ``benchmarks/cross_node.py`` start.

Each node gets its own folder (``datn node init``: config, key, SQLite file
or a PostgreSQL schema), runs as its own ``datn node run`` process with
every port chosen by the system on 127.0.0.1, and is reached only through
its APIs, as an operator and traders would: the network is linked through
the operators' ``POST /admin/peers``, bonded through ``POST /admin/bonds``
and ``POST /admin/bonds/receipts`` (each holder's operator confirms the
money arrived, standing in for the rail), and traders are made and funded
through ``POST /admin/traders`` and ``POST /admin/deposits``.

Every process started is stopped by :meth:`LocalNetwork.stop` (SIGTERM,
then SIGKILL after a grace period), also when the caller fails: use it as a
context manager.
"""

from __future__ import annotations

import functools
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from datn.api.client import AdminClient, TraderClient
from datn.runtime.config import CONFIG_FILE, init_folder

T = TypeVar("T")

READY_TIMEOUT_S: Final = 60.0


class LaunchError(Exception):
    """A node did not start, or the network could not be set up: the
    message says which node and what its log said last."""


def _replace(text: str, old: str, new: str) -> str:
    if old not in text:  # pragma: no cover - the template changed
        raise LaunchError(f"the config template has no {old!r} to set")
    return text.replace(old, new, 1)


def configure(
    folder: Path,
    *,
    storage: str | None = None,
    resend_ms: int | None = None,
    rate: tuple[int, int] = (100_000, 100_000),
    products: Sequence[tuple[str, int]] = (),
    core: Mapping[str, int] | None = None,
) -> str:
    """Write a node's folder for a local network: every port chosen by the
    system, ``storage`` (SQLite in the folder if None), generous request
    rates, ``products`` (symbol, opening price) after the template's XYZ,
    and ``core`` settings (by name, as the template lists them under
    ``[core...]``) instead of their defaults; the node id."""
    config, identity = init_folder(folder)
    text = config.read_text(encoding="utf-8")
    for name, value in (core or {}).items():
        text = re.sub(rf"(?m)^# {re.escape(name)} = .*$", f"{name} = {value}", text, count=1)
    text = _replace(text, 'listen = "127.0.0.1:8480"', 'listen = "127.0.0.1:0"')
    text = _replace(text, 'admin_listen = "127.0.0.1:8481"', 'admin_listen = "127.0.0.1:0"')
    text = _replace(text, 'listen = "127.0.0.1:8482"', 'listen = "127.0.0.1:0"')
    text = _replace(text, "rate_per_second = 50", f"rate_per_second = {rate[0]}")
    text = _replace(text, "rate_burst = 100", f"rate_burst = {rate[1]}")
    if storage is not None:
        text = _replace(text, 'storage = "sqlite:///node.sqlite3"', f'storage = "{storage}"')
    if resend_ms is not None:
        text = _replace(text, "resend_ms = 500", f"resend_ms = {resend_ms}")
    extra = "".join(
        f'\n[[products]]\nsymbol = "{symbol}"\nkind = "share"\nquote_currency = "USD"\n'
        f"tick_size_minor = 1\nlot_size = 1\nreference_price_ticks = {price}\n"
        for symbol, price in products
    )
    # Products go before the [core] tables the template ends with.
    head, marker, tail = text.partition("\n[core]")
    config.write_text(head + extra + marker + tail, encoding="utf-8")
    return identity.node_id


@dataclass
class NodeProcess:
    """One running node: its folder, process, and clients for its APIs."""

    name: str
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    node_id: str = ""
    api_url: str = ""
    admin_url: str = ""
    net_address: str = ""
    admin: AdminClient | None = None
    traders: dict[str, TraderClient] = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return self.folder / "node.log"

    def launch(self, *options: str) -> None:
        """Start the process (``ready.json`` appears once it listens), with
        ``options`` for ``datn node run``."""
        (self.folder / "ready.json").unlink(missing_ok=True)
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "datn", "node", "run", str(self.folder), *options],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                # Its own session: a Ctrl-C in the terminal reaches the
                # caller, which stops the nodes in order, not the nodes.
                start_new_session=True,
            )
        finally:
            log.close()

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        ready = self.folder / "ready.json"
        deadline = time.monotonic() + timeout_s
        while not ready.exists() or not ready.read_text():
            if self.process is None or self.process.poll() is not None:
                raise LaunchError(f"node {self.name} exited at start:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise LaunchError(f"node {self.name} did not start in {timeout_s:.0f} s")
            time.sleep(0.02)
        ports = json.loads(ready.read_text())
        self._pin_ports(ports)
        token = (self.folder / "admin.token").read_text().strip()
        self.node_id = ports["node_id"]
        self.api_url = f"http://127.0.0.1:{ports['api_port']}"
        self.admin_url = f"http://127.0.0.1:{ports['admin_port']}"
        self.net_address = f"ws://127.0.0.1:{ports['net_port']}"
        if self.admin is not None:
            self.admin.close()
        self.admin = AdminClient(self.admin_url, token)
        for trader in self.traders.values():
            trader.http.base_url = self.api_url

    def _pin_ports(self, ports: dict[str, Any]) -> None:
        """Write the ports the system chose into the config, so that a
        restart listens where the peers and traders know the node."""
        config = self.folder / CONFIG_FILE
        text = config.read_text(encoding="utf-8")
        any_port = 'listen = "127.0.0.1:0"'
        if any_port not in text:
            return
        text = text.replace(
            'admin_listen = "127.0.0.1:0"', f'admin_listen = "127.0.0.1:{ports["admin_port"]}"', 1
        )
        text = text.replace(any_port, f'listen = "127.0.0.1:{ports["api_port"]}"', 1)
        text = text.replace(any_port, f'listen = "127.0.0.1:{ports["net_port"]}"', 1)
        config.write_text(text, encoding="utf-8")

    def tail(self, chars: int = 3_000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process ends at once, mid-write if it was writing."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, grace_s: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace_s``; the exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def quiet(self) -> bool:
        """No lock held for a peer, no order worked across the network, no
        trade its peers have not settled."""
        status = self.call("GET", "/admin/status")
        return not (status["open_locks"] or status["working_orders"] or status["unsettled_trades"])

    def close_clients(self) -> None:
        for trader in self.traders.values():
            trader.close()
        if self.admin is not None:
            self.admin.close()

    def call(
        self, method: str, path: str, body: object = None, ok: tuple[int, ...] = (200, 201)
    ) -> Any:
        """An operator's request; its JSON answer, or LaunchError."""
        assert self.admin is not None
        response = self.admin.request(method, path, body)
        if response.status_code not in ok:
            raise LaunchError(
                f"{self.name}: {method} {path} answered {response.status_code}: {response.text}"
            )
        return response.json()


class LocalNetwork:
    """``names`` nodes in folders under ``root``; see the module docstring."""

    def __init__(
        self,
        root: Path,
        names: Sequence[str],
        *,
        storage: dict[str, str] | None = None,
        resend_ms: int | None = None,
        products: Sequence[tuple[str, int]] = (),
        core: Mapping[str, int] | None = None,
    ) -> None:
        self.root = root
        self._core = core
        self.nodes = [NodeProcess(name, root / name) for name in names]
        self._storage = storage or {}
        self.deposited: dict[str, int] = {}
        """What traders were given, by currency or product symbol."""
        self._resend_ms = resend_ms
        self._products = products

    def __enter__(self) -> LocalNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[NodeProcess]:
        return iter(self.nodes)

    def node(self, name: str) -> NodeProcess:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def start(self) -> None:
        """Write each node's folder (first time only) and start every
        process; return once all listen."""
        for node in self.nodes:
            if not (node.folder / CONFIG_FILE).exists():
                configure(
                    node.folder,
                    storage=self._storage.get(node.name),
                    resend_ms=self._resend_ms,
                    products=self._products,
                    core=self._core,
                )
            node.launch()
        for node in self.nodes:
            node.wait_ready()

    def restart(self, node: NodeProcess) -> None:
        """Start ``node`` again (after it stopped or was killed)."""
        node.launch()
        node.wait_ready()

    def stop(self) -> None:
        """Stop every process this network started; close every client."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            node.stop()
            node.close_clients()

    # ------------------------------------------------------------ set-up

    def link(self, timeout_s: float = 30.0) -> None:
        """Every node a peer of every other, at its link address; return
        once every link is up both ways."""
        for node in self.nodes:
            for peer in self.nodes:
                if peer is not node:
                    node.call(
                        "POST",
                        "/admin/peers",
                        {"node_id": peer.node_id, "address": peer.net_address},
                    )
        for node in self.nodes:
            for peer in self.nodes:
                if peer is not node:
                    wait_until(
                        f"the link {node.name} - {peer.name}",
                        functools.partial(self._link_up, node, peer),
                        timeout_s,
                    )

    def _link_up(self, node: NodeProcess, peer: NodeProcess) -> bool:
        return bool(self.peer(node, peer)["link"]["state"] == "up")

    def _bonded(self, node: NodeProcess, peer: NodeProcess, amount: int) -> bool:
        return bool(self.peer(node, peer)["bonds"]["posted_minor"] >= amount)

    def peer(self, node: NodeProcess, peer: NodeProcess) -> dict[str, Any]:
        found: dict[str, Any] = node.call("GET", f"/admin/peers/{peer.node_id}")
        return found

    def bond(self, amount: int, asset: str = "USD", timeout_s: float = 30.0) -> None:
        """Each node funds its capital and posts ``amount`` of bond with
        every other; each holder's operator confirms the money arrived.
        Return once every bond is booked on both sides."""
        others = len(self.nodes) - 1
        for node in self.nodes:
            node.call("POST", "/admin/fund", {"asset": asset, "amount": amount * others})
        for node in self.nodes:
            for peer in self.nodes:
                if peer is node:
                    continue
                posted = node.call("POST", "/admin/bonds", {"peer": peer.node_id, "amount": amount})
                peer.call(
                    "POST",
                    "/admin/bonds/receipts",
                    {
                        "peer": node.node_id,
                        "bond_id": posted["bond_id"],
                        "asset": asset,
                        "amount": amount,
                    },
                )
        for node in self.nodes:
            for peer in self.nodes:
                if peer is not node:
                    wait_until(
                        f"{node.name}'s bond with {peer.name}",
                        functools.partial(self._bonded, node, peer, amount),
                        timeout_s,
                    )

    def trader(self, node: NodeProcess, trader_id: str, deposits: dict[str, int]) -> TraderClient:
        """A new trader at ``node`` with ``deposits`` (asset code or product
        symbol -> amount); its signed API client."""
        key = node.call("POST", "/admin/traders", {"trader_id": trader_id})
        for asset, amount in deposits.items():
            if amount:
                node.call(
                    "POST",
                    "/admin/deposits",
                    {"trader_id": trader_id, "asset": asset, "amount": amount},
                )
                self.deposited[asset] = self.deposited.get(asset, 0) + amount
        client = TraderClient(node.api_url, key["key_id"], key["secret"])
        node.traders[trader_id] = client
        return client

    def ledgers(self) -> dict[str, list[dict[str, Any]]]:
        """Every node's trial balance (``GET /admin/ledger``), by node name."""
        return {node.name: node.call("GET", "/admin/ledger") for node in self.nodes}

    def wait_quiet(self, timeout_s: float = 60.0) -> None:
        """Return once no node holds a lock for a peer, works an order
        across the network or has trades its peers have not settled."""
        for node in self.nodes:
            wait_until(f"{node.name} to settle what is in flight", node.quiet, timeout_s)

    def conservation(self, timeout_s: float = 30.0) -> list[str]:
        """:func:`conservation_problems` once the network has settled what
        was in flight (polled until none, or ``timeout_s``): empty if
        conservation holds across every ledger."""
        ids = {node.name: node.node_id for node in self.nodes}
        deadline = time.monotonic() + timeout_s
        while True:
            problems = conservation_problems(self.ledgers(), ids, self.deposited)
            if not problems or time.monotonic() > deadline:
                return problems
            time.sleep(0.1)


def wait_until(what: str, check: Callable[[], T | None], timeout_s: float = 30.0) -> T:
    """``check()``'s first true value, polled; LaunchError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise LaunchError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def conservation_problems(
    ledgers: dict[str, list[dict[str, Any]]],
    node_ids: dict[str, str],
    deposited: dict[str, int],
) -> list[str]:
    """What breaks conservation across the network, from every node's
    trial balance (``GET /admin/ledger``, by node name) once nothing is in
    flight; empty when all holds:

    * every node's ledger balances, per asset;
    * each pair agrees on what one owes the other (``peer:`` accounts) and
      on what settled between them (``rail:`` accounts), per asset;
    * each bond is booked the same on both sides;
    * the traders of the whole network hold exactly what was deposited
      (``deposited``: by currency or product symbol).
    """
    problems: list[str] = []
    books: dict[str, dict[tuple[str, str], int]] = {}
    for name, rows in ledgers.items():
        sums: dict[str, int] = {}
        book: dict[tuple[str, str], int] = {}
        for row in rows:
            sums[row["symbol"]] = sums.get(row["symbol"], 0) + row["balance"]
            book[(row["owner"], row["symbol"])] = row["balance"]
        books[name] = book
        problems += [
            f"{name}: {asset} balances sum to {total}" for asset, total in sums.items() if total
        ]
    names = sorted(ledgers)
    symbols = {symbol for book in books.values() for _, symbol in book}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            for kind in ("peer", "rail"):
                for symbol in sorted(symbols):
                    here = books[a].get((f"{kind}:{node_ids[b]}", symbol), 0)
                    there = books[b].get((f"{kind}:{node_ids[a]}", symbol), 0)
                    if here + there:
                        problems.append(
                            f"{a} and {b} disagree on {kind} {symbol}: {here} vs {there}"
                        )
    for a in names:
        for b in names:
            if a == b:
                continue
            for symbol in sorted(symbols):
                posted = books[a].get((f"bond-posted:{node_ids[b]}", symbol), 0)
                held = -books[b].get((f"bond-held:{node_ids[a]}", symbol), 0)
                if posted != held:
                    problems.append(f"{a}'s bond with {b}: posted {posted}, held {held} ({symbol})")
    held_by_traders: dict[str, int] = {}
    for book in books.values():
        for (owner, symbol), balance in book.items():
            if owner.startswith("trader:"):
                held_by_traders[symbol] = held_by_traders.get(symbol, 0) + balance
    for symbol in sorted(set(held_by_traders) | set(deposited)):
        if held_by_traders.get(symbol, 0) != deposited.get(symbol, 0):
            problems.append(
                f"traders hold {held_by_traders.get(symbol, 0)} {symbol}, "
                f"{deposited.get(symbol, 0)} was deposited"
            )
    return problems
