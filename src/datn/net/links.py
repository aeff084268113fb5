"""Peer links: a node's messages to its peers over WebSockets, kept until
each peer has them durably.

**Sending.** When a group of inputs commits, the messages it caused for
peers are numbered per link, packed into batches and signed once per batch
(:func:`datn.wire.seal`), and the frames join the group's commit: the
*outbox* is durable with the journal entries behind it, and nothing leaves
before. Once the commit returns, each frame goes to its peer over the link
this node dialled. A frame stays in the outbox until the peer acknowledges
it; the next number on a link is always one past the last one stored, so a
restarted node never reuses one.

**Receiving.** A peer dials this node to send to it. Each frame is checked
cheapest test first (size, header, sender, signature, then every sequence
number against the link's replay window), then its messages are applied to
the core and journaled, with the link's new window in the same commit.
Once durable, the receiver acknowledges the window, signed, a little
later (``ack_delay_ms``, as TCP delays its acknowledgements): one
acknowledgement then covers every frame kept meanwhile, and a frame and its
answer do not each cost the other side a signed acknowledgement while a
trade is on its way. A frame that came above a gap, or again, is
acknowledged at once. A restarted node restores its windows from the store,
so a replayed frame stays refused.

**Losses.** A frame lost on the way (a cut connection, a proxy that drops
it) is resent from the outbox: when the receiver's acknowledgement shows a
gap below a frame it has, at once; otherwise after ``resend_ms`` without an
acknowledgement; and on every new connection, from the window the receiver
states when the link opens. So every message the core sends reaches the
peer's core once, whatever the network loses, duplicates or reorders, as
long as the link comes back. The core does not depend on the order.

**Peers that misbehave.** An unknown key, a bad signature, a replayed,
oversized or malformed frame is refused, counted (``counters``, shown in
``/metrics``) and logged at most once a second per kind; the link stays
up, and nothing changes. Only a failed handshake closes the connection.

Heartbeats are the WebSocket's pings (``ping_interval_s``): a link that
stops answering is closed and dialled again, with exponential backoff and
jitter.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import socket
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlsplit

from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from datn.evidence import is_evidence
from datn.net import handshake
from datn.net.addresses import ACCEPT_BACKLOG, address_group
from datn.net.handshake import CHALLENGE_BYTES, MAX_CONTROL_BYTES, Proof, Window
from datn.protocol.effects import ReceiveInput, Send
from datn.protocol.messages import (
    Acceptance,
    Advert,
    BondAnswer,
    BondRequest,
    Confirmation,
    Heartbeat,
    Message,
    NodeId,
    PotentialTrades,
    Refusal,
    Release,
    StatementAnswer,
    StatementProposal,
    TradePrint,
)
from datn.runtime.node import NodeStoppedError
from datn.runtime.throttle import Throttled
from datn.store import (
    Commit,
    EvidenceRecord,
    InboundWindow,
    LinkRecord,
    OutboxFrame,
    StoreError,
)
from datn.wire import (
    LocalProtocolError,
    NodeKey,
    OutboundLink,
    ProtocolError,
    RemoteProtocolError,
    ReplayWindow,
    open_frame,
    read_header,
    seal,
)
from datn.wire.limits import MAX_BATCH_ENVELOPES, MAX_FRAME_BYTES, REPLAY_WINDOW

if TYPE_CHECKING:
    from datn.runtime import NodeRuntime

log = logging.getLogger("datn.net")
_server_log = logging.getLogger("datn.net.server")
# The WebSocket library logs each connection's opening, closing and failed
# upgrade at INFO: strangers would write a line or three into the node's log
# per connection. The links count what they refuse, and log each kind at
# most once a second, instead.
_server_log.setLevel(logging.WARNING)

CLOSE_REFUSED: Final = 4003
"""The close code of a connection whose handshake was refused."""
CLOSE_TOO_BIG: Final = 1009
"""The close code of a connection that sent a message beyond its limit."""
CLOSE_BUSY: Final = 1013
"""The close code for a connection beyond :data:`MAX_HANDSHAKES` (try again later)."""
MAX_MESSAGE_BYTES: Final = 4 * MAX_FRAME_BYTES
"""The largest message a link reads: up to it, a frame beyond the frame
limit is refused as a frame (counted, the link kept); beyond it the
connection closes (1009)."""
MAX_HANDSHAKES: Final = 256
"""Connections at once that have not finished their handshake, counted from
the moment they are accepted (before their HTTP upgrade, which a stranger
may leave unsent for the whole handshake timeout) until they are proven
or their socket is gone: a flood of them is dropped at once instead of
holding the node's sockets. With every place taken, a connection from an
address holding fewer places than another takes the place of that one's
oldest connection, so that strangers at a few addresses cannot keep a peer
at another out by taking every place first; and a connection from a peer's
address (:data:`MAX_PEER_ADDRESSES`) takes a stranger's place whatever
either holds, and no stranger takes its place, so that strangers at many
addresses cannot either (among peers' addresses, the first rule holds).
Until its handshake
is done a connection reads messages of at most
:data:`~datn.net.handshake.MAX_CONTROL_BYTES`, so each holds little."""
MAX_FRAMES_A_TURN: Final = 64
"""Frames a link checks before the loop turns, whatever became of them: a
peer's small frames each cost a signature check, and a frame's worth of
bytes holds hundreds of them (tens of milliseconds of the loop)."""
READ_BACK_PAGE: Final = 512
"""The most frames a link reads back from the store at once."""
MAX_RESEND_BACKOFF: Final = 16
"""The resend timeout grows to at most this multiple of ``resend_ms``."""
MAX_HANDSHAKES_PER_ADDRESS: Final = 8
"""Of those, from one address (an IPv6 address's /64, which one host is
commonly given whole): strangers at one address cannot take every place
and keep a peer that reconnects from its handshake."""
MAX_PEER_ADDRESSES: Final = 1_024
"""Addresses (by :func:`~datn.net.addresses.address_group`) this node knows
peers at, the most recently seen kept: where a peer proved its key on a
link it dialled, where this node reached a peer it dialled, and the address
an operator gave to dial a peer at, when it is an IP address. Only a peer
can add one (a stranger cannot prove a peer's key, nor choose where this
node dials), and a stranger cannot send from an address it does not hold
(TCP's own handshake), so connections from these addresses are never
given up to strangers, however many addresses strangers hold (an IPv6 /48
holds 65,536 /64s)."""


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """How links behave; the defaults suit a WAN."""

    resend_ms: int = 500
    """Resend a frame not acknowledged after this long."""
    ack_delay_ms: int = 20
    """Acknowledge a durable frame after at most this long (and at most a
    tenth of ``resend_ms``), with the others kept meanwhile."""
    backoff_min_ms: int = 100
    backoff_max_ms: int = 5_000
    handshake_timeout_s: float = 5.0
    ping_interval_s: float = 5.0
    ping_timeout_s: float = 10.0
    max_backlog: int = 4 * REPLAY_WINDOW
    """Messages a peer may leave unacknowledged before the node stops
    adding for it what it can make the node send by asking
    (:data:`_WITHHELD`): what a peer that acknowledges nothing can make the
    node keep for it is then bounded by the node's own activity, not by
    what the peer asks."""
    max_held_frames: int = 2 * REPLAY_WINDOW
    """Unacknowledged frames a link holds in memory (at least one); the
    rest stay in the store's outbox only, and are read back, oldest first,
    as the peer takes in what is held (a peer takes in at most the replay
    window beyond what it has, so more are of no use at once). A peer that
    is down for long costs the node's store, not its memory."""
    max_held_bytes: int = 16 * 1024 * 1024
    """The same bound in bytes: frames may be up to ``MAX_FRAME_BYTES``
    each, so ``max_held_frames`` alone would let a link hold 128 MiB. The
    oldest frame is held whatever its size, so that a link always moves."""

    inbound_per_second: int = 10_000
    """Messages a peer's frames may bring in a second, on average (with a
    second's worth saved for a burst): beyond it, the node reads the
    peer's next frame only when the budget allows, so the link's socket
    pushes back on the sender. A peer cannot make the node journal, and
    spend its core on, more than this, however fast it sends."""
    max_inbound_pending: int = 2 * MAX_BATCH_ENVELOPES
    """Messages of a peer's frames applied but not yet durable: beyond it,
    the node reads the peer's next frame once the oldest are durable, so
    what a peer's frames make the node hold in memory is bounded by this,
    not by how far the core runs ahead of the disk."""

    def __post_init__(self) -> None:
        if self.inbound_per_second < 1:
            raise ValueError(f"inbound_per_second is at least 1, not {self.inbound_per_second}")
        if self.max_inbound_pending < 1:
            raise ValueError(f"max_inbound_pending is at least 1, not {self.max_inbound_pending}")
        if self.max_held_frames < 1:
            raise ValueError(f"max_held_frames is at least 1, not {self.max_held_frames}")
        if self.max_held_bytes < 1:
            raise ValueError(f"max_held_bytes is at least 1, not {self.max_held_bytes}")


@dataclass(eq=False)
class _Outbound:
    """The link on which this node sends to ``peer`` (it dials it)."""

    peer: NodeId
    link: OutboundLink
    address: str | None = None
    frames: dict[int, OutboxFrame] = field(default_factory=dict)
    """Unacknowledged frames by first sequence number, in that order: those
    up to :attr:`loaded_through`."""
    held_bytes: int = 0
    """The size of :attr:`frames`' frames, together."""
    loaded_through: int = 0
    """The frames up to this sequence number are in :attr:`frames` (or
    acknowledged); those after it, up to :attr:`durable_through`, are in
    the store only (see ``LinkSettings.max_held_frames``)."""
    durable_through: int = 0
    """The last sequence number of the frames handed over once durable."""
    left_in_store: int = 0
    """How many frames are in the store only."""
    reading: asyncio.Task[None] | None = None
    """The read of frames back from the store, while it runs."""
    window: Window = field(default_factory=Window)
    """What the peer has kept, as it last said."""
    acked: int = 0
    sent_at: dict[int, float] = field(default_factory=dict)
    """When each frame went out on the current connection."""
    on_way: OrderedDict[Message, int] = field(default_factory=OrderedDict)
    """The messages of the kinds the core sends again
    (:data:`_REPEATED`) not yet acknowledged, with the sequence number
    that carries each, in that order: sent again meanwhile, one would only
    reach the peer twice. (An OrderedDict: acknowledged ones go from the
    front, where a dict would scan every place deleted before.)"""
    backoff: int = 1
    """The resend timeout's multiple: doubled each time frames go out again
    for want of an acknowledgement (up to :data:`MAX_RESEND_BACKOFF`), back
    to 1 when an acknowledgement moves the window, as TCP's retransmission
    timer backs off. A receiver slower than ``resend_ms`` (one busy, or
    catching up after a restart) is not sent its whole window again every
    ``resend_ms``, each copy costing it a signature check to refuse."""
    gap_resent: set[int] = field(default_factory=set)
    """Frames resent on the current connection because an acknowledgement
    showed them missing: each at most once (after that, ``resend_ms``)."""
    woken: bool = False
    """Something to send (or a connection's end) since the sender last looked."""
    waiter: asyncio.Future[None] | None = None
    connected: bool = False
    task: asyncio.Task[None] | None = None
    connects: int = 0

    def wake(self) -> None:
        """Let the sender look at its frames again: at once if it waits."""
        self.woken = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def sleep(self, timeout_s: float) -> None:
        """Until :meth:`wake` or ``timeout_s``: a bare future and a timer,
        so that a frame committed goes out in the loop's next turn (an
        ``asyncio.Event`` under ``wait_for`` takes three)."""
        if self.woken:
            return
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = loop.call_later(timeout_s, _settle, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None

    def learn(self, window: Window) -> bool:
        """The peer keeps ``window``: forget the frames it has; whether its
        contiguous part moved. The work is the frames forgotten plus those
        up to the window's top (at most the replay window's), however many
        frames the outbox holds."""
        if window.contiguous < self.window.contiguous:
            return False  # older than what the peer said before: windows only grow
        moved = window.contiguous > self.window.contiguous
        if moved:
            self.backoff = 1
        self.window = window
        self.acked = max(self.acked, window.contiguous)
        on_way = self.on_way
        while on_way:
            message, seq = next(iter(on_way.items()))
            if seq > window.contiguous:
                break
            del on_way[message]
        frames = self.frames
        had: list[int] = []
        for first, frame in frames.items():
            if frame.last_seq > window.contiguous:
                break
            had.append(first)
        for first in had:
            self._forget(first)
        if window.contiguous >= self.durable_through > self.loaded_through:
            # Everything handed over is acknowledged: nothing to read back.
            # (Only then: a number acknowledged may lie inside a frame of
            # the store's, whose rest the peer must still get; read_back
            # passes over the frames acknowledged.)
            self.loaded_through = self.durable_through
            self.left_in_store = 0
        if window.above:
            above = frozenset(window.above)
            kept = [
                first
                for first, frame in _up_to(frames, max(above))
                if _holds(window.contiguous, above, frame)
            ]
            for first in kept:
                self._forget(first)
        return moved

    def restart_timers(self, now: float) -> None:
        """The frames out on this connection count as sent ``now`` (those
        due at once for a gap stay due)."""
        sent_at = self.sent_at
        for first, sent in sent_at.items():
            if sent != _LONG_AGO:
                sent_at[first] = now

    @property
    def spilled(self) -> bool:
        """Whether frames are in the store only."""
        return self.loaded_through < self.durable_through

    def room(self, frame: OutboxFrame, settings: LinkSettings) -> bool:
        """Whether ``frame`` may be held besides what is (see
        ``LinkSettings.max_held_frames`` and ``max_held_bytes``)."""
        return not self.frames or (
            len(self.frames) < settings.max_held_frames
            and self.held_bytes + len(frame.frame) <= settings.max_held_bytes
        )

    def hold(self, frame: OutboxFrame, settings: LinkSettings) -> None:
        """``frame``, just durable: held if it follows what is held and
        there is room, else left in the store until there is."""
        self.durable_through = max(self.durable_through, frame.last_seq)
        if frame.first_seq == self.loaded_through + 1 and self.room(frame, settings):
            self.keep(frame)
            self.loaded_through = frame.last_seq
        elif frame.last_seq > self.loaded_through:
            self.left_in_store += 1

    def read_back(self, frames: list[OutboxFrame], settings: LinkSettings) -> None:
        """``frames``, read from the store after :attr:`loaded_through`,
        oldest first: held, up to what has been handed over and as far as
        there is room (the rest is read again later)."""
        for frame in frames:
            if frame.last_seq > self.durable_through:
                break
            if frame.last_seq > self.window.contiguous:
                if not self.room(frame, settings):
                    return
                self.keep(frame)
            self.loaded_through = frame.last_seq
            self.left_in_store = max(0, self.left_in_store - 1)
        if not frames or self.loaded_through >= self.durable_through:
            # Nothing more in the store (what was left was acknowledged).
            self.loaded_through = max(self.loaded_through, self.durable_through)
            self.left_in_store = 0

    def keep(self, frame: OutboxFrame) -> None:
        self.frames[frame.first_seq] = frame
        self.held_bytes += len(frame.frame)

    def _forget(self, first: int) -> None:
        self.held_bytes -= len(self.frames.pop(first).frame)
        self.sent_at.pop(first, None)
        self.gap_resent.discard(first)

    def due(self, now: float, resend_s: float) -> list[OutboxFrame]:
        """The frames to send now, in order, within the peer's window."""
        limit = self.window.contiguous + REPLAY_WINDOW
        out: list[OutboxFrame] = []
        for first, frame in self.frames.items():
            if frame.last_seq > limit:
                break
            sent = self.sent_at.get(first)
            if sent is None or now - sent >= resend_s:
                out.append(frame)
        return out

    def missing(self, window: Window) -> None:
        """The peer has frames above a gap: the frames in the gap that went
        out on this connection were lost on the way, and are due again at
        once, each once per connection (an acknowledgement repeated, or one
        claiming what was never sent, cannot make a frame go out again and
        again; a resend lost too waits for ``resend_ms``)."""
        if not window.above:
            return
        above = frozenset(window.above)
        top = max(above)
        for first, frame in _up_to(self.frames, top):
            if (
                frame.last_seq < top
                and first in self.sent_at
                and first not in self.gap_resent
                and not _holds(window.contiguous, above, frame)
            ):
                self.sent_at[first] = _LONG_AGO
                self.gap_resent.add(first)


@dataclass(eq=False)
class _Inbound:
    """What this node has taken in from ``peer``."""

    peer: NodeId
    window: ReplayWindow
    durable: Window
    connection: ServerConnection | None = None
    challenges: bytes = b""
    acking: ServerConnection | None = None
    """The connection an acknowledgement is being sent on, if any."""
    ack_again: bool = False
    ack_timer: asyncio.TimerHandle | None = None
    """A delayed acknowledgement, scheduled."""
    acked_upto: int = 0
    """The contiguous sequence number the last acknowledgement sent stated."""
    spent_ns: int = 0
    """How far the peer's messages have spent its budget, as a monotonic
    time (see :attr:`LinkSettings.inbound_per_second`)."""
    pending: deque[tuple[asyncio.Future[Any], int]] = field(default_factory=deque)
    """Frames applied but not yet durable, oldest first, with their messages."""
    pending_messages: int = 0


_NEWS: Final = frozenset({Advert, TradePrint, Heartbeat})
"""Messages no peer is waiting for to go on with a trade."""
_REPEATED: Final = frozenset(
    {
        PotentialTrades,
        Acceptance,
        Release,
        Confirmation,
        Refusal,
        BondRequest,
        BondAnswer,
        StatementProposal,
        StatementAnswer,
    }
)
"""Messages the core sends again, the same, until answered (requests), or
to every request sent again (answers): see the README's table. A copy of
one still unacknowledged on its link is not sealed again, since the link
delivers the first: a peer out of reach for an hour does not come back
to an hour of the same request every 40 ms."""
_WITHHELD: Final = frozenset(
    {Heartbeat, PotentialTrades, Release, Refusal, BondAnswer, StatementAnswer}
)
"""Messages a peer beyond its backlog (``max_backlog``) goes without: what
it can make the node send by asking, each of which it asks for again or
does without. Heartbeats (probes and their echoes) come again every
period; potential trades' locks expire and the next round asks again (a
release, sent for a late or stray answer, only ends early a lock that
expires anyway); a refusal, a bond answer or a statement answer is given
again to the request its core sends again until answered. Not withheld: adverts and
prints (the node's own news, numbered for every peer alike: one withheld
would leave a gap in the peer's view of the book that nothing fills), and
confirmations (one per lock this node offered, which it offers no more to
a peer beyond its backlog: withheld, they would keep trades on one ledger
for as long as the backlog lasts)."""


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


_LONG_AGO: Final = float("-inf")
"""When a frame found missing was sent, as far as resending it goes: due at once."""


def _up_to(frames: dict[int, OutboxFrame], top: int) -> Iterable[tuple[int, OutboxFrame]]:
    """The frames (by first sequence number, in order) that begin at or below ``top``."""
    for first, frame in frames.items():
        if first > top:
            return
        yield first, frame


def _holds(contiguous: int, above: frozenset[int], frame: OutboxFrame) -> bool:
    """Whether a receiver whose window is ``contiguous`` and ``above`` has
    every message of ``frame``."""
    return all(
        seq <= contiguous or seq in above for seq in range(frame.first_seq, frame.last_seq + 1)
    )


def _check_window(window: Window, sent: int) -> Window:
    """``window``, if a receiver's window could be it: it holds no number
    above ``sent`` (the last one this node handed to the link, durable),
    and what it holds above a gap lies within the replay window above its
    contiguous part, as the receiver's replay window admits. Otherwise RemoteProtocolError
    (``implausible_window``): taken as said, it would make the node forget
    frames the peer never had."""
    top = min(sent, window.contiguous + REPLAY_WINDOW)
    if window.contiguous <= sent and all(window.contiguous < seq <= top for seq in window.above):
        return window
    raise RemoteProtocolError(
        "implausible_window", "numbers never sent, or above a gap outside the replay window"
    )


def _window(replay: ReplayWindow) -> Window:
    return Window(replay.contiguous, tuple(sorted(replay.above)))


class PeerLinks:
    """Every peer link of one node; see the module docstring.

    Built from what the store kept (:meth:`datn.store.Store.links`) before
    the runtime opens, so that the runtime's first commit already numbers
    its messages after the stored ones: pass :meth:`seal` as the runtime's
    ``Outlets.seal``, then :meth:`attach` the runtime and :meth:`start`."""

    def __init__(
        self,
        key: NodeKey,
        records: dict[str, LinkRecord],
        *,
        settings: LinkSettings | None = None,
    ) -> None:
        self.key = key
        self.node_id = key.node_id
        self.settings = settings or LinkSettings()
        self.counters: Counter[str] = Counter()
        self._runtime: NodeRuntime | None = None
        self._out: dict[NodeId, _Outbound] = {}
        self._in: dict[NodeId, _Inbound] = {}
        self._server: Server | None = None
        self._closing = False
        self._handshaking: Counter[str] = Counter()
        """Connections in their handshake, by remote address (see :func:`address_group`)."""
        self._unproven: dict[ServerConnection, _Place] = {}
        """The connections counted in :attr:`_handshaking`, and their places."""
        self._peer_addresses: OrderedDict[str, None] = OrderedDict()
        """Where peers have been known to be (:data:`MAX_PEER_ADDRESSES`),
        the most recently seen last."""
        self._log = Throttled(log)
        for peer, record in records.items():
            node = NodeId(peer)
            out = self._outbound(node)
            out.link.last_seq = record.last_sent
            out.acked = record.acked
            out.window = Window(record.acked)
            out.durable_through = record.last_sent
            for frame in record.outbox:
                if not out.room(frame, self.settings):
                    break
                out.keep(frame)
            out.left_in_store = record.outbox_left + len(record.outbox) - len(out.frames)
            if out.left_in_store:  # the rest is read back as the peer takes in
                out.loaded_through = (
                    next(reversed(out.frames.values())).last_seq if out.frames else record.acked
                )
            else:
                out.loaded_through = record.last_sent
            if record.inbound is not None:
                window = ReplayWindow(record.inbound.contiguous, frozenset(record.inbound.above))
                self._in[node] = _Inbound(node, window, _window(window))

    # ------------------------------------------------------------ set-up

    def attach(self, runtime: NodeRuntime) -> None:
        self._runtime = runtime

    def _is_peer(self, node_id: NodeId) -> bool:
        runtime = self._runtime
        return runtime is not None and node_id in runtime.core.liability.peers

    async def start(
        self, host: str | None = None, port: int | None = None, sock: socket.socket | None = None
    ) -> int:
        """Listen for peers' links on ``host:port``, or on ``sock`` (bound
        already); the port bound."""
        links = self

        class Counted(ServerConnection):
            """A connection that takes a handshake place as it is accepted
            (or is dropped there), and gives it up when it is proven or lost."""

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                links._accept(self)

            def connection_lost(self, exc: Exception | None) -> None:
                links._give_place(self, lost=True)
                super().connection_lost(exc)

        self._server = await serve(
            self._serve,
            host,
            port,
            sock=sock,
            backlog=ACCEPT_BACKLOG,
            compression=None,
            # Raised to MAX_MESSAGE_BYTES once the peer has proven its key.
            max_size=MAX_CONTROL_BYTES,
            max_queue=64,
            ping_interval=self.settings.ping_interval_s,
            ping_timeout=self.settings.ping_timeout_s,
            open_timeout=self.settings.handshake_timeout_s,
            # A connection refused holds its handshake place through its
            # close: the stranger has a second to answer it, not ten.
            close_timeout=1.0,
            logger=_server_log,
            create_connection=Counted,
        )
        sockets = list(self._server.sockets)
        bound: int = sockets[0].getsockname()[1]
        return bound

    def dial(self, peer: NodeId, address: str) -> None:
        """Send to ``peer`` at ``address`` (``ws://host:port``) from now on,
        replacing the address it had; the link opens in the background."""
        out = self._outbound(peer)
        changed = out.address != address
        out.address = address
        host = _ip_host(address)
        if host is not None:
            self._peer_at(host)
        if self._closing:
            return
        if out.task is None or out.task.done():
            out.task = asyncio.get_running_loop().create_task(self._dial(out))
        elif changed:
            out.task.cancel()
            out.task = asyncio.get_running_loop().create_task(self._dial(out))

    async def close(self) -> None:
        """Stop dialling, close every link and stop listening."""
        self._closing = True
        tasks = [out.task for out in self._out.values() if out.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for connection in list(self._unproven):
            # Strangers in their handshake: dropped now, rather than
            # waited for up to the handshake timeout.
            connection.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _outbound(self, peer: NodeId) -> _Outbound:
        out = self._out.get(peer)
        if out is None:
            out = self._out[peer] = _Outbound(peer, OutboundLink(self.node_id, peer))
        return out

    # ------------------------------------------------------------ status

    def status(self, peer: NodeId) -> dict[str, Any]:
        """What an operator sees of the link with ``peer``."""
        out = self._out.get(peer)
        inbound = self._in.get(peer)
        return {
            "address": None if out is None else out.address,
            "sending": "up" if out is not None and out.connected else "down",
            "receiving": "up" if inbound is not None and inbound.connection is not None else "down",
            "last_sent_seq": 0 if out is None else out.link.last_seq,
            "acked_seq": 0 if out is None else out.acked,
            "unacked_frames": 0 if out is None else len(out.frames) + out.left_in_store,
            "received_seq": 0 if inbound is None else inbound.durable.contiguous,
            "connects": 0 if out is None else out.connects,
        }

    def gauges(self) -> list[tuple[NodeId, int, bool, bool]]:
        """Each peer's link as ``/metrics`` shows it: the messages sent to
        it and not yet acknowledged (held in the durable outbox until they
        are: a number that only grows is a peer away, whose frames cost
        the node disk), and whether the link to it and the link from it
        are up."""
        gauges = []
        for peer in sorted(self._out.keys() | self._in.keys()):
            out, inbound = self._out.get(peer), self._in.get(peer)
            unacked = 0 if out is None else out.link.last_seq - out.acked
            sending = out is not None and out.connected
            receiving = inbound is not None and inbound.connection is not None
            gauges.append((peer, unacked, sending, receiving))
        return gauges

    def _refuse(self, what: str, error: ProtocolError, peer: str) -> None:
        """Count a refused frame or message, and log it at most once a second per kind."""
        self._count(
            f"{what}:{error.code}",
            logging.WARNING,
            "%s from %s refused (%s): %s",
            what,
            peer[:16],
            error.code,
            error.message,
        )

    def _count(self, name: str, level: int, message: str, *args: object) -> None:
        """Count ``name``, and log ``message`` at most once a second per name."""
        self.counters[name] += 1
        self._log.log(name, level, message, *args)

    # ------------------------------------------------------------ sending

    def seal(self, sends: list[Send], commit: Commit) -> Callable[[], None]:
        """Number and sign ``sends`` into frames, one batch per peer where
        they fit, and add them to ``commit``'s outbox (and the frames that
        carry evidence to its evidence); what hands them to the links once
        the commit is durable. See :attr:`datn.runtime.Outlets.seal`."""
        by_peer: dict[NodeId, list[Send]] = {}
        answered: set[NodeId] = set()
        backlog: dict[NodeId, int] = {}
        repeated: set[tuple[NodeId, Message]] = set()
        max_backlog = self.settings.max_backlog
        for send in sends:
            peer = send.peer
            kind = type(send.message)
            out = self._outbound(peer)
            if kind in _REPEATED:
                if send.message in out.on_way or (peer, send.message) in repeated:
                    self.counters[f"merged:{kind.__name__}"] += 1
                    continue
                repeated.add((peer, send.message))
            unacked = backlog.get(peer)
            if unacked is None:
                unacked = out.link.last_seq - out.acked
            if kind in _WITHHELD and unacked >= max_backlog:
                self._count(
                    f"withheld:{kind.__name__}",
                    logging.WARNING,
                    "%s has %d messages unacknowledged: what it asks for is withheld",
                    peer[:16],
                    unacked,
                )
                continue
            backlog[peer] = unacked + 1
            by_peer.setdefault(peer, []).append(send)
            if kind not in _NEWS:
                answered.add(peer)
        sealed: list[tuple[_Outbound, list[OutboxFrame]]] = []
        for peer, items in by_peer.items():
            out = self._outbound(peer)
            frames: list[OutboxFrame] = []
            for start in range(0, len(items), MAX_BATCH_ENVELOPES):
                self._seal_into(out, items[start : start + MAX_BATCH_ENVELOPES], frames, commit)
            commit.outbox += frames
            sealed.append((out, frames))

        # A peer waiting for an answer (an offer, a confirmation) is woken
        # before one that is only told news (adverts, prints): the links'
        # senders go out in the order they are woken.
        sealed.sort(key=lambda pair: pair[0].peer not in answered)

        settings = self.settings

        def transmit() -> None:
            for out, frames in sealed:
                for frame in frames:
                    out.hold(frame, settings)
                out.wake()

        return transmit

    def _seal_into(
        self, out: _Outbound, items: list[Send], frames: list[OutboxFrame], commit: Commit
    ) -> None:
        link = out.link
        first = link.last_seq + 1
        try:
            frame = seal(self.key, link.batch([(s.hlc, s.message) for s in items]))
        except LocalProtocolError as error:
            if error.code != "frame_too_large":
                raise
            link.last_seq = first - 1
            if len(items) == 1:
                # A message no frame can carry: a bug of the core's, not
                # the link's; the node goes on without it.
                self.counters["message_too_large"] += 1
                log.error(
                    "a %s for %s is too large for a frame",
                    type(items[0].message).__name__,
                    out.peer,
                )
                return
            half = len(items) // 2
            self._seal_into(out, items[:half], frames, commit)
            self._seal_into(out, items[half:], frames, commit)
            return
        frames.append(OutboxFrame(out.peer, first, link.last_seq, frame))
        for seq, send in enumerate(items, first):
            if type(send.message) in _REPEATED:
                out.on_way[send.message] = seq
        if any(is_evidence(s.message) for s in items):
            commit.evidence.append(EvidenceRecord(out.peer, items[-1].hlc.wall_ms, "sent", frame))

    async def _dial(self, out: _Outbound) -> None:
        settings = self.settings
        delay_ms = settings.backoff_min_ms
        while not self._closing and out.address is not None:
            try:
                async with connect(
                    out.address,
                    compression=None,
                    max_size=MAX_CONTROL_BYTES,
                    open_timeout=settings.handshake_timeout_s,
                    ping_interval=settings.ping_interval_s,
                    ping_timeout=settings.ping_timeout_s,
                    logger=logging.getLogger("datn.net.client"),
                ) as connection:
                    challenges = await self._open_as_sender(connection, out)
                    peername = connection.transport.get_extra_info("peername")
                    if peername:
                        self._peer_at(peername[0])
                    delay_ms = settings.backoff_min_ms
                    out.connected = True
                    out.connects += 1
                    self.counters["links_opened"] += 1
                    log.info("link to %s open", out.peer[:16])
                    await self._send_frames(connection, out, challenges)
            except asyncio.CancelledError:
                raise
            except RemoteProtocolError as error:
                self._refuse("handshake", error, out.peer)
            except (OSError, ConnectionClosed, InvalidHandshake, InvalidURI, TimeoutError) as error:
                if out.connected:
                    log.info("link to %s closed: %s", out.peer[:16], error)
                self.counters["link_failures"] += 1
            except ValueError as error:  # an address the library cannot dial (UnicodeError too)
                self._count(
                    "link_failures",
                    logging.WARNING,
                    "link to %s cannot dial %r: %s",
                    out.peer[:16],
                    out.address,
                    error,
                )
            finally:
                if out.connected:
                    out.connected = False
                    self.counters["links_closed"] += 1
            # Exponential backoff with full jitter, so peers that lost each
            # other at once do not all dial again at once.
            await asyncio.sleep(random.uniform(delay_ms / 2, delay_ms) / 1_000)
            delay_ms = min(delay_ms * 2, settings.backoff_max_ms)

    async def _open_as_sender(self, connection: Any, out: _Outbound) -> bytes:
        """The handshake, as the node that sends; the connection's challenges."""
        timeout = self.settings.handshake_timeout_s
        their = handshake.read_hello(
            _binary(await asyncio.wait_for(connection.recv(), timeout)), out.peer
        )
        challenge = os.urandom(CHALLENGE_BYTES)
        await connection.send(handshake.proof(self.key, their, challenge))
        welcome = handshake.read_welcome(
            _binary(await asyncio.wait_for(connection.recv(), timeout)),
            self.key,
            out.peer,
            challenge,
        )
        window = _check_window(welcome, out.durable_through)
        out.sent_at.clear()
        out.gap_resent.clear()
        out.backoff = 1
        out.learn(window)
        return challenge + their.challenge

    async def _send_frames(self, connection: Any, out: _Outbound, challenges: bytes) -> None:
        reader = asyncio.get_running_loop().create_task(
            self._read_acks(connection, out, challenges)
        )
        resend_s = self.settings.resend_ms / 1_000
        loop = asyncio.get_running_loop()
        try:
            while not reader.done():
                out.woken = False
                self._read_back(out)
                now = loop.time()
                timed_out = False
                for frame in out.due(now, resend_s * out.backoff):
                    sent = out.sent_at.get(frame.first_seq)
                    if sent is not None:
                        self.counters["frames_resent"] += 1
                        timed_out = timed_out or sent != _LONG_AGO
                    await connection.send(frame.frame)
                    out.sent_at[frame.first_seq] = now
                    self.counters["frames_sent"] += 1
                if timed_out:
                    out.backoff = min(2 * out.backoff, MAX_RESEND_BACKOFF)
                await out.sleep(resend_s * out.backoff / 2)
            reader.result()
        finally:
            reader.cancel()

    def _read_back(self, out: _Outbound) -> None:
        """Refill ``out``'s frames from the store once the peer has taken
        in half of what is held: read on a thread (a page of frames may be
        megabytes), applied on the loop, and the sender woken."""
        runtime = self._runtime
        max_held = self.settings.max_held_frames
        if (
            runtime is None
            or out.reading is not None
            or not out.spilled
            or len(out.frames) > max_held // 2
            or out.held_bytes > self.settings.max_held_bytes // 2
        ):
            return
        after = out.loaded_through
        limit = min(READ_BACK_PAGE, max_held - len(out.frames))
        out.reading = asyncio.get_running_loop().create_task(
            self._read_page(runtime, out, after, limit)
        )

    async def _read_page(
        self, runtime: NodeRuntime, out: _Outbound, after: int, limit: int
    ) -> None:
        try:
            frames = await asyncio.get_running_loop().run_in_executor(
                None, runtime.store.outbox, out.peer, after, limit
            )
        except StoreError as error:
            # Read again at the sender's next turn; the frames held go on.
            self._count(
                "outbox_unreadable",
                logging.WARNING,
                "the outbox to %s could not be read back from the store: %s",
                out.peer[:16],
                error,
            )
            return
        finally:
            out.reading = None
        if out.loaded_through == after:  # else acknowledged meanwhile: read again
            out.read_back(frames, self.settings)
        out.wake()

    async def _read_acks(self, connection: Any, out: _Outbound, challenges: bytes) -> None:
        try:
            async for data in connection:
                try:
                    window = _check_window(
                        handshake.read_ack(_binary(data), self.key, out.peer, challenges),
                        out.durable_through,
                    )
                except RemoteProtocolError as error:
                    self._refuse("ack", error, out.peer)
                    continue
                if window == out.window:
                    continue  # nothing new: the same acknowledgement again
                out.missing(window)
                if out.learn(window):
                    # The peer is taking frames in: the frames still out
                    # wait a whole resend_ms from now (RFC 6298, 5.3), not
                    # from when they went, or a receiver catching up
                    # slowly is sent its window again every resend_ms.
                    out.restart_timers(asyncio.get_running_loop().time())
                self._note_acked(out.peer, out.acked)
                out.wake()
        finally:
            out.wake()

    def _note_acked(self, peer: NodeId, seq: int) -> None:
        """The outbox frames up to ``seq`` go with the next commit."""
        runtime = self._runtime
        if runtime is not None:
            runtime.annotate(lambda commit: _acked(commit, peer, seq))

    # ------------------------------------------------------------ receiving

    def _accept(self, connection: ServerConnection) -> None:
        """Give a connection just accepted a handshake place, or drop it."""
        peername = connection.transport.get_extra_info("peername")
        address = address_group(peername[0] if peername else "?")
        handshaking = self._handshaking
        if handshaking[address] < MAX_HANDSHAKES_PER_ADDRESS and (
            handshaking.total() < MAX_HANDSHAKES
            or self._evict_for(address, address in self._peer_addresses)
        ):
            handshaking[address] += 1
            self._unproven[connection] = _Place(address)
            return
        self._count(
            "handshake:too_many",
            logging.WARNING,
            "a connection from %s dropped: %d handshakes under way, %d from there",
            address,
            handshaking.total(),
            handshaking[address],
        )
        # Dropped, not closed: a close handshake would hold the
        # connection, and what it reads, for the close timeout.
        connection.transport.abort()

    def _evict_for(self, address: str, peer: bool) -> bool:
        """Every place is taken: drop the oldest connection of the address
        that holds the most places among those ``address`` may take one
        from, if it holds more than ``address`` does; whether one was
        dropped. A stranger takes only a stranger's place, so strangers at
        a few addresses cannot keep a peer out by taking every place first,
        and strangers at many cannot keep out a peer at an address it is
        known at (``peer``). Such a peer takes a stranger's place whatever
        either holds, and, with every place held from peers' addresses, the
        place of one holding more than its own, so one peer's addresses
        cannot keep the others out either."""
        handshaking = self._handshaking
        known = self._peer_addresses
        pool = {at: held for at, held in handshaking.items() if at not in known}
        if pool:
            floor = 0 if peer else handshaking[address]  # a peer: whatever it holds
        elif peer:
            pool, floor = dict(handshaking), handshaking[address]
        else:
            return False
        most = max(pool.values())
        if most <= floor:
            return False
        for connection, place in self._unproven.items():  # oldest first
            if pool.get(place.address) == most:
                self._count(
                    "handshake:evicted",
                    logging.WARNING,
                    "every handshake place taken: the oldest connection from %s (%d places)"
                    " dropped for one from %s",
                    place.address,
                    most,
                    address,
                )
                connection.transport.abort()
                self._give_place(connection)
                return True
        return False

    def _peer_at(self, host: str) -> None:
        """A peer is at ``host`` (an address or its group)."""
        known = self._peer_addresses
        group = address_group(host)
        known[group] = None
        known.move_to_end(group)
        if len(known) > MAX_PEER_ADDRESSES:
            known.popitem(last=False)

    def _give_place(self, connection: ServerConnection, *, lost: bool = False) -> None:
        """``connection`` no longer holds a handshake place (if it held
        one); ``lost``: its socket has closed."""
        place = self._unproven.pop(connection, None)
        if place is None:
            return
        handshaking = self._handshaking
        handshaking[place.address] -= 1
        if not handshaking[place.address]:
            del handshaking[place.address]
        if lost and not place.upgraded:
            # No WebSocket upgrade came, or one the library refused (not
            # HTTP, too long, not an upgrade), or none within the timeout.
            self._count(
                "handshake:no_upgrade",
                logging.INFO,
                "a connection from %s closed without a WebSocket upgrade",
                place.address,
            )

    async def _serve(self, connection: ServerConnection) -> None:
        place = self._unproven.get(connection)
        if place is None:
            return  # dropped as it was accepted
        place.upgraded = True
        outcome = await self._handshake(connection, place.address)
        if isinstance(outcome, str):
            # Closed holding its place until the socket is gone: the close
            # handshake waits up to a second for the stranger's answer, and
            # strangers refused one after another from one address would
            # otherwise each hold a socket for it, uncounted.
            await connection.close(CLOSE_REFUSED, outcome)
        elif outcome is not None:
            # A peer proven: its place is free, its address known, and its
            # frames may be as large as frames are.
            self._give_place(connection)
            self._peer_at(place.address)
            connection.protocol.max_message_size = MAX_MESSAGE_BYTES
            await self._take_frames(connection, *outcome)

    async def _handshake(
        self, connection: ServerConnection, address: str
    ) -> tuple[NodeId, Proof, bytes] | str | None:
        """The handshake, as the node that receives: the sender, its proof
        and this node's challenge; or, refused and counted, the reason to
        close the connection with (None if it closed already)."""
        timeout = self.settings.handshake_timeout_s
        challenge = os.urandom(CHALLENGE_BYTES)
        try:
            await connection.send(handshake.hello(self.key, challenge))
            data = _binary(await asyncio.wait_for(connection.recv(), timeout))
            peer, proof = handshake.read_proof(data, self.key, challenge)
            if not self._is_peer(peer):
                raise RemoteProtocolError("unknown_peer", f"{peer[:16]} is not a peer of this node")
        except RemoteProtocolError as error:
            self._refuse("handshake", error, address)
            return error.code
        except TimeoutError:
            self._count(
                "handshakes_timed_out",
                logging.INFO,
                "a connection from %s sent no proof within %.1f s",
                address,
                timeout,
            )
            return "timeout"
        except ConnectionClosed as closed:
            if closed.sent is not None and closed.sent.code == CLOSE_TOO_BIG:
                # The library closed it on a message beyond the control limit.
                self._refuse(
                    "handshake",
                    RemoteProtocolError("control_too_large", "a message beyond the control limit"),
                    address,
                )
            else:
                self._count(
                    "handshakes_abandoned",
                    logging.INFO,
                    "a connection from %s closed during its handshake",
                    address,
                )
            return None
        return peer, proof, challenge

    async def _take_frames(
        self, connection: ServerConnection, peer: NodeId, proof: Proof, challenge: bytes
    ) -> None:
        inbound = self._in.get(peer)
        if inbound is None:
            inbound = self._in[peer] = _Inbound(peer, ReplayWindow(), Window())
        previous = inbound.connection
        inbound.connection = connection
        if inbound.ack_timer is not None:  # it was for the previous connection
            inbound.ack_timer.cancel()
            inbound.ack_timer = None
        inbound.challenges = proof.challenge + challenge
        if previous is not None:
            # The peer dialled again: its new connection replaces the old,
            # dropped at once (a close handshake would let a peer that never
            # answers it keep the old connection, and what it read ahead,
            # for the close timeout, a connection per dial).
            previous.transport.abort()
        try:
            await connection.send(handshake.welcome(self.key, proof, inbound.durable))
            applied = read = checked = 0
            async for frame in connection:
                taken = self._on_frame(inbound, connection, frame)
                if taken and await self._hold_back(inbound, taken):
                    applied = read = checked = 0
                    continue
                applied += taken
                read += len(frame)
                checked += 1
                if (
                    applied >= MAX_BATCH_ENVELOPES
                    or read >= MAX_FRAME_BYTES
                    or checked >= MAX_FRAMES_A_TURN
                ):
                    # A burst the library read ahead comes without a pause:
                    # after a full batch's worth of messages applied, or a
                    # full frame's worth of bytes or MAX_FRAMES_A_TURN
                    # frames checked (frames refused or seen before cost
                    # their signature and decoding too), the loop turns, so
                    # that traders and other peers are not held up. Not
                    # after every frame: the frames taken in between two
                    # turns commit together, while a frame a turn would be
                    # a commit (and a flush to disk) each.
                    applied = read = checked = 0
                    await asyncio.sleep(0)
        except ConnectionClosed:
            pass
        except NodeStoppedError:
            await connection.close(1011, "the node stopped")
        finally:
            if inbound.connection is connection:
                inbound.connection = None

    async def _hold_back(self, inbound: _Inbound, taken: int) -> bool:
        """Spend ``taken`` messages of the peer's budget, and wait before its
        next frame is read while the budget is spent or too many of its
        messages wait for the disk; whether it waited (the loop turned)."""
        settings = self.settings
        # The budget as a virtual time (a generic cell rate algorithm): each
        # message moves it on by 1/rate of a second, and it may run up to a
        # second behind the clock (the burst). Ahead of the clock, the node
        # waits until the clock catches up before it reads on.
        now = time.monotonic_ns()
        cost = 1_000_000_000 // settings.inbound_per_second
        spent = inbound.spent_ns = max(inbound.spent_ns, now - 1_000_000_000) + taken * cost
        waited = False
        if spent > now:
            self.counters["inbound_throttled"] += 1
            if self.counters["inbound_throttled"] % 1_000 == 1:
                log.warning(
                    "%s sends more than %d messages a second: its frames are read"
                    " more slowly (inbound_throttled)",
                    inbound.peer[:16],
                    settings.inbound_per_second,
                )
            await asyncio.sleep((spent - now) / 1_000_000_000)
            waited = True
        pending = inbound.pending
        while pending and (
            pending[0][0].done() or inbound.pending_messages > settings.max_inbound_pending
        ):
            future, messages = pending[0]
            if not future.done():
                await asyncio.wait((future,))
                waited = True
            pending.popleft()
            inbound.pending_messages -= messages
        return waited

    def _on_frame(self, inbound: _Inbound, connection: ServerConnection, data: Any) -> int:
        """Check and take in one frame; how many messages it applied."""
        peer = inbound.peer
        runtime = self._runtime
        if runtime is None:
            return 0
        try:
            if not isinstance(data, bytes):
                raise RemoteProtocolError("text_message", "a frame is a binary message")
            header = read_header(data)
            if header.sender != peer:
                raise RemoteProtocolError(
                    "wrong_sender", f"{header.sender[:16]} on {peer[:16]}'s link"
                )
            if header.receiver != self.node_id:
                raise RemoteProtocolError("wrong_receiver", f"addressed to {header.receiver[:16]}")
            batch = open_frame(data)
            window = inbound.window.admit(e.seq for e in batch.envelopes)
        except RemoteProtocolError as error:
            if error.code == "replayed":
                self._count(
                    "frames_duplicate",
                    logging.INFO,
                    "a frame from %s came again (kept before): acknowledged again",
                    peer[:16],
                )
                self._ack(inbound, connection, at_once=True)
                return 0
            self._refuse("frame", error, peer)
            return 0
        inbound.window = window
        self.counters["frames_received"] += 1
        durable = _window(window)
        evidence = any(is_evidence(e.message) for e in batch.envelopes)
        # Filed under this node's own clock at receipt: the stamps in the
        # frame are the peer's to choose, and one far in the future would
        # keep the frame out of every export by period.
        at_ms = time.time_ns() // 1_000_000

        def note(commit: Commit) -> None:
            commit.windows[peer] = InboundWindow(peer, durable.contiguous, durable.above)
            if evidence:
                commit.evidence.append(EvidenceRecord(peer, at_ms, "received", data))

        events = [ReceiveInput(peer, e.sent, e.message) for e in batch.envelopes]
        future = runtime.take_in(events, note)  # type: ignore[arg-type]

        def kept(done: asyncio.Future[Any]) -> None:
            if done.cancelled() or done.exception() is not None:
                return
            inbound.durable = _newer(inbound.durable, durable)
            # Above a gap: the sender learns of the gap at once and resends
            # it. A quarter of the replay window unacknowledged: at once too,
            # before the sender must wait for the window to move.
            self._ack(
                inbound,
                connection,
                at_once=bool(durable.above)
                or durable.contiguous - inbound.acked_upto >= REPLAY_WINDOW // 4,
            )

        future.add_done_callback(kept)
        inbound.pending.append((future, len(events)))
        inbound.pending_messages += len(events)
        return len(events)

    def _ack(
        self, inbound: _Inbound, connection: ServerConnection, *, at_once: bool = False
    ) -> None:
        """Acknowledge what is durable, after the acknowledgement delay
        unless ``at_once``; one send at a time per connection."""
        if inbound.connection is not connection:
            return
        if inbound.acking is connection:
            inbound.ack_again = True
            return
        timer = inbound.ack_timer
        if not at_once:
            if timer is None:
                settings = self.settings
                delay_s = min(settings.ack_delay_ms, settings.resend_ms // 10) / 1_000
                inbound.ack_timer = asyncio.get_running_loop().call_later(
                    delay_s, self._ack_now, inbound, connection
                )
            return
        self._ack_now(inbound, connection)

    def _ack_now(self, inbound: _Inbound, connection: ServerConnection) -> None:
        if inbound.ack_timer is not None:
            inbound.ack_timer.cancel()
            inbound.ack_timer = None
        if inbound.connection is not connection:
            return
        if inbound.acking is connection:
            inbound.ack_again = True
            return
        inbound.acking = connection
        asyncio.get_running_loop().create_task(self._send_acks(inbound, connection))

    async def _send_acks(self, inbound: _Inbound, connection: ServerConnection) -> None:
        try:
            while True:
                inbound.ack_again = False
                durable = inbound.durable
                await connection.send(
                    handshake.ack(self.key, inbound.peer, inbound.challenges, durable)
                )
                inbound.acked_upto = durable.contiguous
                if not inbound.ack_again:
                    return
        except ConnectionClosed:
            return
        finally:
            if inbound.acking is connection:
                inbound.acking = None

    def peers(self) -> Iterable[NodeId]:
        return set(self._out) | set(self._in)


@dataclass(slots=True)
class _Place:
    """A handshake place: the address group it counts against, and whether
    its connection got as far as a WebSocket."""

    address: str
    upgraded: bool = False


def _ip_host(address: str) -> str | None:
    """The host of a ``ws://host:port`` address when it is an IP address;
    None for a name (known once a link to it opens) or an address that is
    no URL."""
    try:
        host = urlsplit(address).hostname
        if host is None:
            return None
        host = unquote(host)  # a zone's % is written %25 in a URL
        ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None
    return host


def _newer(old: Window, new: Window) -> Window:
    """The window that has seen the most: windows only grow, but the
    commits that make them durable may complete their callbacks in any order."""
    if new.contiguous > old.contiguous:
        return new
    if new.contiguous == old.contiguous and len(new.above) >= len(old.above):
        return new
    return old


def _acked(commit: Commit, peer: NodeId, seq: int) -> None:
    if commit.acked.get(peer, 0) < seq:
        commit.acked[peer] = seq


def _binary(data: Any) -> bytes:
    if not isinstance(data, bytes):
        raise RemoteProtocolError("text_message", "the link speaks binary messages only")
    return data
