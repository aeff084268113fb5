"""``datn node``: set up a node's folder and look at it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from datn.runtime.config import (
    CONFIG_FILE,
    ConfigError,
    check_peers,
    init_folder,
    load_config,
    read_key,
    without_password,
)


@click.group()
def node() -> None:
    """Set up and inspect a node."""


@node.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable result.")
def init(folder: Path, as_json: bool) -> None:
    """Write a new node's config (FOLDER/datn.toml) and key (FOLDER/node.key).

    The config shows every setting with its default and what it does; the
    key file is readable by its owner only, and the node id derives from it.
    """
    try:
        config, identity = init_folder(folder)
    except ConfigError as error:
        click.echo(f"datn node init: {error}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps({"node_id": identity.node_id, "config": str(config)}))
        return
    click.echo(f"node id   {identity.node_id}")
    click.echo(f"config    {config}")
    click.echo(f"key       {folder / 'node.key'} (keep it secret; the node id derives from it)")


@node.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable result.")
def check(folder: Path, as_json: bool) -> None:
    """Check FOLDER's config, its key and its storage, and print what the
    node would start as.

    The storage is looked at without writing to it or taking its lock, so
    the check also runs beside a running node: an SQLite file must be a
    node's store (or its folder writable, for a new one), a PostgreSQL
    database must answer, accept the credentials and hold a node's store
    or let the role create one. Exits 2 on any problem, naming it.
    """
    from datn.store import StoreError  # noqa: PLC0415 - the store's drivers load on use
    from datn.store.probe import probe_store  # noqa: PLC0415

    try:
        settings = load_config(folder / CONFIG_FILE)
        identity = read_key(settings.key_file)
        check_peers(settings, identity)
    except ConfigError as error:
        click.echo(f"datn node check: {error}", err=True)
        sys.exit(2)
    try:
        found = probe_store(settings.storage)
    except StoreError as error:
        click.echo(f"datn node check: node.storage: {error}", err=True)
        sys.exit(2)
    summary = {
        "node_id": identity.node_id,
        "storage": without_password(settings.storage),
        "store": found,
        "api": str(settings.api),
        "admin_api": str(settings.admin),
        "products": [p.spec.symbol for p in settings.products],
    }
    if as_json:
        click.echo(json.dumps(summary))
        return
    for key, value in summary.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        click.echo(f"{key:<10}{shown}")


@node.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option(
    "--replay-other-logic",
    is_flag=True,
    help="Replay journal entries written under core logic this version does not "
    "replay as it ran (a newer version's, left by a crash); see the README's "
    "upgrade section.",
)
def run(folder: Path, replay_other_logic: bool) -> None:
    """Run the node in FOLDER: its runtime, the traders' API and the operator's.

    Logs are JSON lines on standard error. Stops cleanly on Ctrl-C or SIGTERM,
    leaving a snapshot of its final state; exits with status 1 if the node
    stopped on a failure, 2 on a bad config or a store it refuses to start on.
    """
    from datn.api.serve import configure_logging, run_folder  # noqa: PLC0415
    from datn.store import StoreError  # noqa: PLC0415

    configure_logging()
    try:
        status = run_folder(folder, replay_other_logic=replay_other_logic)
    except ConfigError as error:
        click.echo(f"datn node run: {error}", err=True)
        sys.exit(2)
    except StoreError as error:
        click.echo(f"datn node run: the store refused to start: {error}", err=True)
        sys.exit(2)
    sys.exit(status)


@node.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable result.")
@click.pass_context
def status(ctx: click.Context, folder: Path, as_json: bool) -> None:
    """The running node's status (the same as `datn admin --node FOLDER status`)."""
    from datn.cli.clients import admin  # noqa: PLC0415

    args = ["--node", str(folder), "status"] + (["--json"] if as_json else [])
    admin.main(args=args, prog_name="datn admin", standalone_mode=True)
