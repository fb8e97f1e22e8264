#!/usr/bin/env python3
"""What ``--resume`` costs: the same scan with and without its journal, in lab namespaces
built by ../shared/lab/netlab.py, and what a resume saves after a SIGKILL.

The two commands run alternately (A B A B ...) so the machine's drift hits both alike;
each figure is a median over ``--repeat`` runs, the ratio is B/A (with / without). Each run
is timed as a whole process tree by /usr/bin/time. After the runs, the resumed report is
scored against the lab's ground truth, and no journal or temporary file may be left.

    sudo python3 benchmarks/resume.py [--lab PATH] [--repeat N] [--only full,sweep]
        [--kill-after S]

``--kill-after S`` adds a crash test per scenario: the scan with --resume is SIGKILLed
after S seconds, then run again; it prints what the journal held and the second run's
time (the crash's cost is the first run's S seconds less what the journal saved).

``--durability`` measures how much decided work a crash can lose: a steady scan of
127.0.0.1 (30,000 ports at 5,000 a second) with --resume runs under strace, which times
every write() and fdatasync() of the journal. The longest gap between writes bounds what
a SIGKILL loses; the longest gap between syncs (plus that) what a power loss loses.

Needs root, iproute2, nftables; nornir-portscan importable with this Python.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import DEFAULT_LAB, SCENARIOS, byte_compile_package, ours_exe, score


def timed(cmd: list[str]) -> dict[str, float]:
    """Wall and CPU (user + sys of the whole process tree) of one command."""
    with tempfile.NamedTemporaryFile("r") as tf:
        done = subprocess.run(["/usr/bin/time", "-f", "%e %U %S", "-o", tf.name, *cmd],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              check=False)
        if done.returncode != 0:
            sys.exit(f"resume bench: {' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")
        wall, user, sys_ = tf.read().split()[-3:]
    return {"wall": float(wall), "cpu": float(user) + float(sys_)}


def leftovers(directory: Path, report: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p != report)


def compare(name: str, ns: str, truth: Path, lab: Path, repeat: int,
            work: Path) -> list[str]:
    sc = SCENARIOS[name]
    base = ["ip", "netns", "exec", ns, ours_exe(), "scan", str(sc["target"]),
            "-p", str(sc["scan_ports"]), "--format", "jsonl"]
    plain_dir, resume_dir = work / "plain", work / "resume"
    plain_dir.mkdir()
    resume_dir.mkdir()
    plain_out, resume_out = plain_dir / "scan.jsonl", resume_dir / "scan.jsonl"
    runs: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
    for _ in range(repeat):
        runs["without"].append(timed([*base, "-o", str(plain_out)]))
        runs["with"].append(timed([*base, "-o", str(resume_out), "--resume"]))
        left = leftovers(resume_dir, resume_out)
        if left:
            sys.exit(f"resume bench: {name}: left behind after a finished run: {left}")
    med = {k: {f: statistics.median(r[f] for r in v) for f in ("wall", "cpu")}
           for k, v in runs.items()}
    scored = score(lab, truth, resume_out)
    rows = []
    for key in ("without", "with"):
        m = med[key]
        rows.append(f"{name:<6} {key + ' --resume':<16} wall {m['wall']:6.2f} s  "
                    f"cpu {m['cpu']:6.2f} s  (median of {repeat})")
    ratio = {f: med['with'][f] / med['without'][f] for f in ("wall", "cpu")}
    rows.append(f"{name:<6} ratio with/without  wall {ratio['wall']:.3f}"
                f"  cpu {ratio['cpu']:.3f}   "
                f"(resumed report: wrong {scored['wrong_state']} missing {scored['missing']} "
                f"extra {scored['extra']})")
    return rows


def crash(name: str, ns: str, truth: Path, lab: Path, after: float, work: Path) -> list[str]:
    """SIGKILL a scan with --resume after ``after`` s, run it again, score the result."""
    sc = SCENARIOS[name]
    out_dir = work / "crash"
    out_dir.mkdir()
    out = out_dir / "scan.jsonl"
    cmd = ["ip", "netns", "exec", ns, ours_exe(), "scan", str(sc["target"]),
           "-p", str(sc["scan_ports"]), "--format", "jsonl", "-o", str(out), "--resume"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(after)
    if proc.poll() is not None:
        return [f"{name:<6} crash: the scan ended before {after} s; give a smaller --kill-after"]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = time.monotonic() - started
    journal = Path(f"{out}.journal")
    size = journal.stat().st_size if journal.exists() else 0
    again = time.monotonic()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False)
    second = time.monotonic() - again
    found = re.search(r"resuming from \S+: (\d+) of", done.stderr)
    kept = int(found.group(1)) if found else 0
    scored = score(lab, truth, out)
    left = leftovers(out_dir, out)
    return [f"{name:<6} crash: SIGKILL after {killed_at:.2f} s: journal {size / 1e6:.1f} MB "
            f"held {kept} outcomes; the rerun took {second:.2f} s (exit {done.returncode}), "
            f"wrong {scored['wrong_state']} missing {scored['missing']} extra "
            f"{scored['extra']}, left behind: {left or 'nothing'}"]


def durability(work: Path) -> list[str]:
    """Gaps between the journal's writes and syncs during a steady scan, from strace."""
    out = work / "steady.jsonl"
    trace = work / "trace.txt"
    subprocess.run(["strace", "-f", "-ttt", "-e", "trace=openat,write,fdatasync", "-o",
                    str(trace), ours_exe(), "scan", "127.0.0.1", "-p", "1-30000", "--rate",
                    "5000", "--format", "jsonl", "-o", str(out), "--resume"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lines = trace.read_text().splitlines()
    fd = next(m.group(1) for line in lines
              if (m := re.search(r'openat\(.*"[^"]*steady\.jsonl\.journal".*= (\d+)$', line)))
    writes = [float(line.split()[1]) for line in lines if f" write({fd}," in line]
    syncs = [float(line.split()[1]) for line in lines if f" fdatasync({fd})" in line]

    def gaps(times: list[float]) -> str:
        between = [b - a for a, b in itertools.pairwise(times)]
        return (f"{len(times)} calls, gap median {statistics.median(between):.3f} s, "
                f"max {max(between):.3f} s")

    return [f"journal writes: {gaps(writes)}  (what a SIGKILL can lose, at most)",
            f"journal syncs:  {gaps(syncs)}  (add the write gap: what a power loss can lose)"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", type=Path, default=DEFAULT_LAB)
    ap.add_argument("--only", default="full,sweep")
    ap.add_argument("--repeat", type=int, default=11)
    ap.add_argument("--kill-after", type=float, default=None)
    ap.add_argument("--durability", action="store_true",
                    help="only measure the journal's write and sync gaps (needs strace)")
    a = ap.parse_args()
    if a.durability:
        for row in durability(Path(tempfile.mkdtemp(prefix="bench-resume-sync-"))):
            print(row, flush=True)
        return 0
    if os.geteuid() != 0:
        sys.exit("resume bench: run as root (it builds network namespaces)")
    print(f"# scan without and with --resume, alternately, {os.cpu_count()} cores; "
          f"{byte_compile_package()}", flush=True)
    for name in (n.strip() for n in a.only.split(",")):
        sc = SCENARIOS[name]
        ns = f"bench-resume-{name}"
        work = Path(tempfile.mkdtemp(prefix=f"bench-resume-{name}-"))
        truth = work / "truth.jsonl"
        subprocess.run([sys.executable, str(a.lab), "up", ns, "--hosts", str(sc["hosts"]),
                        "--ports", str(sc["ports"]), "--truth", str(truth),
                        *sc["lab"]],  # type: ignore[misc]
                       check=True, stdout=subprocess.DEVNULL)
        try:
            rows = compare(name, ns, truth, a.lab, a.repeat, work)
            if a.kill_after is not None:
                rows += crash(name, ns, truth, a.lab, a.kill_after, work)
        finally:
            subprocess.run([sys.executable, str(a.lab), "down", ns], check=False)
        for row in rows:
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
