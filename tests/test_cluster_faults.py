"""A real Dask cluster (``dask scheduler`` and ``dask worker`` processes) losing a worker
mid-scan: stopped (SIGSTOP), killed (SIGKILL), or every worker stopped.

Each test builds its own namespace: the scheduler, the workers and the scan's targets all
live on its loopback, so nothing leaves it and no port clashes with anything outside.
The targets: 256 addresses x ports 1 (closed) and 2 (open on the first 32, dropped on
the rest, so filtered), paced by ``--rate`` so each of the two shards runs for seconds.
"""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dask_procs import DaskProcesses, dask_lab
from netns import PYTHON, NetNS, by_key, jsonl

TARGETS = "127.82.0-1.1-128"
HOSTS = [f"127.82.{a}.{b}" for a in (0, 1) for b in range(1, 129)]
OPEN_HOSTS = set(HOSTS[:32])
RULES = """
table inet nptfault {
 chain input {
  type filter hook input priority 0; policy accept;
  ip daddr 127.82.0.1-127.82.0.32 tcp dport 2 accept
  ip daddr 127.82.0.0/23 tcp dport 2 drop
 }
}
"""


def driver(**rules: float) -> str:
    """``nornir-portscan`` with some of the watch's rules changed (``watch.py``): a test
    that waits for one rule turns the others off, or shortens a minute."""
    return textwrap.dedent(f"""
        import sys
        from nornir_portscan.engine.shards import watch
        for name, value in {rules!r}.items():
            setattr(watch, name, value)
        from nornir_portscan.cli import main
        raise SystemExit(main(sys.argv[1:]))
    """)


def expected() -> dict[tuple[str, int], str]:
    return {**{(h, 1): "closed" for h in HOSTS},
            **{(h, 2): "open" if h in OPEN_HOSTS else "filtered" for h in HOSTS}}


@pytest.fixture
def cluster(make_netns: Callable[[], NetNS]) -> Iterator[DaskProcesses]:
    with dask_lab(make_netns(), RULES, [(h, 2) for h in sorted(OPEN_HOSTS)]) as procs:
        yield procs


def start_scan(procs: DaskProcesses, out: Path, rate: int, *extra: str,
               driver: str | None = None) -> subprocess.Popen[str]:
    argv = ([PYTHON, "-c", driver] if driver else [PYTHON, "-m", "nornir_portscan"])
    return procs.ns.popen(*argv, "scan", TARGETS, "-p", "1,2", "--timeout", "0.5",
                          "--retries", "0", "--rate", str(rate), "--cluster", procs.address,
                          "--format", "jsonl", "-o", str(out), *extra)


def rows_of(out: Path) -> list[dict[str, object]]:
    return jsonl(out.read_text()) if out.exists() else []


def check_exact(rows: list[dict[str, object]]) -> None:
    got = by_key(rows)  # fails on a duplicate
    assert {k: r["state"] for k, r in got.items()} == expected()


def test_a_stopped_worker_does_not_stall_the_scan(cluster: DaskProcesses,
                                                  tmp_path: Path) -> None:
    """SIGSTOP one of two workers 2.5 s into a scan whose shards take about 6 s each: its
    shard runs again on the other worker once its runs have been silent for
    ``watch.HUNG_AFTER`` (10 s), and the scan ends with every outcome once (before, it
    waited for Dask's worker time-to-live: minutes). The straggler rule is off: the
    hung rule alone must do it."""
    cluster.add_worker("w1")
    cluster.add_worker("w2")
    cluster.wait_for_workers(2)
    out = tmp_path / "scan.jsonl"
    started = time.monotonic()
    scan = start_scan(cluster, out, 86, driver=driver(STRAGGLER_FLOOR=1e6))
    time.sleep(2.5)
    cluster.signal("w1", signal.SIGSTOP)
    try:
        _, err = scan.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        scan.kill()
        pytest.fail("the scan stalled on the stopped worker")
    took = time.monotonic() - started
    assert scan.returncode == 0, err
    rows = rows_of(out)
    check_exact(rows)
    # undisturbed about 7 s; stopped: 2.5 s + 10 s to call it hung + its shard again.
    # The time is the feature (without the hung rule: Dask's worker time-to-live, minutes),
    # so it stays a bound, a generous one
    assert took < 40, f"{took:.1f} s"
    assert Counter(r["worker"] for r in rows)["w2"] >= len(rows) // 2


def test_a_slow_worker_s_shard_gets_a_speculative_copy(cluster: DaskProcesses,
                                                       tmp_path: Path) -> None:
    """One of two workers slowed to a tenth (stopped 0.9 s of every second: it still
    ticks, so it is not hung): once its shard has run twice as long as the median
    finished shard (factor 2 here, floor 5 s), a copy runs on the other worker, the
    first to end wins, and every outcome comes once. The hung rule is off."""
    cluster.add_worker("w1")
    cluster.add_worker("w2")
    cluster.wait_for_workers(2)
    out = tmp_path / "scan.jsonl"
    started = time.monotonic()
    scan = start_scan(cluster, out, 86, driver=driver(HUNG_AFTER=1e6, STRAGGLER_FACTOR=2.0,
                                                      STRAGGLER_FLOOR=5.0))
    time.sleep(1.0)
    while scan.poll() is None and time.monotonic() - started < 90:
        cluster.signal("w1", signal.SIGSTOP)
        time.sleep(0.9)
        cluster.signal("w1", signal.SIGCONT)
        time.sleep(0.1)
    took = time.monotonic() - started
    _, err = scan.communicate(timeout=10)
    assert scan.returncode == 0, err
    rows = rows_of(out)
    check_exact(rows)
    # undisturbed about 7 s; at a tenth w1's shard would take a minute; with the copy:
    # about 1 s + 2 x 6 s + 6 s; the time is the feature: a generous bound, under the minute
    assert took < 40, f"{took:.1f} s"
    assert Counter(r["worker"] for r in rows)["w2"] >= len(rows) // 2


def test_a_killed_worker_costs_only_its_hosts_in_flight(cluster: DaskProcesses,
                                                        tmp_path: Path) -> None:
    """SIGKILL one of two workers (no nanny: it is gone for good) late in its shard: the
    hosts it had finished came home already and are kept (rows with its name), its
    shard runs again on the other worker for the rest only, every outcome once."""
    cluster.add_worker("w1")
    cluster.add_worker("w2")
    cluster.wait_for_workers(2)
    out = tmp_path / "scan.jsonl"
    scan = start_scan(cluster, out, 52)  # about 10 s a shard; hosts finish from ~5 s
    time.sleep(7.5)
    cluster.signal("w1", signal.SIGKILL)
    _, err = scan.communicate(timeout=90)
    assert scan.returncode == 0, err
    rows = rows_of(out)
    check_exact(rows)
    by_worker = Counter(r["worker"] for r in rows)
    assert set(by_worker) == {"w1", "w2"}, by_worker
    assert by_worker["w1"] > 0  # what the killed worker had finished was not run again




def test_a_cluster_that_makes_no_progress_ends_with_exit_3(cluster: DaskProcesses,
                                                           tmp_path: Path) -> None:
    """The only worker stopped: after ``watch.STALL_AFTER`` without a message the scan
    ends, exit 3, one error line, and the hosts that came home before are written."""
    cluster.add_worker("w1")
    cluster.wait_for_workers(1)
    out = tmp_path / "scan.jsonl"
    started = time.monotonic()
    scan = start_scan(cluster, out, 60, driver=driver(STALL_AFTER=6.0))  # ~8.5 s undisturbed
    time.sleep(6)
    cluster.signal("w1", signal.SIGSTOP)
    _, err = scan.communicate(timeout=60)
    took = time.monotonic() - started
    assert scan.returncode == 3, err
    lines = err.strip().splitlines()
    assert [line for line in lines if line.startswith("nornir-portscan: error:")] == [
        f"nornir-portscan: error: no progress on the Dask cluster at {cluster.address} "
        "for 6 s: 1 of 1 shards unfinished (its workers hung, gone or busy)"], err
    assert "Traceback" not in err
    assert took < 25, f"{took:.1f} s"  # the feature: ~6 s + 6 s, not the 60 s wait
    rows = rows_of(out)
    assert 0 < len(rows) < 512
    want = expected()
    got = by_key(rows)
    assert all(want[k] == r["state"] for k, r in got.items())
    # whole hosts only: a host's two ports come home together
    assert all(n == 2 for n in Counter(r["host"] for r in rows).values())
    assert json.loads(json.dumps(rows[0]))["worker"] == "w1"
