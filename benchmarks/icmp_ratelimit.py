"""What an ICMP rate limit costs a sweep, with the re-probes and without them.

Builds a WAN lab (../shared/lab/netlab.py) whose router rate-limits ICMP errors as Linux
does by default (--icmp-ratelimit 1000), sweeps it with ``--recheck 0`` (no
re-probes), with the default and with a long budget (``--long``), in turn, and prints
per run: unreachable hosts named, those reported as certainly down (wrong), those left
``rate-limited?``, dead hosts called down, and the scan's time. Run as root:

    python3 benchmarks/icmp_ratelimit.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import ours_exe  # the entry point installed with this Python, as bench.py runs it

LAB = Path(__file__).resolve().parent.parent.parent / "shared" / "lab" / "netlab.py"
NAME = "psicmp"


def _host_verdicts(truth: Path, got: Path) -> dict[str, int]:
    want: dict[str, set[str]] = {}
    for line in truth.read_text().splitlines():
        row = json.loads(line)
        want.setdefault(row["host"], set()).add(row["state"])
    seen: dict[str, set[tuple[str, str]]] = {}
    rows = 0
    for line in got.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows += 1
            seen.setdefault(row["host"], set()).add((row["state"], row["reason"]))
    out = {"rows": rows, "unreachable": 0, "unreachable_named": 0, "unreachable_called_down": 0,
           "unreachable_undecided": 0, "dead": 0, "dead_called_down": 0, "dead_undecided": 0}
    for host, states in want.items():
        verdicts = seen.get(host, set())
        reasons = {reason for _, reason in verdicts}
        if states == {"unreachable"}:
            out["unreachable"] += 1
            out["unreachable_named"] += ("unreachable", "host-unreach") in verdicts
            out["unreachable_called_down"] += "host-down" in reasons
            out["unreachable_undecided"] += "rate-limited?" in reasons
        elif states == {"filtered"}:  # a dead host: every packet dropped
            out["dead"] += 1
            out["dead_called_down"] += "host-down" in reasons
            out["dead_undecided"] += "rate-limited?" in reasons
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hosts", default="198.18.0.0/24")
    ap.add_argument("--ports", default="1-100")
    ap.add_argument("--unreach", default="0.2")
    ap.add_argument("--seed", default="3")
    ap.add_argument("--long", type=float, default=20.0,
                    help="a third run per round with this --recheck (0: none)")
    ap.add_argument("--pause", type=float, default=8.0,
                    help="seconds between scans, so the limiter's burst refills")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="icmprl-"))
    truth = tmp / "truth.jsonl"
    subprocess.run([sys.executable, str(LAB), "up", NAME, "--hosts", a.hosts, "--ports",
                    a.ports, "--unreach", a.unreach, "--delay-ms", "30", "--jitter-ms", "10",
                    "--loss", "0.02", "--icmp-ratelimit", "1000", "--seed", a.seed,
                    "--truth", str(truth)], check=True)
    configs = [("--recheck 0", ["--recheck", "0"]), ("default", [])]
    if a.long:
        configs.append((f"--recheck {a.long:g}", ["--recheck", f"{a.long:g}"]))
    results: dict[str, list[dict[str, float]]] = {label: [] for label, _ in configs}
    try:
        for _ in range(a.repeat):
            for label, extra in configs:
                time.sleep(a.pause)
                got = tmp / "got.jsonl"
                started = time.monotonic()
                subprocess.run(["ip", "netns", "exec", NAME, ours_exe(), "scan", a.hosts, "-p",
                                a.ports, "--format", "jsonl", "-o", str(got), *extra],
                               check=True, stderr=subprocess.DEVNULL)
                took = time.monotonic() - started
                row: dict[str, float] = {**_host_verdicts(truth, got), "seconds": took}
                results[label].append(row)
                print(label, json.dumps(row), flush=True)
    finally:
        subprocess.run([sys.executable, str(LAB), "down", NAME], check=False)
    print("\nmedians:")
    keys = ["seconds", "unreachable_named", "unreachable_called_down", "unreachable_undecided",
            "dead_called_down", "dead_undecided"]
    for label, rows in results.items():
        med = {k: round(statistics.median(r[k] for r in rows), 2) for k in keys}
        print(f"  {label:13} of {rows[0]['unreachable']:.0f} unreachable, "
              f"{rows[0]['dead']:.0f} dead hosts: {json.dumps(med)}")
    base = statistics.median(r["seconds"] for r in results["--recheck 0"])
    new = statistics.median(r["seconds"] for r in results["default"])
    print(f"  extra time: {new - base:.2f} s ({new / base:.2f}x the scan without re-probes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
