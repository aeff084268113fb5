"""``datn demo``, the README's first command: a live network of node
processes that trades across nodes, checks conservation through the API at
the end, and leaves no process running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def processes_in(folder: Path) -> list[str]:
    """Command lines of running processes that name ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(folder) in command and str(os.getpid()) != entry.name:
            found.append(command)
    return found


def test_the_demo_trades_across_nodes_conserves_and_stops_every_process(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "datn", "demo", "--duration", "4", "--dir", str(folder), "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["nodes"] == 3
    assert summary["conservation"] == "exact" and summary["problems"] == []
    assert summary["trades"] > 0 and summary["cross_node_trades"] > 0
    # Both ends of every pair settled the same statements.
    settled = summary["statements_settled"]
    for pair, count in settled.items():
        a, b = pair.split("-")
        assert settled[f"{b}-{a}"] == count
    assert processes_in(folder) == []
    assert sorted(p.name for p in folder.iterdir()) == ["A", "B", "C"]


def test_a_node_that_dies_ends_the_demo_naming_it_and_every_process_stops(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "demo"
    demo = subprocess.Popen(
        [sys.executable, "-m", "datn", "demo", "--duration", "60", "--dir", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Once the bots trade (the first progress line), node B is killed.
        assert demo.stdout is not None
        for line in demo.stdout:
            if line.strip().startswith("0 s:") or " orders, " in line:
                break
        time.sleep(1)
        node_b = [
            int(entry.name)
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit()
            and str(folder / "B") in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        ]
        assert len(node_b) == 1, node_b
        os.kill(node_b[0], signal.SIGKILL)
        _, errors = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 1
    assert "datn demo: node B stopped" in errors, errors[-2000:]
    assert "every process it started is stopped" in errors
    assert processes_in(folder) == []
