"""Bonds and exposure caps across a simulated network."""

from __future__ import annotations

import pytest

from datn.domain import AssetCode
from datn.ledger import UNBOUNDED, AccountKey, Entry, EntryId, Posting
from datn.protocol.clock import Now
from datn.protocol.liability import Liability, PeerClearing
from datn.protocol.messages import NodeId
from datn.protocol.node import NodeCore
from datn.sim import network
from datn.sim.invariants import InvariantError
from datn.sim.network import Faults, Simulation

SMALL_BOND = 60_000
"""Smaller than a few large orders' notional: caps bind all the time."""


def test_every_pair_posts_bonds_both_ways_before_trading() -> None:
    sim = Simulation(3, 4, faults=Faults())
    sim.fund()
    for node_id, node in sim.nodes.items():
        for peer, view in node.core.liability.peers.items():
            assert view.bond_posted == view.bond_held == network.BOND_MINOR, (node_id, peer)
            # Every bond counted was paid over the rail, and only what was paid.
            assert view.received == network.BOND_MINOR


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_small_bonds_limit_trading_and_keep_every_invariant(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(network, "BOND_MINOR", SMALL_BOND)
    sim = Simulation(seed, 5)
    sim.fund()
    end = sim.schedule_flow(200, 4_000)
    sim.run(until_ms=end)
    sim.heal()
    sim.settle()
    sim.check_final()
    limited = sum(
        count
        for node in sim.nodes.values()
        for name, count in node.core.stats.items()
        if name.startswith("limited:")
    )
    assert limited > 0 and sim.report.cross_node_trades > 0


class Reckless(Liability):
    """Offers locks whatever the peer's exposure."""

    def lock_budget(self, originator: NodeId, now: Now) -> tuple[int, int, str]:
        return 10**12, 10**6, ""


class RecklessCore(NodeCore):
    liability_class = Reckless


def test_a_holder_that_ignores_the_exposure_cap_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(network, "BOND_MINOR", SMALL_BOND)
    sim = Simulation(1, 5, faults=Faults(), strategies={NodeId("n002"): RecklessCore})
    with pytest.raises(InvariantError, match="invariant 8"):
        _run_trading(sim, 300)


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_by_the_end_every_trade_is_settled_over_the_rail(seed: int) -> None:
    sim = Simulation(seed, 5)
    sim.fund()
    sim.run(until_ms=sim.schedule_flow(200, 4_000))
    sim.heal()
    sim.settle()
    sim.check_final()  # peer and rail accounts mirror pair by pair
    settled = sum(node.core.stats.get("statements_settled", 0) for node in sim.nodes.values())
    assert settled > 0 and sim.report.cross_node_trades > 0
    for node in sim.nodes.values():
        assert not node.core.liability.any_unsettled()
        for peer in sim.ids:
            for asset in sim.deposited:
                key = AccountKey(f"peer:{peer}", AssetCode(asset))
                assert node.core.context.ledger.balance(key) == 0  # all moved over the rail


def _run_trading(sim: Simulation, orders: int = 200) -> None:
    sim.fund()
    sim.run(until_ms=sim.schedule_flow(orders, 4_000))


def test_every_settlement_cycle_is_checked_while_trading_goes_on() -> None:
    """Settlement conservation after every cycle, not only at the end: with
    faults on, pairs settle while other trades are in flight, and each time
    both sides have settled the same statements their rails mirror."""
    sim = Simulation(8, 5, faults=Faults(10, 5, (2, 40), 20, True, True, 5_000, True))
    _run_trading(sim, 300)
    assert sim.checker.pairs_in_step > 0
    sim.heal()
    sim.settle()
    sim.check_final()


class Generous(Liability):
    """Books one cent more on its rail than each statement says (its own
    ledger still balances)."""

    def _settle(
        self, peer: NodeId, view: PeerClearing, cycle: int, lock_ids: tuple[int, ...]
    ) -> None:
        super()._settle(peer, view, cycle, lock_ids)
        rail = view.accounts.rail
        ledger = self.context.ledger
        if "USD" in rail:
            slush = ledger.open_account("node:slush", "USD", UNBOUNDED)
            extra = (Posting(rail["USD"], 1), Posting(slush, -1))
            ledger.post(Entry(EntryId(f"extra:{peer}:{cycle}"), extra))


class GenerousCore(NodeCore):
    liability_class = Generous


def test_a_rail_that_moves_more_than_the_statement_is_caught_at_its_cycle() -> None:
    """Caught at that cycle, during trading."""
    sim = Simulation(5, 5, faults=Faults(), strategies={NodeId("n001"): GenerousCore})
    with pytest.raises(InvariantError, match="settlement conservation"):
        _run_trading(sim)


class Skimming(Liability):
    """Moves a cent more out of the peer's accounts than each statement, into
    one of its own (so its ledger still balances and its rail still mirrors
    the peer's)."""

    def _settle(
        self, peer: NodeId, view: PeerClearing, cycle: int, lock_ids: tuple[int, ...]
    ) -> None:
        super()._settle(peer, view, cycle, lock_ids)
        ledger = self.context.ledger
        skim = ledger.open_account("node:skim", "USD", UNBOUNDED)
        taken = (Posting(self.peer_keys(peer)["USD"], -1), Posting(skim, 1))
        ledger.post(Entry(EntryId(f"skim:{peer}:{cycle}"), taken))


class SkimmingCore(NodeCore):
    liability_class = Skimming


def test_a_settlement_that_takes_more_from_the_peer_accounts_is_caught() -> None:
    """Caught at that cycle."""
    sim = Simulation(5, 5, faults=Faults(), strategies={NodeId("n002"): SkimmingCore})
    with pytest.raises(InvariantError, match="trades still open"):
        _run_trading(sim)
