"""Entry point of the ``datn`` command."""

from __future__ import annotations

import sys

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


@main.command()
@click.option("--seed", default=1, show_default=True, help="Seed of the traders' order flow.")
@click.option("--orders", default=600, show_default=True, help="Order and cancel requests to send.")
@click.option("--traders", default=12, show_default=True, help="Number of funded traders.")
@click.option("--quiet", is_flag=True, help="Print only the summary, not every trade.")
def demo(seed: int, orders: int, traders: int, quiet: bool) -> None:
    """Run a seeded trading session on one node and show it.

    Traders are funded, then send limit, IOC, FOK and market orders and cancels;
    the book matches them, the risk policies check them and the ledger books
    every trade. Invariants are checked after every step.
    """
    emit = (lambda _line: None) if quiet else click.echo
    click.echo(f"datn demo: one node, {traders} traders, {orders} requests, seed {seed}\n")
    try:
        report, venue, products = run_session(seed, orders, traders, emit)
    except InvariantError as error:
        click.echo(f"INVARIANT BROKEN: {error}", err=True)
        click.echo(f"replay with: datn demo --seed {seed} --orders {orders} --traders {traders}")
        sys.exit(1)
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
        volume = sum(t.quantity_lots for t in report.trades if t.product_id == product_id)
        click.echo(f"\n{spec.symbol} ({spec.kind.value}): {volume} lots traded, book:")
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
