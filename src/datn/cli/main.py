"""Entry point of the ``datn`` command."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="datn")
def main() -> None:
    """datn: the Distributed Asset Trading Network."""
