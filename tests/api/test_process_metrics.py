"""The node process's own use of the machine, as ``/metrics`` shows it."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from datn.api.metrics import Moved, _label, samples
from datn.api.process import process_use

linux = pytest.mark.skipif(sys.platform != "linux", reason="per-thread figures come from /proc")


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


@linux
def test_a_busy_thread_shows_its_own_cpu_under_its_name() -> None:
    started = threading.Event()
    finish = threading.Event()

    def busy() -> None:
        _spin(0.2)
        started.set()
        finish.wait()

    worker = threading.Thread(target=busy, name="datn-test-busy")
    worker.start()
    try:
        started.wait(10)
        use = process_use()
    finally:
        finish.set()
        worker.join()
    # The thread's own CPU is counted under its name, not the caller's.
    threads = use.threads_cpu_seconds
    busy = threads["datn-test-busy", "user"] + threads["datn-test-busy", "system"]
    assert busy >= 0.15 and use.thread_seconds("datn-test-busy") == busy
    assert use.thread_seconds("no such thread") is None
    assert threads["MainThread", "user"] >= 0.0 and threads["MainThread", "system"] >= 0.0
    assert use.cpu_seconds >= busy
    assert use.resident_bytes is not None and use.resident_bytes > 1_000_000
    assert use.open_fds is not None and use.open_fds >= 3


def test_the_process_cpu_counts_up() -> None:
    before = process_use().cpu_seconds
    _spin(0.05)
    assert process_use().cpu_seconds >= before + 0.04


def test_thread_names_are_escaped_as_label_values() -> None:
    assert _label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_samples_are_read_back_by_name_and_labels() -> None:
    text = (
        '# HELP x_total X.\n# TYPE x_total counter\nx_total 3\ny_bucket{le="0.5"} 2\ny_sum 0.25\n'
    )
    assert samples(text) == {"x_total": 3.0, 'y_bucket{le="0.5"}': 2.0, "y_sum": 0.25}


def test_moved_reads_how_far_each_sample_went() -> None:
    thread = 'datn_thread_cpu_seconds_total{thread="MainThread",mode="%s"}'
    before = {"x_total": 3.0, thread % "user": 1.0, thread % "system": 0.5}
    after = {"x_total": 5.0, "new_total": 2.0, thread % "user": 1.5, thread % "system": 0.75}
    moved = Moved(before, after)
    assert (moved("x_total"), moved("new_total"), moved("gone_total")) == (2.0, 2.0, 0.0)
    assert moved.thread_cpu("MainThread") == 0.75
    assert moved.thread_cpu("MainThread", "system") == 0.25
