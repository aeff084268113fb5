"""A node's store can keep it: journal entries and snapshots from simulator
runs, through their byte encodings, rebuild every node exactly.

Each run goes through every phase with faults from its seed. Every journal
entry of every node is encoded and decoded (and must come back equal), each
node is rebuilt from the decoded entries alone (its genesis is the first
one), and the rebuilt node must hash equal to the node that ran. Snapshots
taken in the middle of a run, through their bytes, plus the journal after
them, must give the same state as the full replay.
"""

from __future__ import annotations

import pytest

from datn.protocol.effects import JournalEntry
from datn.protocol.node import NodeCore
from datn.sim.network import Faults, Simulation
from datn.wire import decode_entry, decode_snapshot, encode_entry, encode_snapshot

EVERYTHING = Faults(10, 5, (2, 40), 20, True, True, 5_000, True, True)


def _run(sim: Simulation, orders: int) -> None:
    sim.fund()
    sim.run(until_ms=sim.schedule_flow(orders, max(1_000, orders * 20)))
    sim.heal()
    sim.settle()
    sim.check_final()


def _through_bytes(journal: list[JournalEntry]) -> list[JournalEntry]:
    decoded = [decode_entry(encode_entry(entry)) for entry in journal]
    assert decoded == journal
    return decoded


@pytest.mark.parametrize("seed", range(1, 9))
def test_every_journal_entry_round_trips_and_rebuilds_every_node(seed: int) -> None:
    sim = Simulation(seed, 5)
    sim.snapshot_every = 10**9  # the whole journal stays, from the genesis on
    _run(sim, 150)
    for node_id, node in sim.nodes.items():
        if node.snapshot is not None:
            continue  # a crash in this run recovered it from a snapshot
        journal = _through_bytes(node.journal)
        recovered = NodeCore.recover(journal)
        assert recovered.state_hash() == node.core.state_hash(), node_id


@pytest.mark.parametrize("seed", [3, 4])
def test_a_snapshot_and_the_journal_after_it_give_the_state_of_a_full_replay(seed: int) -> None:
    sim = Simulation(seed, 4, faults=Faults(loss_pct=3, duplicate_pct=5, latency_ms=(1, 20)))
    sim.snapshot_every = 10**9
    sim.fund()
    end = sim.schedule_flow(200, 4_000)
    sim.run(until_ms=end // 2)
    middle = {
        node_id: (encode_snapshot(node.core.snapshot()), len(node.journal))
        for node_id, node in sim.nodes.items()
    }
    sim.run(until_ms=end)
    sim.heal()
    sim.settle()
    for node_id, node in sim.nodes.items():
        snapshot, taken_at = middle[node_id]
        tail = _through_bytes(node.journal[taken_at:])
        from_snapshot = NodeCore.recover(tail, decode_snapshot(snapshot))
        full = NodeCore.recover(_through_bytes(node.journal))
        live = node.core.state_hash()
        assert from_snapshot.state_hash() == full.state_hash() == live, node_id


def test_crashed_nodes_recover_from_snapshots_on_a_new_clock() -> None:
    """With a small snapshot interval, crashed nodes come back from a
    snapshot and a short tail (the simulator checks each one hashes equal
    to the node that crashed) and restart on another monotonic origin."""
    sim = Simulation(3, 6, faults=EVERYTHING)
    sim.snapshot_every = 200
    _run(sim, 300)
    assert sim.report.crashes > 0
    assert sim.snapshots_taken > 0
    assert sim.report.cross_node_trades > 0
