"""The traders' API bounds the connections it holds, in all and per address,
so that one client (or a few) cannot take the open files that the node's
peer links, its store and its other traders need."""

from __future__ import annotations

import contextlib
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from nodes import Running, new_node, start, stop

from datn.api.metrics import samples
from datn.api.serve import ADMIN_MAX_CONNECTIONS_PER_ADDRESS, trader_connections
from datn.api.transport import REQUEST_TIMEOUT_S, Places
from datn.runtime.config import ConfigError, init_folder, load_config

# ------------------------------------------------------------------ places


def test_places_are_bounded_per_address_and_in_all_and_given_back_once() -> None:
    places = Places(total=6, per_address=2)
    held = [places.take(("192.0.2.1", 1000 + n)) for n in range(2)]
    assert all(held)
    assert places.take(("192.0.2.1", 2000)) is None  # its address's places are taken
    # An IPv6 host's /64 counts as one address; another /64 does not.
    v6 = [places.take((f"2001:db8:1:2::{n}", 443, 0, 0)) for n in range(1, 4)]
    assert v6[0] and v6[1] and v6[2] is None
    assert places.take(("2001:db8:1:3::1", 443, 0, 0)) is not None
    assert places.refused["address"] == 2
    assert places.take(("198.51.100.9", 1)) is not None
    assert places.take(("198.51.100.10", 1)) is None  # every place is taken
    assert places.refused["total"] == 1
    assert held[0] is not None
    held[0].give_back()
    held[0].give_back()  # a second give-back frees nothing more
    assert places.held.total() == 5
    assert places.take(("198.51.100.10", 1)) is not None
    assert places.take(("198.51.100.11", 1)) is None


# ------------------------------------------------------------------ open files


def test_the_traders_share_is_what_the_open_files_limit_leaves(tmp_path: Path) -> None:
    config, _ = init_folder(tmp_path / "n")
    settings = load_config(config)
    assert settings.max_connections == 10_000
    assert trader_connections(settings, 1_000_000) == 10_000
    # A limit of 1,024 files (a common default) leaves 128 for traders.
    assert trader_connections(settings, 1_024) == 128
    with pytest.raises(ConfigError) as refused:
        trader_connections(settings, 800)
    assert "ulimit -n" in str(refused.value) and "api.max_connections" in str(refused.value)


def test_a_node_raises_its_open_files_limit_as_far_as_the_system_allows() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    script = (
        "import resource\n"
        "from datn.api.serve import open_files_limit\n"
        "_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))\n"
        "print(open_files_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    told, now = map(int, subprocess.check_output([sys.executable, "-c", script]).split())
    expected = 2**20 if hard == resource.RLIM_INFINITY else hard
    assert told == now == expected


def test_a_node_with_too_few_open_files_says_so_and_does_not_start(tmp_path: Path) -> None:
    # Every address on a free port: the refusal must not depend on 8482.
    folder = new_node(tmp_path)
    datn = str(Path(sys.executable).parent / "datn")
    ran = subprocess.run(
        ["prlimit", "--nofile=800:800", datn, "node", "run", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode != 0
    assert "api.max_connections" in ran.stdout + ran.stderr
    assert "ulimit -n" in ran.stdout + ran.stderr


# ------------------------------------------------------------------ a real node


@pytest.fixture
def small_node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Running]:
    """A node whose traders' API takes 12 connections, 8 from one address;
    on the event loop a test's ``indirect`` parameter names, else asyncio's."""
    folder = tmp_path / "node"
    config, _ = init_folder(folder)
    text = config.read_text()
    for old, new in (
        ('listen = "127.0.0.1:8480"', 'listen = "127.0.0.1:0"'),
        ('admin_listen = "127.0.0.1:8481"', 'admin_listen = "127.0.0.1:0"'),
        ('listen = "127.0.0.1:8482"', 'listen = "127.0.0.1:0"'),
        ("max_connections = 10000", "max_connections = 12"),
        ("max_connections_per_address = 512", "max_connections_per_address = 8"),
        ('event_loop = "asyncio"', f'event_loop = "{getattr(request, "param", "asyncio")}"'),
    ):
        assert old in text, old
        text = text.replace(old, new)
    config.write_text(text)
    running = start(folder)
    try:
        yield running
    finally:
        stop(running)


def _connect(port: int, source: str) -> socket.socket:
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(10)
    raw.bind((source, 0))
    raw.connect(("127.0.0.1", port))
    return raw


def _served(port: int, source: str) -> bool:
    """Whether a request from ``source`` is answered (else its connection
    was dropped as it was accepted)."""
    try:
        with _connect(port, source) as raw:
            raw.sendall(b"GET /v1/products HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            return raw.recv(12) == b"HTTP/1.1 200"
    except OSError:
        return False


def _held(running: Running) -> float:
    """The connections the traders' API holds, by its own count."""
    return samples(running.admin.http.get("/metrics").text)[
        'datn_api_connections{server="traders"}'
    ]


def _eventually(check: Callable[[], bool], what: str, within: float = 5) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.parametrize("small_node", ["asyncio", "uvloop"], indirect=True)
def test_one_address_holds_at_most_its_share_and_the_node_at_most_its_total(
    small_node: Running,
) -> None:
    port = int(small_node.api_url.rsplit(":", 1)[1])

    with contextlib.ExitStack() as stack:
        # Eight idle connections from 127.0.0.1: the ninth is dropped as it
        # is accepted, while other addresses are served.
        idle = [stack.enter_context(_connect(port, "127.0.0.1")) for _ in range(8)]
        _eventually(lambda: _held(small_node) == 8, "the node holds the eight")
        assert not _served(port, "127.0.0.1")
        assert _served(port, "127.0.0.2")
        # Four more from 127.0.0.2 take the node's twelve: a third address
        # is turned away too, and the operator's API still answers.
        more = [stack.enter_context(_connect(port, "127.0.0.2")) for _ in range(4)]
        _eventually(lambda: _held(small_node) == 12, "the node holds twelve")
        assert not _served(port, "127.0.0.3")
        counted = samples(small_node.admin.http.get("/metrics").text)
        assert counted['datn_api_connections_refused_total{server="traders",reason="address"}'] >= 1
        assert counted['datn_api_connections_refused_total{server="traders",reason="total"}'] >= 1
        # Closed connections give their places back.
        for raw in idle + more:
            raw.close()
        _eventually(lambda: _held(small_node) == 0, "the places are given back")
        assert _served(port, "127.0.0.1") and _served(port, "127.0.0.3")


@pytest.mark.parametrize("small_node", ["asyncio", "uvloop"], indirect=True)
def test_a_websocket_holds_its_connection_s_place_until_it_closes(small_node: Running) -> None:
    from websockets.sync.client import connect  # noqa: PLC0415

    port = int(small_node.api_url.rsplit(":", 1)[1])
    with contextlib.ExitStack() as stack:
        for _ in range(7):
            stack.enter_context(_connect(port, "127.0.0.1"))
        with connect(f"ws://127.0.0.1:{port}/v1/ws", open_timeout=10):
            # Upgraded, and not yet authenticated (the node allows it a few
            # seconds): the session holds the place its connection took.
            assert not _served(port, "127.0.0.1")
        _eventually(lambda: _served(port, "127.0.0.1"), "the session gave its place back")


@pytest.mark.parametrize("small_node", ["asyncio", "uvloop"], indirect=True)
def test_connections_idle_between_requests_or_deaf_to_their_answers_are_dropped(
    small_node: Running,
) -> None:
    port = int(small_node.api_url.rsplit(":", 1)[1])

    started = time.monotonic()
    # A request, its answer read, then a blank line (which the parser skips
    # between requests, and which stopped uvicorn's keep-alive timer).
    blank = _connect(port, "127.0.0.1")
    blank.sendall(b"GET /v1/products HTTP/1.1\r\nhost: x\r\n\r\n")
    assert blank.recv(12) == b"HTTP/1.1 200"
    blank.sendall(b"\r\n")
    # Requests sent, their answers never read (a small receive buffer; the
    # answers fill the kernel's buffers, then the node's own).
    deaf = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    deaf.bind(("127.0.0.2", 0))
    deaf.connect(("127.0.0.1", port))
    deaf.sendall(b"GET /schema/openapi.json HTTP/1.1\r\nhost: x\r\n\r\n" * 400)
    try:
        half, late = REQUEST_TIMEOUT_S / 2, REQUEST_TIMEOUT_S + 10
        _eventually(lambda: _held(small_node) == 2, "the node holds both", within=half)
        _eventually(lambda: _held(small_node) == 0, "both are dropped", within=late)
        assert time.monotonic() - started >= REQUEST_TIMEOUT_S - 1
    finally:
        blank.close()
        deaf.close()


def test_one_address_cannot_take_the_operator_s_every_place(small_node: Running) -> None:
    port = int(small_node.admin.http.base_url.port or 0)
    token = (small_node.folder / "admin.token").read_text().strip()
    with contextlib.ExitStack() as stack:
        for _ in range(ADMIN_MAX_CONNECTIONS_PER_ADDRESS):
            stack.enter_context(_connect(port, "127.0.0.3"))
        with pytest.raises(OSError), _connect(port, "127.0.0.3") as raw:
            raw.sendall(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
            if not raw.recv(12):
                raise ConnectionResetError("dropped as it was accepted")
        transport = httpx.HTTPTransport(local_address="127.0.0.4")
        with httpx.Client(
            transport=transport, base_url=str(small_node.admin.http.base_url)
        ) as other:
            answered = other.get("/metrics", headers={"authorization": f"Bearer {token}"})
        assert answered.status_code == 200
        assert answered.text.count('datn_api_connections_refused_total{server="operator"') == 2


def test_a_node_stops_promptly_with_a_client_that_never_reads(small_node: Running) -> None:
    port = int(small_node.api_url.rsplit(":", 1)[1])
    deaf = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    deaf.connect(("127.0.0.1", port))
    deaf.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        for _ in range(400):
            deaf.send(b"GET /schema/openapi.json HTTP/1.1\r\nhost: x\r\n\r\n")
    time.sleep(1)
    started = time.monotonic()
    small_node.process.send_signal(signal.SIGTERM)
    try:
        assert small_node.process.wait(timeout=30) == 0
        assert time.monotonic() - started < 15  # answers in flight get 5 s
    finally:
        deaf.close()
