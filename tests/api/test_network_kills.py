"""SIGKILL across the network: two linked node processes trade continuously
across nodes, each both originator and holder, while one of them is killed
at random moments, and every other time as soon as an originator waits on a
holder's decision (killing it or that holder between an acceptance and its
answer), and restarted. Afterwards no acknowledged order is lost, every trade is on
both ledgers once the links heal, and the network conserves every asset
exactly.

DATN_NETWORK_KILLS sets the number of kills (20 by default; the documented
long run uses 200)."""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from journal_audit import audit

from datn.api.client import TraderClient
from datn.launch import LaunchError, LocalNetwork, NodeProcess

KILLS = int(os.environ.get("DATN_NETWORK_KILLS", "20"))
BOND = 500_000_000


@dataclass
class Flow:
    """One trader's stream of orders at one node: each retried with the same
    client order id until the node answers, as a careful trader would."""

    client: TraderClient
    symbol: str
    side: str
    price: int
    name: str
    acknowledged: dict[str, int] = field(default_factory=dict)
    retries: int = 0

    def run(self, stop: threading.Event, seed: int) -> None:
        rng = random.Random(seed)
        number = 0
        while not stop.is_set():
            number += 1
            client_id = f"{self.name}-{number}"
            body = {
                "client_order_id": client_id,
                "product": self.symbol,
                "side": self.side,
                "quantity_lots": rng.randint(1, 4),
                "price_ticks": self.price,
            }
            while not stop.is_set():
                try:
                    answer = self.client.request("POST", "/v1/orders", body)
                except httpx.HTTPError:
                    self.retries += 1
                    time.sleep(0.05)
                    continue
                if answer.status_code in (200, 201):
                    self.acknowledged[client_id] = answer.json()["order_id"]
                    break
                if answer.status_code in (429, 503):
                    time.sleep(0.05)
                    continue
                raise AssertionError(f"{client_id}: {answer.status_code} {answer.text}")
            time.sleep(rng.uniform(0.0, 0.03))


def kill_when_waiting(victim: NodeProcess, originator: NodeProcess, within_s: float = 2.0) -> None:
    """SIGKILL ``victim`` as soon as ``originator``'s status shows an order
    waiting on a holder's decision (or after ``within_s`` regardless)."""
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        try:
            if originator.call("GET", "/admin/status")["waiting_on_holders"]:
                break
        except (httpx.HTTPError, LaunchError):
            break
    victim.kill()


def test_cross_node_trading_survives_sigkill_of_either_node(tmp_path: Path) -> None:
    rng = random.Random(11)
    with LocalNetwork(tmp_path, ["a", "b"], resend_ms=100, products=[("ABC", 2_500)]) as network:
        network.start()
        network.link()
        network.bond(BOND)
        a, b = network.nodes
        # XYZ rests at b and is taken from a; ABC rests at a and is taken
        # from b: each node is originator for one product, holder for the other.
        flows = [
            Flow(network.trader(b, "xyz-seller", {"XYZ": 1_000_000}), "XYZ", "sell", 5_000, "xs"),
            Flow(network.trader(a, "xyz-buyer", {"USD": 10**11}), "XYZ", "buy", 5_000, "xb"),
            Flow(network.trader(a, "abc-seller", {"ABC": 1_000_000}), "ABC", "sell", 2_500, "as"),
            Flow(network.trader(b, "abc-buyer", {"USD": 10**11}), "ABC", "buy", 2_500, "ab"),
        ]
        stop = threading.Event()
        threads = [
            threading.Thread(target=flow.run, args=(stop, n), daemon=True)
            for n, flow in enumerate(flows)
        ]
        for thread in threads:
            thread.start()
        try:
            for number in range(KILLS):
                time.sleep(rng.uniform(0.05, 0.6))
                victim: NodeProcess = rng.choice(network.nodes)
                if number % 2:
                    # Aimed: once an originator waits on a holder's decision
                    # (its acceptance out, the answer not in), kill it or
                    # that holder.
                    other = b if victim is a else a
                    kill_when_waiting(victim, rng.choice([victim, other]))
                else:
                    victim.kill()
                time.sleep(rng.uniform(0.0, 0.3))
                network.restart(victim)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        # Every acknowledged order is still there, under its client order id.
        for flow in flows:
            assert flow.acknowledged, f"{flow.name} placed nothing"
            for client_id, order_id in flow.acknowledged.items():
                seen = flow.client.request("GET", f"/v1/orders?client_order_id={client_id}")
                assert seen.status_code == 200, (client_id, seen.text)
                assert seen.json()[0]["order_id"] == order_id
        for node in network:
            for client in node.traders.values():
                client.request("DELETE", "/v1/orders")

        network.wait_quiet(90)
        assert network.conservation() == []
        traded = sum(
            row["balance"]
            for row in network.ledgers()["a"]
            if row["owner"] == "trader:xyz-buyer" and row["symbol"] == "XYZ"
        )
        assert traded > 0, "no XYZ crossed from b to a"
        stats: dict[str, int] = {}
        for node in network:
            for name, count in node.call("GET", "/admin/status")["stats"].items():
                if name.startswith(
                    ("lock_outcome:", "locks_", "acceptance", "in_doubt", "holders_")
                ):
                    stats[name] = stats.get(name, 0) + count
        # Each node's journal, replayed through its core: as holder it took
        # no lock at or after its expiry by its own clock, none across a
        # restart, and never changed a decision; and kills fell between an
        # acceptance and its answer.
        audits = {node.name: audit(node.folder / "node.sqlite3") for node in network}
        for name, found in audits.items():
            assert found.violations == [], (name, found.violations[:5])
        taken = sum(found.confirmations for found in audits.values())
        as_originator = sum(found.originator_kills_between for found in audits.values())
        as_holder = sum(found.holder_kills_between for found in audits.values())
        assert taken > 0
        assert as_originator > 0 and as_holder > 0, (as_originator, as_holder)
        # The figures of a run (shown with -s; the long run's go in the notes).
        print(
            f"\n{KILLS} kills: {sum(len(f.acknowledged) for f in flows)} orders acknowledged, "
            f"{sum(f.retries for f in flows)} retried after a refused connection, "
            f"{traded} XYZ lots crossed b -> a; lock outcomes {dict(sorted(stats.items()))}; "
            f"journals replayed: {taken} locks taken, none late; acceptances whose answer "
            f"came after a restart: {as_originator} of the originator's, {as_holder} taken in "
            "by a restarted holder"
        )
