"""A node that will not start for a bad config or operator token says why,
exits 2, and leaves nothing behind that a corrected config would find."""

from __future__ import annotations

import contextlib
import re
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from msgspec import msgpack

from datn.api.serve import ADMIN_TOKEN_FILE, admin_token
from datn.launch import NodeProcess, configure
from datn.protocol.effects import CORE_LOGIC_VERSION
from datn.runtime.config import ConfigError
from datn.store.base import checksum

PEER = "b" * 64


def start(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "datn", "node", "run", str(folder)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def add_peers(folder: Path, *peers: str) -> None:
    config = folder / "datn.toml"
    entries = "".join(
        f'\n[[peers]]\nnode_id = "{peer}"\naddress = "ws://127.0.0.1:9"\n' for peer in peers
    )
    head, marker, tail = config.read_text().partition("\n[core]")
    config.write_text(head + entries + marker + tail)


def test_a_config_listing_the_nodes_own_id_adds_no_peer(tmp_path: Path) -> None:
    own = configure(tmp_path)
    original = (tmp_path / "datn.toml").read_text()
    add_peers(tmp_path, PEER, own)
    refused = start(tmp_path)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert f"peers[1].node_id: {own} is this node's own id" in refused.stderr
    # Refused before the store is opened: nothing was written.
    assert not list(tmp_path.glob("*.sqlite3*"))
    # Corrected (the peers taken out), the node has no peer from the refused start.
    (tmp_path / "datn.toml").write_text(original)
    node = NodeProcess("a", tmp_path)
    node.launch()
    try:
        node.wait_ready()
        assert node.admin is not None
        assert node.admin.peers().json() == []
    finally:
        node.stop()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "at least 16 printable characters"),
        (b"\n", "at least 16 printable characters"),
        (b"short\n", "at least 16 printable characters"),
        (b"two tokens here, both long enough\n", "no spaces"),
        ("t\u00f6ken-\u00e9-long-enough-now".encode(), "cannot be read as ASCII text"),
    ],
)
def test_an_unusable_operator_token_is_refused(tmp_path: Path, content: bytes, says: str) -> None:
    (tmp_path / ADMIN_TOKEN_FILE).write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        admin_token(tmp_path)
    assert caught.value.key == ADMIN_TOKEN_FILE and says in caught.value.problem


def test_a_node_with_an_empty_token_does_not_start_or_open_its_store(tmp_path: Path) -> None:
    # An empty token would let "Authorization: Bearer " in as the operator.
    configure(tmp_path)
    (tmp_path / ADMIN_TOKEN_FILE).write_text("")
    refused = start(tmp_path)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert ADMIN_TOKEN_FILE in refused.stderr and "delete the file" in refused.stderr
    assert not (tmp_path / "node.sqlite3").exists()


def test_a_missing_token_is_made_and_then_kept(tmp_path: Path) -> None:
    made = admin_token(tmp_path)
    assert len(made) >= 40 and (tmp_path / ADMIN_TOKEN_FILE).stat().st_mode & 0o777 == 0o600
    assert admin_token(tmp_path) == made


@pytest.mark.parametrize(
    ("key", "section", "setting"),
    [
        ("api.listen", "[api]", "listen"),
        ("api.admin_listen", "[api]", "admin_listen"),
        ("net.listen", "[net]", "listen"),
    ],
)
def test_an_address_in_use_stops_the_start_saying_which(
    tmp_path: Path, key: str, section: str, setting: str
) -> None:
    configure(tmp_path)
    config = tmp_path / "datn.toml"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        head, marker, tail = config.read_text().partition(f"\n{section}\n")
        old = f'\n{setting} = "127.0.0.1:0"'
        assert old in tail
        config.write_text(head + marker + tail.replace(old, old.replace(":0", f":{port}"), 1))
        refused = start(tmp_path)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert f"{key}: cannot listen on 127.0.0.1:{port}" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "node.sqlite3").exists()


def test_an_api_that_cannot_listen_where_the_links_do_stops_the_node_with_status_1(
    tmp_path: Path,
) -> None:
    # The traders' API on every address at the port the links take on
    # loopback: both bind, and only the first to listen keeps it (the API
    # never listens, so nothing is served beyond loopback).
    configure(tmp_path)
    config = tmp_path / "datn.toml"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    head, marker, tail = config.read_text().partition("\n[net]\n")
    tail = tail.replace('\nlisten = "127.0.0.1:0"', f'\nlisten = "127.0.0.1:{port}"', 1)
    head = head.replace('\nlisten = "127.0.0.1:0"', f'\nlisten = "0.0.0.0:{port}"', 1)
    config.write_text(head + marker + tail)
    stopped = start(tmp_path)
    assert stopped.returncode == 1, stopped.stderr[-2000:]
    assert "an API could not start" in stopped.stderr and " ready: " not in stopped.stderr
    assert "Traceback" not in stopped.stderr


def test_a_journal_of_newer_core_logic_stops_the_start_until_the_operator_allows_it(
    tmp_path: Path,
) -> None:
    """A node killed while a newer version ran it (its core logic version
    beyond this code's), started on this one: it refuses to replay the
    journal, says how to go on, and starts when the operator allows the
    replay; stopped cleanly then, it starts again with no flag."""
    configure(tmp_path)
    node = NodeProcess("a", tmp_path)
    node.launch()
    try:
        node.wait_ready()
    finally:
        node.kill()
    with contextlib.closing(sqlite3.connect(tmp_path / "node.sqlite3")) as database:
        (entry,) = database.execute("SELECT entry FROM journal WHERE position = 1").fetchone()
        version, body = msgpack.decode(entry)
        newer = msgpack.encode([version, [*body[:-1], CORE_LOGIC_VERSION + 1]])
        with database:
            database.execute(
                "UPDATE journal SET entry = ?, checksum = ? WHERE position = 1",
                (newer, checksum(1, newer)),
            )
    refused = start(tmp_path)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "logic_version" in refused.stderr and "--replay-other-logic" in refused.stderr
    try:
        node.launch("--replay-other-logic")
        node.wait_ready()
        assert node.stop() == 0
        # The clean stop left a snapshot at the journal's end.
        with contextlib.closing(sqlite3.connect(tmp_path / "node.sqlite3")) as database:
            ends = database.execute(
                "SELECT (SELECT max(position) FROM journal), (SELECT max(position) FROM snapshots)"
            ).fetchone()
        assert ends[0] == ends[1], ends
        node.launch()
        node.wait_ready()
    finally:
        assert node.stop() == 0, node.tail()


def test_a_config_edited_after_the_first_start_is_said_to_differ(tmp_path: Path) -> None:
    configure(tmp_path)
    node = NodeProcess("a", tmp_path)
    node.launch()
    node.wait_ready()
    node.stop()
    # A product renamed and a core setting changed: the node keeps what it
    # was created with, and says the config differs, naming each change.
    config = tmp_path / "datn.toml"
    text = config.read_text()
    assert 'symbol = "XYZ"' in text and "# lock_ttl_ms = " in text
    text = text.replace('symbol = "XYZ"', 'symbol = "ABC"', 1)
    config.write_text(re.sub(r"(?m)^# lock_ttl_ms = .*$", "lock_ttl_ms = 300", text, count=1))
    node.launch()
    node.wait_ready()
    node.stop()
    said = [line for line in node.log_path.read_text().splitlines() if "differs from what" in line]
    assert len(said) == 1, said
    for change in (
        "product ABC is not one of the node's",
        "the node's product XYZ is not in the config",
        "core.lock_ttl_ms differs",
    ):
        assert change in said[0], said[0]
    # The products' listing in the core settings is the products' change, said once.
    assert "core.risk" not in said[0], said[0]
