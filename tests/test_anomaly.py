"""Plain decisions of issue 25, no sockets: how long a new connection is held to see a SYN
proxy's reset (engine/core/hold.py), a host's anomaly (engine/core/anomaly.py), and the
streaming writers' gate that puts it on every row of the host (report/anomaly.py)."""

from __future__ import annotations

import errno
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nornir_portscan.engine.core.anomaly import (
    ALL_OPEN,
    ALL_OPEN_MIN_PORTS,
    SYN_PROXY,
    SYN_PROXY_MIN_RESETS,
    describe,
    judge,
    judge_ports,
)
from nornir_portscan.engine.core.hold import (
    MAX_HOLD,
    MIN_HOLD,
    RESET_AFTER_SYN_ACK,
    hold_deadline,
    hold_time,
    reset_seen,
)
from nornir_portscan.engine.core.outcome import PortRun, PortState, ProbeOutcome
from nornir_portscan.engine.core.timing import RttEstimator
from nornir_portscan.report.anomaly import AnomalyGate
from nornir_portscan.report.jsonl import JsonlWriter

# ---- hold.py -------------------------------------------------------------------------------


def estimator(*samples: float) -> RttEstimator:
    est = RttEstimator()
    for s in samples:
        est.observe(s)
    return est


def test_hold_is_counted_in_round_trips_of_the_estimate() -> None:
    lan, wan = estimator(*[0.0001] * 20), estimator(*[0.040] * 20)
    assert hold_time(lan, 0.0001) == MIN_HOLD  # loopback: the floor, not a WAN's wait
    # a steady 40 ms path: two round trips (variance has decayed to almost nothing)
    assert hold_time(wan, 0.040) == pytest.approx(0.080, abs=0.002)
    assert hold_time(wan, 0.040) > 10 * hold_time(lan, 0.0001)


def test_hold_follows_a_host_further_away_than_the_average() -> None:
    near = estimator(*[0.002] * 20)
    assert hold_time(near, 0.100) >= 0.200  # this handshake's own RTT sets the wait


def test_hold_grows_with_jitter() -> None:
    steady = estimator(*[0.020] * 20)
    jittery = estimator(*[0.010, 0.030] * 10)
    assert hold_time(jittery, 0.020) > hold_time(steady, 0.020) + 0.010


def test_hold_before_any_sample_and_its_ceiling() -> None:
    assert hold_time(RttEstimator(), None) == pytest.approx(2.0)  # 2 x the 1 s initial timeout
    assert hold_time(estimator(5.0), 5.0) == MAX_HOLD


@given(st.lists(st.floats(0.00001, 20.0), max_size=30), st.none() | st.floats(0.0, 20.0))
def test_hold_is_always_within_its_bounds(samples: list[float], sample: float | None) -> None:
    assert MIN_HOLD <= hold_time(estimator(*samples), sample) <= MAX_HOLD


def test_hold_deadline_runs_from_the_handshake_and_covers_a_banner_wait() -> None:
    est = estimator(*[0.010] * 20)
    assert hold_deadline(est, 100.0, 0.010) == pytest.approx(100.010 + hold_time(est, 0.010))
    assert hold_deadline(est, 100.0, 0.010, banner_wait=1.0) == pytest.approx(101.010)


def test_hold_deadline_moves_when_the_estimate_grows() -> None:
    est = estimator(*[0.010] * 20)
    before = hold_deadline(est, 0.0, 0.010)
    for _ in range(20):
        est.observe(0.100)  # a queue filled on the path
    assert hold_deadline(est, 0.0, 0.010) > before + 0.1


def test_only_a_reset_ends_the_hold_as_closed() -> None:
    assert reset_seen(errno.ECONNRESET)
    assert not reset_seen(0)  # data or FIN: a service is there
    assert not reset_seen(errno.EPIPE)  # reset after the service's own FIN: it was there


# ---- anomaly.py ----------------------------------------------------------------------------


def test_all_open_needs_enough_ports_and_every_one_open() -> None:
    n = ALL_OPEN_MIN_PORTS
    assert judge(n, n, 0) == ALL_OPEN
    assert judge(2000, 2000, 0) == ALL_OPEN
    assert judge(n - 1, n - 1, 0) is None  # a host serving its few ports
    assert judge(2000, 1999, 0) is None  # one port refused: the host's own stack answers


def test_syn_proxy_needs_resets_on_most_ports_and_no_other_answer() -> None:
    assert judge(2000, 3, 1997) == SYN_PROXY
    assert judge(100, 0, 100) == SYN_PROXY
    m = SYN_PROXY_MIN_RESETS
    assert judge(m, 0, m) == SYN_PROXY
    assert judge(m - 1, 0, m - 1) is None  # too few to tell from a service's own resets
    assert judge(100, 60, 40) is None  # most handshakes stayed up
    assert judge(2000, 3, 1996) is None  # one port refused: not a proxy answering all SYNs


def test_ordinary_hosts_have_no_anomaly() -> None:
    assert judge(2000, 3, 0) is None
    assert judge(0, 0, 0) is None
    assert judge_ports([("open", "syn-ack"), ("closed", "conn-refused")]) is None


def test_judge_ports_counts_states_and_reasons() -> None:
    ports = [("open", "syn-ack")] * 3 + [("closed", RESET_AFTER_SYN_ACK)] * 97
    assert judge_ports(ports) == SYN_PROXY
    assert judge_ports([("open", "syn-ack")] * 100) == ALL_OPEN


def test_describe_is_the_line_the_issue_asks_for() -> None:
    assert describe(ALL_OPEN, 2000, 2000, 0) == "all-open: every one of 2000 probed ports accepts"
    assert describe(SYN_PROXY, 2000, 3, 1997).startswith(
        "syn-proxy: 1997 of 2000 probed ports reset right after the handshake")


# ---- the streaming writers' gate -----------------------------------------------------------

_OPEN, _CLOSED = PortState.OPEN, PortState.CLOSED


def row(host: str, port: int, state: PortState, reason: str) -> ProbeOutcome:
    return ProbeOutcome(host, port, state, reason, 1.0, 1)


def hosts_rows(n: int) -> list[ProbeOutcome]:
    """An all-open host, a SYN proxy with 2 open ports, an ordinary host: n ports each."""
    rows = []
    for port in range(1, n + 1):
        rows.append(row("10.0.0.1", port, _OPEN, "syn-ack"))
        rows.append(row("10.0.0.2", port, *((_OPEN, "syn-ack") if port in (22, 80)
                                             else (_CLOSED, RESET_AFTER_SYN_ACK))))
        rows.append(row("10.0.0.3", port, *((_OPEN, "syn-ack") if port == 22
                                             else (_CLOSED, "conn-refused"))))
    return rows


@pytest.mark.parametrize("known", [True, False])
@pytest.mark.parametrize("batch", [1, 7, 500])
def test_gate_flags_every_row_of_an_anomalous_host_once(known: bool, batch: int) -> None:
    n = 100
    rows = hosts_rows(n)
    gate = AnomalyGate(n if known else 0)
    plain: list[ProbeOutcome] = []
    flagged: dict[str, list[ProbeOutcome]] = {}
    for i in range(0, len(rows), batch):
        p, f = gate.feed(rows[i:i + batch])
        plain += p
        for anomaly, held in f:
            flagged.setdefault(anomaly, []).extend(held)
    p, f = gate.finish()
    plain += p
    for anomaly, held in f:
        flagged.setdefault(anomaly, []).extend(held)
    assert {o.host for o in flagged[ALL_OPEN]} == {"10.0.0.1"}
    assert {o.host for o in flagged[SYN_PROXY]} == {"10.0.0.2"}
    assert {o.host for o in plain} == {"10.0.0.3"}
    assert sorted(plain + flagged[ALL_OPEN] + flagged[SYN_PROXY]) == sorted(rows)


def test_gate_writes_an_anomalous_host_as_soon_as_it_is_complete() -> None:
    gate = AnomalyGate(ALL_OPEN_MIN_PORTS)
    rows = [row("10.0.0.1", p, _OPEN, "syn-ack") for p in range(1, ALL_OPEN_MIN_PORTS + 1)]
    p, f = gate.feed(rows[:-1])
    assert (list(p), f) == ([], [])  # held: could still be all-open
    p, f = gate.feed(rows[-1:])
    assert f == [(ALL_OPEN, rows)]


def test_gate_lets_a_ruled_out_host_stream_and_runs_pass() -> None:
    gate = AnomalyGate(100)
    first = [row("10.0.0.3", 22, _OPEN, "syn-ack")]
    assert list(gate.feed(first)[0]) == []  # held a moment
    refused = [row("10.0.0.3", 23, _CLOSED, "conn-refused")]
    assert list(gate.feed(refused)[0]) == first + refused  # ruled out: out at once
    assert list(gate.feed([row("10.0.0.3", 80, _OPEN, "syn-ack")])[0])  # streams from now
    run = PortRun("10.0.0.9", None, (1, 2), PortState.FILTERED, "no-response")
    assert gate.feed([], [run]) == ([], [])


def test_gate_is_off_when_too_few_ports_could_tell() -> None:
    gate = AnomalyGate(3)
    rows = [row("10.0.0.1", p, _OPEN, "syn-ack") for p in (22, 80, 443)]
    assert gate.feed(rows) == (rows, [])


def test_jsonl_rows_carry_the_anomaly_of_their_host_only() -> None:
    out = io.StringIO()
    writer = JsonlWriter(out, ports_per_host=100)
    writer.write(hosts_rows(100))
    writer.finish(None)  # type: ignore[arg-type]  # the writer does not read the summary
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 300
    by_host = {(r["host"], r.get("anomaly")) for r in lines}
    assert by_host == {("10.0.0.1", ALL_OPEN), ("10.0.0.2", SYN_PROXY), ("10.0.0.3", None)}


def test_gate_releases_held_rows_when_a_mixed_batch_rules_the_host_out() -> None:
    gate = AnomalyGate(100)
    held = [row("10.0.0.3", 22, _OPEN, "syn-ack")]
    gate.feed(held)
    mixed = [row("10.0.0.1", 1, _OPEN, "syn-ack"), row("10.0.0.3", 23, _CLOSED, "conn-refused")]
    plain, flagged = gate.feed(mixed)
    assert sorted(plain) == sorted([*held, mixed[1]]) and flagged == []
    assert gate.finish() == ([mixed[0]], [])  # one open port of 100: judged, ordinary


@pytest.mark.parametrize("ports_per_host", [0, 100])
def test_jsonl_writes_every_row_of_an_unfinished_scan(ports_per_host: int) -> None:
    """An interrupted scan (or one whose port count is unknown): hosts still candidates at
    the end are judged on what they had, and every row is written once."""
    out = io.StringIO()
    writer = JsonlWriter(out, ports_per_host=ports_per_host)
    rows = [row("10.0.0.5", p, _OPEN, "syn-ack") for p in (22, 80)]
    rows += [row("10.0.0.6", p, _OPEN, "syn-ack") for p in range(1, 71)]
    writer.write(rows)
    writer.finish(None)  # type: ignore[arg-type]  # the writer does not read the summary
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert sorted((r["host"], r["port"]) for r in lines) == sorted((o.host, o.port)
                                                                   for o in rows)
    assert {(r["host"], r.get("anomaly")) for r in lines} == {("10.0.0.5", None),
                                                              ("10.0.0.6", ALL_OPEN)}
