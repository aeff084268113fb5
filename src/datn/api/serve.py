"""``datn node run``: one node process — the runtime, its store, and the
traders' and operator's APIs on uvicorn, all on one asyncio loop.

The process stops cleanly on SIGINT or SIGTERM (the APIs stop taking
requests, groups in flight commit, the store closes), and exits with status
1 if the runtime stopped on a failure (a store that cannot commit, a core
exception): it must not run on state its store does not hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import resource
import secrets
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import uvicorn

from datn.api.app import Node, admin_app, trader_app
from datn.api.auth import Verifier, token_digest
from datn.api.lane import OrderLane
from datn.api.stream import MAX_MESSAGE_BYTES, OrderEntryProtocol, Sessions, stream_handler
from datn.api.transport import CoalescingHttpProtocol, Places, placed
from datn.domain.value import NodeId
from datn.net import LinkSettings, PeerLinks
from datn.net.addresses import ACCEPT_BACKLOG
from datn.net.links import MAX_HANDSHAKES
from datn.protocol.config import NodeConfig
from datn.protocol.effects import AddPeerInput, Genesis
from datn.protocol.node import NodeCore
from datn.runtime import NodeRuntime
from datn.runtime.collector import Collector
from datn.runtime.config import (
    CONFIG_FILE,
    ConfigError,
    Listen,
    NodeSettings,
    PeerSetting,
    check_peers,
    load_config,
    read_key,
)
from datn.runtime.history import history_of
from datn.runtime.node import Outlets
from datn.runtime.throttle import ThrottlingFilter, say_left_out
from datn.store import open_store

log = logging.getLogger("datn.node")

ADMIN_MAX_CONNECTIONS: Final = 64
"""Connections the operator's API holds at most (Prometheus, the CLI, a
dashboard)."""
ADMIN_MAX_CONNECTIONS_PER_ADDRESS: Final = 16
"""... and from one address: a client that can reach it (it listens on
loopback unless the config opens it) cannot take every place alone."""
FILES_KEPT: Final = 64
"""Open files a node keeps beyond its connections (the store's files, the
snapshot worker's pipes, logs) and beyond :data:`PEER_SOCKETS`."""
PEER_SOCKETS: Final = 2 * 64
"""Sockets kept for established peer links: one each way, for as many as
64 peers (those added later through the operator's API included); the
links' handshakes have places of their own (:data:`MAX_HANDSHAKES`)."""
LISTENERS: Final = 3
"""Listening sockets, each queueing :data:`ACCEPT_BACKLOG` connections: the
traders' API, the operator's API and the peer links."""


def open_files_limit() -> int:
    """Raise this process's limit on open files to as far as it may go
    (its hard limit; at most 2**20 when that is unlimited); the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2**20 if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= want:
        return 2**20 if soft == resource.RLIM_INFINITY else soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (OSError, ValueError):
        return soft  # the system allows no more (a container's own limit)
    return want


def trader_connections(settings: NodeSettings, files: int) -> int:
    """How many connections the traders' API takes with ``files`` open
    files allowed: the config's ``max_connections``, or fewer if the limit
    leaves less room beside the operator's API, the peer links and the
    node's own files (said in the log). A limit that leaves no room at
    all is a :class:`ConfigError`."""
    kept = (
        FILES_KEPT
        + PEER_SOCKETS
        + MAX_HANDSHAKES
        + ADMIN_MAX_CONNECTIONS
        + 2 * LISTENERS * ACCEPT_BACKLOG
    )
    room = files - kept
    if room < 1:
        raise ConfigError(
            "api.max_connections",
            f"the process may open {files:,} files, and a node needs {kept:,} for itself before"
            " it takes traders' connections: raise the limit (ulimit -n, or LimitNOFILE= in a"
            " systemd unit)",
        )
    if room < settings.max_connections:
        log.warning(
            "the traders' API takes %d connections, not max_connections = %d: the process may"
            " open %d files (raise the limit with ulimit -n, or LimitNOFILE= in a systemd unit)",
            room,
            settings.max_connections,
            files,
        )
        return room
    return settings.max_connections


class _Server(uvicorn.Server):
    """uvicorn, leaving signals to the node: it stops its servers itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def serve_on(self, sock: socket.socket) -> None:
        """Serve on ``sock``; a start that fails raises instead of exiting
        the process (uvicorn calls ``sys.exit`` when it cannot start)."""
        try:
            await self.serve(sockets=[sock])
        except SystemExit as exit_:
            raise RuntimeError(f"the server did not start (status {exit_.code})") from None


def bind(listen: Listen, key: str) -> socket.socket:
    """A socket bound to ``listen`` (the config's ``key``): bound before the
    store opens, so that an address the node cannot have stops the start
    with a clear error and nothing else done."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as error:
        raise ConfigError(key, f"cannot listen on {listen}: {error.strerror or error}") from None
    except ValueError as error:  # a name IDNA cannot encode (UnicodeError)
        raise ConfigError(key, f"cannot listen on {listen}: {error}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise ConfigError(key, f"cannot listen on {listen}: {error.strerror or error}") from None
    return sock


def config_drift(genesis: Genesis, core: NodeCore) -> list[str]:
    """How the products and core settings of ``genesis`` (the config as it
    reads now) differ from those ``core`` runs with, one line each."""
    context = core.context
    drift: list[str] = []
    listed = {spec.product_id: spec for spec in genesis.products}
    drift += [
        f"product {spec.symbol} is not one of the node's"
        for product_id, spec in listed.items()
        if product_id not in context.products
    ]
    drift += [
        f"the node's product {kept.symbol} is not in the config"
        for product_id, kept in context.products.items()
        if product_id not in listed
    ]
    # The listed products are the config's [[products]], said above.
    config, running = (
        dataclasses.replace(c, risk=dataclasses.replace(c.risk, listed_products=None))
        for c in (genesis.config, context.config)
    )
    drift += [
        f"core.{field.name} differs"
        for field in dataclasses.fields(NodeConfig)
        if getattr(config, field.name) != getattr(running, field.name)
    ]
    return drift


def bind_all(settings: NodeSettings) -> tuple[socket.socket, socket.socket, socket.socket]:
    """The traders', the operator's and the links' sockets, bound; each at an
    address of its own, also where two names reach one address."""
    bound: list[tuple[str, socket.socket]] = []
    try:
        for key, listen in zip(
            ("api.listen", "api.admin_listen", "net.listen"),
            (settings.api, settings.admin, settings.net),
            strict=True,
        ):
            sock = bind(listen, key)
            bound.append((key, sock))
            for other_key, other in bound[:-1]:
                if sock.getsockname() == other.getsockname():
                    raise ConfigError(
                        key, f"cannot listen on {listen}: {other_key} listens there already"
                    )
    except ConfigError:
        for _, sock in bound:
            sock.close()
        raise
    return bound[0][1], bound[1][1], bound[2][1]


ADMIN_TOKEN_FILE = "admin.token"
MIN_ADMIN_TOKEN_CHARS = 16
"""The shortest operator token a node starts with (it makes 43-character ones)."""


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    logging.Formatter.converter = time.gmtime
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # uvicorn logs each malformed request, each unsupported upgrade and each
    # WebSocket opened and closed: lines any stranger can cause, one or more
    # a connection. Each of its messages goes at most once a second.
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, ThrottlingFilter) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(ThrottlingFilter())


def admin_token(folder: Path) -> str:
    """The operator's token in ``folder/admin.token``, created (0600) on first run."""
    path = folder / ADMIN_TOKEN_FILE
    if path.exists():
        try:
            token = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(ADMIN_TOKEN_FILE, f"cannot be read as ASCII text: {error}") from None
        # An empty token would let an empty "Bearer " through as the operator.
        if len(token) < MIN_ADMIN_TOKEN_CHARS or not token.isprintable() or " " in token:
            raise ConfigError(
                ADMIN_TOKEN_FILE,
                f"must hold one token of at least {MIN_ADMIN_TOKEN_CHARS} printable characters"
                " and no spaces; delete the file to have a new one made",
            )
        return token
    token = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    return token


async def link_peers(node: Node, peers: tuple[PeerSetting, ...]) -> None:
    """Add the config's peers the node does not have yet, keep their
    addresses, and dial every peer whose address the store or config holds
    (the config's wins)."""
    runtime, store = node.runtime, node.runtime.store
    loop = asyncio.get_running_loop()
    # Checked before any is added, so that a refused config leaves none behind.
    if any(peer.node_id == runtime.core.node_id for peer in peers):
        raise ConfigError("peers", "lists this node's own id")
    for peer in peers:
        if peer.node_id not in runtime.core.liability.peers:
            await runtime.submit(AddPeerInput(peer.node_id))
            log.info("peer %s added from the config", peer.node_id)
        if peer.address is not None:
            await loop.run_in_executor(None, store.put_peer_address, peer.node_id, peer.address)
    addresses = await loop.run_in_executor(None, store.peer_addresses)
    assert node.links is not None
    for peer_id, address in sorted(addresses.items()):
        node.links.dial(NodeId(peer_id), address)


def run_folder(folder: Path, *, replay_other_logic: bool = False) -> int:
    """Run the node in ``folder`` on the event loop its config names, until
    a signal or a failure; the exit status. ``replay_other_logic``: see
    :meth:`NodeRuntime.open`."""
    settings = load_config(folder / CONFIG_FILE)
    factory = None
    if settings.event_loop == "uvloop":
        import uvloop  # noqa: PLC0415 - only where the config asks for it

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(run_node(folder, settings, replay_other_logic=replay_other_logic))


async def _collect_when_idle(runtime: NodeRuntime, collector: Collector) -> None:
    """Full collections, paced by :class:`Collector`, until cancelled."""
    while True:
        await asyncio.sleep(collector.idle_s)
        collector.tick(runtime.stats.inputs)
        runtime.stats.full_collections = collector.full_collections
        runtime.stats.last_full_collection_ms = collector.last_pause_ms


async def _say_left_out() -> None:
    """Every second, the log lines left out that no later line of their
    kind has counted (:func:`~datn.runtime.throttle.say_left_out`), until
    cancelled."""
    while True:
        await asyncio.sleep(1.0)
        say_left_out()


async def run_node(
    folder: Path, settings: NodeSettings, *, replay_other_logic: bool = False
) -> int:
    """Run the node in ``folder``, configured by ``settings``, until a signal
    or a failure; the exit status."""
    # The operator's token is read first: a bad one stops the start before
    # the store is opened.
    digest = token_digest(admin_token(settings.folder))
    api_socket, admin_socket, net_socket = bind_all(settings)
    trader_places = Places(
        trader_connections(settings, open_files_limit()), settings.max_connections_per_address
    )
    admin_places = Places(ADMIN_MAX_CONNECTIONS, ADMIN_MAX_CONNECTIONS_PER_ADDRESS)
    collector = Collector()
    collector.install()
    identity = read_key(settings.key_file)
    check_peers(settings, identity)
    loop = asyncio.get_running_loop()
    store = await loop.run_in_executor(None, open_store, settings.storage)
    history = history_of(store)
    # The links come first: the runtime's first commit (the restart's own
    # messages) already numbers frames after the ones the store kept.
    link_settings = LinkSettings(
        resend_ms=settings.resend_ms, inbound_per_second=settings.peer_messages_per_second
    )
    links = PeerLinks(
        identity.key,
        await loop.run_in_executor(None, store.links, link_settings.max_held_frames),
        settings=link_settings,
    )
    runtime = await NodeRuntime.open(
        store,
        settings.genesis(identity),
        snapshot_every=settings.snapshot_every,
        history=history,
        outlets=Outlets(seal=links.seal),
        commit_delay_us=settings.commit_delay_us,
        replay_other_logic=replay_other_logic,
    )
    links.attach(runtime)
    drift = config_drift(settings.genesis(identity), runtime.core)
    if drift:
        log.warning(
            "%s differs from what this node was created with, which it keeps (the config's"
            " products and [core] settings are read at the first start only): %s",
            CONFIG_FILE,
            "; ".join(drift),
        )
    # The snapshot worker starts now, in the background, rather than at the
    # first snapshot: starting a process costs the node's threads a few tens
    # of milliseconds, better spent before traders come than among them.
    runtime.start_snapshot_worker()
    node = Node(
        runtime,
        history,
        Verifier(store, settings.signing_window_ms),
        settings.rate_per_second,
        settings.rate_burst,
    )
    node.links = links
    node.key = identity.key
    net_port = await links.start(sock=net_socket)
    await link_peers(node, settings.peers)
    expiring = node.expirer.load()
    if expiring:
        log.info("%d good-till-date orders scheduled to expire", expiring)
    node.counters.places.update(traders=trader_places, operator=admin_places)
    sessions = Sessions()
    runtime.outlets.reply = sessions.publish
    runtime.outlets.publish = node.trades.record
    servers = [
        _Server(
            uvicorn.Config(
                app,
                host=listen.host,
                port=listen.port,
                log_config=None,
                access_log=False,
                # Nothing reads a caller's address (traders are known by
                # their keys), so uvicorn's rewriting of it from a proxy's
                # X-Forwarded-For, a wrapper around every request, is off.
                proxy_headers=False,
                lifespan="off",
                timeout_keep_alive=30,
                http=placed(CoalescingHttpProtocol, places),
                ws=OrderEntryProtocol,
                ws_max_size=MAX_MESSAGE_BYTES,
                # Beyond the places (connections) and the requests they
                # carry, uvicorn answers 503.
                limit_concurrency=places.total + 1_000,
                backlog=ACCEPT_BACKLOG,
                # A stop waits this long for answers in flight, not for
                # clients that never read theirs.
                timeout_graceful_shutdown=5,
            )
        )
        for app, listen, places in (
            (
                OrderLane(trader_app(node, [stream_handler(node, sessions)]), node),
                settings.api,
                trader_places,
            ),
            (admin_app(node, digest), settings.admin, admin_places),
        )
    ]
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    tasks = [
        asyncio.create_task(server.serve_on(sock))
        for server, sock in zip(servers, (api_socket, admin_socket), strict=True)
    ]
    while not all(server.started for server in servers):
        if any(task.done() for task in tasks):
            break
        await asyncio.sleep(0.01)
    for task in tasks:
        if task.done() and task.exception() is not None:
            log.critical("an API could not start: %s", task.exception())
    api_failed = not all(server.started for server in servers)
    if api_failed:
        stop.set()
    ports = [s.servers[0].sockets[0].getsockname()[1] for s in servers if s.started and s.servers]
    if not api_failed:
        log.info(
            "node %s ready: traders' API on %s, operator's API on %s, peer links on %s (%s loop)",
            runtime.core.node_id,
            ports[0],
            ports[1],
            net_port,
            settings.event_loop,
        )
    ready = folder / "ready.json"
    ready.write_text(
        json.dumps(
            {
                "node_id": runtime.core.node_id,
                "api_port": ports[0],
                "admin_port": ports[1],
                "net_port": net_port,
            }
        )
        if not api_failed
        else "{}"
    )
    collecting = asyncio.create_task(_collect_when_idle(runtime, collector))
    counting = asyncio.create_task(_say_left_out())
    stopped = asyncio.create_task(runtime.stopped.wait())
    waiting = asyncio.create_task(stop.wait())
    await asyncio.wait([stopped, waiting], return_when=asyncio.FIRST_COMPLETED)
    node.expirer.close()
    collecting.cancel()
    counting.cancel()
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    await links.close()
    failed = runtime.failure is not None or api_failed
    if runtime.failure is None:
        await runtime.close()
    ready.unlink(missing_ok=True)
    log.info("node %s stopped%s", runtime.core.node_id, " on a failure" if failed else "")
    return 1 if failed else 0
