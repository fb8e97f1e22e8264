#!/usr/bin/env python3
"""nornir run over a /24: the ``portscan`` task against nornir_utils' ``tcp_ping``.

Both run as ordinary ``nr.run`` calls on the same PortscanInventory (one nornir
host per lab address), with the default threaded runner (20 workers), the same
ports and the same per-connect timeout, one after the other inside the same lab
namespace; each is then scored against the lab's ground truth.

    python3 benchmarks/nornir_vs_tcp_ping.py                  # builds and removes a lab
    python3 benchmarks/nornir_vs_tcp_ping.py --netns labn --truth /tmp/t.jsonl

Needs root, iproute2 and nftables (the lab is ``../shared/lab/netlab.py``). Every
packet stays on the namespace's loopback.

``tcp_ping`` only says True/False per port, so it is scored on "open or not"; the
portscan task is scored on that and on the exact state (open, closed, filtered,
unreachable). ``portscan`` runs twice: with ``retries=0`` (one try per port, as
tcp_ping makes) and with the engine's default adaptive retries (one retry of a
silent port until loss has been seen, so a filtered port costs two timeouts).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_NETLAB = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "lab", "netlab.py"))


# ---- child: runs inside the namespace ---------------------------------------------------

def child(args: argparse.Namespace) -> None:
    from nornir import InitNornir

    ports = [int(p) for p in args.ports.split(",")]
    nr = InitNornir(inventory={"plugin": "PortscanInventory",
                               "options": {"subnet_file": args.subnets}},
                    runner={"plugin": "threaded", "options": {"num_workers": 20}},
                    logging={"enabled": False})
    rows: list[dict[str, Any]] = []
    if args.child == "tcp_ping":
        from nornir_utils.plugins.tasks.networking import tcp_ping  # type: ignore[import-untyped]
        started = time.monotonic()
        result = nr.run(task=tcp_ping, ports=ports, timeout=args.timeout)
        elapsed = time.monotonic() - started
        for name, multi in result.items():
            address = nr.inventory.hosts[name].hostname
            for port, ok in (multi[0].result or {}).items():
                rows.append({"host": address, "port": int(port), "state": "open" if ok else "no"})
    else:
        from nornir_portscan.plugins.common.ports import each_port
        from nornir_portscan.plugins.tasks import portscan
        retries = None if args.retries == "default" else int(args.retries)
        started = time.monotonic()
        result = nr.run(task=portscan, ports=ports, timeout=args.timeout, retries=retries)
        elapsed = time.monotonic() - started
        for multi in result.values():
            doc = multi[0].result
            if not isinstance(doc, dict):
                continue
            for address, entry in doc["targets"].items():
                for port, info in each_port(entry):  # ports folded into extraports too
                    rows.append({"host": address, "port": port, "state": info["state"]})
    failed = len(result.failed_hosts)
    print(json.dumps({"elapsed": elapsed, "hosts": len(result), "failed": failed,
                      "rows": rows}))


# ---- parent: lab, runs, scoring -----------------------------------------------------------

def run_child(netns: str, mode: str, subnets: str, a: argparse.Namespace,
              retries: str = "default") -> dict[str, Any]:
    cmd = ["ip", "netns", "exec", netns, sys.executable, os.path.abspath(__file__),
           "--child", mode, "--subnets", subnets, "--ports", a.ports,
           "--timeout", str(a.timeout), "--retries", retries]
    wall = time.monotonic()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    doc: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    doc["process"] = time.monotonic() - wall
    return doc


def score(truth: dict[tuple[str, int], str], rows: list[dict[str, Any]]) -> dict[str, int]:
    got = {(r["host"], r["port"]): r["state"] for r in rows}
    keys = [k for k in truth if k in got]
    return {
        "probes": len(truth), "reported": len(keys),
        "open_agree": sum(1 for k in keys if (truth[k] == "open") == (got[k] == "open")),
        "exact": sum(1 for k in keys if truth[k] == got[k]),
    }


def load_truth(path: str, ports: set[int]) -> dict[tuple[str, int], str]:
    truth: dict[tuple[str, int], str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if int(r["port"]) in ports:
                truth[(r["host"], int(r["port"]))] = r["state"]
    return truth


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--netns", help="use this existing lab namespace (needs --truth)")
    ap.add_argument("--truth", help="the lab's truth file (with --netns)")
    ap.add_argument("--netlab", default=DEFAULT_NETLAB, help="path to netlab.py")
    ap.add_argument("--hosts", default="127.10.0.0/24", help="lab subnet (loopback only)")
    ap.add_argument("--ports", default="22,80,443")
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each; medians are shown")
    ap.add_argument("--child", choices=("tcp_ping", "portscan"), help=argparse.SUPPRESS)
    ap.add_argument("--subnets", help=argparse.SUPPRESS)
    ap.add_argument("--retries", default="default", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a)
        return 0
    if os.geteuid() != 0:
        sys.exit("benchmark: run as root (the lab is a network namespace)")
    workdir = tempfile.mkdtemp(prefix="nornir-bench-")
    own_lab = a.netns is None
    netns = a.netns or f"nbench{os.getpid() % 10000}"
    truth_path = a.truth or os.path.join(workdir, "truth.jsonl")
    if own_lab:
        subprocess.run([sys.executable, a.netlab, "up", netns, "--hosts", a.hosts,
                        "--ports", "1-1024", "--seed", str(a.seed), "--truth", truth_path],
                       check=True, stdout=subprocess.DEVNULL)
    elif not a.truth:
        sys.exit("benchmark: --netns needs --truth (the lab's truth file)")
    try:
        subnets = os.path.join(workdir, "subnets.yaml")
        with open(subnets, "w", encoding="utf-8") as f:
            f.write(f"lab:\n  subnet: {a.hosts}\n")
        ports = {int(p) for p in a.ports.split(",")}
        truth = load_truth(truth_path, ports)
        variants = [("tcp_ping", "tcp_ping", "default"),
                    ("portscan retries=0", "portscan", "0"),
                    ("portscan default retries", "portscan", "default")]
        times: dict[str, list[float]] = {label: [] for label, _, _ in variants}
        scores: dict[str, dict[str, int]] = {}
        for _ in range(a.repeat):
            for label, mode, retries in variants:
                doc = run_child(netns, mode, subnets, a, retries)
                times[label].append(doc["elapsed"])
                scores[label] = score(truth, doc["rows"])
        lab = f"lab {a.hosts} seed {a.seed}" if own_lab else f"lab namespace {netns}"
        print(f"{len({h for h, _ in truth})} nornir hosts x ports {a.ports}, timeout "
              f"{a.timeout:g} s, threaded runner (20 workers), {lab}")
        base = sorted(times["tcp_ping"])[len(times["tcp_ping"]) // 2]
        for label, _, _ in variants:
            t = sorted(times[label])[len(times[label]) // 2]
            s = scores[label]
            exact = "n/a (True/False only)" if label == "tcp_ping" else (
                f"{s['exact']}/{s['probes']}")
            print(f"  {label:26s} nr.run {t:7.2f} s  x{base / t:6.1f} vs tcp_ping  "
                  f"open-or-not right {s['open_agree']}/{s['probes']}  exact states {exact}")
    finally:
        if own_lab:
            subprocess.run([sys.executable, a.netlab, "down", netns], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
