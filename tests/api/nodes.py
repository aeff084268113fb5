"""Real node processes on 127.0.0.1 for tests: start one from a folder
``datn node init`` wrote, reach its APIs, stop it; make funded traders."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from datn.api.client import AdminClient, TraderClient
from datn.runtime.config import init_folder

DATN = str(Path(sys.executable).parent / "datn")


@dataclass
class Running:
    folder: Path
    process: subprocess.Popen[bytes]
    admin: AdminClient
    api_url: str
    node_id: str = ""
    net_address: str = ""

    def trader(self, key_id: str, secret: str) -> TraderClient:
        return TraderClient(self.api_url, key_id, secret)


def counters(admin: AdminClient, family: str) -> dict[str, int]:
    """One labelled counter family of a node's ``/metrics`` (such as
    ``datn_core_events_total``), by its ``name`` label."""
    found: dict[str, int] = {}
    for line in admin.request("GET", "/metrics").text.splitlines():
        if line.startswith(family + "{"):
            name = line.split('name="', 1)[1].split('"', 1)[0]
            found[name] = int(float(line.rsplit(" ", 1)[1]))
    return found


def start(folder: Path) -> Running:
    ready = folder / "ready.json"
    ready.unlink(missing_ok=True)
    log = open(folder / "node.log", "ab")  # noqa: SIM115 - the process keeps it
    process = subprocess.Popen([DATN, "node", "run", str(folder)], stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while not ready.exists() or not ready.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError((folder / "node.log").read_text()[-3000:])
        time.sleep(0.05)
    ports = json.loads(ready.read_text())
    token = (folder / "admin.token").read_text().strip()
    return Running(
        folder,
        process,
        AdminClient(f"http://127.0.0.1:{ports['admin_port']}", token),
        f"http://127.0.0.1:{ports['api_port']}",
        ports["node_id"],
        f"ws://127.0.0.1:{ports['net_port']}",
    )


def new_node(
    tmp_path: Path,
    storage: str | None = None,
    rate: tuple[int, int] = (100_000, 100_000),
    name: str = "node",
    event_loop: str = "asyncio",
) -> Path:
    folder = tmp_path / name
    config, _ = init_folder(folder)
    text = config.read_text()
    text = text.replace("rate_per_second = 50", f"rate_per_second = {rate[0]}")
    text = text.replace("rate_burst = 100", f"rate_burst = {rate[1]}")
    text = text.replace('listen = "127.0.0.1:8480"', 'listen = "127.0.0.1:0"')
    text = text.replace('admin_listen = "127.0.0.1:8481"', 'admin_listen = "127.0.0.1:0"')
    text = text.replace('listen = "127.0.0.1:8482"', 'listen = "127.0.0.1:0"')
    text = text.replace('event_loop = "asyncio"', f'event_loop = "{event_loop}"')
    if storage is not None:
        text = text.replace('storage = "sqlite:///node.sqlite3"', f'storage = "{storage}"')
    config.write_text(text)
    return folder


@pytest.fixture
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Running]:
    """A node process; on the event loop a test's ``indirect`` parameter
    names, else asyncio's."""
    running = start(new_node(tmp_path, event_loop=getattr(request, "param", "asyncio")))
    try:
        yield running
    finally:
        stop(running)


def stop(running: Running) -> None:
    if running.process.poll() is None:
        running.process.send_signal(signal.SIGTERM)
        try:
            running.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            running.process.kill()
    running.admin.close()


def make_trader(running: Running, trader_id: str, usd: int, xyz: int) -> TraderClient:
    made = running.admin.request("POST", "/admin/traders", {"trader_id": trader_id})
    assert made.status_code == 201, made.text
    key = made.json()
    for asset, amount in (("USD", usd), ("XYZ", xyz)):
        if amount:
            paid = running.admin.request(
                "POST",
                "/admin/deposits",
                {"trader_id": trader_id, "asset": asset, "amount": amount},
            )
            assert paid.status_code == 201, paid.text
    return running.trader(key["key_id"], key["secret"])


def order(
    client_id: str, side: str, lots: int, price: int | None, **extra: object
) -> dict[str, object]:
    body: dict[str, object] = {
        "client_order_id": client_id,
        "product": "XYZ",
        "side": side,
        "quantity_lots": lots,
        **extra,
    }
    if price is not None:
        body["price_ticks"] = price
    return body


POSTGRES_URL = os.environ.get("DATN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    """A storage URL for a node on PostgreSQL in a schema of its own,
    dropped after the test. Skips if no PostgreSQL is reachable, unless
    DATN_REQUIRE_POSTGRES=1 (as in CI), where that fails the test."""
    import psycopg  # noqa: PLC0415

    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.Error as error:
        if os.environ.get("DATN_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is not reachable: {error}")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is not reachable: {error}")
    schema = f"node_{os.getpid()}_{random.Random().randrange(10**9)}"
    try:
        yield f"{POSTGRES_URL}?schema={schema}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
