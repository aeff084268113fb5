"""``datn evidence``: export a pair's signed evidence, and verify a bundle."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import click
import httpx

from datn.cli.clients import json_option
from datn.domain import USD
from datn.evidence import Party, Trade, Verification, export_bundle, verify_bundle
from datn.protocol.messages import NodeId
from datn.sim.invariants import InvariantError
from datn.sim.network import PRODUCTS, Faults, Simulation

MAX_PROBLEMS_SHOWN = 50


@click.group()
def evidence() -> None:
    """Signed evidence of what two nodes owe each other.

    Every offer, acceptance, confirmation, refusal, settlement statement and
    bond message travels in a frame its sender signed; a bundle holds those
    frames for one pair of nodes and a period, and anyone can verify it
    without trusting either node."""


@evidence.command("export")
@click.option(
    "--node",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="The running node's folder (for its ready.json and admin.token).",
)
@click.option("--peer", required=True, help="The peer's node id (64 hex digits).")
@click.option("--from", "from_ms", default=0, show_default=True, help="Start (wall clock, ms).")
@click.option("--to", "to_ms", default=None, type=int, help="End (wall clock, ms, excluded).")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Where to write the bundle.",
)
@json_option
def export(
    folder: Path, peer: str, from_ms: int, to_ms: int | None, out: Path, as_json: bool
) -> None:
    """Write the evidence bundle of a running node and PEER over the period:
    every signed frame between them that carries part of a trade, a
    settlement or a bond, read from the node's store and sealed by the node
    (through its operator API)."""
    from datn.cli.clients import admin_client  # noqa: PLC0415

    if re.fullmatch(r"[0-9a-f]{64}", peer) is None:
        click.echo(
            f"datn evidence export: --peer {peer!r} is not a node id (64 hex digits)", err=True
        )
        sys.exit(2)
    client = admin_client(folder)
    params: dict[str, int] = {"since_ms": from_ms}
    if to_ms is not None:
        params["until_ms"] = to_ms
    try:
        response = client.http.get(f"/admin/evidence/{peer}", params=params)
    except httpx.HTTPError as error:
        click.echo(f"datn evidence export: the node does not answer: {error}", err=True)
        sys.exit(1)
    finally:
        client.close()
    if response.status_code != 200:
        click.echo(f"datn evidence export: {response.status_code} {response.text}", err=True)
        sys.exit(1)
    try:
        out.write_bytes(response.content)
    except OSError as error:
        click.echo(f"datn evidence export: cannot write {out}: {error.strerror or error}", err=True)
        sys.exit(1)
    records = response.content.count(b"\n") - 2
    if as_json:
        click.echo(json.dumps({"records": records, "peer": peer, "out": str(out)}))
        return
    click.echo(f"{records} records between this node and {peer[:16]}… written to {out}")


@evidence.command("simulate")
@click.option("--seed", default=1, show_default=True, help="Seed of the simulated run.")
@click.option("--nodes", default=4, show_default=True, help="Number of simulated nodes.")
@click.option("--orders", default=200, show_default=True, help="Orders (and cancels) to send.")
@click.option("--no-faults", "clean", is_flag=True, help="A clean network: no loss, crash or skew.")
@click.option("--node", "node", default="n000", show_default=True, help="The exporting node.")
@click.option("--peer", "peer", default="n001", show_default=True, help="Its peer.")
@click.option(
    "--from", "from_ms", default=0, show_default=True, help="Start of the period (virtual ms)."
)
@click.option(
    "--to", "to_ms", default=None, type=int, help="End of the period (virtual ms, excluded)."
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Where to write the bundle.",
)
@json_option
def simulate(
    seed: int,
    nodes: int,
    orders: int,
    clean: bool,
    node: str,
    peer: str,
    from_ms: int,
    to_ms: int | None,
    out: Path,
    as_json: bool,
) -> None:
    """Run the signed simulation for SEED and write the evidence bundle of
    NODE and PEER over the period: every signed frame between them that
    carries part of a trade, a settlement or a bond."""
    if nodes < 2 or orders < 1:
        raise click.BadParameter("need at least two nodes and one order")
    sim = Simulation(seed, nodes, faults=Faults.none() if clean else None, signed=True)
    me, other = NodeId(node), NodeId(peer)
    for name, option in ((me, "--node"), (other, "--peer")):
        if name not in sim.nodes:
            raise click.BadParameter(
                f"no node {name} among {sim.ids[0]}..{sim.ids[-1]}", param_hint=option
            )
    if me == other:
        raise click.BadParameter("a node has no evidence with itself", param_hint="--peer")
    if from_ms < 0 or (to_ms is not None and to_ms <= from_ms):
        raise click.BadParameter("the period ends after it starts, at 0 or later")
    transport = sim.transport
    assert transport is not None
    log = transport.keep_evidence(lambda: sim.time_ms)
    try:
        sim.fund()
        end_ms = sim.schedule_flow(orders, max(1_000, orders * 20))
        sim.run(until_ms=end_ms)
        sim.heal()
        sim.settle()
        sim.check_final()
    except InvariantError as error:
        if as_json:
            click.echo(json.dumps({"ok": False, "error": str(error)}))
        else:
            click.echo(f"INVARIANT BROKEN: {error}", err=True)
        sys.exit(1)
    bundle = export_bundle(
        log,
        transport.key(me),
        transport.party(me),
        transport.party(other),
        [spec for spec, _ in PRODUCTS],
        from_ms,
        to_ms,
    )
    out.write_bytes(bundle)
    records = bundle.count(b"\n") - 2
    if as_json:
        answer = {"ok": True, "seed": seed, "nodes": nodes, "ended_at_ms": sim.time_ms}
        between = {"node": me, "peer": other, "from_ms": from_ms, "to_ms": to_ms}
        click.echo(json.dumps({**answer, **between, "records": records, "out": str(out)}))
        return
    period = f"{from_ms} ms to {'the end' if to_ms is None else f'{to_ms} ms'}"
    click.echo(
        f"seed {seed}: {nodes} nodes, run ended at {sim.time_ms} ms; "
        f"{records} records between {me} and {other} ({period}) written to {out}"
    )


@evidence.command()
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def verify(bundle: Path, as_json: bool) -> None:
    """Check every signature in BUNDLE and recompute what each side owes,
    trusting neither node. Exits 1, naming each bad record, if anything fails."""
    result = verify_bundle(bundle.read_bytes())
    if as_json:
        click.echo(json.dumps(_as_json(result), indent=2))
        sys.exit(0 if result.ok else 1)
    if result.nodes is not None:
        _summary(result)
    if result.ok:
        click.echo("OK: every signature checks and every statement matches its trades")
        return
    count = len(result.problems)
    click.echo(f"FAILED: {count} problem{'s' if count > 1 else ''}", err=True)
    for problem in result.problems[:MAX_PROBLEMS_SHOWN]:
        click.echo(f"  {problem}", err=True)
    if len(result.problems) > MAX_PROBLEMS_SHOWN:
        click.echo(f"  ... and {len(result.problems) - MAX_PROBLEMS_SHOWN} more", err=True)
    sys.exit(1)


def _as_json(result: Verification) -> dict[str, Any]:
    """What ``verify --json`` prints: the whole finding, amounts in minor
    units (lots for products) by node name and asset id."""
    in_period = _in_period(result)
    return {
        "ok": result.ok,
        "problems": [{"where": p.where, "what": p.what} for p in result.problems],
        "nodes": None
        if result.nodes is None
        else [{"name": p.name, "node_id": p.node_id} for p in result.nodes],
        "exporter": result.exporter,
        "from_ms": result.from_ms,
        "to_ms": result.to_ms,
        "records": result.records,
        "frames_verified": result.frames_verified,
        "messages": dict(sorted(result.messages.items())),
        "trades": {
            "in_period": len(in_period),
            "before_period": len(result.trades) - len(in_period),
            "held": _held(result, in_period),
        },
        "owed": result.owed,
        "net": result.net,
        "unsettled": result.unsettled,
        "statements": result.statements,
        "agreed": result.agreed,
        "bonds": result.bonds,
    }


def _in_period(result: Verification) -> list[Trade]:
    return [t for t in result.trades if t.in_period]


def _held(result: Verification, trades: list[Trade]) -> dict[str, int]:
    """How many of ``trades`` each node of the bundle held."""
    return {p.name: sum(1 for t in trades if t.holder == p.name) for p in result.nodes or ()}


def _party(party: Party) -> str:
    return party.node_id if party.name == party.node_id else f"{party.name} = {party.node_id}"


def _summary(result: Verification) -> None:
    echo = click.echo
    assert result.nodes is not None
    low, high = result.nodes
    end = "the end" if result.to_ms is None else f"{result.to_ms} ms"
    echo(f"bundle: {result.records} records, exported by {result.exporter}")
    # A real node is named by its id; a simulated one by a short name too.
    echo(f"  nodes: {_party(low)}")
    echo(f"         {_party(high)}")
    echo(f"  period: {result.from_ms} ms to {end}")
    echo(f"signatures: {result.frames_verified} of {result.records} frames verified")
    if result.messages:
        echo("messages: " + ", ".join(f"{k} {v}" for k, v in sorted(result.messages.items())))
    in_period = _in_period(result)
    held = _held(result, in_period)
    echo(
        f"trades: {len(in_period)} in the period "
        f"({', '.join(f'{name} held {n}' for name, n in held.items())})"
        + (
            f", {len(result.trades) - len(in_period)} before it"
            if len(result.trades) > len(in_period)
            else ""
        )
    )
    for debtor, creditor in ((low, high), (high, low)):
        owed = result.owed.get(debtor.name, {})
        echo(f"  {debtor.name} owes {creditor.name}: {_amounts(result, owed)}")
    echo(f"  net: {_net(result, result.net)}")
    echo(f"  not settled by a statement in the bundle: {_net(result, result.unsettled)}")
    echo(f"statements: {result.statements} proposals checked, {result.agreed} agreed")
    for poster, posted in result.bonds.items():
        holder = high.name if poster == low.name else low.name
        echo(f"bonds: {poster} posted {_amounts(result, posted)} with {holder}")


def _net(result: Verification, net: dict[str, int]) -> str:
    """A net from the lower name's side, as who owes whom what."""
    assert result.nodes is not None
    low, high = result.nodes
    if not net:
        return "nothing"
    return "; ".join(
        f"{low.name} owes {high.name} {_amount(result, asset, amount)}"
        if amount > 0
        else f"{high.name} owes {low.name} {_amount(result, asset, -amount)}"
        for asset, amount in net.items()
    )


def _amounts(result: Verification, amounts: dict[str, int]) -> str:
    if not amounts:
        return "nothing"
    return "; ".join(_amount(result, asset, amount) for asset, amount in amounts.items())


def _amount(result: Verification, asset: str, amount: int) -> str:
    spec = result.products.get(asset)
    if spec is not None:
        return f"{amount} lots {spec.symbol}"
    if asset == USD.code:
        return USD.format_minor(amount)
    return f"{amount} {asset} (minor units)"
