"""``--worker-rate``: a rate per vantage point. Each cluster worker's shards together send at
most N probes/s (so the cluster's total is N x workers, still capped by ``--rate`` when
both are given); a local scan is one vantage point: N is its process's rate.

The cluster test runs the scheduler and each worker in a namespace of its own, joined by
veth links to a router namespace in front of the targets' namespace (``sites.py``): each
worker has its own stack and source address, as separate machines would.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dask_procs import DaskProcesses
from netns import PYTHON, NetNSUnavailable
from sites import Sites, build_sites

from nornir_portscan.engine.core.plan import DEFAULT_REMOTE_RATE, plan_scan
from nornir_portscan.engine.shards.remote import shard_rate
from nornir_portscan.errors import SpecError

REPO = Path(__file__).resolve().parents[1]


# ---- planning and the shares, without sockets ------------------------------------------------

def test_a_worker_rate_lifts_the_default_whole_scan_cap_unless_rate_is_given() -> None:
    """Beyond loopback a scan is capped at 10,000/s by default; with a rate per vantage
    point that default would cap the sum of the workers' rates, so it goes (planning only:
    nothing is sent)."""
    assert plan_scan("198.18.0.1", "22").rate == DEFAULT_REMOTE_RATE
    plan = plan_scan("198.18.0.1", "22", worker_rate=500)
    assert (plan.rate, plan.settings["worker_rate"]) == (None, 500)
    plan = plan_scan("198.18.0.1", "22", worker_rate=500, rate=800)
    assert (plan.rate, plan.settings["worker_rate"]) == (800, 500)
    # 0: no cap per worker, so the default whole-scan cap stays
    assert plan_scan("198.18.0.1", "22", worker_rate=0).rate == DEFAULT_REMOTE_RATE
    with pytest.raises(SpecError, match="worker_rate=-1: must be a number of probes"):
        plan_scan("127.0.0.1", "22", worker_rate=-1)


def test_a_shard_gets_its_share_of_both_caps() -> None:
    assert shard_rate(None, None, 2) is None
    assert shard_rate(250.0, None, 2) == 250.0  # the scan's 1000/s over 4 running shards
    assert shard_rate(None, 300.0, 2) == 150.0  # a worker's 300/s over its 2 threads
    assert shard_rate(100.0, 300.0, 2) == 100.0
    assert shard_rate(500.0, 300.0, 1) == 300.0


# ---- a local scan: one vantage point -----------------------------------------------------------

def scan_json(*args: str) -> dict[str, Any]:
    done = subprocess.run([PYTHON, "-m", "nornir_portscan", "scan", *args, "--format", "json"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def test_a_local_scan_runs_at_its_worker_rate_and_records_both() -> None:
    """150 closed loopback ports answer at once: only the cap makes the scan last."""
    doc = scan_json("127.0.0.1", "-p", "20001-20150", "--worker-rate", "100")
    assert doc["options"]["worker_rate"] == 100 and doc["options"]["rate"] is None
    assert doc["summary"]["probes"] == 150
    alone = doc["summary"]["elapsed_s"]
    assert 1.3 <= alone
    # both given: the stricter one, here --rate
    doc = scan_json("127.0.0.1", "-p", "20001-20100", "--worker-rate", "400", "--rate", "50")
    assert (doc["options"]["worker_rate"], doc["options"]["rate"]) == (400, 50)
    both = doc["summary"]["elapsed_s"]
    assert 1.8 <= both
    # the caps set the times, not something else: 100 probes at 50/s take 4/3 of 150 at
    # 100/s (a slower pace than asked would stretch both, but not alike)
    assert 0.67 <= (both / alone) / (4 / 3) <= 1.5, (alone, both)


# ---- workers as separate machines --------------------------------------------------------------

PREFIX = "198.18.10.0/24"
TARGETS = "198.18.10.1-100"
RULES = """
table inet sites {
 chain input {
  type filter hook input priority 0; policy accept;
  ip daddr 198.18.10.80-198.18.10.89 drop
  ip daddr 198.18.10.90-198.18.10.100 meta l4proto tcp reject with icmp type host-unreachable
  tcp dport 6 drop
 }
}
"""


def expected() -> dict[tuple[str, int], str]:
    want: dict[tuple[str, int], str] = {}
    for h in range(1, 101):
        for p in range(1, 7):
            state = ("unreachable" if h >= 90 else "filtered" if h >= 80 or p == 6
                     else "open" if p == 5 and h <= 20 else "closed")
            want[(f"198.18.10.{h}", p)] = state
    return want


@pytest.fixture
def sites() -> Iterator[tuple[Sites, DaskProcesses]]:
    pytest.importorskip("distributed")
    try:
        built = build_sites(2, PREFIX)
    except NetNSUnavailable as exc:
        pytest.skip(f"namespaces unavailable: {exc}")
    procs = None
    try:
        built.hosts.nft(RULES)
        built.hosts.listen([(f"198.18.10.{h}", 5, None) for h in range(1, 21)])
        procs = DaskProcesses(built.scheduler, host=built.scheduler_address)
        for i, ns in enumerate(built.workers):
            procs.add_worker(f"site-{'ab'[i]}", ns=ns, host=built.worker_address(i))
        procs.wait_for_workers(2)
        yield built, procs
    finally:
        if procs is not None:
            procs.close()
        built.destroy()


def test_workers_on_their_own_stacks_add_their_rates_and_name_each_outcome(
        sites: tuple[Sites, DaskProcesses], tmp_path: Path) -> None:
    """Two workers at --worker-rate 100, 600 probes: at least 3 s (each worker keeps to
    its 100/s), under the 6 s one worker would need; every outcome once, exact, and
    named after the worker that probed it, both of them."""
    built, procs = sites
    out = tmp_path / "scan.json"
    started = time.monotonic()
    done = built.scheduler.run(
        PYTHON, "-m", "nornir_portscan", "scan", TARGETS, "-p", "1-6", "--timeout", "0.5",
        "--retries", "0", "--allow", PREFIX, "--worker-rate", "100",
        "--cluster", procs.address, "--format", "json", "-o", str(out), timeout=90)
    assert done.returncode == 0, done.stderr
    took = time.monotonic() - started
    doc = json.loads(out.read_text())
    got = {(h, int(p)): v for h, entry in doc["hosts"].items()
           for p, v in entry["ports"].items()}
    assert {k: v["state"] for k, v in got.items()} == expected()
    assert doc["summary"]["probes"] == 600
    workers = Counter(v["worker"] for v in got.values())
    assert set(workers) == {"site-a", "site-b"}, workers
    # a host is probed from one vantage point: all its ports name the same worker
    assert all(len({v["worker"] for v in entry["ports"].values()}) == 1
               for entry in doc["hosts"].values())
    assert doc["options"]["worker_rate"] == 100 and doc["options"]["rate"] is None
    # each keeps to its 100/s; together they take less than one worker alone would need
    # for every probe (the count, not a stopwatch constant, sets the bound)
    alone = doc["summary"]["probes"] / doc["options"]["worker_rate"]
    assert 2.8 <= doc["summary"]["elapsed_s"] < alone, (doc["summary"], took)


# ---- the nornir task and inventory data ---------------------------------------------------------

def test_the_task_and_inventory_take_worker_rate_per_host() -> None:
    from nornir.core.inventory import Host

    from nornir_portscan.errors import InventoryError
    from nornir_portscan.plugins.tasks.options import resolve_options

    host = Host("h1", hostname="127.0.0.1", data={"portscan": {"worker_rate": 250}})
    options = resolve_options(host, {"ports": "22"})
    assert options.settings["worker_rate"] == 250 and options.plan is not None
    assert options.plan.settings["worker_rate"] == 250
    # an argument wins over inventory data, and is part of the reuse key
    assert resolve_options(host, {"ports": "22", "worker_rate": 0}).settings["worker_rate"] == 0
    assert options.key != resolve_options(host, {"ports": "22", "worker_rate": 99}).key
    bad = Host("h2", hostname="127.0.0.1", data={"portscan": {"worker_rate": "fast"}})
    with pytest.raises(InventoryError, match=r"h2.*portscan\.worker_rate = 'fast'"):
        resolve_options(bad, {"ports": "22"})


def test_a_local_run_is_capped_by_its_worker_rate_and_records_it() -> None:
    """The shipped inventory is loopback only: 7 hosts x 150 closed ports answer at once,
    so only the cap (the run's one engine is the one vantage point) makes it last."""
    def run(ports: str, worker_rate: int) -> tuple[int, float]:
        done = subprocess.run([PYTHON, "-m", "nornir_portscan", "run", "-p", ports,
                               "--worker-rate", str(worker_rate), "--format", "json"],
                              capture_output=True, text=True, timeout=60, cwd=REPO)
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert doc["options"]["worker_rate"] == worker_rate
        return doc["summary"]["probes"], doc["elapsed_s"]

    probes, took = run("1-150", 500)
    assert probes >= 7 * 150
    assert 1.8 <= took
    # the cap sets the time: twice the probes at twice the cap take as long
    twice, took_twice = run("1-300", 1000)
    assert twice == 2 * probes
    assert 0.67 <= took_twice / took <= 1.5, (took, took_twice)


def test_a_cluster_run_stays_under_the_runs_rate() -> None:
    """On a cluster a host's scan bypasses the run's engine, and with it ``run --rate``:
    the hosts submitted together share the cap instead, so the run's total stays under it.
    7 hosts x 150 closed loopback ports answer at once; only the cap makes them last."""
    pytest.importorskip("distributed")
    done = subprocess.run([PYTHON, "-m", "nornir_portscan", "run", "-p", "1-150",
                           "--cluster", "local:2", "--rate", "300", "--format", "json"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["options"]["rate"] == 300
    connects = doc["summary"]["probes"]
    assert connects >= 7 * 150
    # at most 300/s in all: 1,050 probes take 3.5 s (a fifth off for the start of each
    # host's token bucket); with each host at 300/s they took under a second
    assert doc["elapsed_s"] >= 0.8 * connects / 300, doc["elapsed_s"]
