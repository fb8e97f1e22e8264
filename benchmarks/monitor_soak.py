#!/usr/bin/env python3
"""Soak: ``nornir-portscan monitor`` for N minutes over a netlab network; RSS per round.

Builds a netlab namespace (../shared/lab/netlab.py: a /22 x ports 1-20 by default, open,
closed, filtered, dead and unreachable hosts, only on the namespace's loopback), writes a
PortscanInventory whose one subnet expands to a nornir host per address (every fifth host
expects port 1 open, so some expectations hold and some are violated each round), and runs

    nornir-portscan monitor -i INV --interval S --textfile FILE   (inside the namespace)

for ``--minutes``. After every round (read back from the textfile, with prometheus_client's
parser) it prints the round number, the round's duration, the hosts and series it exposes
and the monitor's resident memory (VmRSS of its /proc entry), then the first, median and
last RSS and the growth over the second half of the soak, when warm-up is over.

    sudo python3 benchmarks/monitor_soak.py [--minutes M] [--interval S] [--hosts CIDR]
                                            [--ports P] [--lab PATH]

Needs root, iproute2, nftables.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parent
DEFAULT_LAB = HERE.parent.parent / "shared" / "lab" / "netlab.py"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"soak: no VmRSS for pid {pid}")


def read_round(path: Path) -> tuple[int, float, int, int, int] | None:
    """(rounds, duration, hosts, series, errors) from the textfile, None before round 1."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    rounds = errors = series = 0
    duration = 0.0
    hosts: set[str] = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series += 1
            if "host" in sample.labels:
                hosts.add(sample.labels["host"])
            if sample.name == "portscan_rounds_total":
                rounds = int(sample.value)
            elif sample.name == "portscan_round_errors_total":
                errors = int(sample.value)
            elif sample.name == "portscan_scan_duration_seconds":
                duration = sample.value
    return rounds, duration, len(hosts), series, errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--hosts", default="127.10.0.0/22")
    ap.add_argument("--ports", default="1-20")
    ap.add_argument("--lab", type=Path, default=DEFAULT_LAB)
    args = ap.parse_args()
    if not args.lab.exists():
        raise SystemExit(f"soak: netlab not found at {args.lab} (give --lab)")
    ns = f"soak{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="monitor-soak-"))
    subprocess.run([sys.executable, str(args.lab), "up", ns, "--hosts", args.hosts,
                    "--ports", args.ports, "--truth", str(work / "truth.jsonl")],
                   check=True, stdout=subprocess.DEVNULL)
    monitor: subprocess.Popen[bytes] | None = None
    try:
        inv = work / "inv"
        inv.mkdir()
        subnet = {"lab": {"subnet": args.hosts, "data": {"portscan": {
            "ports": args.ports, "timeout": 0.5}}}}
        (inv / "subnets.yaml").write_text(json.dumps(subnet), encoding="utf-8")
        # every fifth address also a named host with an expectation
        first = args.hosts.split("/")[0].rsplit(".", 1)[0]
        named = {f"dev{i}": {"hostname": f"{first}.{i}",
                             "data": {"portscan": {"ports": args.ports, "timeout": 0.5,
                                                   "expect": {"open": [1]}}}}
                 for i in range(1, 250, 5)}
        (inv / "hosts.yaml").write_text(json.dumps(named), encoding="utf-8")
        textfile = work / "portscan.prom"
        env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
        # what one `run` of the same inventory costs, for comparison with a round
        t0 = time.monotonic()
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "nornir_portscan",
                        "run", "-i", str(inv), "--format", "json", "-o", os.devnull],
                       env=env, check=False, stderr=subprocess.DEVNULL)
        print(f"soak: one `nornir-portscan run` of the same inventory: "
              f"{time.monotonic() - t0:.2f} s wall (process start included)", flush=True)
        monitor = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "nornir_portscan", "monitor",
             "-i", str(inv), "--interval", str(args.interval), "--textfile", str(textfile)],
            env=env, stdout=subprocess.DEVNULL)
        print(f"soak: {args.hosts} x ports {args.ports} in namespace {ns}, --interval "
              f"{args.interval:g} s, {args.minutes:g} min; pid {monitor.pid}", flush=True)
        print("round  duration_s  hosts  series  errors  rss_kib", flush=True)
        samples: list[tuple[float, int]] = []
        seen = 0
        started = time.monotonic()
        end = started + args.minutes * 60
        while time.monotonic() < end:
            if monitor.poll() is not None:
                raise SystemExit(f"soak: the monitor exited with {monitor.returncode}")
            got = read_round(textfile)
            if got is not None and got[0] != seen:
                seen = got[0]
                rss = rss_kib(monitor.pid)
                samples.append((time.monotonic() - started, rss))
                print(f"{got[0]:5d}  {got[1]:10.2f}  {got[2]:5d}  {got[3]:6d}  {got[4]:6d}  "
                      f"{rss:7d}", flush=True)
            time.sleep(0.2)
        monitor.send_signal(signal.SIGTERM)
        status = monitor.wait(timeout=30)
        kib = [r for _, r in samples]
        half = [r for t, r in samples if t >= args.minutes * 30]
        print(f"soak: {len(samples)} rounds in {args.minutes:g} min; RSS KiB first {kib[0]}, "
              f"median {statistics.median(kib):.0f}, last {kib[-1]}, max {max(kib)}; second "
              f"half {min(half)}..{max(half)} (growth {half[-1] - half[0]:+d}); "
              f"exit status {status}")
    finally:
        if monitor is not None and monitor.poll() is None:
            monitor.kill()
        subprocess.run([sys.executable, str(args.lab), "down", ns], check=False,
                       stdout=subprocess.DEVNULL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
