"""One node's runtime: the core, fed from one asyncio loop, its journal
committed to a store in groups, nothing released before it is durable.

Intake is the loop thread: each input is applied to the core at once (the
core is deterministic and fast) and its journal entry joins the *pending*
group. One writer thread commits groups to the store, one at a time: while a
commit is in flight, every input that arrives is applied and waits in the
next group, so one fsync serves them all (group commit). When a group's
commit returns, and only then, what its inputs caused leaves the process:
the answers to the callers, trader events to the streams, messages to
peers, payments to the rail.

A group of one input (what a node that is not busy sees) is committed on the
loop's own thread if the store can do so without waiting (SQLite, when no
snapshot is being saved): handing it to the writer thread and back costs
two thread wake-ups, about as long as the commit itself, and the loop would
have nothing else to do meanwhile. Inputs that arrive during such a commit
wait in their sockets and form the next group, as they would have waited
for the commit in flight anyway. Larger groups go to the writer thread, so
under load the loop goes on applying inputs while a commit is in flight.

Under load, a commit may wait a little for company (``commit_delay_us``,
as PostgreSQL's ``commit_delay``): when the latest commits held three
inputs or more on average, inputs are arriving together, and the next
commit waits up to that long for more unless 16 are pending already.
Each commit costs the node a fixed share of work (an fsync, the store's
statements, a thread hand-off, a write per connection), so fewer, larger
groups leave the node less busy at the same rate, and its queue, which
makes the tail, shorter. Inputs are counted by their journal entries (a
peer's frame by its messages; a read has none). A commit that would hold
one input never waits, so neither does a lone order nor a step of a trade
across nodes that comes alone, and nor does the first commit after a
quiet spell.

Reads answer from the core's state at the moment they are asked, and are
released only once everything applied before them is durable, so no reader
ever sees an order that a crash could still take back.

Every ``snapshot_every`` journal entries, a snapshot of the state is kept,
so that a restart replays at most about that many. It is built in the
background, in a worker process, from the previous snapshot and the journal
(:mod:`datn.runtime.snapshots`): the loop only schedules it, so intake never
waits for it, and commits go on while it is built and while it is saved
(a part at a time, so that a commit waits for one part at most). One is
built at a time; while it is, the worker holds a second copy of the node's
state, and the runtime keeps the latest snapshot's bytes to build the next
one from. A snapshot that fails is logged and tried again an interval
later: the journal still holds everything.

A core exception or a store that cannot commit stops the runtime at once:
the error is logged with what failed, every caller still waiting gets
:class:`NodeStoppedError`, later inputs are refused, and :attr:`stopped` is
set so the process can exit rather than run on state its store does not
hold. The next start rebuilds the node from the store, which holds exactly
what was acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final, Protocol, TypeVar

from datn.protocol.clock import Now
from datn.protocol.effects import (
    CORE_LOGIC_VERSION,
    OLDEST_REPLAYED_LOGIC_VERSION,
    Effect,
    Genesis,
    Input,
    Journal,
    JournalEntry,
    Pay,
    Publish,
    Reply,
    Send,
    SetTimer,
    TickInput,
    Violation,
)
from datn.protocol.node import NodeCore, Recovered
from datn.runtime.history import History
from datn.runtime.snapshots import SnapshotWorker
from datn.store import Commit, EvidenceRecord, LedgerRecord, Store, Stored, StoreError
from datn.wire import JournalError, encode_entry, encode_snapshot, recover_node

T = TypeVar("T")

log = logging.getLogger("datn.runtime")


class Clock(Protocol):
    def now(self) -> Now: ...


class SystemClock:
    """The process's monotonic clock (restarts at a new process: the
    restart input re-bases every deadline) and the wall clock, in ms."""

    def now(self) -> Now:
        return Now(time.monotonic_ns() // 1_000_000, time.time_ns() // 1_000_000)


class InputRefusedError(Exception):
    """The input cannot be journaled (a value out of the journal's range), so
    the core never saw it and nothing changed; ``cause`` names the field."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(f"the input cannot be kept: {cause}")
        self.cause = cause


class NodeStoppedError(Exception):
    """The runtime stopped: nothing more is taken in. ``cause`` says why."""

    def __init__(self, cause: BaseException | None) -> None:
        reason = "the node is shutting down" if cause is None else f"{cause}"
        super().__init__(f"the node stopped taking input: {reason}")
        self.cause = cause


@dataclass
class _Waiter:
    future: asyncio.Future[list[Effect]]
    effects: list[Effect]


@dataclass
class _Group:
    commit: Commit = field(default_factory=Commit)
    waiters: list[_Waiter] = field(default_factory=list)


START_SNAPSHOT_SHARE: Final = 4
"""A node whose start replays ``snapshot_every // START_SNAPSHOT_SHARE``
entries or more takes a snapshot before it serves: a start costs at most
that replay (and the snapshot's encoding, at most once per that many
entries), even for a node whose background snapshots never complete."""
INLINE_COMMIT_MAX_INPUTS: Final = 1
"""A group of at most this many inputs is committed on the loop's thread
when the store can (:meth:`Store.commit_if_free`)."""

COMMIT_DELAY_AFTER_GROUP: Final = 3.0
"""Commits of at least this many inputs on average (the latest weighing a
quarter, counted up to :data:`COMMIT_DELAY_ENOUGH`) show inputs arriving
together: the next commit may wait ``commit_delay_us`` for more."""
COMMIT_DELAY_ENOUGH: Final = 16
"""Inputs pending at which a commit waiting for more starts at once."""

COMMIT_BUCKETS_MS: tuple[float, ...] = (0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1_000)
GROUP_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_024)


@dataclass
class Histogram:
    """Counts per upper bound (the last counts everything above), a sum and
    a count: what a Prometheus histogram exposes."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)
        index = 0
        while index < len(self.bounds) and value > self.bounds[index]:
            index += 1
        self.counts[index] += 1
        self.total += value
        self.count += 1


@dataclass
class RuntimeStats:
    """What an operator's status and metrics show."""

    inputs: int = 0
    inputs_refused: int = 0
    """Peers' messages the journal could not hold, dropped unapplied."""
    commits: int = 0
    inline_commits: int = 0
    """Commits made on the loop's thread (groups of one input, the store free)."""
    delayed_commits: int = 0
    """Commits that waited (``commit_delay_us``) for more inputs to share them."""
    entries: int = 0
    position: int = 0
    snapshots: int = 0
    snapshot_position: int = 0
    snapshot_failures: int = 0
    last_snapshot_ms: float = 0.0
    """How long the latest snapshot took, from its start to its save."""
    last_commit_ms: float = 0.0
    commit_ms: list[float] = field(default_factory=list)
    """The latest commits' durations, for a latency histogram (the runtime
    keeps the last 1,024)."""
    group_sizes: list[int] = field(default_factory=list)
    commit_histogram: Histogram = field(default_factory=lambda: Histogram(COMMIT_BUCKETS_MS))
    group_histogram: Histogram = field(default_factory=lambda: Histogram(GROUP_BUCKETS))
    replies: dict[str, int] = field(default_factory=dict)
    """Trader events released, by kind (accepted, rejected, executed, ...)."""
    full_collections: int = 0
    """Full scans of the cyclic garbage collector (:mod:`datn.runtime.collector`)."""
    last_full_collection_ms: float = 0.0
    intake_samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=16))
    """(monotonic seconds, inputs) at most once a second, at commits."""

    def sample_intake(self, now_s: float) -> None:
        samples = self.intake_samples
        if not samples or now_s - samples[-1][0] >= 1.0:
            samples.append((now_s, self.inputs))

    def intake_per_second(self, now_s: float) -> float:
        """Inputs a second over about the last ten seconds (0 when idle)."""
        recent = [s for s in self.intake_samples if now_s - s[0] <= 11.0]
        if not recent or now_s - recent[0][0] < 0.5:
            return 0.0
        return (self.inputs - recent[0][1]) / (now_s - recent[0][0])


@dataclass
class Outlets:
    """Where released effects go: set by the layers above (API streams,
    peer links, the settlement rail). Each is called on the loop thread,
    after the effect's journal entry is durable."""

    reply: Callable[[Reply], None] = lambda _effect: None
    send: Callable[[Send], None] = lambda _effect: None
    publish: Callable[[Publish], None] = lambda _effect: None
    pay: Callable[[Pay], None] = lambda _effect: None
    violation: Callable[[Violation], None] = lambda _effect: None
    seal: Callable[[list[Send], Commit], Callable[[], None]] | None = None
    """With peer links: called with a group's messages for peers, in order,
    before the group commits; it numbers and signs them into frames and adds
    those to ``commit`` (the durable outbox), and returns what sends them,
    called once the commit is durable. ``send`` is then not called."""


class NodeRuntime:
    """See the module docstring. Create with :meth:`open`."""

    def __init__(
        self,
        store: Store,
        core: NodeCore,
        *,
        clock: Clock,
        snapshot_every: int,
        outlets: Outlets,
        history: History | None,
        snapshot: bytes | None = None,
        snapshot_worker: SnapshotWorker | None = None,
        commit_delay_us: int = 0,
    ) -> None:
        self.store = store
        self.history = history
        self.core = core
        self.clock = clock
        self.snapshot_every = snapshot_every
        self.outlets = outlets
        self.stats = RuntimeStats()
        self.stopped = asyncio.Event()
        self.failure: BaseException | None = None
        self._loop = asyncio.get_running_loop()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="datn-store")
        self._pending = _Group()
        self._committing: asyncio.Task[None] | None = None
        if commit_delay_us < 0:
            raise ValueError(f"commit_delay_us is 0 or more, not {commit_delay_us}")
        self.commit_delay_s = commit_delay_us / 1_000_000
        self._gathering: asyncio.Future[None] | None = None
        """Set while a commit waits for more inputs: resolved early once
        :data:`COMMIT_DELAY_ENOUGH` are pending."""
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None
        self._asked_at: int | None = None
        """The earliest tick the core asked for (SetTimer) and has not had."""
        self._closing = False
        self._snapshot_data = snapshot
        """The latest snapshot's bytes (None: none yet), the next one's base."""
        self._snapshot_worker = snapshot_worker or SnapshotWorker()
        self._snapshotting: asyncio.Task[None] | None = None
        self._snapshot_retry_at = 0
        """No snapshot is tried before this position (one failed before it)."""

    # ------------------------------------------------------------ start

    @classmethod
    async def open(
        cls,
        store: Store,
        genesis: Genesis | None = None,
        *,
        clock: Clock | None = None,
        snapshot_every: int = 50_000,
        outlets: Outlets | None = None,
        history: History | None = None,
        snapshot_worker: SnapshotWorker | None = None,
        commit_delay_us: int = 0,
        replay_other_logic: bool = False,
    ) -> NodeRuntime:
        """The node the store holds, restarted on this process's clock; or,
        for an empty store, a new node from ``genesis``. Refuses a store
        whose journal is damaged (the error names the entry), a genesis
        for a store that already holds another node, and a journal whose
        entries after the latest snapshot were written under core logic
        this code does not replay as it ran (newer than
        :data:`~datn.protocol.effects.CORE_LOGIC_VERSION`, or older than
        :data:`~datn.protocol.effects.OLDEST_REPLAYED_LOGIC_VERSION`), unless
        ``replay_other_logic``: replaying them here could rebuild a state
        other than the one the node had. ``snapshot_worker``
        builds the snapshots (a new :class:`SnapshotWorker` if None); the
        runtime stops it when it closes. ``commit_delay_us``: how long a
        commit under load may wait for more inputs (see the module
        docstring; 0, the default here, never waits)."""
        clock = clock or SystemClock()
        loop = asyncio.get_running_loop()
        stored = await loop.run_in_executor(None, store.load)
        position = stored.position
        snapshot, snapshot_position = stored.snapshot, stored.snapshot_position
        now = clock.now()
        if stored.position == 0:
            if genesis is None:
                raise StoreError("misuse", "the store is empty: a new node needs its genesis")
            core, effects = NodeCore.start(genesis, now)
            log.info("new node %s", genesis.node_id)
        else:
            recovered = await loop.run_in_executor(
                None, recover_node, stored.snapshot, stored.entries
            )
            if genesis is not None and genesis.node_id != recovered.node_id:
                raise StoreError(
                    "misuse",
                    f"the store holds node {recovered.node_id}, not {genesis.node_id}",
                )
            written = recovered.logic_version
            replayable = OLDEST_REPLAYED_LOGIC_VERSION <= written <= CORE_LOGIC_VERSION
            if stored.entries and not replayable:
                if not replay_other_logic:
                    raise StoreError("logic_version", _unreplayable(stored, written))
                log.warning(
                    "replaying %d entries written under core logic version %d with version %d, "
                    "as asked",
                    len(stored.entries),
                    written,
                    CORE_LOGIC_VERSION,
                )
            if len(stored.entries) >= max(1, snapshot_every // START_SNAPSHOT_SHARE):
                # A node that never lived long enough to build a snapshot in
                # the background (killed again and again, or too busy for
                # its worker) would replay more at each start: it takes one
                # now, before it serves, where its state is at hand, once
                # its tail is a quarter of the interval. One that fails
                # costs only itself, as in the background.
                try:
                    snapshot = await loop.run_in_executor(
                        None, _snapshot_at_start, store, recovered, position
                    )
                except Exception as error:
                    log.error(
                        "snapshot at %d could not be taken at start (the journal still "
                        "holds everything): %s: %s",
                        position,
                        type(error).__name__,
                        error,
                    )
                else:
                    log.info(
                        "snapshot at %d taken at start, after %d entries replayed",
                        position,
                        len(stored.entries),
                    )
                    snapshot_position = position
            # The restart's time is read now, after the replay and the
            # snapshot, which may have taken seconds.
            now = clock.now()
            core, effects = recovered.restart(now)
            log.info(
                "recovered node %s from snapshot at %d and %d entries after it",
                core.node_id,
                stored.snapshot_position,
                len(stored.entries),
            )
        runtime = cls(
            store,
            core,
            clock=clock,
            snapshot_every=snapshot_every,
            outlets=outlets or Outlets(),
            history=history,
            snapshot=snapshot,
            snapshot_worker=snapshot_worker,
            commit_delay_us=commit_delay_us,
        )
        runtime.stats.position = position
        runtime.stats.snapshot_position = snapshot_position
        await runtime._admit(effects)
        return runtime

    # ------------------------------------------------------------ intake

    async def submit(
        self,
        event: Input,
        evidence: EvidenceRecord | None = None,
        keep: Callable[[list[Effect]], LedgerRecord | None] | None = None,
    ) -> list[Effect]:
        """Apply ``event``; its effects (journal entries left out) once its
        journal entry is durable and they have been released. ``evidence``
        (a trader's signed request) is stored in the same transaction, and
        so is what ``keep`` makes of the effects (an operator's movement
        under its reference), called as soon as the core has applied it."""
        if self.failure is not None or self._closing:
            raise NodeStoppedError(self.failure)
        now = self.clock.now()
        # The entry is encoded before the core sees the input: an input the
        # journal cannot hold is refused here, changing nothing, instead of
        # being applied and then stopping the node. The bytes are reused.
        try:
            encoded = encode_entry(JournalEntry(now, event))
        except JournalError as error:
            raise InputRefusedError(error) from None
        try:
            effects = self.core.handle(event, now)
        except Exception as error:
            self._stop(error, "the node core failed on an input")
            raise NodeStoppedError(error) from error
        if self.history is not None:
            try:
                self.history.record(event, effects, now.wall_ms, self._pending.commit)
            except Exception as error:
                self._stop(error, "the history of an input could not be built")
                raise NodeStoppedError(error) from error
        if evidence is not None:
            self._pending.commit.evidence.append(evidence)
        if keep is not None:
            try:
                kept = keep(effects)
            except Exception as error:
                self._stop(error, "the record of an input could not be built")
                raise NodeStoppedError(error) from error
            if kept is not None:
                self._pending.commit.ledger.append(kept)
        if type(event) is TickInput:
            # The next tick is set now, not once this one is durable: the
            # core's timers (heartbeats among them) keep their times while
            # a slow commit is in flight (a node counts a longer gap
            # between its inputs as a stall of its own).
            self._schedule_timer(after_ms=now.mono_ms)
        return await self._admit(effects, encoded)

    def take_in(
        self, events: list[Input], note: Callable[[Commit], None]
    ) -> asyncio.Future[list[Effect]]:
        """Apply ``events`` (a peer's frame of messages) one after another,
        call ``note`` with the pending commit (the link's window joins it),
        and return a future set once all of it is durable and released.

        An event the journal cannot hold changes nothing and is skipped
        (``input_refused``): one message of a peer's frame must not keep the
        others out, nor stop the node."""
        if self.failure is not None or self._closing:
            raise NodeStoppedError(self.failure)
        released: list[Effect] = []
        for event in events:
            now = self.clock.now()
            try:
                encoded = encode_entry(JournalEntry(now, event))
            except JournalError as error:
                log.warning("a peer's message cannot be journaled, and is dropped: %s", error)
                self.stats.inputs_refused += 1
                continue
            try:
                effects = self.core.handle(event, now)
                if self.history is not None:
                    self.history.record(event, effects, now.wall_ms, self._pending.commit)
            except Exception as error:
                self._stop(error, "the node core failed on a peer's message")
                raise NodeStoppedError(error) from error
            released += self._take(effects, encoded)
        note(self._pending.commit)
        return self._wait(released)

    def annotate(self, note: Callable[[Commit], None]) -> None:
        """Call ``note`` with the pending commit: what it adds is written
        with the next group, without waiting for one (a peer's
        acknowledgement, which lets that group drop outbox frames)."""
        note(self._pending.commit)

    async def read(self, question: Callable[[NodeCore], T]) -> T:
        """``question`` answered from the core now, released once everything
        applied before it is durable."""
        if self.failure is not None:
            raise NodeStoppedError(self.failure)
        answer = question(self.core)
        await self._admit([])
        return answer

    async def _admit(self, effects: list[Effect], encoded: bytes | None = None) -> list[Effect]:
        """Queue ``effects`` behind their journal entries in the pending
        group; released (and returned) when that group is durable.
        ``encoded``: the first journal entry, encoded already."""
        return await self._wait(self._take(effects, encoded))

    def _take(self, effects: list[Effect], encoded: bytes | None) -> list[Effect]:
        """Add the journal entries among ``effects`` to the pending group
        (``encoded``: the first, encoded already); the other effects."""
        self.stats.inputs += 1
        entries = self._pending.commit.entries
        released: list[Effect] = []
        for effect in effects:
            if type(effect) is Journal:
                if encoded is not None:
                    entries.append(encoded)
                    encoded = None
                    continue
                try:
                    entries.append(encode_entry(effect.entry))
                except Exception as error:
                    self._stop(error, "a journal entry could not be encoded")
                    raise NodeStoppedError(error) from error
            else:
                released.append(effect)
        return released

    def _wait(self, released: list[Effect]) -> asyncio.Future[list[Effect]]:
        """A future for ``released``, set when the pending group is durable."""
        future: asyncio.Future[list[Effect]] = self._loop.create_future()
        self._pending.waiters.append(_Waiter(future, released))
        if self._committing is None:
            self._committing = self._loop.create_task(self._commit_groups())
        elif len(self._pending.commit.entries) >= COMMIT_DELAY_ENOUGH:
            self._end_gathering()
        return future

    # ------------------------------------------------------------ commits

    async def _commit_groups(self) -> None:
        group = _Group()
        # Inputs per commit since this task started (the end of an idle
        # spell): the first commit of a burst never waits.
        mean_group = 0.0
        try:
            while self._pending.waiters and self.failure is None:
                if (
                    self.commit_delay_s
                    and mean_group >= COMMIT_DELAY_AFTER_GROUP
                    and 1 < len(self._pending.commit.entries) < COMMIT_DELAY_ENOUGH
                    and not self._closing
                ):
                    await self._gather()
                    if self.failure is not None:
                        break
                group, self._pending = self._pending, _Group()
                transmit = self._seal(group)
                started = time.perf_counter()
                try:
                    position = await self._write(group)
                except Exception as error:
                    self._stop(error, "the store could not commit")
                    self._fail(group, error)
                    break
                elapsed_ms = (time.perf_counter() - started) * 1_000
                self._account(group, position, elapsed_ms)
                size = min(len(group.commit.entries), COMMIT_DELAY_ENOUGH)
                mean_group = mean_group + (size - mean_group) / 4 if mean_group else size
                # Peers' frames first: a trade across nodes waits on them,
                # while a caller's answer only ends its own wait.
                if transmit is not None:
                    try:
                        transmit()
                    except Exception:
                        # The frames are in the outbox: the link resends them.
                        log.exception("peer frames could not be handed to their links")
                self._release(group)
                self._schedule_timer()
                self._consider_snapshot(position)
        except asyncio.CancelledError as cancelled:
            # Nothing in the node cancels this task. Whatever did (a loop
            # torn down) leaves a group whose commit may or may not have
            # landed: the runtime stops, and its callers are told so
            # instead of being left waiting.
            self._stop(cancelled, "the commit task was cancelled")
            self._fail(group, cancelled)
            raise
        except Exception as error:
            # A bug of the runtime's own: stop rather than run on uncertain state.
            self._stop(error, "the runtime failed")
            self._fail(group, error)
        finally:
            self._committing = None
            if self.failure is not None:
                self._fail(self._pending, self.failure)
                self._pending = _Group()

    async def _gather(self) -> None:
        """Wait up to ``commit_delay_s`` for more inputs to join the pending
        group, or until :data:`COMMIT_DELAY_ENOUGH` are pending (or the
        runtime closes or stops)."""
        self.stats.delayed_commits += 1
        gathering = self._gathering = self._loop.create_future()
        timer = self._loop.call_later(self.commit_delay_s, _settle, gathering)
        try:
            await gathering
        finally:
            timer.cancel()
            self._gathering = None

    def _end_gathering(self) -> None:
        """A commit waiting for more inputs starts now."""
        if self._gathering is not None:
            _settle(self._gathering)

    async def _write(self, group: _Group) -> int:
        """Commit ``group``: on the writer thread, or on this one when the
        group holds one input and the store is free (see the module
        docstring); the journal's position after it."""
        if len(group.waiters) <= INLINE_COMMIT_MAX_INPUTS:
            position = self.store.commit_if_free(group.commit)
            if position is not None:
                self.stats.inline_commits += 1
                return position
        return await self._loop.run_in_executor(self._writer, self.store.commit, group.commit)

    def _seal(self, group: _Group) -> Callable[[], None] | None:
        """The group's messages for peers sealed into its commit (see
        :attr:`Outlets.seal`); what sends them once it is durable."""
        seal = self.outlets.seal
        if seal is None:
            return None
        sends = [e for w in group.waiters for e in w.effects if type(e) is Send]
        if not sends:
            return None
        return seal(sends, group.commit)

    def _account(self, group: _Group, position: int, elapsed_ms: float) -> None:
        stats = self.stats
        stats.commits += 1
        stats.entries += len(group.commit.entries)
        stats.position = position
        stats.last_commit_ms = elapsed_ms
        stats.commit_ms.append(elapsed_ms)
        stats.group_sizes.append(len(group.waiters))
        stats.commit_histogram.observe(elapsed_ms)
        stats.sample_intake(time.monotonic())
        stats.group_histogram.observe(len(group.waiters))
        if len(stats.commit_ms) > 1_024:
            del stats.commit_ms[:512], stats.group_sizes[:512]

    def _release(self, group: _Group) -> None:
        for waiter in group.waiters:
            for effect in waiter.effects:
                try:
                    self._deliver(effect)
                except Exception:
                    # An outlet (a stream, a link) that fails must not keep the
                    # callers of this group waiting: it is logged, and the
                    # answer still goes out.
                    log.exception("an outlet failed on %s", type(effect).__name__)
            if not waiter.future.done():
                waiter.future.set_result(waiter.effects)

    def _deliver(self, effect: Effect) -> None:
        outlets = self.outlets
        kind = type(effect)
        if kind is Reply:
            replies = self.stats.replies
            name = type(effect.event).__name__  # type: ignore[union-attr]
            replies[name] = replies.get(name, 0) + 1
            outlets.reply(effect)  # type: ignore[arg-type]
        elif kind is Send:
            if outlets.seal is None:
                outlets.send(effect)  # type: ignore[arg-type]
        elif kind is Publish:
            outlets.publish(effect)  # type: ignore[arg-type]
        elif kind is Pay:
            outlets.pay(effect)  # type: ignore[arg-type]
        elif kind is Violation:
            outlets.violation(effect)  # type: ignore[arg-type]
        elif kind is SetTimer:
            at = effect.at_mono_ms  # type: ignore[union-attr]
            if self._asked_at is None or at < self._asked_at:
                self._asked_at = at

    def _fail(self, group: _Group, error: BaseException) -> None:
        for waiter in group.waiters:
            if not waiter.future.done():
                waiter.future.set_exception(NodeStoppedError(error))

    def _stop(self, error: BaseException, what: str) -> None:
        if self.failure is None:
            self.failure = error
            log.critical(
                "%s; the node stops taking input, and acknowledges nothing unstored: %s",
                what,
                error,
            )
        self._cancel_timer()
        self._end_gathering()
        self._stop_snapshots()
        self.stopped.set()

    # ------------------------------------------------------------ snapshots

    def _consider_snapshot(self, position: int) -> None:
        """Start a snapshot of the state after ``position`` if one is due
        and none is in flight."""
        due = position - self.stats.snapshot_position >= self.snapshot_every
        if not due or position < self._snapshot_retry_at or self.snapshot_in_flight:
            return
        if self.failure is not None or self._closing:
            return
        self._snapshotting = self._loop.create_task(self._snapshot(position))

    async def _snapshot(self, position: int) -> None:
        """Build the snapshot of the state after ``position`` in the
        background and save it on the writer thread, in parts."""
        started = time.perf_counter()
        try:
            data = await self._build_snapshot(position)
            if self.failure is not None:
                return
            await self._save_snapshot(position, data)
        except Exception as error:
            self.stats.snapshot_failures += 1
            self._snapshot_retry_at = position + self.snapshot_every
            log.error(
                "snapshot at %d failed (the journal still holds everything; the next try "
                "is at entry %d): %s: %s",
                position,
                self._snapshot_retry_at,
                type(error).__name__,
                error,
            )
            return
        elapsed_ms = (time.perf_counter() - started) * 1_000
        self._snapshot_data = data
        self.stats.snapshots += 1
        self.stats.snapshot_position = position
        self.stats.last_snapshot_ms = elapsed_ms
        log.info("snapshot at %d: %d bytes, built in %.0f ms", position, len(data), elapsed_ms)

    async def _save_snapshot(self, position: int, data: bytes) -> None:
        """Save ``data`` on the writer thread a part at a time, each part a
        job of its own: groups that commit meanwhile go between the parts
        and wait a millisecond or two, not for the whole snapshot."""
        for write in self.store.snapshot_writes(position, data):
            await self._loop.run_in_executor(self._writer, write)

    async def _build_snapshot(self, position: int) -> bytes:
        """The encoded snapshot after ``position``, built by the worker from
        the latest snapshot and the journal after it."""
        return await self._snapshot_worker.build(
            self.store, self._snapshot_data, self.stats.snapshot_position, position
        )

    def start_snapshot_worker(self) -> None:
        """Start the snapshot worker's process now, in the background,
        instead of at the first snapshot."""
        self._snapshot_worker.start()

    @property
    def snapshot_in_flight(self) -> bool:
        """Whether a snapshot is being built or saved."""
        return self._snapshotting is not None and not self._snapshotting.done()

    async def wait_for_snapshot(self) -> None:
        """Return once no snapshot is in flight: the one being built, if
        any, is saved, has failed (and was logged) or was abandoned."""
        task = self._snapshotting
        if task is not None and not task.done():
            await asyncio.wait([task])

    # ------------------------------------------------------------ timers

    def _schedule_timer(self, after_ms: int | None = None) -> None:
        """Set the timer for the core's next tick; ``after_ms``: only if
        that tick is later than this (else the next commit sets it)."""
        if self.failure is not None or self._closing:
            return
        at = self.core.next_timer_ms()
        asked = self._asked_at
        if asked is not None and (at is None or asked < at):
            at = asked
        if at is None or at == self._timer_at or (after_ms is not None and at <= after_ms):
            return
        self._cancel_timer()
        delay_s = max(0, at - self.clock.now().mono_ms) / 1_000
        self._timer_at = at
        self._timer = self._loop.call_later(delay_s, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._asked_at = None
        task = self._loop.create_task(self.submit(TickInput()))
        task.add_done_callback(_log_failure)

    # ------------------------------------------------------------ life

    async def close(self, *, snapshot: bool = True) -> None:
        """Take no more input, let every group in flight commit, abandon a
        snapshot in flight, stop the snapshot worker, take a snapshot of
        the final state (unless ``snapshot`` is False), close the store."""
        self._closing = True
        self._cancel_timer()
        self._end_gathering()
        try:
            while self._committing is not None:
                await asyncio.shield(self._committing)
        finally:
            if self._snapshotting is not None:
                self._snapshotting.cancel()
            # Stops the worker, and returns once it and the reader thread
            # have ended (at once: a build in flight is abandoned).
            self._snapshot_worker.close(wait=True)
            await self.wait_for_snapshot()
            try:
                if snapshot:
                    await self._snapshot_at_stop()
            finally:
                self._writer.shutdown(wait=True)
                self.store.close()
                self.stopped.set()

    async def _snapshot_at_stop(self) -> None:
        """A clean stop leaves a snapshot of the final state, so the next
        start replays nothing: a restart is quick, and any version (even an
        older one, whose logic could not replay this one's entries) can
        start the node. Skipped after a failure, or while inputs the core
        took are not all in the journal (the state is ahead of it), or when
        the latest snapshot is at the journal's end already; one that fails
        is logged, and the journal still holds everything."""
        position = self.stats.position
        if self.failure is not None or position <= self.stats.snapshot_position:
            return
        if self._committing is not None or self._pending.waiters or self._pending.commit.entries:
            # Inputs the core took that the journal does not hold yet: a
            # close cancelled while a group was in flight.
            return
        started = time.perf_counter()
        try:
            data = encode_snapshot(self.core.snapshot())
            await self._loop.run_in_executor(self._writer, self.store.save_snapshot, position, data)
        except Exception as error:
            log.error(
                "snapshot at %d could not be taken at stop (the journal still holds "
                "everything): %s: %s",
                position,
                type(error).__name__,
                error,
            )
            return
        self.stats.snapshots += 1
        self.stats.snapshot_position = position
        log.info(
            "snapshot at %d taken at stop: %d bytes in %.0f ms",
            position,
            len(data),
            (time.perf_counter() - started) * 1_000,
        )

    def _stop_snapshots(self) -> None:
        """Abandon the snapshot in flight and stop the worker, without
        waiting (the runtime stopped: the next start rebuilds from the
        journal anyway)."""
        if self._snapshotting is not None:
            self._snapshotting.cancel()
        self._snapshot_worker.close(wait=False)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _unreplayable(stored: Stored, written: int) -> str:
    """Why a journal tail written under core logic ``written`` is not
    replayed, and what the operator can do."""
    head = (
        f"the journal's {len(stored.entries)} entries after the snapshot at "
        f"{stored.snapshot_position} were written under core logic version {written}, "
    )
    if written > CORE_LOGIC_VERSION:
        why = (
            f"newer than this code's version {CORE_LOGIC_VERSION}: it cannot replay them as "
            "they ran. Start the version that wrote them and stop it cleanly, so that "
            "nothing is left to replay"
        )
    else:
        why = (
            f"which this code no longer replays as it ran (it replays versions "
            f"{OLDEST_REPLAYED_LOGIC_VERSION} to {CORE_LOGIC_VERSION}). Start the version "
            "that wrote them, stop it cleanly so that it snapshots, and start this one again"
        )
    return head + why + "; or start this one with --replay-other-logic to replay them anyway"


def _snapshot_at_start(store: Store, recovered: Recovered, position: int) -> bytes:
    """The snapshot of ``recovered`` (the state after ``position``, before
    its restart), saved; its bytes."""
    data = encode_snapshot(recovered.snapshot())
    store.save_snapshot(position, data)
    return data


def _log_failure(task: asyncio.Task[list[Effect]]) -> None:
    if not task.cancelled() and task.exception() is not None:
        error = task.exception()
        if not isinstance(error, NodeStoppedError):
            log.error("a timer tick failed: %s", error)
