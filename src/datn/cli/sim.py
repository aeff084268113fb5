"""``datn sim``: run the network simulator, one seed or a sweep of seeds."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from statistics import quantiles
from typing import Any, NoReturn

import click

from datn.sim.adversaries import STRATEGIES, compare, default_adversaries, summary, summary_json
from datn.sim.invariants import InvariantError
from datn.sim.network import Faults, SimReport, run_simulation


def replay_command(
    seed: int,
    nodes: int,
    orders: int,
    clean: bool,
    broadcast: bool,
    adversary: str | None = None,
    adversaries: int = 1,
) -> str:
    flags = (" --no-faults" if clean else "") + (" --broadcast" if broadcast else "")
    if adversary is not None:
        flags += f" --adversary {adversary}"
        if adversaries != 1:
            flags += f" --adversaries {adversaries}"
    return f"datn sim --seed {seed} --nodes {nodes} --orders {orders}{flags}"


@click.command()
@click.option(
    "--seed", default=1, show_default=True, help="Seed of the run (or the first of a sweep)."
)
@click.option("--nodes", default=20, show_default=True, help="Number of nodes.")
@click.option("--orders", default=2_000, show_default=True, help="Orders (and cancels) to send.")
@click.option("--no-faults", "clean", is_flag=True, help="A clean network: no loss, crash or skew.")
@click.option(
    "--broadcast", is_flag=True, help="Broadcast every order to all peers (no targeting)."
)
@click.option("--signed", is_flag=True, help="Carry every message as a signed, encoded frame.")
@click.option("--sweep", default=0, help="Run this many seeds from --seed on; print failing seeds.")
@click.option("--jobs", default=2, show_default=True, help="Processes for a sweep.")
@click.option(
    "--adversary",
    type=click.Choice(sorted(STRATEGIES)),
    help="Run the seed twice, the last node(s) playing this adversary strategy of the "
    "simulator and then honest, and compare the trades honest nodes made between themselves.",
)
@click.option(
    "--adversaries",
    default=1,
    show_default=True,
    help="How many nodes (the last ones) play the --adversary strategy.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output, no progress bar.")
def sim(
    seed: int,
    nodes: int,
    orders: int,
    clean: bool,
    broadcast: bool,
    signed: bool,
    sweep: int,
    jobs: int,
    adversary: str | None,
    adversaries: int,
    as_json: bool,
) -> None:
    """Run nodes in virtual time over a hostile network, checking invariants
    after every event, then heal the network and check that everything ends.

    With --adversary, run the seed twice, with the adversary strategy and
    without, and compare the trades honest nodes made between themselves.

    With --json, one JSON object with "ok" and the figures; a broken
    invariant is "ok": false with the error and the command that replays it
    (and the exit status is 1, as without)."""
    if nodes < 2 or orders < 1:
        raise click.BadParameter("need at least two nodes and one order")
    if adversary is not None:
        if sweep or signed or broadcast:
            raise click.UsageError("--adversary runs one seed, targeted and unsigned")
        _adversary(seed, nodes, orders, clean, adversary, adversaries, as_json)
        return
    if adversaries != 1:
        raise click.UsageError("--adversaries needs --adversary")
    if sweep:
        _sweep(seed, sweep, nodes, orders, clean, broadcast, jobs, as_json)
        return
    faults = Faults.none() if clean else None
    replay = replay_command(seed, nodes, orders, clean, broadcast)
    with _progress(orders, f"seed {seed}: {nodes} nodes", as_json) as progress:
        try:
            report = run_simulation(
                seed,
                nodes,
                orders,
                faults=faults,
                targeted=not broadcast,
                signed=signed,
                on_progress=progress,
            )
        except InvariantError as error:
            _broken(error, replay, as_json)
    figures = report_json(report)
    if as_json:
        click.echo(json.dumps({"ok": True, **figures}))
        return
    _summary(report, figures)


@contextlib.contextmanager
def _progress(
    orders: int, label: str, hidden: bool
) -> Iterator[Callable[[SimReport], None] | None]:
    """A progress bar over the orders sent, and what updates it; none when
    ``hidden`` (``--json`` prints nothing but its answer)."""
    if hidden:
        yield None
        return
    with click.progressbar(length=orders, label=label) as bar:
        seen = [0]

        def progress(report: SimReport) -> None:
            if report.orders > seen[0]:
                bar.update(report.orders - seen[0])
                seen[0] = report.orders

        yield progress


def _broken(error: InvariantError, replay: str, as_json: bool) -> NoReturn:
    """Say a broken invariant and the command that replays it; exit 1."""
    if as_json:
        click.echo(json.dumps({"ok": False, "error": str(error), "replay": replay}))
    else:
        click.echo(f"\nINVARIANT BROKEN: {error}", err=True)
        click.echo(f"replay with: {replay}")
    sys.exit(1)


def report_json(report: SimReport) -> dict[str, Any]:
    """What the summary of a run says, as a JSON object."""
    latencies = sorted(report.trade_latency_ms)
    latency: dict[str, float] | None = None
    if len(latencies) >= 2:
        cuts = quantiles(latencies, n=100, method="inclusive")
        latency = {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98], "max": latencies[-1]}
    return {
        "seed": report.seed,
        "nodes": report.nodes,
        "faults": dataclasses.asdict(report.faults),
        "orders": report.orders,
        "rejected": report.rejected,
        "crashes": report.crashes,
        "stalls": report.stalls,
        "events": report.events,
        "executions": report.trades,
        "cross_node_executions": report.cross_node_trades,
        "order_path_messages": report.order_messages,
        "messages": dict(sorted(report.messages.items())),
        "frames_refused": dict(sorted(report.frames_refused.items())),
        "lock_outcomes": dict(sorted(report.lock_outcomes.items())),
        "execution_latency_virtual_ms": latency,
    }


def _summary(report: SimReport, figures: dict[str, Any]) -> None:
    echo = click.echo
    echo(f"\nfaults: {report.faults}")
    echo(
        f"orders {report.orders}, rejected {report.rejected}, crashes {report.crashes}, "
        f"stalls {report.stalls}, events {report.events}"
    )
    share = report.cross_node_trades / report.trades if report.trades else 0.0
    echo(f"executions {report.trades} ({share:.0%} against another node)")
    per_order = report.order_messages / report.orders if report.orders else 0.0
    echo(f"order-path messages per order: {per_order:.2f}")
    echo("messages: " + ", ".join(f"{k} {v}" for k, v in sorted(report.messages.items())))
    if report.frames_refused:
        refused = ", ".join(f"{k} {v}" for k, v in sorted(report.frames_refused.items()))
        echo(f"frames refused at the link: {refused}")
    echo("lock outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(report.lock_outcomes.items())))
    latency = figures["execution_latency_virtual_ms"]
    if latency is not None:
        echo(
            "execution latency (virtual ms from order entry, resting time included): "
            f"p50 {latency['p50']:.0f}, p90 {latency['p90']:.0f}, p99 {latency['p99']:.0f}, "
            f"max {latency['max']}"
        )
    echo("every invariant held; the healed network ended every lock and matched every trade")


def _adversary(
    seed: int, nodes: int, orders: int, clean: bool, strategy: str, count: int, as_json: bool
) -> None:
    if not 1 <= count < nodes:
        raise click.BadParameter(
            "need at least one adversary and one honest node", param_hint="--adversaries"
        )
    ids = default_adversaries(nodes, count)
    replay = replay_command(seed, nodes, orders, clean, False, strategy, count)
    if not as_json:
        click.echo(f"{strategy}: {_what_it_does(strategy)}")
        click.echo(
            f"seed {seed}: {nodes} nodes, {orders} orders, run with {', '.join(ids)} playing "
            f"{strategy}, then with {'them' if count > 1 else 'it'} honest"
        )
    try:
        comparison = compare(
            seed, nodes, orders, strategy, ids, faults=Faults.none() if clean else None
        )
    except InvariantError as error:
        _broken(error, replay, as_json)
    assert comparison.on.report is not None
    faults = comparison.on.report.faults
    if as_json:
        answer = {"ok": True, "description": _what_it_does(strategy)}
        answer |= {"faults": dataclasses.asdict(faults), **summary_json([comparison])}
        click.echo(json.dumps(answer))
        return
    click.echo(f"faults: {faults}")
    for line in summary([comparison]):
        click.echo(line)
    click.echo("every invariant held in both runs; each healed network ended every lock")


def _what_it_does(strategy: str) -> str:
    """The first line of the strategy's own description."""
    doc = STRATEGIES[strategy].__doc__ or ""
    return doc.strip().split("\n\n")[0].replace("\n", " ")


def _one(args: tuple[int, int, int, bool, bool]) -> tuple[int, str | None]:
    seed, nodes, orders, clean, broadcast = args
    try:
        run_simulation(
            seed, nodes, orders, faults=Faults.none() if clean else None, targeted=not broadcast
        )
    except InvariantError as error:
        return seed, str(error)
    return seed, None


def _sweep(
    first: int,
    count: int,
    nodes: int,
    orders: int,
    clean: bool,
    broadcast: bool,
    jobs: int,
    as_json: bool,
) -> None:
    work = [(s, nodes, orders, clean, broadcast) for s in range(first, first + count)]
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = pool.map(_one, work, chunksize=8)
        bar = click.progressbar(results, length=count, label=f"{count} seeds")
        with contextlib.nullcontext(results) if as_json else bar as shown:
            failures = [(seed, error) for seed, error in shown if error is not None]
    replays = [replay_command(seed, nodes, orders, clean, broadcast) for seed, _ in failures]
    if as_json:
        failed = [
            {"seed": seed, "error": error, "replay": replay}
            for (seed, error), replay in zip(failures, replays, strict=True)
        ]
        answer = {"ok": not failures, "seeds": count, "kept": count - len(failures)}
        click.echo(json.dumps({**answer, "failures": failed}))
    else:
        click.echo(f"{count - len(failures)} of {count} seeds kept every invariant")
        for (_, error), replay in zip(failures, replays, strict=True):
            click.echo(f"FAILED {error}\n  replay with: {replay}")
    if failures:
        sys.exit(1)
