"""Evidence from simulated runs: every message travels as a signed frame, the
transport keeps the frames that carry evidence, and a bundle exported for a
pair verifies and agrees with both nodes' ledgers."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from datn.clearing.config import ClearingConfig
from datn.cli.main import main
from datn.evidence import EvidenceLog, Verification, export_bundle, verify_bundle
from datn.ledger import AccountKey
from datn.protocol.liability import peer_owner
from datn.protocol.messages import NodeId
from datn.protocol.node import NodeConfig
from datn.risk import RiskConfig
from datn.sim.network import PRODUCTS, Faults, Simulation

SPECS = [spec for spec, _ in PRODUCTS]
ASSETS = sorted({spec.product_id for spec in SPECS} | {spec.quote_currency for spec in SPECS})
DAY_MS = 86_400_000


def signed_sim(
    seed: int, nodes: int, faults: Faults | None, config: NodeConfig | None = None
) -> tuple[Simulation, EvidenceLog]:
    sim = Simulation(seed, nodes, faults=faults, signed=True, config=config)
    assert sim.transport is not None
    return sim, sim.transport.keep_evidence(lambda: sim.time_ms)


def bundle(sim: Simulation, log: EvidenceLog, me: str, peer: str, **period: int) -> bytes:
    transport = sim.transport
    assert transport is not None
    a, b = NodeId(me), NodeId(peer)
    return export_bundle(
        log, transport.key(a), transport.party(a), transport.party(b), SPECS, **period
    )


def peer_balances(sim: Simulation, node: str, peer: str) -> dict[str, int]:
    """``peer``'s accounts on ``node``'s ledger: what ``node`` owes it, per asset."""
    ledger = sim.nodes[NodeId(node)].core.context.ledger
    balances = {a: ledger.balance(AccountKey(peer_owner(peer), a)) for a in ASSETS}  # type: ignore[arg-type]
    return {asset: amount for asset, amount in balances.items() if amount}


def assert_matches_ledgers(sim: Simulation, result: Verification, low: str, high: str) -> None:
    """What verify says is still to settle is what the two ledgers say, both ways."""
    assert peer_balances(sim, low, high) == result.unsettled
    assert peer_balances(sim, high, low) == {a: -n for a, n in result.unsettled.items()}


def test_without_settlement_the_obligations_are_the_peer_accounts_on_both_ledgers() -> None:
    """Settlement is held off (a one-day cycle), so every trade between a pair
    is still in the peer accounts: the bundle must recompute them exactly."""
    risk = RiskConfig(listed_products=frozenset(spec.product_id for spec in SPECS))
    clearing = ClearingConfig(settlement_cycle_ms=DAY_MS, settlement_deadline_ms=2 * DAY_MS)
    sim, log = signed_sim(4, 4, Faults(latency_ms=(1, 8)), NodeConfig(risk, clearing=clearing))
    sim.fund()
    sim.run(until_ms=sim.schedule_flow(200, 4_000))
    sim.run(until_ms=sim.time_ms + 3_000)  # every lock ends, every order finishes or rests
    assert all(
        not n.core.originator.working and not n.core.holder.locks for n in sim.nodes.values()
    )
    checked = 0
    for low, high in itertools.combinations(sim.ids, 2):
        result = verify_bundle(bundle(sim, log, low, high))
        assert result.ok, result.problems
        assert result.statements == 0
        assert result.net == result.unsettled
        assert peer_balances(sim, low, high) == result.net
        assert peer_balances(sim, high, low) == {a: -n for a, n in result.net.items()}
        checked += bool(result.trades)
    assert checked >= 3


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_faulty_run_with_settlement_verifies_for_every_pair_and_period(seed: int) -> None:
    """Loss, duplication, crashes and partitions as the seed draws them; the
    nodes settle every cycle. Each pair's bundle verifies, its statements are
    checked against its trades, and what is left matches the ledgers."""
    sim, log = signed_sim(seed, 4, None)
    sim.fund()
    end = sim.schedule_flow(200, 4_000)
    sim.run(until_ms=end)
    sim.heal()
    sim.settle()
    sim.check_final()
    statements = 0
    for low, high in itertools.combinations(sim.ids, 2):
        exported = bundle(sim, log, high, low)
        result = verify_bundle(exported)
        assert result.ok, result.problems
        assert result.exporter == high
        assert_matches_ledgers(sim, result, low, high)
        statements += result.agreed
        # A period in the middle of the run: context comes with it, and it verifies.
        part = verify_bundle(bundle(sim, log, low, high, start_ms=end // 3, end_ms=end // 2))
        assert part.ok, part.problems
    assert statements > 0


def test_the_evidence_log_keeps_only_frames_worth_keeping() -> None:
    sim, log = signed_sim(5, 3, Faults())
    sim.fund()
    sim.run(until_ms=sim.schedule_flow(60, 1_500))
    kinds = {
        kind
        for line in bundle(sim, log, "n000", "n001").splitlines()[1:-1]
        for kind in [json.loads(line)["kind"]]
    }
    assert kinds == {"record"}
    assert sim.report.messages["Heartbeat"] > 0 and sim.report.messages["Advert"] > 0
    assert len(log) < sum(sim.report.messages.values())


def test_datn_evidence_simulate_answers_in_json(tmp_path: Path) -> None:
    out = tmp_path / "bundle.jsonl"
    args = ["evidence", "simulate", "--seed", "3", "--nodes", "3", "--orders", "80"]
    result = CliRunner().invoke(main, [*args, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["ok"] is True and answer["out"] == str(out)
    assert (answer["node"], answer["peer"], answer["to_ms"]) == ("n000", "n001", None)
    assert answer["records"] == out.read_bytes().count(b"\n") - 2 > 0
    assert verify_bundle(out.read_bytes()).ok


def test_datn_evidence_export_then_verify(tmp_path: Path) -> None:
    out = tmp_path / "n000-n001.jsonl"
    runner = CliRunner()
    # A seed whose faults leave n000 and n001 trading (some stall one of
    # the two through the whole flow, and the pair has nothing to show).
    args = ["evidence", "simulate", "--seed", "4", "--nodes", "3", "--orders", "80"]
    exported = runner.invoke(main, [*args, "--node", "n000", "--peer", "n001", "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    assert "records between n000 and n001" in exported.output

    verified = runner.invoke(main, ["evidence", "verify", str(out)])
    assert verified.exit_code == 0, verified.output
    assert "OK: every signature checks" in verified.output
    assert "n000 owes n001:" in verified.output and "statements:" in verified.output

    # The same finding for a program: amounts by node name and asset.
    as_json = runner.invoke(main, ["evidence", "verify", "--json", str(out)])
    assert as_json.exit_code == 0, as_json.output
    found = json.loads(as_json.output)
    assert found["ok"] is True and found["problems"] == []
    assert [node["name"] for node in found["nodes"]] == ["n000", "n001"]
    assert found["frames_verified"] == found["records"] > 0
    assert sum(found["trades"]["held"].values()) == found["trades"]["in_period"] > 0
    assert found["statements"] >= found["agreed"] > 0

    data = bytearray(out.read_bytes())
    lines = bytes(data).splitlines(keepends=True)
    # A byte of record 3's frame, in the signature at its end.
    position = len(b"".join(lines[:4])) + lines[4].index(b'","kind":') - 20
    data[position] = ord("B") if data[position] == ord("A") else ord("A")
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_bytes(bytes(data))
    failed = runner.invoke(main, ["evidence", "verify", str(tampered)])
    assert failed.exit_code == 1
    assert "FAILED" in failed.output
    assert "record 3: frame refused: bad_signature" in failed.output
    failed_json = runner.invoke(main, ["evidence", "verify", "--json", str(tampered)])
    assert failed_json.exit_code == 1
    problems = json.loads(failed_json.output)["problems"]
    assert any(
        p["where"] == "record 3" and p["what"].startswith("frame refused: bad_signature")
        for p in problems
    )


def test_datn_evidence_export_refuses_unknown_nodes(tmp_path: Path) -> None:
    out = tmp_path / "b.jsonl"
    result = CliRunner().invoke(
        main, ["evidence", "simulate", "--nodes", "3", "--peer", "n007", "--out", str(out)]
    )
    assert result.exit_code == 2
    assert "no node n007" in result.output
    assert not out.exists()
