#!/usr/bin/env python3
"""Benchmarks against nmap, in lab namespaces built by ../shared/lab/netlab.py.

Every scenario runs nornir-portscan and nmap in the same namespace, in the same
run, and prints ratios: this machine is shared and noisy, absolute times drift.
Accuracy is scored against the lab's ground truth.

    sudo python3 benchmarks/bench.py [--lab PATH] [--repeat N]
        [--only full,sweep,wan,sweep10,big,nornir]
    sudo python3 benchmarks/bench.py --netns LAB --truth T.jsonl --target CIDR --ports P
    sudo python3 benchmarks/bench.py --against OLD_TREE [--only full,sweep,big] [--repeat N]

``--against`` compares two trees of nornir-portscan instead of ours and nmap: the copy
this Python imports (new) and the source tree OLD_TREE (a ``git worktree add`` of an older
commit), run alternately, old new old new ..., in the same lab, with new/old ratios of
the medians of wall, CPU and peak RSS; both reports are scored against the ground truth.

Needs root, iproute2, nftables, nmap; nornir-portscan installed.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_LAB = HERE.parent.parent / "shared" / "lab" / "netlab.py"

# name: (lab hosts, lab ports, extra lab args, our args, nmap args, targets)
SCENARIOS: dict[str, dict[str, object]] = {
    "full": {"hosts": "127.20.0.1/32", "ports": "1-65535",
             "lab": ["--open", "40", "--filtered", "20"],
             "target": "127.20.0.1", "scan_ports": "-",
             "nmap": ["-sT", "-Pn", "-n", "-p-"]},
    "sweep": {"hosts": "127.10.0.0/24", "ports": "1-1024", "lab": [],
              "target": "127.10.0.0/24", "scan_ports": "1-1024",
              "nmap": ["-sT", "-n", "--unprivileged", "-p", "1-1024"]},
    "wan": {"hosts": "198.18.1.0/26", "ports": "1-300",
            "lab": ["--delay-ms", "30", "--jitter-ms", "10", "--loss", "0.05"],
            "target": "198.18.1.0/26", "scan_ports": "1-300",
            "nmap": ["-sT", "-n", "--unprivileged", "-p", "1-300"]},
    # the /16's per-host work on a /24: does throughput hold up as the network grows?
    "sweep10": {"hosts": "127.30.0.0/24", "ports": "1-10", "lab": ["--open", "0"],
                "target": "127.30.0.0/24", "scan_ports": "1-10",
                "nmap": ["-sT", "-n", "--unprivileged", "-p", "1-10"]},
    # a /16 x 10 (655,340 probes, forked shards): the per-host costs that a /24 hides.
    # No listeners: the lab's one listener process cannot hold ~80,000 of them
    "big": {"hosts": "127.64.0.0/16", "ports": "1-10", "lab": ["--open", "0"],
            "target": "127.64.0.0/16", "scan_ports": "1-10",
            "nmap": None},  # nmap on a /16 x 10 takes minutes; ours is checked for scale
}


def byte_compile_package() -> str:
    """Compile nornir_portscan's modules to bytecode, as ``pip install`` does for a regular
    install. With PYTHONDONTWRITEBYTECODE set (as on the development machine) an editable
    install would otherwise recompile every module on every run: about 50 ms of CPU that
    no installed copy pays."""
    spec = importlib.util.find_spec("nornir_portscan")
    if spec is None or not spec.submodule_search_locations:
        return "nornir_portscan not importable here: not byte-compiled"
    where = next(iter(spec.submodule_search_locations))
    compileall.compile_dir(where, quiet=1)
    return f"byte-compiled {where}"


def ours_exe() -> str:
    """The nornir-portscan installed with this Python: a version manager's shim (pyenv's
    is a shell script) would add its own start-up to every figure."""
    exe = Path(sys.executable).parent / "nornir-portscan"
    return str(exe) if exe.exists() else "nornir-portscan"


def timed(cmd: list[str], stdout: Path | None = None) -> dict[str, float]:
    """Wall, CPU (user+sys of the whole process tree) and peak RSS of one command, and the
    connect() attempts nornir-portscan's summary line reports (0 for nmap)."""
    fmt = "%e %U %S %M"
    with tempfile.NamedTemporaryFile("r") as tf:
        out = open(stdout, "w") if stdout else subprocess.DEVNULL
        try:
            done = subprocess.run(["/usr/bin/time", "-f", fmt, "-o", tf.name, *cmd], stdout=out,
                                  stderr=subprocess.PIPE, text=True, check=False)
        finally:
            if stdout:
                out.close()  # type: ignore[union-attr]
        wall, user, sys_, rss = tf.read().split()[-4:]
    sent = re.search(r"\((\d+) connects\)", done.stderr)
    return {"wall": float(wall), "cpu": float(user) + float(sys_), "rss_mib": int(rss) / 1024,
            "connects": float(sent.group(1)) if sent else 0.0}


def nmap_to_jsonl(xml_path: Path, truth: dict[tuple[str, int], str], out: Path) -> None:
    """nmap lists only the interesting ports; the rest take the host's extraports state."""
    root = ET.parse(xml_path).getroot()
    ports_by_host: dict[str, dict[int, str]] = {}
    default: dict[str, str] = {}
    for host in root.iter("host"):
        address_el, status_el = host.find("address"), host.find("status")
        if address_el is None or status_el is None or status_el.get("state") != "up":
            continue
        addr = address_el.get("addr", "")
        ports_el = host.find("ports")
        ports_by_host[addr] = {}
        if ports_el is None:
            continue
        extra = ports_el.find("extraports")
        if extra is not None:
            default[addr] = extra.get("state", "closed")
        for p in ports_el.iter("port"):
            state_el = p.find("state")
            if state_el is not None:
                ports_by_host[addr][int(p.get("portid", "0"))] = state_el.get("state", "")
    with open(out, "w") as f:
        for (h, port), _ in truth.items():
            if h in ports_by_host:
                st = ports_by_host[h].get(port, default.get(h, "closed"))
            else:
                st = "filtered"  # host reported down
            f.write(json.dumps({"host": h, "port": port, "state": st}) + "\n")


def score(lab: Path, truth: Path, got: Path) -> dict[str, object]:
    r = subprocess.run([sys.executable, str(lab), "score", str(truth), str(got)],
                       capture_output=True, text=True)
    scored: dict[str, object] = json.loads(r.stdout.strip().splitlines()[-1])
    return scored


def run_scenario(name: str, lab: Path, repeat: int, against: Path | None = None) -> list[str]:
    sc = SCENARIOS[name]
    ns = f"bench-{name}"
    work = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    truth = work / "truth.jsonl"
    subprocess.run([sys.executable, str(lab), "up", ns, "--hosts", str(sc["hosts"]), "--ports",
                    str(sc["ports"]), "--truth", str(truth), *sc["lab"]],  # type: ignore[misc]
                   check=True, stdout=subprocess.DEVNULL)
    try:
        if against is not None:
            return compare_trees(name, sc, ns, truth, lab, repeat, work, against)
        return measure(name, sc, ns, truth, lab, repeat, work)
    finally:
        subprocess.run([sys.executable, str(lab), "down", ns], check=False)


def measure(name: str, sc: dict[str, object], ns: str, truth: Path, lab: Path, repeat: int,
            work: Path) -> list[str]:
    """Time and score both scanners in namespace ``ns`` (already up) against ``truth``."""
    rows = []
    ours_cmd = ["ip", "netns", "exec", ns, ours_exe(), "scan", str(sc["target"]),
                "-p", str(sc["scan_ports"]), "--format", "jsonl"]
    ours, theirs = [], []
    got = work / "ours.jsonl"
    for _ in range(repeat):
        ours.append(timed(ours_cmd, got))
        if sc["nmap"] is not None:
            xml = work / "nmap.xml"
            theirs.append(timed(["ip", "netns", "exec", ns, "nmap", *sc["nmap"],  # type: ignore[misc]
                                 "-oX", str(xml), str(sc["target"])]))
    s_ours = score(lab, truth, got)
    tmap = {}
    with open(truth) as f:
        for line in f:
            r = json.loads(line)
            tmap[(r["host"], int(r["port"]))] = r["state"]
    med = {k: statistics.median(x[k] for x in ours)
           for k in ("wall", "cpu", "rss_mib", "connects")}
    probes = int(s_ours["probes"])  # type: ignore[call-overload]
    line = (f"{name:<7} ours   wall {med['wall']:7.2f}s  cpu {med['cpu']:6.2f}s  "
            f"rss {med['rss_mib']:6.1f}MiB  {probes / med['wall']:9.0f} probes/s  "
            f"wrong {s_ours['wrong_state']} missing {s_ours['missing']}  "
            f"({med['connects']:.0f} connects, {med['connects'] / med['wall']:.0f}/s)")
    rows.append(line)
    if theirs:
        nmap_jsonl = work / "nmap.jsonl"
        nmap_to_jsonl(work / "nmap.xml", tmap, nmap_jsonl)
        s_nmap = score(lab, truth, nmap_jsonl)
        nm = {k: statistics.median(x[k] for x in theirs) for k in ("wall", "cpu", "rss_mib")}
        rows.append(f"{name:<7} nmap   wall {nm['wall']:7.2f}s  cpu {nm['cpu']:6.2f}s  "
                    f"rss {nm['rss_mib']:6.1f}MiB  {probes / nm['wall']:9.0f} probes/s  "
                    f"wrong {s_nmap['wrong_state']} (nmap has no 'unreachable' state)")
        rows.append(f"{name:<7} ratio  wall {med['wall'] / nm['wall']:.2f}x  "
                    f"cpu {med['cpu'] / max(nm['cpu'], 1e-3):.2f}x  "
                    "(ours / nmap, lower is better)")
    return rows


def compare_trees(name: str, sc: dict[str, object], ns: str, truth: Path, lab: Path,
                  repeat: int, work: Path, old_tree: Path) -> list[str]:
    """New (the package this Python imports) against ``old_tree``, alternated, in ``ns``."""
    spec = importlib.util.find_spec("nornir_portscan")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("bench: --against needs nornir_portscan importable (the new tree)")
    new_tree = Path(next(iter(spec.submodule_search_locations))).parent
    compileall.compile_dir(old_tree / "nornir_portscan", quiet=1)
    cmd = [ours_exe(), "scan", str(sc["target"]), "-p", str(sc["scan_ports"]),
           "--format", "jsonl"]
    runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    trees = {"old": old_tree, "new": new_tree}
    for _ in range(repeat):
        for which in ("old", "new"):
            runs[which].append(timed(["ip", "netns", "exec", ns, "env",
                                      f"PYTHONPATH={trees[which]}", *cmd],
                                     work / f"{which}.jsonl"))
    rows = []
    med = {w: {k: statistics.median(x[k] for x in runs[w]) for k in ("wall", "cpu", "rss_mib")}
           for w in runs}
    for which in ("old", "new"):
        scored = score(lab, truth, work / f"{which}.jsonl")
        m = med[which]
        rows.append(f"{name:<7} {which:<5}  wall {m['wall']:7.2f}s  cpu {m['cpu']:6.2f}s  "
                    f"rss {m['rss_mib']:6.1f}MiB  wrong {scored['wrong_state']} "
                    f"missing {scored['missing']}  ({trees[which]})")
    rows.append(f"{name:<7} ratio  wall {med['new']['wall'] / med['old']['wall']:.3f}  "
                f"cpu {med['new']['cpu'] / med['old']['cpu']:.3f}  "
                f"rss {med['new']['rss_mib'] / med['old']['rss_mib']:.3f}  (new / old, "
                f"medians of {repeat} alternated runs)")
    return rows


def run_nornir(lab: Path) -> list[str]:
    """Scenario 3: nr.run(task=portscan) against nornir_utils' tcp_ping, its own script."""
    r = subprocess.run([sys.executable, str(HERE / "nornir_vs_tcp_ping.py"), "--netlab", str(lab)],
                       capture_output=True, text=True, check=False)
    lines = [f"nornir {line.strip()}" for line in r.stdout.splitlines() if line.strip()]
    return lines or [f"nornir failed: {r.stderr.strip()[-300:]}"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", type=Path, default=DEFAULT_LAB)
    ap.add_argument("--only", default="full,sweep,wan,sweep10,big,nornir")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--against", type=Path, metavar="OLD_TREE",
                    help="compare with the nornir-portscan source tree OLD_TREE instead of nmap")
    given = ap.add_argument_group("a lab that is already up (instead of --only)")
    given.add_argument("--netns", help="its namespace, as netlab.py named it")
    given.add_argument("--truth", type=Path, help="its ground truth (netlab.py up --truth)")
    given.add_argument("--target", help="what to scan, e.g. 127.10.0.0/24")
    given.add_argument("--ports", help="ports to scan, e.g. 1-1024")
    given.add_argument("--nmap-args", default="-sT -n --unprivileged",
                       help="nmap's options beside -p (default: %(default)s)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root (it builds network namespaces)")
    print(f"# nornir-portscan vs nmap, {os.cpu_count()} cores, median of {a.repeat}; "
          f"{byte_compile_package()}")
    if a.netns:
        if not (a.truth and a.target and a.ports):
            sys.exit("bench: --netns needs --truth, --target and --ports")
        sc: dict[str, object] = {"target": a.target, "scan_ports": a.ports,
                                 "nmap": [*a.nmap_args.split(), "-p", a.ports]}
        work = Path(tempfile.mkdtemp(prefix="bench-given-"))
        rows = (compare_trees("given", sc, a.netns, a.truth, a.lab, a.repeat, work, a.against)
                if a.against is not None
                else measure("given", sc, a.netns, a.truth, a.lab, a.repeat, work))
        for row in rows:
            print(row, flush=True)
        return 0
    for name in a.only.split(","):
        rows = run_nornir(a.lab) if name.strip() == "nornir" else run_scenario(
            name.strip(), a.lab, a.repeat, a.against)
        for row in rows:
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
