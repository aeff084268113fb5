"""The trade protocol in the simulator: many nodes, hostile networks, and
invariant checkers that are shown to catch a broken node."""

from __future__ import annotations

import pickle
from collections.abc import Iterable

import pytest

from datn.domain import Side
from datn.protocol.clock import Hlc, Now
from datn.protocol.effects import Effect, Input, JournalEntry, Send
from datn.protocol.holder import Holder
from datn.protocol.messages import Confirmation, NodeId, Offer, PotentialTrades
from datn.protocol.node import NodeCore, NodeSnapshot, Recovered
from datn.sim.invariants import InvariantError
from datn.sim.network import Faults, Simulation, run_simulation

FAULT_CLASSES = {
    "clean": Faults(),
    "loss": Faults(loss_pct=10),
    "duplication": Faults(duplicate_pct=20),
    "reordering": Faults(latency_ms=(1, 30), reorder_pct=30),
    "partitions": Faults(partitions=True, latency_ms=(2, 10)),
    "crashes": Faults(crashes=True, latency_ms=(2, 10)),
    "clock_skew_and_jumps": Faults(max_skew_ms=5_000, clock_jumps=True),
    "stalls": Faults(stalls=True, latency_ms=(2, 10)),
    "everything": Faults(10, 5, (2, 40), 20, True, True, 5_000, True, True),
}


@pytest.mark.parametrize("fault_class", sorted(FAULT_CLASSES))
def test_each_fault_class_keeps_every_invariant(fault_class: str) -> None:
    report = run_simulation(11, nodes=8, orders=300, faults=FAULT_CLASSES[fault_class])
    assert report.cross_node_trades > 0
    assert report.lock_outcomes["taken"] > 0


@pytest.mark.parametrize("seed", range(200))
def test_random_seeds_keep_every_invariant(seed: int) -> None:
    """The default sweep: each seed derives its own fault mix."""
    run_simulation(seed, nodes=5, orders=80)


class PauseBlindCore(NodeCore):
    """A node that counts its own stalls as its peers' silence (core logic
    before version 3)."""

    def _apply_into(self, event: Input, now: Now, out: list[Effect]) -> None:
        self._dispatch(event, now, out)
        self.context.last_mono_ms = now.mono_ms


@pytest.mark.parametrize("seed", [1, 2, 5])
def test_a_node_stalled_past_its_peers_silence_still_asks_them_after(seed: int) -> None:
    """A node whose loop stalls for five seconds takes some of its traders'
    orders before the peers' messages that waited meanwhile. It still asks
    the peers holding what those orders want: the stall was its own, not
    their silence. A node that took the stall for their silence passes
    them over."""
    skipped = {}
    for kind in (NodeCore, PauseBlindCore):
        sim = Simulation(seed, 4, faults=Faults(), honest=kind)
        sim.fund()
        sim.run(until_ms=sim.schedule_flow(200, 3_000))  # books with resting orders
        sim.faults = Faults(stalls=True)
        stalled = sim.ids[0]
        sim.stall(stalled, 5_000)
        for n in range(60):  # its traders' requests in the stall's first second
            sim._schedule(sim.time_ms + 10 + 15 * n, "order", stalled)
        sim.run(until_ms=sim.time_ms + 8_000)
        skipped[kind] = sim.nodes[stalled].core.stats.get("holders_out_of_reach", 0)
        assert sim.report.stalls == 1
        sim.heal()
        sim.settle()
        sim.check_final()
    assert skipped[NodeCore] == 0
    assert skipped[PauseBlindCore] > 0


def test_crashed_nodes_rebuild_from_their_journal_and_void_their_locks() -> None:
    report = run_simulation(3, nodes=6, orders=300, faults=FAULT_CLASSES["crashes"])
    assert report.crashes > 0


def test_the_checker_catches_a_lock_taken_after_its_expiry() -> None:
    sim = Simulation(1, nodes=2, faults=Faults())
    holder, originator = sim.ids
    offer = Offer(lock_id=7, price_ticks=100, quantity_lots=1, priority=Hlc(0), ttl_ms=50)
    sim.checker.observe(holder, [Send(originator, Hlc(0), PotentialTrades(1, 1, (offer,)))])
    sim.time_ms += 50
    confirmation = Confirmation(7, 1, "p", offer_side(), 100, 1)
    with pytest.raises(InvariantError, match="after its expiry"):
        sim.checker.observe(holder, [Send(originator, Hlc(0), confirmation)])


def test_the_checker_catches_a_lock_honoured_after_a_restart() -> None:
    sim = Simulation(1, nodes=2, faults=Faults())
    holder, originator = sim.ids
    offer = Offer(lock_id=7, price_ticks=100, quantity_lots=1, priority=Hlc(0), ttl_ms=500)
    sim.checker.observe(holder, [Send(originator, Hlc(0), PotentialTrades(1, 1, (offer,)))])
    sim.checker.restarted(holder)
    with pytest.raises(InvariantError, match="after a restart"):
        sim.checker.observe(
            holder, [Send(originator, Hlc(0), Confirmation(7, 1, "p", offer_side(), 100, 1))]
        )


class CarelessHolder(Holder):
    """Confirms trades without writing them in its ledger."""

    def _book_trade(self, *args: object) -> None:
        return None


class CarelessCore(NodeCore):
    holder_class = CarelessHolder


class ForgetfulCore(NodeCore):
    """Loses its holder's decisions when it is recovered from its store."""

    @classmethod
    def recover(
        cls, journal: Iterable[JournalEntry], snapshot: NodeSnapshot | None = None
    ) -> Recovered:
        recovered = super().recover(journal, snapshot)
        recovered._core.holder.decisions.clear()  # type: ignore[union-attr]
        return recovered


def _run_with(kinds: dict[NodeId, type[NodeCore]], seed: int, nodes: int, orders: int) -> None:
    sim = Simulation(seed, nodes, faults=Faults() if seed == 2 else None, strategies=kinds)
    sim.fund()
    sim.run(until_ms=sim.schedule_flow(orders, max(1_000, orders * 20)))
    sim.heal()
    sim.settle()
    sim.check_final()


def test_a_holder_that_does_not_book_its_side_is_caught() -> None:
    """A holder that confirms without writing the trade breaks invariant 5."""
    with pytest.raises(InvariantError, match="invariant"):
        _run_with({NodeId("n001"): CarelessCore}, 2, 4, 100)


def test_a_node_that_forgets_its_decisions_on_recovery_is_caught() -> None:
    """Recovery must rebuild everything: a node that loses state is caught
    (invariant 10). Whether a run crashes a node while it holds decisions
    depends on its seed (and on how orders are routed): of a few seeds'
    runs, one at least is caught, and only for that."""
    ids = [NodeId(f"n{i:03d}") for i in range(6)]
    caught = []
    for seed in range(1, 4):
        sim = Simulation(
            seed, 6, faults=FAULT_CLASSES["crashes"], strategies=dict.fromkeys(ids, ForgetfulCore)
        )
        sim.fund()
        try:
            sim.run(until_ms=sim.schedule_flow(300, 6_000))
        except InvariantError as error:
            assert "invariant 10" in str(error), error
            caught.append(seed)
    assert caught, "no run caught a node that forgets its decisions"


def test_a_run_is_a_function_of_its_seed() -> None:
    first = run_simulation(5, nodes=5, orders=150)
    second = run_simulation(5, nodes=5, orders=150)
    assert first.messages == second.messages
    assert first.trade_latency_ms == second.trade_latency_ms


def test_targeted_routing_sends_fewer_broadcasts_than_broadcast_to_all() -> None:
    targeted = run_simulation(8, nodes=12, orders=300, faults=Faults(), targeted=True)
    everyone = run_simulation(8, nodes=12, orders=300, faults=Faults(), targeted=False)
    assert targeted.messages["OrderBroadcast"] < everyone.messages["OrderBroadcast"] / 2


def offer_side() -> Side:
    return Side.BUY


_ = NodeId


def test_sim_command_runs_and_summarises() -> None:
    from click.testing import CliRunner  # noqa: PLC0415

    from datn.cli.main import main  # noqa: PLC0415

    result = CliRunner().invoke(main, ["sim", "--nodes", "4", "--orders", "60", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert "order-path messages per order" in result.output


def test_sim_command_answers_in_json_what_it_shows_as_text() -> None:
    import json  # noqa: PLC0415

    from click.testing import CliRunner  # noqa: PLC0415

    from datn.cli.main import main  # noqa: PLC0415

    args = ["sim", "--nodes", "4", "--orders", "60", "--seed", "2"]
    text = CliRunner().invoke(main, args)
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)  # no progress bar around it
    assert answer["ok"] is True and (answer["seed"], answer["nodes"]) == (2, 4)
    share = answer["cross_node_executions"] / answer["executions"]
    assert f"executions {answer['executions']} ({share:.0%} against another node)" in text.output
    outcomes = ", ".join(f"{k} {v}" for k, v in answer["lock_outcomes"].items())
    assert f"lock outcomes: {outcomes}" in text.output
    assert f"crashes {answer['crashes']}, stalls {answer['stalls']}," in text.output
    assert (
        answer["execution_latency_virtual_ms"]["p50"]
        <= answer["execution_latency_virtual_ms"]["max"]
    )


def test_sim_command_in_json_sweeps_and_names_broken_seeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json  # noqa: PLC0415

    from click.testing import CliRunner  # noqa: PLC0415

    from datn.cli import sim as sim_command  # noqa: PLC0415
    from datn.cli.main import main  # noqa: PLC0415

    args = ["sim", "--nodes", "4", "--orders", "40", "--seed", "5", "--json"]
    swept = CliRunner().invoke(main, [*args, "--sweep", "3", "--jobs", "1"])
    assert swept.exit_code == 0, swept.output
    assert json.loads(swept.output) == {"ok": True, "seeds": 3, "kept": 3, "failures": []}

    def broken(seed: int, *args: object, **kwargs: object) -> object:
        raise InvariantError(f"seed {seed}: a node broke an invariant")

    monkeypatch.setattr(sim_command, "run_simulation", broken)
    result = CliRunner().invoke(main, [*args, "--no-faults"])
    assert result.exit_code == 1
    assert json.loads(result.output) == {
        "ok": False,
        "error": "seed 5: a node broke an invariant",
        "replay": "datn sim --seed 5 --nodes 4 --orders 40 --no-faults",
    }


def test_sim_command_prints_the_replay_command_of_a_failing_seed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner  # noqa: PLC0415

    from datn.cli import sim as sim_command  # noqa: PLC0415
    from datn.cli.main import main  # noqa: PLC0415

    def broken(seed: int, *args: object, **kwargs: object) -> object:
        raise InvariantError(f"seed {seed}: a node broke an invariant")

    monkeypatch.setattr(sim_command, "run_simulation", broken)
    args = ["sim", "--nodes", "4", "--orders", "100", "--seed", "2", "--no-faults"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "datn sim --seed 2 --nodes 4 --orders 100 --no-faults" in result.output


@pytest.mark.parametrize("seed", [109819, 109837])
def test_a_node_rebuilt_late_starts_from_its_opening_reference_prices(seed: int) -> None:
    """Found by the long sweep: a node rebuilt from its journal after the
    market moved must start from the reference prices it opened with, or a
    market order's hold differs on replay."""
    run_simulation(seed, nodes=5, orders=80)


@pytest.mark.parametrize("fault_class", ["clean", "duplication", "everything"])
def test_every_message_survives_the_signed_wire(fault_class: str) -> None:
    """Each message is numbered, encoded, signed, verified, decoded and
    replay-checked; the network's duplicates die at the link as replays."""
    report = run_simulation(21, nodes=6, orders=200, faults=FAULT_CLASSES[fault_class], signed=True)
    assert report.cross_node_trades > 0
    if fault_class != "clean":
        assert report.frames_refused["replayed"] > 0
    assert set(report.frames_refused) <= {"replayed"}


@pytest.mark.parametrize("seed", range(20))
def test_random_seeds_over_the_signed_wire(seed: int) -> None:
    run_simulation(seed, nodes=5, orders=60, signed=True)


def test_faults_and_reports_travel_between_processes() -> None:
    """Sweeps and comparisons run seeds in worker processes and send their
    faults and reports back: both survive pickling, compiled or not."""
    faults = FAULT_CLASSES["everything"]
    assert pickle.loads(pickle.dumps(faults)) == faults
    report = run_simulation(4, nodes=3, orders=40, faults=faults)
    assert pickle.loads(pickle.dumps(report)) == report
