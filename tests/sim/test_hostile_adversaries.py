"""The newer adversaries, each run with every fault on, and the defence that
must hold against each.

Every run goes through every phase with every invariant checked after every
event (fund and post bonds, trader flow, heal, settle, final checks), takes
snapshots of every node often, and crashes the adversary halfway through the
flow: it must come back from its latest snapshot and the journal after it as
the same node (the simulator compares state hashes), strategy state and all.
Watchers check the defence after every event, in every phase.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Iterable

import pytest

from datn.clearing.quota import AcceptanceRatio
from datn.domain import AssetCode
from datn.ledger import AccountKey
from datn.protocol.clock import MAX_LOGICAL
from datn.protocol.effects import GenesisInput
from datn.protocol.hybrid import HybridClock
from datn.protocol.liability import collateral_owner
from datn.protocol.messages import NodeId
from datn.protocol.node import NodeConfig
from datn.protocol.originator import Originator
from datn.risk import band_edges_ticks
from datn.sim.adversaries import (
    Adversary,
    AdversarySimulation,
    BadTerms,
    RunFigures,
    default_adversaries,
    default_config,
    flow_duration_ms,
    strategy_kind,
)
from datn.sim.network import Faults
from datn.wire.limits import MAX_INT64
from datn.wire.snapshot import decode_snapshot

EVERYTHING = Faults(
    loss_pct=3,
    duplicate_pct=5,
    reorder_pct=20,
    partitions=True,
    crashes=True,
    max_skew_ms=5_000,
    clock_jumps=True,
    stalls=True,
    latency_ms=(1, 40),
)
NODES = 5
ORDERS = 200
SEED = 2
MARK_BAND_BPS = 1_000
"""How far (10 %) an honest node's mark may stray from the median of the
honest nodes' marks: far wider than honest prices drift in a run, far
narrower than the absurd prices adversaries print."""
KINDS = (
    "Acceptance",
    "Advert",
    "BondAnswer",
    "BondRequest",
    "Confirmation",
    "DefaultNotice",
    "Heartbeat",
    "OrderBroadcast",
    "PotentialTrades",
    "Refusal",
    "Release",
    "StatementAnswer",
    "StatementProposal",
    "TradePrint",
)


@dataclasses.dataclass
class Run:
    sim: AdversarySimulation
    adversary: NodeId
    figures: RunFigures
    at_flow_end: dict[str, object]

    @property
    def honest(self) -> list[NodeId]:
        return self.sim.honest


Watch = Callable[[AdversarySimulation, NodeId], None]


def hostile_run(
    strategy: str | type[Adversary],
    seed: int = SEED,
    *,
    faults: Faults | None = EVERYTHING,
    config: NodeConfig | None = None,
    watchers: Iterable[Watch] = (),
    at_flow_end: Callable[[AdversarySimulation, NodeId], dict[str, object]] | None = None,
    nodes: int = NODES,
    orders: int = ORDERS,
) -> Run:
    """One run of ``strategy`` at the last node, every fault on, the
    adversary crashed halfway through the flow and rebuilt."""
    kind = strategy_kind(strategy, orders)
    config = kind.network_config(config or default_config())
    (adversary,) = default_adversaries(nodes)
    sim = AdversarySimulation(seed, nodes, [adversary], {adversary: kind}, faults, config)
    sim.snapshot_every = 100
    for watch in watchers:
        sim.watchers.append(lambda watch=watch: watch(sim, adversary))
    sim.fund()
    duration_ms = flow_duration_ms(orders)
    end_ms = sim.schedule_flow(orders, duration_ms)
    sim.run(until_ms=sim.time_ms + duration_ms // 2)
    _crash_and_check(sim, adversary)
    sim.run(until_ms=end_ms)
    sim.note_end_quotas()
    seen = at_flow_end(sim, adversary) if at_flow_end is not None else {}
    sim.heal()
    sim.settle()
    sim.check_final()
    return Run(sim, adversary, sim.finish(), seen)


def _crash_and_check(sim: AdversarySimulation, adversary: NodeId) -> None:
    """The adversary's store rebuilds it exactly; then it crashes, and the
    simulator rebuilds it again on restart (and checks its hash)."""
    node = sim.nodes[adversary]
    if not node.up:
        return  # the seed's own faults crashed it already
    core = node.core
    assert isinstance(core, Adversary)
    # From its latest snapshot and the journal after it; or, for an
    # adversary that others left alone too much to write a snapshot's worth
    # of entries yet, from its whole journal, the genesis first.
    snapshot = decode_snapshot(node.snapshot) if node.snapshot is not None else None
    assert snapshot is not None or isinstance(node.journal[0].input, GenesisInput)
    assert type(core).recover(list(node.journal), snapshot).state_hash() == core.state_hash()
    crashes = sim.report.crashes
    sim._crash(adversary)
    assert sim.report.crashes == crashes + 1


def _recovered(run: Run) -> None:
    """The adversary crashed and came back as a new core of its kind."""
    node = run.sim.nodes[run.adversary]
    assert node.up and isinstance(node.core, Adversary)
    assert run.sim.report.crashes >= 1
    assert node.core.state.attack_from_ms is not None, "it played"


# =================================================================== bad-terms


def test_originators_ignore_bad_offers_and_book_nothing_on_bad_confirmations() -> None:
    run = hostile_run("bad-terms")
    _recovered(run)
    figures, adversary = run.figures, run.adversary
    adversary_core = run.sim.nodes[adversary].core
    assert isinstance(adversary_core, BadTerms)
    # It offered beyond terms and confirmed other terms...
    assert figures.adversary_stats["bad_offers"] > 0
    assert figures.adversary_stats["bad_confirmations"] > 0
    # ...the offers were ignored and counted...
    assert figures.honest_stats["offers_beyond_terms"] > 0
    # ...each bad confirmation recorded as the holder's violation, with the
    # frames as evidence (a Violation effect), and the holder suspended.
    assert figures.violations
    assert {(peer, reason) for _, peer, reason in figures.violations} == {
        (adversary, "confirmed_other_terms")
    }
    counted = sum(
        count for name, count in figures.honest_stats.items() if name.startswith("violations:")
    )
    assert counted == len(figures.violations)
    for node_id, _, _ in figures.violations:
        view = run.sim.nodes[node_id].core.liability.peers[adversary]
        assert view.suspended == "violation"
        assert view.violations
    # Nothing was booked on the locks it confirmed on other terms: the
    # checker also failed any trade booked on terms other than offered.
    bad_locks = {(originator, lock_id) for lock_id, originator, _ in adversary_core.state.confirmed}
    assert bad_locks
    for originator, lock_id in bad_locks:
        core = run.sim.nodes[NodeId(originator)].core
        assert lock_id not in core.liability.peers[adversary].unsettled


# ================================================================ bond-claimer


def test_a_bond_claimed_but_never_paid_grants_no_quota_and_no_collateral() -> None:
    claims: list[int] = []

    def watch_claims(sim: AdversarySimulation, adversary: NodeId) -> None:
        for node_id in sim.honest:
            view = sim.nodes[node_id].core.liability.peers[adversary]
            if view.claim is not None:
                claims.append(view.claim.amount)
            assert view.bond_held == 0 and view.received == 0

    run = hostile_run("bond-claimer", watchers=[watch_claims])
    _recovered(run)
    figures, adversary = run.figures, run.adversary
    assert figures.adversary_stats["bond_payments_withheld"] > 0
    assert figures.adversary_stats["bond_claims_inflated"] > 0
    # Honest holders saw claims, one far beyond the capital it has...
    capital = run.sim.capital["USD"] // NODES
    assert claims and max(claims) > 100 * capital
    # ...counted none: no quota, no lock, no collateral, no bond.
    assert figures.limited_for_adversaries["no_bond"] > 0
    assert set(figures.limited_for_adversaries) <= {"no_bond", "suspended"}
    (watch,) = figures.quota.values()
    assert watch.peak_locks == 0 and figures.locks_offered_to_adversaries == 0
    for node_id in run.honest:
        core = run.sim.nodes[node_id].core
        assert core.liability.peers[adversary].bond_held == 0
        assert figures.bonds_held[(node_id, adversary)] == 0
        collateral = AccountKey(collateral_owner(adversary), AssetCode("USD"))
        assert core.context.ledger.balance(collateral) == 0
    # Trading with it as holder goes on, under the bonds honest nodes posted.
    views = run.sim.nodes[adversary].core.liability.peers
    assert all(views[n].bond_held > 0 for n in run.honest)


# =============================================================== clock-stamper


def test_honest_clocks_refuse_extreme_stamps_and_can_always_send() -> None:
    walls: dict[NodeId, int] = {}

    def watch_clocks(sim: AdversarySimulation, adversary: NodeId) -> None:
        for node_id in sim.honest:
            core = sim.nodes[node_id].core
            wall = sim.now(node_id).wall_ms
            seen = walls[node_id] = max(walls.get(node_id, wall), wall)
            last = core.context.clock.last
            assert last.wall_ms <= seen + core.config.max_clock_drift_ms, (node_id, last)
            assert last.logical <= MAX_LOGICAL, (node_id, last)

    run = hostile_run("clock-stamper", watchers=[watch_clocks])
    _recovered(run)
    figures = run.figures
    assert figures.adversary_stats["stamps_extreme"] > 0
    assert figures.honest_stats["refused_clock_drift"] > 0
    # Every honest node's next stamp is one the wire carries and a peer whose
    # wall clock reads the same takes.
    for node_id in run.honest:
        core = run.sim.nodes[node_id].core
        wall = run.sim.now(node_id).wall_ms
        clock = HybridClock()
        clock.last = core.context.clock.last
        stamp = clock.tick(wall)
        assert stamp.wall_ms <= MAX_INT64 and stamp.logical <= MAX_LOGICAL
        assert clock.admits(stamp, wall, core.config.max_clock_drift_ms)


# ===================================================================== flooder


def _small_network_books() -> NodeConfig:
    """Bounds a flood of a few seconds goes far beyond."""
    return dataclasses.replace(default_config(), max_adverts_per_peer=150, max_advert_gaps=24)


def test_a_flood_of_adverts_stays_within_every_honest_network_book_s_bounds() -> None:
    def watch_books(sim: AdversarySimulation, adversary: NodeId) -> None:
        for node_id in sim.honest:
            core = sim.nodes[node_id].core
            config = core.config
            for view in core.network.views.values():
                assert len(view.adverts) <= config.max_adverts_per_peer
                assert len(view.adverts_seen_above) <= config.max_advert_gaps
                indexed = sum(len(b) for side in (view.bids, view.asks) for b in side.values())
                assert indexed == len(view.adverts)

    run = hostile_run("flooder", config=_small_network_books(), watchers=[watch_books])
    _recovered(run)
    stats = run.figures.honest_stats
    assert run.figures.adversary_stats["flood_adverts"] > 0
    assert stats["adverts_over_limit"] > 0, "the flood reached the bound"
    assert stats["adverts_unlisted"] > 0 and stats["prints_unlisted"] > 0
    for node_id in run.honest:
        view = run.sim.nodes[node_id].core.network.views[run.adversary]
        assert view.stale, "gaps left behind keep the flooder's view stale"


def _honest_band(sim: AdversarySimulation, product_id: str, excluding: NodeId | None) -> range:
    """The price band around the median of the honest nodes' marks."""
    marks = [sim.nodes[n].core.context.marks.mark(product_id, excluding) for n in sim.honest]
    median = int(statistics.median_low(m for m in marks if m is not None))
    low, high = band_edges_ticks(median, MARK_BAND_BPS)
    return range(low, high + 1)


def _marks_for_others_stay_honest(sim: AdversarySimulation, adversary: NodeId) -> None:
    """Each honest node's mark for every other node (and its reference) stays
    in the band of the honest nodes' marks: one source moves none."""
    for product_id in sim.mids:
        for other in [None, *sim.honest]:
            band = _honest_band(sim, product_id, None)
            for node_id in sim.honest:
                mark = sim.nodes[node_id].core.context.marks.mark(product_id, other)
                assert mark in band, (sim.time_ms, node_id, product_id, other, mark, band)


def test_one_flooding_source_moves_no_honest_mark() -> None:
    hostile_run("flooder", faults=Faults.none(), watchers=[_marks_for_others_stay_honest])


# ===================================================================== refuser


def _reliability(sim: AdversarySimulation, adversary: NodeId) -> dict[str, object]:
    """Each honest originator's view of the refuser's reliability, as the
    flow ends, per thousand lots accepted and confirmed."""
    seen: dict[str, object] = {}
    for node_id in sim.honest:
        originator = sim.nodes[node_id].core.originator
        now = sim.now(node_id).mono_ms
        for holder, state in originator.snapshot().reliability:
            if holder == adversary:
                seen[node_id] = _permille(originator, state, now)
    return seen


def _permille(originator: Originator, state: tuple[int, int, int, int], now_ms: int) -> int:
    return AcceptanceRatio.from_state(state).permille(now_ms, 0)


def test_a_refuser_s_refusals_are_counted_and_honest_trading_goes_on() -> None:
    # Which acceptances lapse is drawn per lock (one in four): a seed under
    # which honest nodes accept the refuser's locks often enough to see both.
    run = hostile_run("refuser", SEED + 1)
    _recovered(run)
    figures = run.figures
    assert figures.adversary_stats["refuser_refused"] > 0
    assert figures.adversary_stats["refuser_lapsed"] > 0
    assert figures.honest_stats["refusals"] > 0
    assert figures.honest_executions > 0
    # Honest nodes keep their trades against it: see test_adversaries.py.


def test_a_refuser_stays_demoted_at_every_honest_originator() -> None:
    run = hostile_run("refuser", at_flow_end=_reliability)
    assert run.at_flow_end, "honest originators accepted its offers"
    threshold = run.sim.config.unreliable_permille
    for node_id, permille in run.at_flow_end.items():
        assert isinstance(permille, int) and permille < threshold, (node_id, permille)


# ================================================================== off-market


def _exposure_marks_stay_honest(sim: AdversarySimulation, adversary: NodeId) -> None:
    """Each honest node marks what the adversary owes at a price within the
    band of the honest nodes' median mark, whatever the adversary prints."""
    for product_id in sim.mids:
        band = _honest_band(sim, product_id, adversary)
        for node_id in sim.honest:
            mark = sim.nodes[node_id].core.context.marks.mark(product_id, adversary)
            assert mark in band, (sim.time_ms, node_id, product_id, mark, band)


def test_off_market_prices_do_not_move_the_marks_of_exposure_to_it() -> None:
    run = hostile_run("off-market", watchers=[_exposure_marks_stay_honest])
    _recovered(run)
    figures = run.figures
    assert figures.adversary_stats["wash_trades"] > 0
    assert figures.honest_stats["prints_received"] > 0
    # The exposure honest holders allowed it stayed within its bond: the
    # checker checks every offer, and the quota watch agrees.
    (watch,) = figures.quota.values()
    assert watch.breaches == 0


def test_off_market_wash_trades_print_absurd_prices() -> None:
    run = hostile_run("off-market", faults=Faults.none())
    adversary = run.adversary
    printed = []
    for node_id in run.honest:
        marks = run.sim.nodes[node_id].core.context.marks.snapshot()
        for product_id, sources in marks.sources:
            band = _honest_band(run.sim, product_id, adversary)
            printed += [price not in band for source, price in sources if source == adversary]
    assert printed and all(printed), "its latest price is off-market at every honest node"


# ==================================================================== nonsense


def test_well_typed_nonsense_changes_nothing_and_breaks_no_invariant() -> None:
    run = hostile_run("nonsense")
    _recovered(run)
    figures = run.figures
    stats = figures.adversary_stats
    assert stats["nonsense_refused_by_codec"] == 0
    for kind in KINDS:
        assert stats[f"nonsense:{kind}"] > 0, kind
    assert figures.inert_delivered > 100
    assert figures.inert_that_changed_state == []
    honest = figures.honest_stats
    for counter in (
        "acceptances_unknown_lock",
        "answers_unknown_request",
        "bond_refused:bad_sequence",
        "statements_refused:out_of_turn",
    ):
        assert honest[counter] > 0, counter


# ======================================================== every fault, swept


NEW = ("bad-terms", "bond-claimer", "clock-stamper", "flooder", "refuser", "off-market", "nonsense")


@pytest.mark.parametrize("strategy", NEW)
def test_every_invariant_holds_with_faults_from_the_seed(strategy: str) -> None:
    run = hostile_run(strategy, seed=7, faults=None)
    _recovered(run)
    assert run.figures.inert_that_changed_state == []
    assert all(w.breaches == 0 for w in run.figures.quota.values())


@pytest.mark.slow
@pytest.mark.parametrize("strategy", NEW)
def test_every_invariant_holds_over_many_seeds(strategy: str) -> None:
    for seed in range(1, 41):
        run = hostile_run(strategy, seed=seed, faults=None, nodes=6, orders=300)
        assert run.figures.inert_that_changed_state == [], seed
        assert all(w.breaches == 0 for w in run.figures.quota.values()), seed
