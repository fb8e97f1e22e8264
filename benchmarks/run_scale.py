#!/usr/bin/env python3
"""``run`` against ``scan`` on the same addresses and ports, from a few hosts to a /16.

For each scenario it builds a lab namespace with ../shared/lab/netlab.py, writes a subnet
inventory of the lab's addresses (one nornir host per address), then alternates
``nornir-portscan scan CIDR -p PORTS --format json`` and ``nornir-portscan run --format json``
in the namespace, and prints the wall times, their ratio and the peak memory of each
process tree. Every document is checked against the lab's truth (every address and port,
its state): a run with a wrong or missing state is reported, whatever its time.

    sudo python3 benchmarks/run_scale.py                      # 4k, 16k and full2, 3 rounds
    sudo python3 benchmarks/run_scale.py --only 16k --repeat 5
    sudo python3 benchmarks/run_scale.py --only 65k --repeat 1  # the /16: memory per host
    sudo python3 benchmarks/run_scale.py --only 4k --runbook    # and a runbook's nr.run

With ``--runbook`` each round also times a runbook of its own (``RUNBOOK``: the fork server,
``InitNornir``, ``nr.run(task=portscan)``, its Results written out and checked like the
run's) over the same inventory, once with nornir's threaded runner (20 workers) and once
with ``PortscanRunner``: ``run`` itself uses that runner for a threaded config, a runbook
keeps the runner it was given.

Memory is the peak, over 20 ms samples, of the summed PSS of the command's process tree
(its shard workers included: PSS shares out the pages a fork shares, where summed RSS
would count them once per process), and the peak RSS that ``/usr/bin/time -f %M`` prints
(the largest of the command's processes, as the kernel counts it). The machine may be
shared: figures of one round are taken one right after the other, so ratios mean more
than times. Needs root, iproute2, nftables; nornir-portscan importable.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import byte_compile_package  # resume.py does the same

from nornir_portscan.plugins.common.ports import each_port

HERE = Path(__file__).resolve().parent
DEFAULT_LAB = HERE.parent.parent / "shared" / "lab" / "netlab.py"

#: name: (lab CIDR, ports, netlab options)
SCENARIOS: dict[str, tuple[str, str, list[str]]] = {
    "4k": ("127.50.0.0/20", "22,80,443",
           ["--alive", "1", "--unreach", "0", "--open", "1", "--filtered", "0"]),
    "16k": ("127.52.0.0/18", "22,80,443",
            ["--alive", "0.2", "--unreach", "0", "--open", "1", "--filtered", "0"]),
    "32k": ("127.54.0.0/17", "22,80,443",
            ["--alive", "1", "--unreach", "0", "--open", "0", "--filtered", "0"]),
    "65k": ("127.56.0.0/16", "22,80,443",
            ["--alive", "1", "--unreach", "0", "--open", "0", "--filtered", "0"]),
    "full2": ("127.58.0.0/30", "1-65535",
              ["--alive", "1", "--unreach", "0", "--open", "20", "--filtered", "0"]),
}


def ours() -> list[str]:
    """nornir-portscan as this Python runs it (the package on PYTHONPATH included)."""
    return [sys.executable, "-m", "nornir_portscan"]


def _tree(pid: int) -> list[int]:
    """pid and its descendants, as /proc lists them now."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                pass
    return found


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(cmd: list[str], stdout: Path | None = None) -> dict[str, float]:
    """Wall time, peak summed PSS of the process tree, largest process's peak RSS. The
    command runs in a scratch directory: ``python -m`` would import a checkout in the
    working directory before the one PYTHONPATH names."""
    out = open(stdout, "w") if stdout else subprocess.DEVNULL
    # /usr/bin/time reports its child's peak RSS; a child of this (large) process would
    # inherit this process's high-water mark through exec
    rss_file = tempfile.NamedTemporaryFile("r", suffix=".rss")
    cmd = ["/usr/bin/time", "-f", "%M", "-o", rss_file.name, *cmd]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE,
                            cwd=tempfile.gettempdir())
    peak = 0
    while True:
        peak = max(peak, sum(_pss_kib(p) for p in _tree(proc.pid)))
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.02)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if stdout:
        out.close()  # type: ignore[union-attr]
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err[-500:]}")
    with rss_file:
        rss_kib = int(rss_file.read().split()[-1])
    return {"wall": wall, "pss_mib": peak / 1024, "rss_mib": rss_kib / 1024}


def truth_of(path: Path) -> dict[tuple[str, int], str]:
    with open(path) as f:
        return {(r["host"], int(r["port"])): r["state"] for r in map(json.loads, f)}


def states_of_scan(path: Path) -> dict[tuple[str, int], str]:
    """Every probe's state, the ports folded into ``extraports`` included (read through
    the documents' one accessor: reading ``ports`` alone misses every folded port)."""
    doc = json.loads(path.read_text())
    return {(address, port): str(entry["state"]) for address, host in doc["hosts"].items()
            for port, entry in each_port(host)}


def states_of_run(path: Path) -> dict[tuple[str, int], str]:
    doc = json.loads(path.read_text())
    got: dict[tuple[str, int], str] = {}
    for entry in doc["hosts"].values():
        for address, target in ((entry.get("result") or {}).get("targets") or {}).items():
            for port, value in each_port(target):
                got[(address, port)] = str(value["state"])
    return got


def wrong(truth: dict[tuple[str, int], str], got: dict[tuple[str, int], str]) -> int:
    """Pairs whose state differs from the truth, missing, or not in the lab at all."""
    bad = sum(1 for pair, state in truth.items() if got.get(pair) != state)
    return bad + sum(1 for pair in got if pair not in truth)


#: A runbook's scan: argv[1] the nornir config, argv[2] where its Results go (as run's
#: document holds them: hosts -> name -> result, which the task's dicts are), argv[3]
#: the runner: "threaded" (the config's) or "portscan" (PortscanRunner).
RUNBOOK = """
import sys, orjson
from nornir import InitNornir
from nornir_portscan import fork_server
from nornir_portscan.plugins.runner import PortscanRunner
from nornir_portscan.plugins.tasks import portscan
with fork_server():
    nr = InitNornir(config_file=sys.argv[1])
    if sys.argv[3] == "portscan":
        nr = nr.with_runner(PortscanRunner())
    ran = nr.run(task=portscan)
with open(sys.argv[2], "wb") as f:  # orjson: the check should cost the runbook little
    f.write(orjson.dumps({"hosts": {name: {"result": multi[0].result}
                                    for name, multi in ran.items()}},
                        default=str, option=orjson.OPT_NON_STR_KEYS))
"""


def runbook_rows(name: str, rounds: list[dict[str, dict[str, float]]]) -> list[str]:
    """The runbook's figures against ``scan``'s of the same rounds."""
    rows = []
    for runner in ("threaded", "portscan"):
        ratio = statistics.median(r[runner]["wall"] / r["scan"]["wall"] for r in rounds)
        wall = statistics.median(r[runner]["wall"] for r in rounds)
        pss = statistics.median(r[runner]["pss_mib"] for r in rounds)
        bad = max(r[runner]["wrong"] for r in rounds)
        rows.append(f"| {name} | runbook, {runner} runner | {wall:.2f} s | {ratio:.2f}x "
                    f"| {pss:.0f} MiB | {bad:.0f} |")
    return rows


def scenario(name: str, lab: Path, repeat: int, work: Path,
             runbook: list[str] | None = None) -> list[str]:
    cidr, ports, lab_args = SCENARIOS[name]
    ns = f"runscale-{name}"
    truth_file = work / f"{name}-truth.jsonl"
    subprocess.run([sys.executable, str(lab), "up", ns, "--hosts", cidr, "--ports", ports,
                    "--seed", "1", "--truth", str(truth_file), *lab_args],
                   check=True, stdout=subprocess.DEVNULL)
    try:
        inv = work / f"{name}-inv"
        inv.mkdir()
        hosts = len({h for h, _ in truth_of(truth_file)})
        (inv / "subnets.yaml").write_text(
            f"lab:\n  subnet: {cidr}\n  max_hosts: {max(hosts, 4096)}\n"
            f"  data:\n    portscan:\n      ports: {json.dumps(ports)}\n")
        (inv / "config.yaml").write_text(
            "inventory:\n  plugin: PortscanInventory\n  options:\n"
            f"    subnet_file: {inv / 'subnets.yaml'}\n"
            "runner:\n  plugin: threaded\n  options:\n    num_workers: 20\n"
            "logging:\n  enabled: false\n")
        truth = truth_of(truth_file)
        scan_cmd = ["ip", "netns", "exec", ns, *ours(), "scan", cidr, "-p", ports,
                    "--format", "json", "--no-progress"]
        run_cmd = ["ip", "netns", "exec", ns, *ours(), "run", "-c", str(inv / "config.yaml"),
                   "--format", "json", "--no-progress"]
        rows = []
        books: list[dict[str, dict[str, float]]] = []
        for _ in range(repeat):
            scan_out, run_out = work / f"{name}-scan.json", work / f"{name}-run.json"
            s = measure([*scan_cmd, "-o", str(scan_out)])
            r = measure([*run_cmd, "-o", str(run_out)])
            s["wrong"] = wrong(truth, states_of_scan(scan_out))
            r["wrong"] = wrong(truth, states_of_run(run_out))
            rows.append((s, r))
            print(f"  {name}: scan {s['wall']:.2f} s, run {r['wall']:.2f} s "
                  f"({r['wall'] / s['wall']:.2f}x); PSS {s['pss_mib']:.0f} / "
                  f"{r['pss_mib']:.0f} MiB; wrong {s['wrong']:.0f} / {r['wrong']:.0f}",
                  file=sys.stderr, flush=True)
            if runbook is not None:
                book: dict[str, dict[str, float]] = {"scan": s}
                for runner in ("threaded", "portscan"):
                    out = work / f"{name}-runbook.json"
                    b = book[runner] = measure(["ip", "netns", "exec", ns, sys.executable, "-c",
                                                RUNBOOK, str(inv / "config.yaml"), str(out),
                                                runner])
                    b["wrong"] = wrong(truth, states_of_run(out))
                    print(f"  {name}: runbook, {runner} runner {b['wall']:.2f} s "
                          f"({b['wall'] / s['wall']:.2f}x scan's); PSS {b['pss_mib']:.0f} MiB; "
                          f"wrong {b['wrong']:.0f}", file=sys.stderr, flush=True)
                books.append(book)
        if runbook is not None:
            runbook += runbook_rows(f"{hosts:,}", books)
        ratio = statistics.median(r["wall"] / s["wall"] for s, r in rows)
        med = {k: (statistics.median(s[k] for s, _ in rows),
                   statistics.median(r[k] for _, r in rows))
               for k in ("wall", "pss_mib", "rss_mib")}
        bad = max(max(s["wrong"], r["wrong"]) for s, r in rows)
        n_ports = len(truth) // max(hosts, 1)
        return [f"| {hosts:,} x {n_ports:,} | {med['wall'][0]:.2f} s | {med['wall'][1]:.2f} s "
                f"| {ratio:.2f}x | {med['pss_mib'][0]:.0f} / {med['pss_mib'][1]:.0f} MiB "
                f"| {med['rss_mib'][0]:.0f} / {med['rss_mib'][1]:.0f} MiB "
                f"| {(med['pss_mib'][1] * 1024) / hosts:.1f} KiB | {bad:.0f} |"]
    finally:
        subprocess.run([sys.executable, str(lab), "down", ns], check=False,
                       stdout=subprocess.DEVNULL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", type=Path, default=DEFAULT_LAB)
    ap.add_argument("--only", default="4k,16k,full2",
                    help=f"scenarios, comma-separated, of {', '.join(SCENARIOS)}")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of scan then run")
    ap.add_argument("--runbook", action="store_true",
                    help="also time a runbook's nr.run(task=portscan): nornir's threaded "
                         "runner and PortscanRunner")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    print(byte_compile_package(), file=sys.stderr)
    load = os.getloadavg()
    print(f"load average before: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
          f"on {os.cpu_count()} cores", file=sys.stderr)
    rows = ["| hosts x ports | `scan` wall | `run --format json` wall | ratio (median) "
            "| peak PSS of the tree, scan / run | peak RSS (time -f %M), scan / run "
            "| run PSS per host | wrong states (worst round) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    books = ["| hosts | what | wall | against `scan` (median) | peak PSS of the tree "
             "| wrong states (worst round) |", "| --- | --- | --- | --- | --- | --- |"]
    runbook = books if args.runbook else None
    with tempfile.TemporaryDirectory(prefix="run-scale-") as tmp:
        for name in names:
            rows += scenario(name, args.lab, args.repeat, Path(tmp), runbook)
    load = os.getloadavg()
    print(f"load average after: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}", file=sys.stderr)
    print("\n".join(rows))
    if runbook is not None:
        print("\n" + "\n".join(runbook))
    return 0


if __name__ == "__main__":
    sys.exit(main())
