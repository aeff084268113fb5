"""The runtime: answers only after their journal entries are durable, group
commit, a store that fails stops intake and loses nothing acknowledged, and
a node restarts from its store exactly as it was."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec
import pytest

from datn.domain import USD, ProductKind, ProductSpec, Side, TimeInForce
from datn.protocol.clock import Now
from datn.protocol.effects import (
    Accepted,
    CancelInput,
    DepositInput,
    Effect,
    Genesis,
    Input,
    PlaceInput,
    Reply,
    TickInput,
)
from datn.protocol.messages import NodeId
from datn.protocol.node import NodeConfig, NodeCore
from datn.protocol.venue import OrderRequest
from datn.risk import RiskConfig
from datn.runtime import InputRefusedError, NodeRuntime, NodeStoppedError, Outlets
from datn.store import Commit, MemoryStore, StoreError
from datn.store.sqlite import SQLiteStore
from datn.wire import SnapshotError, decode_entry

XYZ = ProductSpec("XYZ", ProductKind.SHARE, USD.code)
NODE = NodeId("a")
GENESIS = Genesis(
    NODE,
    NodeConfig(RiskConfig(listed_products=frozenset({XYZ.product_id}))),
    (XYZ,),
    (),
    b"runtime test secret",
    ((XYZ.product_id, 5_000),),
)


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout=30))


def order(n: int, side: Side = Side.BUY, price: int = 4_000) -> PlaceInput:
    return PlaceInput(
        OrderRequest("alice", f"c{n}", XYZ.product_id, side, 1, price, TimeInForce.GTC)
    )


async def funded(runtime: NodeRuntime) -> None:
    await runtime.submit(DepositInput("alice", USD.code, 10_000_000_000))
    await runtime.submit(DepositInput("alice", XYZ.product_id, 10_000))


class SlowStore(MemoryStore):
    """A memory store whose commits take a while, as an fsync does, and
    that can be told to fail."""

    def __init__(self, delay_s: float = 0.01) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.fail_from: int | None = None
        self.commits = 0
        self.in_commit = threading.Event()

    def commit(self, commit: Commit) -> int:
        self.commits += 1
        time.sleep(self.delay_s)
        if self.fail_from is not None and self.commits >= self.fail_from:
            raise StoreError("full", "the disk is full")
        return super().commit(commit)

    def journaled_client_ids(self) -> set[str]:
        found = set()
        for data, _ in self.journal.values():
            event = decode_entry(data).input
            if isinstance(event, PlaceInput):
                found.add(event.request.client_order_id)
        return found


def test_answers_are_released_only_once_their_entries_are_durable() -> None:
    store = SlowStore()
    seen_durable: list[bool] = []

    def on_reply(effect: Reply) -> None:
        if isinstance(effect.event, Accepted):
            seen_durable.append(effect.event.client_order_id in store.journaled_client_ids())

    async def test() -> None:
        runtime = await NodeRuntime.open(store, GENESIS, outlets=Outlets(reply=on_reply))
        await funded(runtime)
        answers = await asyncio.gather(*(runtime.submit(order(n)) for n in range(50)))
        assert all(any(isinstance(e, Reply) for e in effects) for effects in answers)
        await runtime.close()

    run(test)
    assert seen_durable == [True] * 50


def orders(runtime: NodeRuntime, numbers: range) -> Callable[[], list[Awaitable[Any]]]:
    return lambda: [runtime.submit(order(n)) for n in numbers]


async def burst_then(
    runtime: NodeRuntime, first: int, late: Callable[[], list[Awaitable[Any]]]
) -> list[asyncio.Future[Any]]:
    """Three orders that commit together (a store taking 50 ms), what
    ``late`` sends during their commit, and the time for that commit to end:
    the next commit may then wait for company. Every answer's future."""
    burst = [asyncio.ensure_future(runtime.submit(order(n))) for n in range(first, first + 3)]
    await asyncio.sleep(0.02)
    sent = [asyncio.ensure_future(each) for each in late()]
    await asyncio.sleep(0.06)
    return [*burst, *sent]


def test_under_load_a_commit_waits_for_more_inputs_to_share_it() -> None:
    store = SlowStore(delay_s=0.05)

    async def test() -> None:
        runtime = await NodeRuntime.open(store, GENESIS, commit_delay_us=200_000)
        await funded(runtime)
        before = len(runtime.stats.group_sizes)
        waiting = await burst_then(runtime, 0, orders(runtime, range(3, 5)))
        later = [asyncio.ensure_future(runtime.submit(order(n))) for n in (5, 6)]
        await asyncio.gather(*waiting, *later)
        # Without the wait: a commit of the two that came during the first,
        # then another of the two after it.
        assert runtime.stats.group_sizes[before:] == [3, 4]
        assert runtime.stats.delayed_commits == 1
        await runtime.close()

    run(test)


def test_a_commit_waiting_for_company_starts_once_enough_inputs_are_pending() -> None:
    store = SlowStore(delay_s=0.05)

    async def test() -> None:
        # A wait far longer than the test: only the pending count can end it.
        runtime = await NodeRuntime.open(store, GENESIS, commit_delay_us=60_000_000)
        await funded(runtime)
        before = len(runtime.stats.group_sizes)
        waiting = await burst_then(runtime, 0, orders(runtime, range(3, 5)))
        assert runtime.stats.delayed_commits == 1  # waiting, with two pending
        rest = [asyncio.ensure_future(runtime.submit(order(n))) for n in range(5, 19)]
        await asyncio.wait_for(asyncio.gather(*waiting, *rest), timeout=5)
        assert runtime.stats.group_sizes[before:] == [3, 16]
        # A peer's frame counts each of its messages: one of 14 ends a wait.
        waiting = await burst_then(runtime, 19, orders(runtime, range(22, 24)))
        assert runtime.stats.delayed_commits == 2
        taken = runtime.take_in([order(n) for n in range(24, 38)], lambda _commit: None)
        await asyncio.wait_for(asyncio.gather(*waiting, taken), timeout=5)
        # A close ends a wait as well: nothing is left waiting a minute.
        waiting = await burst_then(runtime, 38, orders(runtime, range(41, 43)))
        assert runtime.stats.delayed_commits == 3
        await asyncio.wait_for(runtime.close(), timeout=5)
        assert len(await asyncio.gather(*waiting)) == 5

    run(test)


def test_a_cancelled_commit_task_stops_the_runtime_and_fails_its_callers() -> None:
    store = SlowStore(delay_s=0.05)

    async def test() -> None:
        runtime = await NodeRuntime.open(store, GENESIS, commit_delay_us=60_000_000)
        await funded(runtime)
        waiting = await burst_then(runtime, 0, orders(runtime, range(3, 5)))
        task = runtime._committing
        assert task is not None and runtime.stats.delayed_commits == 1
        task.cancel()  # as a loop torn down would
        outcomes = await asyncio.wait_for(
            asyncio.gather(*waiting, return_exceptions=True), timeout=1
        )
        # The three committed are answered; the two waiting are told.
        assert [isinstance(o, NodeStoppedError) for o in outcomes] == [False] * 3 + [True] * 2
        assert runtime.stopped.is_set()
        with pytest.raises(NodeStoppedError):
            await runtime.submit(order(5))
        await asyncio.wait_for(runtime.close(), timeout=5)

    run(test)


def test_a_lone_input_never_waits_not_even_under_load() -> None:
    store = SlowStore(delay_s=0.05)

    async def test() -> None:
        runtime = await NodeRuntime.open(store, GENESIS, commit_delay_us=60_000_000)
        await funded(runtime)
        started = time.monotonic()
        for n in range(3):
            await runtime.submit(order(n))
        # Under load, after a commit of three: a lone order, a lone peer's
        # frame (a step of a trade across nodes) and reads, which have
        # nothing to write, each commit without waiting.
        await asyncio.gather(*await burst_then(runtime, 3, orders(runtime, range(6, 7))))
        frame = lambda: [runtime.take_in([order(10)], lambda _commit: None)]  # noqa: E731
        await asyncio.gather(*await burst_then(runtime, 7, frame))
        reads = lambda: [runtime.read(lambda core: core.node_id) for _ in range(4)]  # noqa: E731
        await asyncio.gather(*await burst_then(runtime, 11, reads))
        assert time.monotonic() - started < 5
        assert runtime.stats.delayed_commits == 0
        await runtime.close()

    run(test)


def test_inputs_that_arrive_during_a_commit_share_the_next_one() -> None:
    store = SlowStore(delay_s=0.02)

    async def test() -> None:
        runtime = await NodeRuntime.open(store, GENESIS)
        await funded(runtime)
        before = runtime.stats.commits
        await asyncio.gather(*(runtime.submit(order(n)) for n in range(200)))
        commits = runtime.stats.commits - before
        assert commits <= 3, f"200 inputs took {commits} commits"
        assert max(runtime.stats.group_sizes) >= 100
        await runtime.close()

    run(test)
    assert len(store.journaled_client_ids()) == 200


def test_a_store_that_fails_stops_intake_and_loses_nothing_acknowledged() -> None:
    store = SlowStore(delay_s=0.001)
    acknowledged: list[str] = []

    async def test() -> None:
        runtime = await NodeRuntime.open(store, GENESIS)
        await funded(runtime)
        for n in range(5):
            await runtime.submit(order(n))
            acknowledged.append(f"c{n}")
        store.fail_from = store.commits + 1
        with pytest.raises(NodeStoppedError) as caught:
            await runtime.submit(order(99))
        assert isinstance(caught.value.cause, StoreError) and caught.value.cause.code == "full"
        assert runtime.stopped.is_set()
        with pytest.raises(NodeStoppedError):
            await runtime.submit(order(100))
        with pytest.raises(NodeStoppedError):
            await runtime.read(lambda core: core.status())

    run(test)
    assert store.journaled_client_ids() == set(acknowledged)
    # The next start rebuilds the node from what was acknowledged.
    store.fail_from = None
    store._closed = False

    async def restart() -> None:
        runtime = await NodeRuntime.open(store)
        count = await runtime.read(lambda core: core.status()["resting_orders"])
        assert count == 5
        await runtime.close()

    run(restart)


def test_a_lone_input_commits_on_the_loop_thread_and_a_group_on_the_writer(
    tmp_path: Path,
) -> None:
    threads: list[str] = []

    class Watched(SQLiteStore):
        def commit(self, commit: Commit) -> int:
            threads.append(threading.current_thread().name)
            return super().commit(commit)

        def commit_if_free(self, commit: Commit) -> int | None:
            threads.append(threading.current_thread().name)
            return super().commit_if_free(commit)

    async def test() -> None:
        runtime = await NodeRuntime.open(Watched(tmp_path / "node.sqlite3"), GENESIS)
        await funded(runtime)
        threads.clear()
        inline = runtime.stats.inline_commits
        await runtime.submit(order(1))
        assert threads == [threading.current_thread().name]
        assert runtime.stats.inline_commits == inline + 1
        threads.clear()
        await asyncio.gather(*(runtime.submit(order(n)) for n in range(2, 40)))
        assert threads and all(name.startswith("datn-store") for name in threads)
        assert runtime.stats.inline_commits == inline + 1
        await runtime.close()

    run(test)
    with SQLiteStore(tmp_path / "node.sqlite3") as store:
        journal = store.entries(0, store.position())
        placed = {
            event.request.client_order_id
            for event in (decode_entry(data).input for _, data in journal)
            if isinstance(event, PlaceInput)
        }
    assert placed == {f"c{n}" for n in range(1, 40)}


def test_a_full_disk_on_the_loop_thread_stops_intake_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    acknowledged: list[str] = []

    async def test() -> None:
        store = SQLiteStore(path, max_page_count=40)
        runtime = await NodeRuntime.open(store, GENESIS)
        await funded(runtime)
        with pytest.raises(NodeStoppedError) as caught:
            for n in range(100_000):
                await runtime.submit(order(n))
                acknowledged.append(f"c{n}")
        assert isinstance(caught.value.cause, StoreError) and caught.value.cause.code == "full"
        assert runtime.stats.inline_commits > 0 and runtime.stopped.is_set()
        with pytest.raises(NodeStoppedError):
            await runtime.submit(order(-1))
        runtime._writer.shutdown(wait=True)
        runtime._snapshot_worker.close()
        store.close()

    run(test)
    with SQLiteStore(path) as store:  # the disk has room again
        placed = [
            event.request.client_order_id
            for event in (decode_entry(data).input for data in store.load().entries)
            if isinstance(event, PlaceInput)
        ]
    assert placed == acknowledged


class Exploding(NodeCore):
    def handle(self, event: Input, now: Now) -> list[Effect]:
        raise RuntimeError("boom")


def test_a_core_failure_stops_intake() -> None:
    async def test() -> None:
        runtime = await NodeRuntime.open(MemoryStore(), GENESIS)

        runtime.core = Exploding.start(GENESIS, runtime.clock.now())[0]
        with pytest.raises(NodeStoppedError) as caught:
            await runtime.submit(order(1))
        assert "boom" in str(caught.value) and runtime.stopped.is_set()

    run(test)


async def trade(runtime: NodeRuntime, orders: int) -> None:
    """Fund the traders and place ``orders`` orders, some crossing."""
    await funded(runtime)
    for n in range(orders):
        await runtime.submit(order(n, Side.BUY if n % 2 else Side.SELL, 4_990 + n % 20))


def crash(runtime: NodeRuntime) -> None:
    """End ``runtime`` as a killed process ends: without closing anything
    (its snapshot worker ends with it)."""
    runtime._snapshot_worker.close()
    runtime._writer.shutdown(wait=True)
    runtime.store.close()


def test_a_node_restarts_from_its_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    hashes: list[str] = []

    async def first() -> None:
        runtime = await NodeRuntime.open(SQLiteStore(path), GENESIS, snapshot_every=40)
        await trade(runtime, 60)
        await runtime.wait_for_snapshot()  # built in the background
        assert runtime.stats.snapshots >= 1
        hashes.append(await runtime.read(lambda core: core.state_hash()))
        crash(runtime)

    async def second() -> None:
        runtime = await NodeRuntime.open(SQLiteStore(path), GENESIS)
        # The restart is journaled first; before it the state was as left.
        stored = runtime.store.load()
        assert stored.snapshot_position >= 40
        assert runtime.stats.position == stored.position
        await runtime.close(snapshot=False)  # as a crash leaves it

    run(first)
    run(second)
    with SQLiteStore(path) as store:
        stored = store.load()
    from datn.wire import recover_node  # noqa: PLC0415

    # Everything up to the restart entry rebuilds the state the first process had.
    assert recover_node(stored.snapshot, stored.entries[:-1]).state_hash() == hashes[0]


def test_a_node_that_never_built_a_snapshot_takes_one_as_it_starts(tmp_path: Path) -> None:
    """Killed again and again before its worker finished, a node would
    replay more at every start; the start takes the snapshot instead."""
    path = tmp_path / "node.sqlite3"
    hashes: list[str] = []

    async def first() -> None:
        # No snapshot in its first life, as if each time the process had
        # died before its worker was done.
        runtime = await NodeRuntime.open(SQLiteStore(path), GENESIS, snapshot_every=1_000_000)
        await trade(runtime, 30)
        hashes.append(await runtime.read(lambda core: core.state_hash()))
        crash(runtime)

    async def second() -> None:
        store = SQLiteStore(path)
        before = store.load()
        assert before.snapshot is None and 30 <= len(before.entries) < 100
        from datn.wire import recover_node  # noqa: PLC0415

        hashes.append(recover_node(None, before.entries).state_hash())
        # Its tail is a quarter of the interval (here 100 entries of 400)
        # or more: a snapshot first.
        runtime = await NodeRuntime.open(store, GENESIS, snapshot_every=100)
        assert runtime.stats.snapshot_position == before.position
        assert runtime.stats.position == before.position + 1  # and its restart entry
        await runtime.close(snapshot=False)  # as a crash leaves it

    async def below_a_quarter() -> None:
        store = SQLiteStore(path)
        before = store.load()
        runtime = await NodeRuntime.open(store, GENESIS, snapshot_every=400)
        assert runtime.stats.snapshot_position == 0  # a tail under 100: none
        crash(runtime)
        with SQLiteStore(path) as again:
            assert len(again.load().entries) == len(before.entries) + 1

    run(first)
    run(below_a_quarter)
    run(second)
    with SQLiteStore(path) as store:
        stored = store.load()
    from datn.wire import recover_node  # noqa: PLC0415

    # The next start replays the restart entry only, onto the state the first process had.
    assert len(stored.entries) == 1
    assert recover_node(stored.snapshot, []).state_hash() == hashes[-1]


def test_a_start_snapshot_that_fails_costs_only_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "node.sqlite3"

    async def first() -> None:
        runtime = await NodeRuntime.open(SQLiteStore(path), GENESIS, snapshot_every=1_000_000)
        await trade(runtime, 20)
        crash(runtime)

    def refuse(snapshot: object) -> bytes:
        raise SnapshotError("bad_snapshot", "would not read back")

    async def second() -> None:
        monkeypatch.setattr("datn.runtime.node.encode_snapshot", refuse)
        store = SQLiteStore(path)
        before = store.load()
        runtime = await NodeRuntime.open(store, GENESIS, snapshot_every=10)
        # It starts all the same, from the journal, and takes orders.
        assert runtime.stats.snapshot_position == 0
        await runtime.submit(order(99))
        assert runtime.stats.position == before.position + 2
        await runtime.close()

    run(first)
    run(second)


def test_a_store_of_another_node_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"

    async def test() -> None:
        runtime = await NodeRuntime.open(SQLiteStore(path), GENESIS)
        await runtime.close()
        other = Genesis(NodeId("b"), GENESIS.config, GENESIS.products, (), b"x")
        with pytest.raises(StoreError) as caught:
            await NodeRuntime.open(SQLiteStore(path), other)
        assert "holds node a, not b" in caught.value.message
        with pytest.raises(StoreError) as empty:
            await NodeRuntime.open(MemoryStore())
        assert "needs its genesis" in empty.value.message

    run(test)


def test_reads_wait_for_what_came_before_them() -> None:
    store = SlowStore(delay_s=0.02)

    async def test() -> None:
        runtime = await NodeRuntime.open(store, GENESIS)
        await funded(runtime)
        placing = asyncio.ensure_future(runtime.submit(order(1)))
        await asyncio.sleep(0)  # applied, not yet durable
        count = await runtime.read(lambda core: core.status()["resting_orders"])
        assert count == 1 and "c1" in store.journaled_client_ids()
        await placing
        await runtime.close()

    run(test)


def test_timers_tick_the_core() -> None:
    store = SlowStore(delay_s=0)

    async def test() -> None:
        runtime = await NodeRuntime.open(store, GENESIS)
        await asyncio.sleep(GENESIS.config.heartbeat_ms / 1_000 * 2.5)
        await runtime.close()

    run(test)
    inputs = [decode_entry(data).input for data, _ in store.journal.values()]
    ticks = [event for event in inputs if isinstance(event, TickInput)]
    assert len(ticks) >= 2


def test_a_slow_commit_holds_back_no_tick_and_a_silent_peer_goes_out_of_reach_on_time() -> None:
    """Commits take longer than a heartbeat period on the store's thread
    (a PostgreSQL server that answers slowly; the event loop is free). The
    core still takes a tick each period, so it counts none of that time as
    a stall of its own, and a peer it never hears from is out of reach once
    its silence limit has passed, not later by however long commits took."""
    silent = NodeId("c")
    config = dataclasses.replace(GENESIS.config, heartbeat_ms=100)
    genesis = msgspec.structs.replace(GENESIS, config=config, peers=(silent,))
    store = SlowStore(delay_s=0.35)
    found: list[bool] = []

    async def test() -> None:
        runtime = await NodeRuntime.open(store, genesis)
        await asyncio.sleep(0.65)
        core = runtime.core
        # As routing sees it, at the core's latest input.
        found.append(core.network.out_of_reach(silent, runtime.clock.now()))
        last = Now(core.context.last_mono_ms, 0)
        found.append(core.network.out_of_reach(silent, last))
        await runtime.close()

    run(test)
    assert found == [True, True]
    # From the first tick on (the genesis is durable before the node runs).
    times = [decode_entry(data).now.mono_ms for data, _ in store.journal.values()][1:]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) >= 5 and max(gaps) <= config.heartbeat_ms + 50, gaps


def test_an_outlet_that_fails_does_not_hold_back_answers() -> None:
    def broken(_effect: Reply) -> None:
        raise ValueError("a stream broke")

    async def test() -> None:
        runtime = await NodeRuntime.open(MemoryStore(), GENESIS, outlets=Outlets(reply=broken))
        await funded(runtime)
        effects = await runtime.submit(order(1))
        assert any(isinstance(e, Reply) for e in effects)
        assert runtime.failure is None
        await runtime.close()

    run(test)


def test_an_input_the_journal_cannot_hold_is_refused_and_changes_nothing() -> None:
    store = SlowStore(delay_s=0)

    async def test() -> None:
        runtime = await NodeRuntime.open(store, GENESIS)
        before = (store.last_committed, runtime.core.state_hash())
        with pytest.raises(InputRefusedError):
            await runtime.submit(CancelInput("alice", 10**30))
        assert (store.last_committed, runtime.core.state_hash()) == before
        assert runtime.failure is None and not runtime.stopped.is_set()
        await funded(runtime)  # the node goes on
        await runtime.close()

    run(test)


def test_the_intake_rate_is_measured_over_the_last_seconds() -> None:
    from datn.runtime.node import RuntimeStats  # noqa: PLC0415

    stats = RuntimeStats()
    assert stats.intake_per_second(100.0) == 0.0
    for second in range(10):
        stats.inputs += 500
        stats.sample_intake(100.0 + second)
        stats.sample_intake(100.0 + second + 0.5)  # one sample a second at most
    assert len(stats.intake_samples) == 10
    assert stats.intake_per_second(109.0) == (5_000 - 500) / 9
    assert stats.intake_per_second(200.0) == 0.0  # idle: nothing recent
