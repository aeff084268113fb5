"""The lock audit the kill tests run on real nodes' journals
(:mod:`journal_audit`): it catches what it looks for, and a node that keeps
the rules passes it, its journal replayed through its own core."""

from __future__ import annotations

import pytest
from journal_audit import LockAudit

from datn.domain import Side
from datn.domain.value import NodeId
from datn.protocol.clock import Hlc, Now
from datn.protocol.effects import (
    Effect,
    JournalEntry,
    ReceiveInput,
    RestartInput,
    Send,
    TickInput,
)
from datn.protocol.messages import Acceptance, Confirmation, Offer, PotentialTrades, Refusal
from datn.protocol.node import NodeCore, NodeError
from datn.sim.network import Faults, Simulation

PEER = NodeId("b" * 64)
HLC = Hlc(1, 0)


def offered(lock_id: int, ttl_ms: int) -> Send:
    return Send(PEER, HLC, PotentialTrades(1, 1, (Offer(lock_id, 5_000, 1, HLC, ttl_ms),)))


def confirmed(lock_id: int) -> Send:
    return Send(PEER, HLC, Confirmation(lock_id, 9, "p", Side.BUY, 5_000, 1))


def accepted(lock_id: int) -> ReceiveInput:
    return ReceiveInput(PEER, HLC, Acceptance(lock_id, 1))


def fed(*steps: tuple[int, object, list[Effect]]) -> LockAudit:
    audit = LockAudit()
    for mono_ms, event, effects in steps:
        audit.observe(JournalEntry(Now(mono_ms, mono_ms), event), effects)  # type: ignore[arg-type]
    return audit


def test_a_lock_taken_in_time_passes() -> None:
    audit = fed((100, TickInput(), [offered(7, 50)]), (149, accepted(7), [confirmed(7)]))
    assert audit.violations == [] and audit.confirmations == 1


def test_a_lock_taken_at_or_after_its_expiry_is_caught() -> None:
    audit = fed((100, TickInput(), [offered(7, 50)]), (150, accepted(7), [confirmed(7)]))
    assert audit.violations == ["lock 7 taken 0 ms after its expiry"]


def test_a_lock_taken_after_a_restart_is_caught_whatever_the_new_clock_says() -> None:
    audit = fed(
        (100, TickInput(), [offered(7, 50)]),
        (5, RestartInput(), []),
        (6, accepted(7), [confirmed(7)]),
    )
    assert audit.violations == ["lock 7 taken after a restart voided it"]


def test_a_changed_decision_is_caught_but_a_forgotten_settled_lock_is_not() -> None:
    steps = [(100, TickInput(), [offered(7, 50)]), (120, accepted(7), [confirmed(7)])]
    forgotten = fed(*steps, (900, accepted(7), [Send(PEER, HLC, Refusal(7, "unknown_lock"))]))
    assert forgotten.violations == []
    changed = fed(*steps, (900, accepted(7), [Send(PEER, HLC, Refusal(7, "expired"))]))
    assert len(changed.violations) == 1 and "confirmed, then answered" in changed.violations[0]


def test_a_refusal_changed_into_a_late_confirmation_is_caught() -> None:
    audit = fed(
        (100, TickInput(), [offered(7, 50)]),
        (200, accepted(7), [Send(PEER, HLC, Refusal(7, "expired"))]),
        (900, accepted(7), [confirmed(7)]),
    )
    assert audit.violations == [
        "lock 7: refused, then answered " + repr(Confirmation(7, 9, "p", Side.BUY, 5_000, 1)),
        "lock 7 taken 750 ms after its expiry",
    ]


def test_kills_between_an_acceptance_and_its_answer_are_counted_on_both_sides() -> None:
    # As holder: decided, killed before the answer left, asked again (and
    # answered the same); and killed with an acceptance on its way.
    holder = fed(
        (100, TickInput(), [offered(7, 50), offered(8, 50)]),
        (120, accepted(7), [confirmed(7)]),
        (1, RestartInput(), []),
        (2, accepted(7), [confirmed(7)]),
        (3, accepted(7), [confirmed(7)]),
        (4, accepted(8), [Send(PEER, HLC, Refusal(8, "expired_by_restart"))]),
    )
    assert holder.holder_kills_between == 2 and holder.violations == []
    # As originator: accepted, killed, the answer taken in after the restart.
    originator = fed(
        (100, TickInput(), [Send(PEER, HLC, Acceptance(3, 1))]),
        (1, RestartInput(), []),
        (2, ReceiveInput(PEER, HLC, Refusal(3, "expired_by_restart")), []),
    )
    assert originator.originator_kills_between == 1


def test_the_journals_of_a_faulty_simulated_network_replay_and_pass() -> None:
    sim = Simulation(5, 4, faults=Faults(loss_pct=3, duplicate_pct=5, latency_ms=(1, 20)))
    sim.snapshot_every = 10**9  # each journal stays whole, from its genesis
    sim.fund()
    sim.run(until_ms=sim.schedule_flow(150, 3_000))
    sim.heal()
    sim.settle()
    confirmations = 0
    for node in sim.nodes.values():
        audit = LockAudit()
        replayed = 0
        for entry, effects in NodeCore.replayed(node.journal):
            audit.observe(entry, effects)
            replayed += 1
        assert replayed == len(node.journal)
        assert audit.violations == []
        confirmations += audit.confirmations
    assert confirmations > 0, "no trade across nodes to audit"


def test_a_journal_replays_only_from_its_genesis() -> None:
    with pytest.raises(NodeError):
        next(NodeCore.replayed([JournalEntry(Now(1, 1), TickInput())]))
