#!/usr/bin/env python3
"""The cluster scenario: a LocalCluster of N workers against the local engine, same scan.

Builds a netlab namespace (../shared/lab/netlab.py: a /20 x 10 ports by default, only
its loopback, so nothing leaves the machine), runs in it

    nornir-portscan scan CIDR -p PORTS --format jsonl                  (the local engine)
    nornir-portscan scan CIDR -p PORTS --format jsonl --cluster local:N

alternately, ``--repeat`` times, scores both against the lab's ground truth and prints
medians: wall time (start-up of the LocalCluster included), scan time (the summary line's
"in X s": from the cluster connected to the last outcome), outcomes per second per worker,
and the cluster / local ratios. The LocalCluster's scheduler and workers bind 127.0.0.1
and run inside the namespace, since they are children of the command.

    sudo python3 benchmarks/cluster.py [--lab PATH] [--hosts CIDR] [--ports P]
                                       [--workers N] [--repeat N] [--open N]

Needs root, iproute2, nftables; nornir-portscan installed with its dask extra.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import ours_exe, score  # the same entry point and scoring as bench.py

HERE = Path(__file__).resolve().parent
DEFAULT_LAB = HERE.parent.parent / "shared" / "lab" / "netlab.py"
SUMMARY = re.compile(r"(\d+) probes on (\d+) hosts in ([0-9.]+) s \((\d+) connects\)")


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", type=Path, default=DEFAULT_LAB)
    ap.add_argument("--hosts", default="127.96.0.0/20")
    ap.add_argument("--ports", default="1-10")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--open", type=int, default=None,
                    help="open ports per live host (netlab's default 4; 0 for a /16, whose "
                         "listeners one process cannot hold)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root (it builds a network namespace)")
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
