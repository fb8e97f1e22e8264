"""The re-probe part's rules (core/recheck.py), case by case: how long re-probes may take,
and when a shard on a shared ICMP limiter may send a group. The Sim tests in
test_scheduler.py drive the same rules through a whole scan."""

from __future__ import annotations

import pytest

from nornir_portscan.engine.core.recheck import (
    RECHECK_SLOT,
    RECHECK_WINDOW,
    recheck_budget,
    slot_wait,
)
from nornir_portscan.engine.core.work import JobOptions


def test_the_recheck_budget() -> None:
    """The re-probes' time at most (``recheck_budget``), case by case: what was asked, else
    10 % of the scan so far, at least 2 s, and for a shard on a shared limiter at least
    one cycle of its slots (count x RECHECK_SLOT) and a window."""
    cycle4 = 4 * RECHECK_SLOT + RECHECK_WINDOW  # 5.45 s
    cases = [  # recheck, limiter_slot, elapsed -> seconds
        (3.0, (0, 1), 500.0, 3.0),
        (0.0, (0, 1), 500.0, 0.0),
        (0.0, (2, 4), 500.0, 0.0),  # asked for none: a shard's slots do not add any
        (None, (0, 1), 0.0, 2.0),
        (None, (0, 1), 10.0, 2.0),
        (None, (0, 1), 20.0, 2.0),
        (None, (0, 1), 100.0, 10.0),
        (None, (0, 1), 600.0, 60.0),
        (None, (3, 4), 10.0, cycle4),
        (None, (3, 4), 100.0, 10.0),
        (None, (0, 2), 0.0, 2 * RECHECK_SLOT + RECHECK_WINDOW),
    ]
    for recheck, slot, elapsed, want in cases:
        options = JobOptions(recheck=recheck, limiter_slot=slot)
        assert recheck_budget(options, elapsed) == pytest.approx(want), (recheck, slot, elapsed)


def test_when_a_shard_may_send_a_group() -> None:
    """``slot_wait``, case by case: 0 inside the shard's own window at the start of its
    slot, else the time to the next start of it (slots RECHECK_SLOT = 1.3 s apart, each
    open for RECHECK_WINDOW = 0.25 s, one cycle = count slots)."""
    assert (RECHECK_SLOT, RECHECK_WINDOW) == pytest.approx((1.3, 0.25))
    cases = [  # limiter_slot, now -> seconds to wait
        ((0, 1), 0.0, 0.0),  # a scan alone: no slots
        ((0, 1), 0.7, 0.0),
        ((0, 1), 12345.678, 0.0),
        ((0, 2), 0.0, 0.0),  # shard 0 of 2: [0, 0.25) of every 2.6 s
        ((0, 2), 0.2, 0.0),
        ((0, 2), 0.25, 2.35),  # its window just closed: the next cycle
        ((0, 2), 1.3, 1.3),
        ((0, 2), 2.6, 0.0),  # the next cycle's start
        ((0, 2), 2.5, 0.1),
        ((1, 2), 0.0, 1.3),  # shard 1 of 2: [1.3, 1.55)
        ((1, 2), 1.0, 0.3),
        ((1, 2), 1.3, 0.0),
        ((1, 2), 1.54, 0.0),
        ((1, 2), 1.55, 2.35),
        ((1, 2), 1000.0 * 2.6 + 1.4, 0.0),  # far into the scan: the same cycle
        ((1, 2), 1000.0 * 2.6 + 2.0, 1.9),
        ((2, 3), 0.0, 2.6),  # shard 2 of 3: [2.6, 2.85) of every 3.9 s
        ((2, 3), 2.7, 0.0),
        ((2, 3), 2.9, 3.6),
        ((2, 3), 3.89, 2.61),
    ]
    for slot, now, want in cases:
        assert slot_wait(slot, now) == pytest.approx(want, abs=1e-9), (slot, now)
