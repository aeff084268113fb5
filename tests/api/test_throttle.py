"""Lines a caller can cause again and again reach the log at most once an
interval per kind, and the next line says how many were left out."""

from __future__ import annotations

import logging
import time

import pytest

from datn.api.throttle import Throttled


def test_a_kind_is_logged_once_an_interval_and_says_what_was_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    throttled = Throttled(logging.getLogger("datn.test"), interval_s=0.2)
    with caplog.at_level(logging.INFO, logger="datn.test"):
        for n in range(5):
            throttled.log("full", logging.ERROR, "store error %d", n)
        throttled.log("other", logging.WARNING, "another kind")
        time.sleep(0.25)
        throttled.log("full", logging.ERROR, "store error %d", 5)
    assert [r.getMessage() for r in caplog.records] == [
        "store error 0",
        "another kind",
        "store error 5 (and 4 more like it since the last line)",
    ]
