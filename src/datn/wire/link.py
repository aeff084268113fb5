"""Per-link sequence numbers: the receiver's replay check and the sender's counter.

Every envelope on a link carries a sequence number, 1, 2, 3, ... assigned by the
sender. The receiver remembers which it has seen in bounded memory: the highest
number below which it has seen everything (``contiguous``), plus the numbers it
has seen above that, which must lie within :data:`REPLAY_WINDOW` of it. A number
at or below ``contiguous``, or already in the window, is a replay; one beyond the
window is refused until the gap below it is filled (the sender resends it).

A batch is accepted or refused as a whole: the new window is computed aside and
installed only if every envelope passed, so a refused batch changes nothing.
Everything here is pure state: no sockets, no clocks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from datn.protocol.clock import Hlc
from datn.protocol.messages import Message, NodeId
from datn.wire.errors import LocalProtocolError, RemoteProtocolError
from datn.wire.frame import Batch, Envelope, open_frame, read_header
from datn.wire.keys import check_node_id
from datn.wire.limits import MAX_INT64, REPLAY_WINDOW


@dataclass(frozen=True, slots=True)
class ReplayWindow:
    """Which sequence numbers a link has seen. A value: :meth:`admit` returns a new one."""

    contiguous: int = 0
    above: frozenset[int] = frozenset()
    size: int = REPLAY_WINDOW

    def __post_init__(self) -> None:
        assert self.contiguous >= 0 and self.size >= 1
        assert all(self.contiguous < seq <= self.contiguous + self.size for seq in self.above)

    def admit(self, seqs: Iterable[int]) -> ReplayWindow:
        """The window after seeing ``seqs``; RemoteProtocolError if any is not new."""
        contiguous, above = self.contiguous, set(self.above)
        # Ascending order lets a long in-order batch slide the window as it goes.
        for seq in sorted(seqs):
            if seq <= contiguous or seq in above:
                raise RemoteProtocolError("replayed", f"sequence number {seq} was seen")
            if seq > contiguous + self.size:
                limit = contiguous + self.size
                raise RemoteProtocolError("seq_beyond_window", f"{seq} > {limit}: gap below it")
            above.add(seq)
            while contiguous + 1 in above:
                contiguous += 1
                above.remove(contiguous)
        return ReplayWindow(contiguous, frozenset(above), self.size)


class InboundLink:
    """What this node (``local``) has received from one ``peer``."""

    def __init__(self, local: NodeId, peer: NodeId, window: ReplayWindow | None = None) -> None:
        self.local = check_node_id(local)
        self.peer = check_node_id(peer)
        # Restored from the journal after a restart, so replays stay refused.
        self.window = window if window is not None else ReplayWindow()

    def accept(self, batch: Batch) -> tuple[Envelope, ...]:
        """The batch's envelopes, if it is from the peer, for us and all new."""
        if batch.sender != self.peer:
            raise RemoteProtocolError("wrong_sender", f"{batch.sender} is not {self.peer}")
        if batch.receiver != self.local:
            raise RemoteProtocolError("wrong_receiver", f"addressed to {batch.receiver}")
        self.window = self.window.admit(envelope.seq for envelope in batch.envelopes)
        return batch.envelopes


class InboundLinks:
    """This node's inbound links, one per known peer: the entry point for frames."""

    def __init__(self, local: NodeId, peers: Iterable[NodeId] = ()) -> None:
        self.local = check_node_id(local)
        self._links: dict[NodeId, InboundLink] = {}
        for peer in peers:
            self.add(peer)

    def add(self, peer: NodeId, window: ReplayWindow | None = None) -> InboundLink:
        link = InboundLink(self.local, peer, window)
        self._links[link.peer] = link
        return link

    def link(self, peer: NodeId) -> InboundLink:
        link = self._links.get(peer)
        if link is None:
            raise RemoteProtocolError("unknown_sender", f"{peer} is not a peer")
        return link

    def receive(self, frame: bytes) -> tuple[Envelope, ...]:
        """Check a frame cheapest test first, then verify, decode and accept it."""
        header = read_header(frame)
        link = self.link(header.sender)
        if header.receiver != self.local:
            raise RemoteProtocolError("wrong_receiver", f"addressed to {header.receiver}")
        return link.accept(open_frame(frame))


class OutboundLink:
    """What this node (``local``) sends to one ``peer``: numbers its envelopes."""

    def __init__(self, local: NodeId, peer: NodeId, last_seq: int = 0) -> None:
        self.local = check_node_id(local)
        self.peer = check_node_id(peer)
        # Restored from the durable outbox after a restart; never reused.
        self.last_seq = last_seq

    def envelope(self, sent: Hlc, message: Message) -> Envelope:
        """The next envelope on this link."""
        return self.batch([(sent, message)]).envelopes[0]

    def batch(self, items: Iterable[tuple[Hlc, Message]]) -> Batch:
        """Number ``items`` in order and put them in one batch. The counter moves
        only once the batch is built, so a refused batch uses up no numbers."""
        envelopes = tuple(
            Envelope(self.local, self.peer, self.last_seq + n, sent, message)
            for n, (sent, message) in enumerate(items, start=1)
        )
        if envelopes and envelopes[-1].seq > MAX_INT64:
            raise LocalProtocolError("seq_exhausted", "the link has used every sequence number")
        batch = Batch(self.local, self.peer, envelopes)
        self.last_seq += len(envelopes)
        return batch
