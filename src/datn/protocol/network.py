"""What a node knows of the network around it: each peer's resting orders as
advertised (the network book), the round trip and clock offset to each peer,
and the heartbeats that measure them.

The network book is advisory: it decides whom an originator asks, never what
trades. It is bounded per peer (``max_adverts_per_peer``), and so is the
record of advert versions missed (``max_advert_gaps``), so a peer that floods
adverts cannot grow a node's memory.

Round trips are estimated as TCP does (RFC 6298, in integer milliseconds): a
smoothed RTT and a mean deviation, so an originator's acceptance budget
leaves room for a link whose delay jitters, not only for its average.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from mypy_extensions import mypyc_attr

from datn.domain import Side
from datn.domain.value import NodeId
from datn.protocol.clock import Hlc, Now
from datn.protocol.context import Context
from datn.protocol.effects import Effect, Publish, SetTimer
from datn.protocol.messages import Advert, Heartbeat, TradePrint
from datn.protocol.snapshot import NetworkState, PeerViewState

MAX_PLAUSIBLE_RTT_MS = 60_000
"""A round-trip sample beyond this (or below zero) is dropped: it measures a
restart or a lie, not the link."""


def _price_key(advert: Advert) -> int:
    """Best first on either side: an ask's price, a bid's price negated."""
    return advert.price_ticks if advert.side is Side.SELL else -advert.price_ticks


class AdvertBook:
    """A peer's advertised orders on one side of one product, read best
    first: routing reads only as far down as the order it routes needs.
    Adverts come far more often than orders are routed, so the order is
    sorted when it is read after a change, not on every advert."""

    __slots__ = ("_best", "_keys", "adverts")

    def __init__(self) -> None:
        self.adverts: dict[int, Advert] = {}
        self._keys: list[tuple[int, int, int, int]] | None = []
        """(price, best first; priority wall, logical; order ref), sorted,
        or None after a change."""
        self._best: int | None = None
        """The best price as :func:`_price_key` orders it, or None when
        unknown (or the book is empty)."""

    def put(self, advert: Advert) -> None:
        self.adverts[advert.order_ref] = advert
        self._keys = None
        best = self._best
        if best is not None:
            self._best = min(best, _price_key(advert))

    def pop(self, order_ref: int) -> None:
        advert = self.adverts.pop(order_ref, None)
        if advert is not None:
            self._keys = None
            if _price_key(advert) == self._best:
                self._best = None

    def best_price_key(self) -> int | None:
        """The best advertised price, as :func:`_price_key` orders it (lower
        is better); None if the book is empty. Routing skips a peer whose
        best does not cross without sorting its book."""
        best = self._best
        if best is None and self.adverts:
            keys = self._keys
            best = keys[0][0] if keys else min(_price_key(a) for a in self.adverts.values())
            self._best = best
        return best

    def best_first(self) -> Iterator[Advert]:
        keys = self._keys
        if keys is None:
            keys = self._keys = sorted(
                (_price_key(a), a.priority.wall_ms, a.priority.logical, a.order_ref)
                for a in self.adverts.values()
            )
        adverts = self.adverts
        for key in keys:
            yield adverts[key[3]]

    def __len__(self) -> int:
        return len(self.adverts)


@dataclass(slots=True)
class PeerView:
    """This node's view of one peer."""

    srtt_ms: int
    rttvar_ms: int
    rtt_samples: int = 0
    offset_ms: int = 0
    adverts: dict[int, Advert] = field(default_factory=dict)
    bids: dict[str, AdvertBook] = field(default_factory=dict)
    asks: dict[str, AdvertBook] = field(default_factory=dict)
    """The same adverts by side and product, best first: routing reads only
    one side, and only as far as it needs."""
    adverts_seen_through: int = 0
    """Every advert version up to this one has arrived..."""
    adverts_seen_above: set[int] = field(default_factory=set)
    """...and these beyond it (a lost or late advert leaves a gap)."""
    advert_version_announced: int = 0
    withdrawn: dict[int, int] = field(default_factory=dict)
    """Order refs whose withdrawal (an advert of no lots) came while an
    earlier version was still missing, with its version: an older advert of
    the order may still arrive and must not bring it back. Each is dropped
    once every earlier version has arrived; they are versions beyond
    ``adverts_seen_through``, so no more of them are kept than gaps."""

    reworked: dict[int, int] = field(default_factory=dict)
    """Order ref -> the version of its advert that last made this node work
    one of its own resting orders again: each version does so once
    (:meth:`datn.protocol.originator.Originator.rework_crossed`). Only refs
    with an advert in the view are kept."""
    heard_mono_ms: int | None = None
    """When this node last took in a message from the peer, on its own
    monotonic clock; the node's genesis, the peer's addition, a restart and
    a configuration change count as hearing it (:meth:`NetworkView.hear_all`).
    None only as restored from a snapshot taken before it was kept, until
    the restart that follows."""

    def forget_withdrawn(self) -> None:
        """Drop the withdrawals no advert still to come can be older than."""
        through = self.adverts_seen_through
        self.withdrawn = {ref: v for ref, v in self.withdrawn.items() if v > through}

    @property
    def stale(self) -> bool:
        """True when the peer announced adverts this node has not seen."""
        return self.adverts_seen_through < self.advert_version_announced

    @property
    def rtt_ms(self) -> int:
        """The smoothed round trip."""
        return self.srtt_ms

    @property
    def rtt_budget_ms(self) -> int:
        """The round trip to budget for: smoothed RTT plus four deviations."""
        return self.srtt_ms + 4 * self.rttvar_ms

    def sample_rtt(self, rtt: int) -> bool:
        """Fold one round-trip sample into the estimate; False if implausible."""
        if not 0 <= rtt <= MAX_PLAUSIBLE_RTT_MS:
            return False
        if self.rtt_samples == 0:
            self.srtt_ms = rtt
            self.rttvar_ms = rtt // 2
        else:
            self.rttvar_ms = (3 * self.rttvar_ms + abs(self.srtt_ms - rtt)) // 4
            self.srtt_ms = (7 * self.srtt_ms + rtt) // 8
        self.rtt_samples += 1
        return True

    def see_advert(self, version: int, max_gaps: int) -> bool:
        """Note that advert ``version`` arrived; False if it had already."""
        if version <= self.adverts_seen_through or version in self.adverts_seen_above:
            return False
        above = self.adverts_seen_above
        if version == self.adverts_seen_through + 1:
            self.adverts_seen_through = version
        else:
            above.add(version)
            if len(above) > max_gaps:
                # Too many gaps to track: give up the oldest one. The network
                # book is advisory, and the peer stays marked stale until its
                # adverts catch up.
                lowest = min(above)
                above.discard(lowest)
                self.adverts_seen_through = lowest
        while self.adverts_seen_through + 1 in above:
            self.adverts_seen_through += 1
            above.discard(self.adverts_seen_through)
        self.advert_version_announced = max(self.advert_version_announced, version)
        return True

    def index(self, advert: Advert) -> AdvertBook:
        side = self.bids if advert.side is Side.BUY else self.asks
        book = side.get(advert.product_id)
        if book is None:
            book = side[advert.product_id] = AdvertBook()
        return book


@mypyc_attr(allow_interpreted_subclasses=True)  # strategies and tests extend it
class NetworkView:
    """The network book, round trips and heartbeats; see the module docstring."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.views: dict[NodeId, PeerView] = {p: self._new_view() for p in context.peers}
        self.next_heartbeat_ms: int | None = None
        self._probe_queue: deque[NodeId] = deque(self.views)

    def _new_view(self) -> PeerView:
        rtt = self.context.config.default_rtt_ms
        return PeerView(rtt, rtt // 2)

    def add_peer(self, peer: NodeId, now: Now) -> None:
        if peer not in self.views:
            view = self.views[peer] = self._new_view()
            view.heard_mono_ms = now.mono_ms  # silent from now on, until it speaks
            self._probe_queue.append(peer)

    # ============================================================ adverts

    def on_advert(self, sender: NodeId, message: Advert, now: Now, out: list[Effect]) -> bool:
        """Keep a peer's advert in its view; whether it now shows the order
        (a new or newer advert with lots)."""
        context = self.context
        view = self.views[sender]
        through = view.adverts_seen_through
        if not view.see_advert(message.version, context.config.max_advert_gaps):
            return False
        if message.product_id not in context.products:
            context.count("adverts_unlisted")
            return False
        ref = message.order_ref
        withdrawn: int | None = None
        if view.withdrawn:
            # Read before forgetting: this advert may be the last one missing.
            withdrawn = view.withdrawn.get(ref)
            if view.adverts_seen_through != through:
                view.forget_withdrawn()  # only a filled gap lets any go
        if withdrawn is not None and withdrawn > message.version:
            return False  # an older advert overtaken by the order's withdrawal
        current = view.adverts.get(ref)
        if current is not None and current.version > message.version:
            return False  # an older advert overtaken by a newer one
        self._printed(sender, message, now, out)
        if not message.quantity_lots:
            if current is not None:
                del view.adverts[ref]
                view.index(current).pop(ref)
                view.reworked.pop(ref, None)
            if message.version > view.adverts_seen_through:
                view.withdrawn[ref] = message.version
            return False
        if current is None and len(view.adverts) >= context.config.max_adverts_per_peer:
            context.count("adverts_over_limit")
            return False
        if current is not None:
            view.index(current).pop(ref)
        view.adverts[ref] = message
        view.index(message).put(message)
        return True

    def _printed(self, sender: NodeId, message: Advert, now: Now, out: list[Effect]) -> None:
        """The trade print an advert carries: its price joins the product's
        marks, as the sender's, and the node's market-data feed."""
        if message.traded_lots:
            context = self.context
            context.marks.record(message.product_id, sender, message.price_ticks)
            context.count("prints_received")
            # Stamped with this node's wall clock as it learns of the trade:
            # its HLC is not ticked, so replaying a journal written before
            # prints were published gives the same state.
            learned = Hlc(now.wall_ms, 0)
            product, price, lots = message.product_id, message.price_ticks, message.traded_lots
            out.append(Publish(product, price, lots, learned, sender))

    def on_trade_print(
        self, sender: NodeId, message: TradePrint, now: Now, out: list[Effect]
    ) -> None:
        """A peer's trade: its price joins the product's marks, as the
        peer's (one source however many it sends)."""
        context = self.context
        if message.product_id not in context.products:
            context.count("prints_unlisted")
            return
        context.marks.record(message.product_id, sender, message.price_ticks)
        context.count("prints_received")

    # ========================================================= heartbeats

    def heartbeat(self, advert_version: int, now: Now, out: list[Effect]) -> bool:
        """Probe peers if a heartbeat period is up; whether it was."""
        due = self.next_heartbeat_ms
        if due is not None and now.mono_ms < due:
            return False
        context = self.context
        if due is not None:
            beat = Heartbeat(now.mono_ms, None, now.wall_ms, advert_version)
            # Round robin: the peers probed longest ago go first.
            queue = self._probe_queue
            for _ in range(min(context.config.heartbeat_peers, len(queue))):
                peer = queue.popleft()
                queue.append(peer)
                context.send(peer, beat, now, out)
        self.next_heartbeat_ms = now.mono_ms + context.config.heartbeat_ms
        out.append(SetTimer(self.next_heartbeat_ms))
        return True

    def on_heartbeat(
        self,
        sender: NodeId,
        message: Heartbeat,
        advert_version: int,
        now: Now,
        out: list[Effect],
    ) -> None:
        view = self.views[sender]
        view.advert_version_announced = max(view.advert_version_announced, message.advert_version)
        if message.echo_mono_ms is None:
            answer = Heartbeat(now.mono_ms, message.sent_mono_ms, now.wall_ms, advert_version)
            self.context.send(sender, answer, now, out)
            return
        rtt = now.mono_ms - message.echo_mono_ms
        if rtt > self.context.config.lock_ttl_ms // 2:
            # Slower than any collection window, so no answer this slow could
            # be used anyway; and a probe or echo its link had to resend
            # measures the resend delay, not the round trip (Karn's rule).
            self.context.count("rtt_samples_ignored")
            return
        if view.sample_rtt(rtt):
            view.offset_ms = message.wall_ms - (now.wall_ms - rtt // 2)

    # ========================================================= reachability

    def heard(self, peer: NodeId, now: Now) -> None:
        """Note that a message from ``peer`` was taken in."""
        view = self.views.get(peer)
        if view is not None:
            view.heard_mono_ms = now.mono_ms

    def silence_limit_ms(self) -> int:
        """How long a peer may stay unheard before it counts as out of reach:
        three of its probe periods. Every peer answers a probe and probes
        this node in each period, so a peer in reach is never silent for
        that long unless several messages in a row were lost."""
        config = self.context.config
        periods = -(-len(self.views) // max(1, config.heartbeat_peers))
        return 3 * config.heartbeat_ms * max(1, periods)

    def out_of_reach(self, peer: NodeId, now: Now) -> bool:
        """True when nothing from ``peer`` arrived for longer than
        :meth:`silence_limit_ms` (a pause of the node's own aside:
        :meth:`pause_not_silence`): its link is down or cut. Routing asks no
        such peer (an answer could not come back within a round), and asks
        it again from the first message it sends. Never under core logic
        version 1 (see :data:`~datn.protocol.effects.CORE_LOGIC_VERSION`):
        a journal written by it replays as it ran."""
        if self.context.logic_version < 2:
            return False
        view = self.views.get(peer)
        heard = view.heard_mono_ms if view is not None else None
        return heard is not None and now.mono_ms - heard > self.silence_limit_ms()

    def pause_not_silence(self, gap_ms: int, now: Now) -> None:
        """The node took no input for ``gap_ms`` before ``now``. A running
        node takes one at least every ``heartbeat_ms`` (its heartbeat timer
        is never due later, and the runtime sets a tick's timer as it takes
        the tick, whatever its commits are doing), so a longer gap means it
        was paused: its event loop stalled, and peers' messages waited
        unread. What the pause lasted beyond a period does not count
        towards any peer's silence, so the orders it handles first are not
        routed as if every peer had gone. A peer silent before the pause
        stays as silent as it was."""
        excess = gap_ms - self.context.config.heartbeat_ms
        if excess <= 0:
            return
        for view in self.views.values():
            heard = view.heard_mono_ms
            if heard is not None:
                view.heard_mono_ms = min(now.mono_ms, heard + excess)

    def hear_all(self, now: Now) -> None:
        """Measure every peer's silence from ``now``: at the node's start and
        restart (the time it was down says nothing of the peers) and when
        its configuration (the heartbeat period) changes."""
        for view in self.views.values():
            view.heard_mono_ms = now.mono_ms

    def restart(self, now: Now) -> None:
        """Heartbeats start again, and every peer's silence is measured anew."""
        self.next_heartbeat_ms = None
        self.hear_all(now)

    # ============================================================ snapshot

    def snapshot(self) -> NetworkState:
        return NetworkState(
            tuple(
                PeerViewState(
                    peer,
                    v.srtt_ms,
                    v.rttvar_ms,
                    v.rtt_samples,
                    v.offset_ms,
                    tuple(v.adverts.values()),
                    v.adverts_seen_through,
                    tuple(sorted(v.adverts_seen_above)),
                    v.advert_version_announced,
                    tuple(sorted(v.withdrawn.items())),
                    tuple(sorted(v.reworked.items())),
                    v.heard_mono_ms,
                )
                for peer, v in self.views.items()
            ),
            self.next_heartbeat_ms,
            tuple(self._probe_queue),
        )

    def restore(self, state: NetworkState) -> None:
        self.views = {}
        for s in state.views:
            view = PeerView(
                s.srtt_ms,
                s.rttvar_ms,
                s.rtt_samples,
                s.offset_ms,
                adverts_seen_through=s.adverts_seen_through,
                adverts_seen_above=set(s.adverts_seen_above),
                advert_version_announced=s.advert_version_announced,
                withdrawn=dict(s.withdrawn),
                reworked=dict(s.reworked),
                heard_mono_ms=s.heard_mono_ms,
            )
            for advert in s.adverts:
                view.adverts[advert.order_ref] = advert
                view.index(advert).put(advert)
            self.views[s.peer] = view
        self.next_heartbeat_ms = state.next_heartbeat_ms
        self._probe_queue = deque(state.probe_queue)
