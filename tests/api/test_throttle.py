"""Lines a caller can cause again and again reach the log at most once an
interval per kind, and the next line says how many were left out."""

from __future__ import annotations

import logging
import time

import pytest

from datn.runtime.throttle import Throttled, ThrottlingFilter, say_left_out


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


def test_a_message_without_arguments_may_hold_a_percent_sign(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("datn.test.filter")
    logger.addFilter(ThrottlingFilter(interval_s=0.2))
    throttled = Throttled(logging.getLogger("datn.test"), interval_s=0.2)
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            logger.warning("disk 100% full")
            throttled.log("full", logging.ERROR, "store 100% full")
        time.sleep(0.25)
        logger.warning("disk 100% full")
        throttled.log("full", logging.ERROR, "store 100% full")
    assert [r.getMessage() for r in caplog.records] == [
        "disk 100% full",
        "store 100% full",
        "disk 100% full (and 2 more like it since the last line)",
        "store 100% full (and 2 more like it since the last line)",
    ]


def test_a_burst_that_ends_still_says_what_it_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No later line of its kind may come to count a burst: once its
    interval has passed, the last line left out goes, with the count of the
    others; then nothing more, and the next line is counted afresh."""
    logger = logging.getLogger("datn.test.burst")
    logger.addFilter(ThrottlingFilter(interval_s=0.2))
    throttled = Throttled(logging.getLogger("datn.test"), interval_s=0.2)
    with caplog.at_level(logging.INFO):
        for n in range(5):
            throttled.log("refused", logging.WARNING, "frame %d refused", n)
            logger.warning("bad request %d", n)
        throttled.log("alone", logging.WARNING, "one line only")
        say_left_out()  # too soon: the interval has not passed
        time.sleep(0.25)
        say_left_out()
        say_left_out()  # nothing left to say
        time.sleep(0.25)
        throttled.log("refused", logging.WARNING, "frame %d refused", 5)
        logger.warning("bad request %d", 5)
    # (Other tests' throttles in this process may say what they left out too.)
    mine = [r for r in caplog.records if r.name in ("datn.test", "datn.test.burst")]
    assert [r.getMessage() for r in mine] == [
        "frame 0 refused",
        "bad request 0",
        "one line only",
        "frame 4 refused (and 3 more like it since the last line)",
        "bad request 4 (and 3 more like it since the last line)",
        "frame 5 refused",
        "bad request 5",
    ]


def test_a_burst_of_two_says_its_last_line_alone(caplog: pytest.LogCaptureFixture) -> None:
    throttled = Throttled(logging.getLogger("datn.test"), interval_s=0.2)
    with caplog.at_level(logging.INFO):
        throttled.log("kind", logging.ERROR, "store 100% full")
        throttled.log("kind", logging.ERROR, "store 100% full")
        time.sleep(0.25)
        say_left_out()
    mine = [r for r in caplog.records if r.name == "datn.test"]
    assert [r.getMessage() for r in mine] == ["store 100% full"] * 2
