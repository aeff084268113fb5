"""A hostile peer against real node processes, over a real socket.

Three nodes on 127.0.0.1 are linked and bonded, then left quiet (no
heartbeats), so that nothing but the attacker's traffic reaches them. The
attacker dials a node's link address directly:

* before any handshake, with no key of a peer: random bytes, control
  messages of the wrong kind, oversized and text messages, proofs for an
  unknown key, with a bad signature, or over another connection's
  challenge. The node refuses each with close code 4003 naming why, counts
  it under ``handshake:CODE``, and changes nothing;
* as a peer whose key it stole (the peer's process stopped, its key file
  read): it completes the handshake properly, then sends random bytes,
  truncated and damaged frames, frames signed for another receiver or by
  another key, well-signed frames with malformed bodies, replays of the
  peer's real frames, sequence numbers beyond the replay window and
  oversized frames. The node counts each refusal under ``frame:CODE`` (a
  replay under ``frames_duplicate``, acknowledged with its unchanged
  window), keeps the link open, and changes nothing: not its journal, not
  its ledger, not its window for that peer.

Afterwards every process still runs, the honest nodes trade across their
links, the impersonated node comes back and trades too, and the network
conserves every asset.

A node that dials an impostor holding a peer's key (its receiver) never
drops a frame from its outbox on an acknowledgement that no signature of
that connection backs.

The fuzz is seeded (DATN_LINK_FUZZ_SEED), so a failure replays.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from random import Random
from typing import Any

import msgspec
import pytest
from nodes import order
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.sync.server import ServerConnection, serve

from datn.api.client import TraderClient
from datn.launch import LocalNetwork, NodeProcess, wait_until
from datn.net import LinkSettings, handshake
from datn.net.handshake import (
    ACK,
    HELLO,
    MAX_CONTROL_BYTES,
    PROOF,
    WELCOME,
    Ack,
    Hello,
    Proof,
    Window,
)
from datn.net.links import MAX_MESSAGE_BYTES
from datn.protocol.clock import Hlc
from datn.protocol.messages import Heartbeat, NodeId
from datn.runtime.config import KEY_FILE
from datn.wire import (
    Batch,
    Envelope,
    NodeKey,
    Purpose,
    RemoteProtocolError,
    ReplayWindow,
    open_frame,
    read_header,
    seal,
    sign_frame,
)
from datn.wire.frame import HEADER_BYTES, MIN_FRAME_BYTES
from datn.wire.keys import SIGNATURE_BYTES
from datn.wire.limits import MAX_FRAME_BYTES, REPLAY_WINDOW

SEED = int(os.environ.get("DATN_LINK_FUZZ_SEED", "20250611"))
"""The fuzz's seed: set DATN_LINK_FUZZ_SEED to explore others, or to replay one."""
BOND = 50_000_000
CLOSE_REFUSED = 4003
CLOSE_TOO_BIG = 1009
TIMEOUT_S = 5.0
HANDSHAKE_TIMEOUT_S = LinkSettings().handshake_timeout_s
SOCKET_LIMIT = MAX_MESSAGE_BYTES
QUIET = {"heartbeat_ms": 3_600_000}
"""No heartbeats: on a quiet network, only the attacker sends anything."""


@pytest.fixture
def network(tmp_path: Path) -> Iterator[LocalNetwork]:
    with LocalNetwork(tmp_path, ["a", "b", "c"], resend_ms=100, core=QUIET) as running:
        running.start()
        running.link()
        running.bond(BOND)
        yield running


# ------------------------------------------------------------ helpers


def dial(address: str) -> ClientConnection:
    return connect(
        address,
        compression=None,
        proxy=None,
        max_size=None,
        open_timeout=TIMEOUT_S,
        close_timeout=1,
        ping_interval=None,
        legacy=True,
    )


def received(ws: ClientConnection | ServerConnection) -> bytes:
    """The next message: a control message, binary."""
    data = ws.recv(timeout=TIMEOUT_S)
    assert isinstance(data, bytes), data
    return data


def closed_by_node(ws: ClientConnection, timeout_s: float = TIMEOUT_S) -> tuple[int | None, str]:
    """Wait for the node to close the connection, sending nothing before:
    its close code and reason (None if the socket ended without a close)."""
    with pytest.raises(ConnectionClosed) as closed:
        unexpected = ws.recv(timeout=timeout_s)
        raise AssertionError(f"the node answered {unexpected!r:.80} instead of closing")
    frame = closed.value.rcvd
    return (None, "") if frame is None else (frame.code, frame.reason)


def link_events(node: NodeProcess) -> Counter[str]:
    """``datn_link_events_total`` from the node's /metrics, by name."""
    assert node.admin is not None
    answer = node.admin.request("GET", "/metrics")
    assert answer.status_code == 200, answer.text
    found: Counter[str] = Counter()
    for line in answer.text.splitlines():
        if line.startswith("datn_link_events_total{"):
            name = line.split('name="', 1)[1].split('"', 1)[0]
            found[name] = int(float(line.rsplit(" ", 1)[1]))
    return found


def moved(before: Counter[str], after: Counter[str], prefix: str) -> Counter[str]:
    return Counter(
        {
            name: after[name] - before[name]
            for name in after
            if name.startswith(prefix) and after[name] != before[name]
        }
    )


def snapshot(nodes: list[NodeProcess]) -> dict[str, Any]:
    """What must not change: each node's journal position and trial balance."""
    return {
        node.name: (
            node.call("GET", "/admin/status")["journal_position"],
            node.call("GET", "/admin/ledger"),
        )
        for node in nodes
    }


def settled(nodes: list[NodeProcess], still_s: float = 1.0) -> dict[str, Any]:
    """:func:`snapshot`, once it has not changed for ``still_s``: what the
    bonds set going has been journaled everywhere."""

    def unchanged() -> dict[str, Any] | None:
        first = snapshot(nodes)
        time.sleep(still_s)
        return first if snapshot(nodes) == first else None

    return wait_until("the network to fall quiet", unchanged)


def stolen_key(node: NodeProcess) -> NodeKey:
    key = NodeKey(bytes.fromhex((node.folder / KEY_FILE).read_text(encoding="ascii").strip()))
    assert key.node_id == node.node_id
    return key


def genuine_frames(holder: NodeProcess, sender: NodeProcess) -> list[bytes]:
    """Frames ``sender`` really sent ``holder``, from the evidence ``holder`` keeps."""
    assert holder.admin is not None
    answer = holder.admin.request("GET", f"/admin/evidence/{sender.node_id}")
    assert answer.status_code == 200, answer.text
    frames = []
    for line in answer.content.splitlines():
        record = json.loads(line)
        if record["kind"] == "record" and record["sender"] == sender.node_id:
            frames.append(base64.b64decode(record["frame"]))
    return frames


def heartbeats(key: NodeKey, receiver: str, seqs: list[int]) -> bytes:
    """A well-formed, well-signed frame of heartbeats at ``seqs``."""
    now = int(time.time() * 1000)
    beat = Heartbeat(1, None, now, 0)
    sender, to = key.node_id, NodeId(receiver)
    envelopes = tuple(Envelope(sender, to, seq, Hlc(now, n), beat) for n, seq in enumerate(seqs))
    return seal(key, Batch(sender, to, envelopes))


def expected_refusal(data: Any, sender: str, receiver: str, window: ReplayWindow) -> str | None:
    """The link event a receiver must count for ``data`` on ``sender``'s link,
    checking cheapest first; None if it would take ``data`` in."""
    if not isinstance(data, bytes):
        return "frame:text_message"
    try:
        header = read_header(data)
        if header.sender != sender:
            return "frame:wrong_sender"
        if header.receiver != receiver:
            return "frame:wrong_receiver"
        window.admit(e.seq for e in open_frame(data).envelopes)
    except RemoteProtocolError as error:
        return "frames_duplicate" if error.code == "replayed" else f"frame:{error.code}"
    return None


def random_tree(rng: Random, depth: int = 0) -> Any:
    """A MessagePack value of some shape."""
    pick = rng.randrange(9 if depth < 3 else 6)
    if pick == 0:
        return rng.randrange(-(2**63), 2**64)
    if pick == 1:
        return rng.randrange(-40, 300)
    if pick == 2:
        return rng.randbytes(rng.randrange(40))
    if pick == 3:
        return "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(20)))
    if pick == 4:
        return rng.choice([None, True, False, 1.5, -0.0])
    if pick == 5:
        return []
    if pick == 6:
        return {str(rng.randrange(10)): random_tree(rng, depth + 1) for _ in range(3)}
    return [random_tree(rng, depth + 1) for _ in range(rng.randrange(1, 6))]


def damage(rng: Random, data: bytes) -> bytes:
    """``data`` with one to three bytes changed."""
    damaged = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(damaged))
        damaged[at] ^= rng.randrange(1, 256)
    return bytes(damaged)


def filled(trader: TraderClient, order_id: int) -> bool:
    return bool(trader.request("GET", f"/v1/orders/{order_id}").json()["status"] == "filled")


# ------------------------------------------------------------ before a handshake


Opening = tuple[str, Callable[[Hello], Any], str | None]


def captured_proof(rng: Random, peer_key: NodeKey, hello: Hello) -> bytes:
    """A peer's genuine proof from another connection (another challenge of
    the same node), as an eavesdropper could have kept it."""
    earlier = msgspec.structs.replace(hello, challenge=rng.randbytes(32))
    return handshake.proof(peer_key, earlier, rng.randbytes(32))


def hostile_openings(rng: Random, peer_key: NodeKey, count: int) -> Iterator[Opening]:
    """``count`` things to send instead of a proof: what to call on the
    node's hello, and what the node must count ("?": as the proof reads,
    see :func:`expected_handshake_refusal`; None: the socket closes for
    size and nothing is counted). No proof here answers this connection's
    challenge with a peer's key: the attacker has none."""
    stranger = NodeKey(rng.randbytes(32))
    for _ in range(count):
        pick = rng.randrange(12)
        if pick == 0:
            yield "random bytes", lambda h: rng.randbytes(rng.randrange(0, 300)), "?"
        elif pick == 1:
            yield "random body", lambda h: bytes([PROOF]) + rng.randbytes(rng.randrange(130)), "?"
        elif pick == 2:
            kind = rng.choice([HELLO, WELCOME, ACK, 0, 1, 0xFF])
            yield (
                "a proof under another kind",
                lambda h, k=kind: bytes([k]) + handshake.proof(stranger, h, rng.randbytes(32))[1:],
                "handshake:unexpected_message",
            )
        elif pick == 3:
            yield (
                "a hello back",
                lambda h: handshake.hello(stranger, rng.randbytes(32)),
                "handshake:unexpected_message",
            )
        elif pick == 4:
            size = rng.randrange(MAX_CONTROL_BYTES + 1, SOCKET_LIMIT + 1)
            yield (
                "too large for a control message",
                lambda h, n=size: bytes([PROOF]) + rng.randbytes(n - 1),
                "handshake:control_too_large",
            )
        elif pick == 5:
            size = rng.randrange(SOCKET_LIMIT + 1, 2 * SOCKET_LIMIT)
            yield (
                "too large for the socket",
                lambda h, n=size: rng.randbytes(n),
                "handshake:control_too_large",
            )
        elif pick == 6:
            text = "".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(60)))
            yield "text", lambda h, t=text: t, "handshake:text_message"
        elif pick == 7:
            yield (
                "a proof for an unknown key",
                lambda h: handshake.proof(NodeKey(rng.randbytes(32)), h, rng.randbytes(32)),
                "handshake:unknown_peer",
            )
        elif pick == 8:
            yield (
                "a peer's key, a bad signature",
                lambda h: handshake.encode(
                    PROOF, Proof(peer_key.public_key, rng.randbytes(32), rng.randbytes(64))
                ),
                "handshake:bad_signature",
            )
        elif pick == 9:
            yield (
                "a peer's proof from another connection",
                lambda h: captured_proof(rng, peer_key, h),
                "handshake:bad_signature",
            )
        elif pick == 10:
            yield (
                "a damaged proof",
                lambda h: damage(rng, captured_proof(rng, peer_key, h)),
                "?",
            )
        else:
            yield (
                "a truncated proof",
                lambda h: captured_proof(rng, peer_key, h)[: rng.randrange(98)],
                "?",
            )


def expected_handshake_refusal(data: Any) -> str:
    """What the node must count for ``data`` sent instead of a proof that
    answers its challenge: why it does not read as a proof, or else a bad
    signature (checked before whether the key is a peer's)."""
    try:
        handshake.decode(PROOF, data, Proof)
    except RemoteProtocolError as error:
        return f"handshake:{error.code}"
    return "handshake:bad_signature"


def test_a_stranger_is_refused_at_the_handshake_and_changes_nothing(
    network: LocalNetwork,
) -> None:
    rng = Random(SEED)
    a, b, c = network.nodes
    # c's key makes only proofs a captured earlier connection could hold.
    peer_key = stolen_key(c)
    before = settled(network.nodes)
    events = link_events(a)
    # A connection that never answers the hello: the node closes it.
    idle = dial(a.net_address)
    handshake.read_hello(received(idle), NodeId(a.node_id))

    expected: Counter[str] = Counter()
    sent = 0
    for what, build, counts in hostile_openings(rng, peer_key, 160):
        with dial(a.net_address) as ws:
            hello = handshake.read_hello(received(ws), NodeId(a.node_id))
            assert hello.version == handshake.LINK_VERSION
            data = build(hello)
            counted = expected_handshake_refusal(data) if counts == "?" else counts
            ws.send(data)
            sent += 1
            code, reason = closed_by_node(ws)
            if counted is None:
                assert code in (CLOSE_TOO_BIG, None), f"{what}: closed with {code} {reason}"
            elif counted == "handshake:control_too_large":
                # Read no further than a control message's limit before the
                # handshake: the library closes it, the node counts it.
                expected[counted] += 1
                assert code == CLOSE_TOO_BIG, f"{what}: closed with {code} {reason}"
            else:
                expected[counted] += 1
                assert (code, f"handshake:{reason}") == (CLOSE_REFUSED, counted), (
                    f"{what} (seed {SEED}, message {sent}): closed with {code} {reason!r}"
                )
    # Connections that end before the proof are no refusals.
    for _ in range(5):
        with dial(a.net_address) as ws:
            ws.recv(timeout=TIMEOUT_S)

    assert a.running and b.running and c.running
    assert moved(events, link_events(a), "handshake:") == expected
    assert snapshot(network.nodes) == before
    assert network.peer(a, b)["link"]["state"] == "up"
    assert network.peer(a, c)["link"]["state"] == "up"
    closed_by_node(idle, timeout_s=HANDSHAKE_TIMEOUT_S + TIMEOUT_S)
    idle.close()
    assert network.conservation() == []


# ------------------------------------------------------------ as a peer


def open_as(node: NodeProcess, key: NodeKey, rng: Random) -> tuple[ClientConnection, Window, bytes]:
    """Dial ``node`` as the peer whose ``key`` this is and complete the
    handshake properly: the connection, the window the node states for
    that peer, and the connection's challenges (the sender's first)."""
    ws = dial(node.net_address)
    their = handshake.read_hello(received(ws), NodeId(node.node_id))
    mine = rng.randbytes(32)
    ws.send(handshake.proof(key, their, mine))
    window = handshake.read_welcome(received(ws), key, NodeId(node.node_id), mine)
    return ws, window, mine + their.challenge


def hostile_frames(
    rng: Random,
    key: NodeKey,
    receiver: NodeProcess,
    other: NodeProcess,
    window: Window,
    genuine: list[bytes],
    count: int,
) -> Iterator[tuple[str, Any]]:
    """``count`` frames a peer that owns ``key`` may send on its link to
    ``receiver``, each meant to be refused: the caller leaves out the few
    signed bodies that come out well formed and new by chance."""
    top = window.contiguous
    # Beyond the window even after ``top + 1`` slid it.
    beyond = top + REPLAY_WINDOW + 2
    stranger = NodeKey(rng.randbytes(32))
    to = receiver.node_id
    for _ in range(count):
        pick = rng.randrange(18)
        frame = rng.choice(genuine)
        if pick == 0:
            yield "random bytes", rng.randbytes(rng.randrange(0, 400))
        elif pick == 1:
            header = bytes([1]) + key.public_key + bytes.fromhex(to)
            body = rng.randbytes(rng.randrange(1, 300)) + rng.randbytes(SIGNATURE_BYTES)
            yield "a header, then random bytes", header + body
        elif pick == 2:
            yield "a truncated frame", frame[: rng.randrange(len(frame))]
        elif pick == 3:
            yield "a damaged frame", damage(rng, frame)
        elif pick == 4:
            bad = frame[:-SIGNATURE_BYTES] + rng.randbytes(SIGNATURE_BYTES)
            yield "a frame with another signature", bad
        elif pick == 5:
            yield (
                "a frame for another receiver",
                sign_frame(key, NodeId(other.node_id), frame[HEADER_BYTES:-SIGNATURE_BYTES]),
            )
        elif pick == 6:
            yield (
                "a frame by another key",
                sign_frame(stranger, NodeId(to), frame[HEADER_BYTES:-SIGNATURE_BYTES]),
            )
        elif pick == 7:
            yield (
                "signed random bytes",
                sign_frame(key, NodeId(to), rng.randbytes(rng.randrange(1, 300))),
            )
        elif pick == 8:
            body = msgspec.msgpack.encode(random_tree(rng))
            yield "signed msgpack of any shape", sign_frame(key, NodeId(to), body)
        elif pick == 9:
            # A real body with a byte changed, then signed: the schema's turn.
            body = damage(rng, frame[HEADER_BYTES:-SIGNATURE_BYTES])
            yield "a signed near miss", sign_frame(key, NodeId(to), body)
        elif pick == 10:
            yield "a replay", frame
        elif pick == 11:
            seqs = [rng.randint(1, top)]
            yield "heartbeats at a seen number", heartbeats(key, to, seqs)
        elif pick == 12:
            # New numbers batched with a seen one: refused as a whole.
            seqs = [top + 1, top + 2, rng.randint(1, top)]
            yield "new numbers with a seen one", heartbeats(key, to, seqs)
        elif pick == 13:
            seqs = [top + 1, top + 1]
            yield "a number twice", heartbeats(key, to, seqs)
        elif pick == 14:
            seqs = [rng.randint(beyond, beyond + 10**6)]
            if rng.random() < 0.5:
                seqs.insert(0, top + 1)
            yield "beyond the replay window", heartbeats(key, to, seqs)
        elif pick == 15:
            body = b"\xc1" * (MAX_FRAME_BYTES - MIN_FRAME_BYTES + 1)
            yield "a signed frame of the largest size", sign_frame(key, NodeId(to), body)
        elif pick == 16:
            size = rng.randrange(MAX_FRAME_BYTES + 1, SOCKET_LIMIT + 1)
            yield "a signed frame over the limit", oversized(key, to, size, rng)
        else:
            text = "".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(80)))
            yield "text", text


MAY_PASS = frozenset({"signed msgpack of any shape", "a signed near miss"})
"""Frames that may come out well formed and new by chance: not sent."""


def oversized(key: NodeKey, receiver: str, size: int, rng: Random) -> bytes:
    """A frame of ``size`` bytes, over the limit, well signed all the same."""
    header = bytes([1]) + key.public_key + bytes.fromhex(receiver)
    signed = header + rng.randbytes(size - HEADER_BYTES - SIGNATURE_BYTES)
    return signed + key.sign(Purpose.BATCH, signed)


def test_an_impersonated_peer_cannot_change_anything_and_honest_links_are_unaffected(
    network: LocalNetwork,
) -> None:
    rng = Random(SEED + 1)
    a, b, c = network.nodes
    genuine = genuine_frames(a, c)
    assert genuine, "a kept no frame of c's to replay"
    kept_from_c = network.peer(a, c)["link"]["received_seq"]
    assert kept_from_c >= max(e.seq for f in genuine for e in open_frame(f).envelopes)
    c.stop()
    key = stolen_key(c)
    wait_until("a to see c's link down", lambda: network.peer(a, c)["link"]["state"] == "down")
    honest = [a, b]
    before = settled(honest)
    events = link_events(a)

    ws, window, challenges = open_as(a, key, rng)
    assert window == Window(kept_from_c), window
    wait_until(
        "a to take the impostor for c", lambda: network.peer(a, c)["link"]["state"] == "receiving"
    )
    replay = ReplayWindow(window.contiguous, frozenset(window.above))
    expected: Counter[str] = Counter()
    sent = 0
    for what, data in hostile_frames(rng, key, a, b, window, genuine, 300):
        assert len(data) <= SOCKET_LIMIT
        counted = expected_refusal(data, key.node_id, a.node_id, replay)
        if counted is None:
            # Only a signed body may come out valid by chance; never send it.
            assert what in MAY_PASS, f"the fuzzer built a valid frame: {what}"
            continue
        expected[counted] += 1
        ws.send(data)
        sent += 1
        if counted == "frames_duplicate":
            # A replay is acknowledged, with the window unchanged and bound
            # to this connection.
            acked = handshake.read_ack(received(ws), key, NodeId(a.node_id), challenges)
            assert acked == window, f"{what} (seed {SEED + 1}, frame {sent}): acked {acked}"
    # The link is still open: a last replay is acknowledged, after every
    # frame before it was refused.
    ws.send(genuine[0])
    expected["frames_duplicate"] += 1
    assert handshake.read_ack(received(ws), key, NodeId(a.node_id), challenges) == window
    # A message over what the node reads closes the connection, counted nowhere.
    ws.send(oversized(key, a.node_id, SOCKET_LIMIT + 1, rng))
    assert closed_by_node(ws)[0] in (CLOSE_TOO_BIG, None)
    ws, _, _ = open_as(a, key, rng)
    ws.send(rng.randbytes(SOCKET_LIMIT + 1 + rng.randrange(SOCKET_LIMIT)))
    assert closed_by_node(ws)[0] in (CLOSE_TOO_BIG, None)

    assert a.running and b.running
    after = link_events(a)
    assert moved(events, after, "frame:") + moved(events, after, "frames_") == expected
    assert snapshot(honest) == before
    # The window a keeps for c is as it was: a new connection states it.
    again, window_again, _ = open_as(a, key, rng)
    assert window_again == window
    again.close()
    assert network.peer(a, b)["link"]["state"] == "up"

    # c comes back and its own frames go on from where they were.
    network.restart(c)
    for x, y in ((a, c), (c, a), (a, b)):
        wait_until(
            f"{x.name}'s link with {y.name}",
            lambda x=x, y=y: network.peer(x, y)["link"]["state"] == "up",
        )
    trade_from_every_node(network, a, [b, c])
    assert network.conservation() == []


def trade_from_every_node(
    network: LocalNetwork, seller_node: NodeProcess, buyer_nodes: list[NodeProcess]
) -> None:
    """A sell rests at ``seller_node``; a buyer at each other node takes part of it."""
    seller = network.trader(seller_node, "seller", {"XYZ": 100})
    placed = seller.request("POST", "/v1/orders", order("s-1", "sell", 10, 5_000))
    assert placed.status_code == 201, placed.text
    for node in buyer_nodes:
        buyer = network.trader(node, f"buyer-{node.name}", {"USD": 10_000_000})
        wait_until(
            f"the sell in {node.name}'s network book",
            lambda by=buyer: any(
                level["price_ticks"] == 5_000
                for level in by.request("GET", "/v1/book/XYZ").json()["asks"]
            ),
        )
        answer = buyer.request("POST", "/v1/orders", order(f"b-{node.name}", "buy", 3, 5_000))
        assert answer.status_code == 201, answer.text
        order_id = answer.json()["order_id"]
        wait_until(f"{node.name}'s buy to fill", lambda by=buyer, o=order_id: filled(by, o))
    network.wait_quiet()


# ------------------------------------------------------------ as a receiver


class Impostor:
    """A link server on 127.0.0.1 that answers a node's dials with a
    peer's stolen key, one scripted connection after another: the first
    three fail the node's checks of the handshake, the fourth opens and
    then acknowledges what it never kept, in every way no signature of
    this connection backs. What it is sent is kept."""

    def __init__(self, key: NodeKey, node: NodeProcess, window: Window, rng: Random) -> None:
        self.key = key
        self.node_id = NodeId(node.node_id)
        self.window = window
        self.rng = rng
        self.connections = 0
        self.frames: list[bytes] = []
        self.forged: Counter[str] = Counter()
        self.errors: list[BaseException] = []
        self.done = threading.Event()
        self.server = serve(
            self._handle,
            "127.0.0.1",
            0,
            compression=None,
            max_size=SOCKET_LIMIT,
            ping_interval=None,
            close_timeout=1,
        )
        self.address = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.done.set()
        self.server.shutdown()
        self.thread.join(TIMEOUT_S)

    def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        script = [self._wrong_key, self._forged_welcome, self._replayed_welcome]
        try:
            if self.connections <= len(script):
                script[self.connections - 1](ws)
            elif self.connections == len(script) + 1:
                self._forge_acks(ws)
        except ConnectionClosed:
            pass
        except BaseException as error:  # reported by the test, not the server thread
            self.errors.append(error)

    def _open(self, ws: ServerConnection) -> tuple[Proof, bytes]:
        challenge = self.rng.randbytes(32)
        ws.send(handshake.hello(self.key, challenge))
        sender, proof = handshake.read_proof(received(ws), self.key, challenge)
        assert sender == self.node_id
        return proof, challenge

    def _wrong_key(self, ws: ServerConnection) -> None:
        ws.send(handshake.hello(NodeKey(self.rng.randbytes(32)), self.rng.randbytes(32)))
        ws.recv(timeout=TIMEOUT_S)

    def _forged_welcome(self, ws: ServerConnection) -> None:
        proof, _ = self._open(ws)
        stranger = NodeKey(self.rng.randbytes(32))
        ws.send(handshake.welcome(stranger, proof, Window(10**6)))
        ws.recv(timeout=TIMEOUT_S)

    def _replayed_welcome(self, ws: ServerConnection) -> None:
        proof, _ = self._open(ws)
        earlier = msgspec.structs.replace(proof, challenge=self.rng.randbytes(32))
        ws.send(handshake.welcome(self.key, earlier, Window(10**6)))
        ws.recv(timeout=TIMEOUT_S)

    def _forge_acks(self, ws: ServerConnection) -> None:
        proof, challenge = self._open(ws)
        ws.send(handshake.welcome(self.key, proof, self.window))
        challenges = proof.challenge + challenge
        everything = Window(10**6)
        stranger = NodeKey(self.rng.randbytes(32))
        genuine = handshake.decode(
            ACK, handshake.ack(self.key, self.node_id, challenges, self.window), Ack
        )
        other = self.rng.randbytes(32)
        forged: list[tuple[str, bytes | str]] = [
            ("ack:bad_signature", handshake.ack(stranger, self.node_id, challenges, everything)),
            # Acks of other connections: either challenge differs.
            (
                "ack:bad_signature",
                handshake.ack(self.key, self.node_id, other + challenge, everything),
            ),
            (
                "ack:bad_signature",
                handshake.ack(self.key, self.node_id, proof.challenge + other, everything),
            ),
            # This connection's genuine signature over another window.
            ("ack:bad_signature", handshake.encode(ACK, Ack(everything, genuine.signature))),
            # For another sender.
            (
                "ack:bad_signature",
                handshake.ack(self.key, NodeId(stranger.node_id), challenges, everything),
            ),
            # The welcome again, as an ack.
            ("ack:unexpected_message", handshake.welcome(self.key, proof, everything)),
            ("ack:text_message", "ack"),
            ("ack:malformed_control", bytes([ACK]) + self.rng.randbytes(40)),
            ("ack:unexpected_message", b""),
        ]
        for counted, data in forged:
            ws.send(data)
            self.forged[counted] += 1
        while not self.done.is_set():
            with contextlib.suppress(TimeoutError):
                frame = ws.recv(timeout=0.1)
                assert isinstance(frame, bytes)
                self.frames.append(frame)


def test_a_node_drops_no_frame_on_an_acknowledgement_it_cannot_check(
    network: LocalNetwork,
) -> None:
    rng = Random(SEED + 2)
    a, b, c = network.nodes
    kept_by_c = network.peer(c, a)["link"]["received_seq"]
    c.stop()
    key = stolen_key(c)
    wait_until("a to see c's link down", lambda: network.peer(a, c)["link"]["state"] == "down")
    # While c is away, a's advert of a resting sell waits in its outbox for c.
    seller = network.trader(a, "seller", {"XYZ": 100})
    placed = seller.request("POST", "/v1/orders", order("s-1", "sell", 10, 5_000))
    assert placed.status_code == 201, placed.text
    waiting = wait_until(
        "a frame for c in a's outbox", lambda: network.peer(a, c)["link"]["unacked_frames"]
    )
    link = network.peer(a, c)["link"]
    events = link_events(a)

    impostor = Impostor(key, a, Window(kept_by_c), rng)
    try:
        a.call("POST", "/admin/peers", {"node_id": c.node_id, "address": impostor.address})
        wait_until("a to send its outbox to the impostor", lambda: impostor.frames)
        expected = impostor.forged + Counter(
            {"handshake:wrong_peer": 1, "handshake:bad_signature": 2}
        )
        wait_until(
            "a to refuse every forged message",
            lambda: (
                moved(events, link_events(a), "ack:") + moved(events, link_events(a), "handshake:")
                == expected
            ),
        )
        # Resent, still not acknowledged: the impostor gets them again.
        time.sleep(0.5)
        now = network.peer(a, c)["link"]
        assert now["unacked_frames"] >= waiting
        assert now["acked_seq"] == link["acked_seq"]
        assert now["state"] == "sending"
    finally:
        impostor.close()
    assert not impostor.errors, impostor.errors
    for frame in impostor.frames:
        batch = open_frame(frame)
        assert (batch.sender, batch.receiver) == (a.node_id, c.node_id)
        assert all(e.seq > kept_by_c for e in batch.envelopes)
    assert len(impostor.frames) > waiting

    # c comes back where it was: a's outbox reaches it, and they trade.
    a.call("POST", "/admin/peers", {"node_id": c.node_id, "address": c.net_address})
    network.restart(c)
    wait_until(
        "a's outbox for c acknowledged",
        lambda: network.peer(a, c)["link"]["unacked_frames"] == 0,
    )
    assert network.peer(c, a)["link"]["received_seq"] == network.peer(a, c)["link"]["last_sent_seq"]
    buyer = network.trader(c, "buyer-c", {"USD": 10_000_000})
    answer = buyer.request("POST", "/v1/orders", order("b-c", "buy", 3, 5_000))
    assert answer.status_code == 201, answer.text
    order_id = answer.json()["order_id"]
    wait_until("c's buy to fill", lambda: filled(buyer, order_id))
    network.wait_quiet()
    assert a.running and b.running and c.running
    assert network.conservation() == []


def acks_until(
    ws: ClientConnection, key: NodeKey, node: NodeProcess, challenges: bytes, contiguous: int
) -> list[Window]:
    """The acknowledgements ``node`` sends until one states ``contiguous``."""
    acks = [handshake.read_ack(received(ws), key, NodeId(node.node_id), challenges)]
    while acks[-1].contiguous < contiguous:
        acks.append(handshake.read_ack(received(ws), key, NodeId(node.node_id), challenges))
    return acks


def test_acknowledgements_cover_every_frame_kept_and_state_a_gap(network: LocalNetwork) -> None:
    """Acknowledgements are delayed, each covering what was kept meanwhile;
    a frame above a gap gets one stating the gap (so that the sender
    resends it); and a new connection's frames are acknowledged too, even
    if the previous one ended while an acknowledgement was due."""
    rng = Random(SEED + 3)
    a, _, c = network.nodes
    c.stop()
    key = stolen_key(c)
    wait_until("a to see c's link down", lambda: network.peer(a, c)["link"]["state"] == "down")
    ws, window, challenges = open_as(a, key, rng)
    first = window.contiguous + 1
    for n in range(10):
        ws.send(heartbeats(key, a.node_id, [first + n]))
    acks = acks_until(ws, key, a, challenges, first + 9)
    assert len(acks) <= 10
    assert acks[-1] == Window(first + 9)
    assert all(ack.above == () for ack in acks)

    ws.send(heartbeats(key, a.node_id, [first + 12]))
    assert handshake.read_ack(received(ws), key, NodeId(a.node_id), challenges) == Window(
        first + 9, (first + 12,)
    )
    ws.send(heartbeats(key, a.node_id, [first + 10, first + 11]))
    assert acks_until(ws, key, a, challenges, first + 12)[-1] == Window(first + 12)

    # A frame, and the connection gone before its acknowledgement is due.
    ws.send(heartbeats(key, a.node_id, [first + 13]))
    ws.close()
    ws, window, challenges = open_as(a, key, rng)
    assert window.contiguous in (first + 12, first + 13)
    following = window.contiguous + 1
    ws.send(heartbeats(key, a.node_id, [following]))
    assert acks_until(ws, key, a, challenges, following)[-1] == Window(following)
    ws.close()
    assert a.running
