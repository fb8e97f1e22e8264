#!/usr/bin/env python3
"""Cluster scans: what workers with rates of their own add up to, and what a cluster costs.

Default: workers as separate machines. The scheduler and each worker run in a network
namespace of their own, joined by veth links to a router namespace in front of a hosts
namespace that answers for a 198.18.0.0/15 prefix (tests/sites.py builds it; the hosts'
states come from ../shared/lab/netlab.py's own plan, so the lab's ground truth scores
every run). For 1, 2 and 4 workers (``--workers``) it starts ``dask scheduler`` and the
``dask worker`` processes, runs

    nornir-portscan scan PREFIX -p PORTS --worker-rate R --cluster tcp://SCHEDULER:8786

``--repeat`` times and prints the median scan time (the summary line's "in X s": from
the cluster connected to the last outcome), outcomes per second in all and per worker,
and the exactness of each run (wrong, missing, duplicated outcomes): with a rate per
worker the total should grow with the workers while CPU is not the limit.

    sudo python3 benchmarks/cluster.py [--hosts CIDR] [--ports P] [--worker-rate R]
                                       [--workers 1,2,4] [--repeat N] [--lab PATH]
                                       [--whole-rate]

``--whole-rate`` gives R as ``--rate`` instead (the whole scan's cap, shared by the
workers): the figures of a cluster before rates per worker.

``--compare-local``: the same scan with the local engine and with ``--cluster local:N``
(a LocalCluster here), alternately, in a loopback netlab namespace, and their ratio:

    sudo python3 benchmarks/cluster.py --compare-local [--hosts 127.96.0.0/20]
                                       [--ports P] [--workers N] [--repeat N] [--open N]

Needs root, iproute2, nftables; nornir-portscan with its dask extra (PYTHONPATH is
passed on to the workers).
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import ours_exe, score  # the same entry point and scoring as bench.py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the namespace helpers the tests use

from dask_procs import DaskProcesses  # noqa: E402
from sites import Sites, build_sites  # noqa: E402

DEFAULT_LAB = HERE.parent.parent / "shared" / "lab" / "netlab.py"
SUMMARY = re.compile(r"(\d+) probes? on (\d+) hosts? in ([0-9.]+) s \((\d+) connects\)")


def run_once(ns: str, args: list[str], out: Path) -> dict[str, float]:
    """One scan in the namespace: wall time, and what its summary line says."""
    cmd = ["ip", "netns", "exec", ns, ours_exe(), "scan", *args, "--format", "jsonl",
           "-o", str(out)]
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed ({done.returncode}): "
                         f"{done.stderr.strip()[-500:]}")
    found = SUMMARY.search(done.stderr)
    if found is None:
        raise SystemExit(f"bench: no summary line in: {done.stderr.strip()[-300:]}")
    return {"wall": wall, "probes": float(found.group(1)), "scan": float(found.group(3)),
            "connects": float(found.group(4))}


def duplicates(path: Path) -> int:
    keys = [(r["host"], r["port"]) for r in map(json.loads, path.read_text().splitlines())]
    return len(keys) - len(set(keys))


def compare_local(a: argparse.Namespace) -> None:
    """The local engine against a LocalCluster of ``a.workers``, same scan, alternately."""
    hosts = a.hosts or "127.96.0.0/20"
    a.hosts = hosts
    a.workers = int(a.workers.split(",")[-1])
    ns = "bench-cluster"
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    truth = work / "truth.jsonl"
    subprocess.run([sys.executable, str(a.lab), "up", ns, "--hosts", a.hosts, "--ports",
                    a.ports, "--truth", str(truth),
                    *([] if a.open is None else ["--open", str(a.open)])],
                   check=True, stdout=subprocess.DEVNULL)
    try:
        scan = [a.hosts, "-p", a.ports]
        local_out, cluster_out = work / "local.jsonl", work / "cluster.jsonl"
        local: list[dict[str, float]] = []
        spread: list[dict[str, float]] = []
        for _ in range(a.repeat):  # alternated: the machine's load drifts
            local.append(run_once(ns, scan, local_out))
            spread.append(run_once(ns, [*scan, "--cluster", f"local:{a.workers}"],
                                   cluster_out))
        rows = []
        for name, runs, out in (("local", local, local_out), ("cluster", spread, cluster_out)):
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            s = score(a.lab, truth, out)
            per = (f"{med['probes'] / med['scan'] / a.workers:8.0f} outcomes/s per worker"
                   if name == "cluster" else "")
            rows.append(med)
            print(f"{name:<8} wall {med['wall']:6.2f}s  scan {med['scan']:6.2f}s  "
                  f"{med['probes'] / med['scan']:8.0f} outcomes/s  {per}  "
                  f"probes {med['probes']:.0f} connects {med['connects']:.0f}  "
                  f"wrong {s['wrong_state']} missing {s['missing']} "
                  f"duplicates {duplicates(out)}", flush=True)
        lo, cl = rows
        print(f"ratio    cluster/local ({a.workers} workers, median of {a.repeat}): "
              f"wall {cl['wall'] / lo['wall']:.2f}x  scan {cl['scan'] / lo['scan']:.2f}x  "
              "(higher is slower)")
    finally:
        subprocess.run([sys.executable, str(a.lab), "down", ns], check=False)


def netlab_module(path: Path) -> Any:
    """netlab.py as a module: its plan (hosts' states), nftables rules and listeners."""
    spec = importlib.util.spec_from_file_location("netlab", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hosts_lab(sites: Sites, lab: Path, prefix: str, ports: str, work: Path) -> Path:
    """netlab's plan of ``prefix`` x ``ports`` in the sites' hosts namespace; the truth file."""
    netlab = netlab_module(lab)
    net = ipaddress.ip_network(prefix)
    hosts = [str(h) for h in net.hosts()]
    truth, listeners, dead, unr, filt = netlab.plan(hosts, netlab.ports_of(ports), 0.3, 0.05,
                                                    4, 2, 1)
    sites.hosts.nft(netlab.nft_rules(dead, unr, filt))
    spec = work / "listeners.json"
    spec.write_text(json.dumps(listeners))
    server = sites.hosts.popen(sys.executable, str(lab), "_serve", str(spec))
    assert server.stdout is not None
    if server.stdout.readline().strip() != "ready":
        raise SystemExit("bench: the lab's listeners did not start")
    path = work / "truth.jsonl"
    with open(path, "w") as f:
        for h, p, st in truth:
            f.write(json.dumps({"host": h, "port": p, "state": st}) + "\n")
    return path


def sites_bench(a: argparse.Namespace) -> None:
    """Scan time with 1, 2, 4 workers at --worker-rate R, each worker its own machine."""
    prefix = a.hosts or "198.18.32.0/22"
    counts = [int(n) for n in a.workers.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-sites-"))
    sites = build_sites(max(counts), prefix)
    try:
        truth = hosts_lab(sites, a.lab, prefix, a.ports, work)
        probes = sum(1 for _ in open(truth))
        flag = "--rate" if a.whole_rate else "--worker-rate"
        print(f"{prefix} x {a.ports}: {probes} outcomes, {flag} {a.worker_rate:g} "
              "(caps connects: a dead host's ports need fewer), "
              f"median of {a.repeat}", flush=True)
        for n in counts:
            procs = DaskProcesses(sites.scheduler, host=sites.scheduler_address)
            try:
                for i in range(n):
                    procs.add_worker(f"w{i + 1}", ns=sites.workers[i],
                                     host=sites.worker_address(i))
                procs.wait_for_workers(n)
                out = work / f"cluster-{n}.jsonl"
                runs = []
                scores = []
                for _ in range(a.repeat):
                    runs.append(run_once(sites.scheduler.name, [
                        prefix, "-p", a.ports, "--allow", prefix,
                        "--rate" if a.whole_rate else "--worker-rate", f"{a.worker_rate:g}",
                        "--cluster", procs.address], out))
                    s = score(a.lab, truth, out)
                    scores.append((int(str(s["wrong_state"])), int(str(s["missing"])),
                                   duplicates(out)))
                scan = statistics.median(r["scan"] for r in runs)
                sent = statistics.median(r["connects"] for r in runs)
                wrong, missing, dups = (max(x) for x in zip(*scores, strict=True))
                each = ", ".join(f"{r['scan']:.2f}" for r in runs)
                print(f"workers {n}  scan {scan:6.2f}s  {probes / scan:7.0f} outcomes/s  "
                      f"connects {sent:.0f}: {sent / scan / n:6.0f}/s per worker  "
                      f"(runs: {each} s)  "
                      f"wrong {wrong} missing {missing} duplicates {dups} (worst run)",
                      flush=True)
            finally:
                procs.close()
    finally:
        sites.destroy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", type=Path, default=DEFAULT_LAB)
    ap.add_argument("--hosts", default=None,
                    help="the lab's prefix (default 198.18.32.0/22; 127.96.0.0/20 with "
                         "--compare-local)")
    ap.add_argument("--ports", default=None, help="default 1-20 (--compare-local: 1-10)")
    ap.add_argument("--worker-rate", type=float, default=1000.0)
    ap.add_argument("--workers", default="1,2,4",
                    help="worker counts, comma separated (--compare-local: the last)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--whole-rate", action="store_true",
                    help="give the rate as --rate (the whole scan's, shared by the workers) "
                         "instead of --worker-rate: what adding workers did before")
    ap.add_argument("--compare-local", action="store_true")
    ap.add_argument("--open", type=int, default=None,
                    help="--compare-local: open ports per live host (netlab's default 4; "
                         "0 for a /16, whose listeners one process cannot hold)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root (it builds network namespaces)")
    if a.compare_local:
        a.ports = a.ports or "1-10"
        compare_local(a)
    else:
        a.ports = a.ports or "1-20"
        sites_bench(a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
