"""Entry point of the ``datn`` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from datn.cli.clients import admin, trader
from datn.cli.evidence import evidence
from datn.cli.node import node
from datn.cli.sim import sim
from datn.domain import USD, Side
from datn.sim.session import InvariantError, run_session


@click.group()
@click.version_option(package_name="datn")
def main() -> None:
    """datn: the Distributed Asset Trading Network."""


UNATTENDED_DEMO_S = 20.0
"""How long ``datn demo`` trades when no terminal watches it (CI, a pipe)."""


@main.command()
@click.option("--nodes", default=3, show_default=True, help="Node processes to start (2 to 26).")
@click.option(
    "--duration",
    type=float,
    default=None,
    help="Seconds to trade (default: until Ctrl-C on a terminal, 20 otherwise).",
)
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the nodes' folders here (default: a temporary folder, removed after).",
)
@click.option("--seed", default=1, show_default=True, help="Seed of the bots' order flow.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
def demo(nodes: int, duration: float | None, folder: Path | None, seed: int, as_json: bool) -> None:
    """Run a live network of node processes on this machine and show it.

    Starts NODES node processes on 127.0.0.1, links and bonds them, and has
    a market maker and a taker at each node trade two products through the
    public API. Shows trades (and the two nodes of each cross-node trade),
    the network book and every link until Ctrl-C or --duration; then checks
    conservation across every ledger and stops every process it started.
    """
    from datn.demo import DemoSettings, is_terminal, print_summary, run_demo  # noqa: PLC0415
    from datn.launch import LaunchError  # noqa: PLC0415

    live = not as_json and is_terminal(sys.stdout)
    if duration is None and not live:
        duration = UNATTENDED_DEMO_S
    settings = DemoSettings(nodes=nodes, duration_s=duration, folder=folder, seed=seed)
    out = sys.stderr if as_json else sys.stdout
    try:
        summary = run_demo(settings, out, live=live)
    except LaunchError as error:
        click.echo(f"datn demo: {error}", err=True)
        click.echo(
            "datn demo: ended without a summary; every process it started is stopped", err=True
        )
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(summary))
    else:
        print_summary(summary, sys.stdout)
    if summary["problems"]:
        sys.exit(1)


@main.command()
@click.option("--seed", default=1, show_default=True, help="Seed of the traders' order flow.")
@click.option("--orders", default=600, show_default=True, help="Order and cancel requests to send.")
@click.option("--traders", default=12, show_default=True, help="Number of funded traders.")
@click.option("--quiet", is_flag=True, help="Print only the summary, not every trade.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary (no trades).")
def session(seed: int, orders: int, traders: int, quiet: bool, as_json: bool) -> None:
    """Run a seeded trading session on one node, in this process, and show it.

    Traders are funded, then send limit, IOC, FOK and market orders and cancels;
    the book matches them, the risk policies check them and the ledger books
    every trade. Invariants are checked after every step. With --json, one
    JSON object: "ok", the counts, and per product the lots traded and the
    top of the book in ticks and lots.
    """
    emit = (lambda _line: None) if quiet or as_json else click.echo
    replay = f"datn session --seed {seed} --orders {orders} --traders {traders}"
    if not as_json:
        click.echo(f"datn session: one node, {traders} traders, {orders} requests, seed {seed}\n")
    try:
        report, venue, products = run_session(seed, orders, traders, emit)
    except InvariantError as error:
        if as_json:
            click.echo(json.dumps({"ok": False, "error": str(error), "replay": replay}))
        else:
            click.echo(f"INVARIANT BROKEN: {error}", err=True)
            click.echo(f"replay with: {replay}")
        sys.exit(1)
    traded = {
        product_id: sum(t.quantity_lots for t in report.trades if t.product_id == product_id)
        for product_id in products
    }
    if as_json:
        books = {}
        for product_id, spec in products.items():
            book = venue.books[product_id]
            books[spec.symbol] = {
                "kind": spec.kind.value,
                "lots_traded": traded[product_id],
                **{
                    name: [
                        {
                            "price_ticks": level.price_ticks,
                            "quantity_lots": level.quantity_lots,
                            "orders": level.order_count,
                        }
                        for level in book.depth(side, 3)
                    ]
                    for name, side in (("asks", Side.SELL), ("bids", Side.BUY))
                },
            }
        answer = {
            "ok": True,
            "seed": seed,
            "traders": traders,
            "orders": report.orders,
            "accepted": report.accepted,
            "cancels": report.cancels,
            "trades": len(report.trades),
            "rejected": dict(report.rejected.most_common()),
            "products": books,
        }
        click.echo(json.dumps(answer))
        return
    click.echo("")
    click.echo(
        f"{report.orders} orders ({report.accepted} accepted), {report.cancels} cancels, "
        f"{len(report.trades)} trades"
    )
    if report.rejected:
        reasons = ", ".join(f"{code} {count}" for code, count in report.rejected.most_common())
        click.echo(f"rejected: {reasons}")
    for product_id, spec in products.items():
        book = venue.books[product_id]
        click.echo(f"\n{spec.symbol} ({spec.kind.value}): {traded[product_id]} lots traded, book:")
        for side in (Side.SELL, Side.BUY):
            levels = book.depth(side, 3)
            if side is Side.SELL:
                levels = list(reversed(levels))
            for level in levels:
                price = USD.format_minor(level.price_ticks * spec.tick_size_minor)
                click.echo(
                    f"  {side.value:>4} {level.quantity_lots:>5} @ {price:>12}"
                    f"  ({level.order_count} orders)"
                )
    click.echo("\ninvariants held after every step; per asset, ledgers hold what was deposited")


main.add_command(sim)
main.add_command(evidence)
main.add_command(node)
main.add_command(admin)
main.add_command(trader)
