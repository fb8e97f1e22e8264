#!/usr/bin/env python3
"""Names at scale: what resolving 2,000 names adds to a scan, behind a resolver 20 ms away.

A netlab WAN lab (../shared/lab/netlab.py up NAME --delay-ms 20) puts 2,000 hosts behind
the lab's relay; dnsmasq runs beside the hosts (in NAME-srv) and serves a name for each,
so every DNS question crosses the relay too. The scanner's namespace gets its own
resolv.conf (/etc/netns/NAME/resolv.conf, which ``ip netns exec`` mounts over
/etc/resolv.conf): nothing is ever asked of the machine's own resolver. It prints, as
the median of ``--repeat`` runs taken alternately:

* ``scan`` of the 2,000 addresses, and of the 2,000 names (``-iL``), and their ratio;
* ``run`` over a hosts.yaml of the 2,000 names;
* ``nmap -sT -Pn -iL`` of the names (once; skipped without nmap);
* ``scan`` of 16 and of 2,000 names whose resolver never answers (nftables drops DNS to
  a second nameserver address).

``--old PATH`` (a checkout of an older nornir_portscan) runs each scan with that code too
(its silent 2,000-name scan is skipped unless ``--old-silent``: it took 42 minutes).

    sudo python3 benchmarks/names.py [--names 2000] [--delay-ms 20] [--repeat 3]
                                     [--old PATH] [--lab PATH]

Needs root, iproute2, nftables, dnsmasq (dnsmasq-base); nmap is optional. On a shared
machine, read the ratios rather than the seconds.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_LAB = HERE.parent.parent / "shared" / "lab" / "netlab.py"
PORTS = "22,80,443"
PREFIX = "198.18.0.0/21"  # 2,046 hosts: the first --names get a name
RESOLVER = "198.18.7.253"  # dnsmasq, beside the hosts
SILENT = "198.18.7.254"  # dropped beside the hosts: a resolver that never answers
DOMAIN = "dc1.example.net"
IN_SCAN = re.compile(r" in ([0-9.]+) s")  # the summary line's own time: start-up left out


def sh(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=True, text=True, **kw)  # type: ignore[call-overload, no-any-return]


class Bench:
    def __init__(self, a: argparse.Namespace, work: Path) -> None:
        self.a = a
        self.work = work
        self.name = f"nptnames{os.getpid()}"
        self.conf = Path("/etc/netns") / self.name
        self.dnsmasq: subprocess.Popen[str] | None = None
        hosts = list(ipaddress.ip_network(PREFIX).hosts())[:a.names]
        self.pairs = [(f"h{i}.{DOMAIN}", str(h)) for i, h in enumerate(hosts)]

    # ---- the lab ---------------------------------------------------------------------------

    def up(self) -> None:
        a = self.a
        sh(sys.executable, str(a.lab), "up", self.name, "--hosts", PREFIX, "--ports", PORTS,
           "--delay-ms", str(a.delay_ms), "--alive", "1", "--unreach", "0", "--open", "1",
           "--filtered", "0", stdout=subprocess.DEVNULL)
        records = self.work / "names.hosts"
        records.write_text("".join(f"{ip} {name}\n" for name, ip in self.pairs),
                           encoding="ascii")
        self.dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", f"{self.name}-srv", "dnsmasq", "--no-daemon",
             "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--user=root",
             f"--listen-address={RESOLVER}", "--bind-dynamic", f"--local=/{DOMAIN}/",
             f"--addn-hosts={records}", "--log-facility=-"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert self.dnsmasq.stderr is not None
        for line in self.dnsmasq.stderr:
            if "started" in line:
                break
        # (its stderr is left unread: without --log-queries it says little more)
        self.conf.mkdir(parents=True, exist_ok=True)
        self.resolver(RESOLVER)
        # dropped where it arrives: a drop on the way out would fail the send at once
        sh("ip", "netns", "exec", f"{self.name}-srv", "nft", "-f", "-", input=f"""
table inet silentdns {{
  chain input {{
    type filter hook input priority 0; policy accept;
    ip daddr {SILENT} udp dport 53 drop
    ip daddr {SILENT} tcp dport 53 drop
  }}
}}
""")

    def resolver(self, address: str) -> None:
        self.conf.joinpath("resolv.conf").write_text(f"nameserver {address}\n",
                                                     encoding="ascii")

    def down(self) -> None:
        if self.dnsmasq is not None and self.dnsmasq.poll() is None:
            self.dnsmasq.kill()
            self.dnsmasq.wait()
        subprocess.run([sys.executable, str(self.a.lab), "down", self.name],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.conf, ignore_errors=True)

    # ---- timing ----------------------------------------------------------------------------

    def timed(self, argv: list[str], code: Path | None = None) -> tuple[float, str]:
        """Seconds from start to exit of ``argv`` in the scanner's namespace (startup
        included, as a person waits for it), and its last line on stderr; ``code`` is the
        package on PYTHONPATH."""
        env = dict(os.environ)
        if code is not None:
            env["PYTHONPATH"] = str(code)
        started = time.monotonic()
        # (run from the work directory: ``python -m`` puts the current one first on the path)
        done = subprocess.run(["ip", "netns", "exec", self.name, *argv], env=env, cwd=self.work,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        took = time.monotonic() - started
        if done.returncode not in (0, 1):
            raise RuntimeError(f"{' '.join(argv[:4])}...: exit {done.returncode}: "
                               f"{done.stderr.strip()[-500:]}")
        said = done.stderr.strip().splitlines()
        return took, said[-1] if said else ""

    def scan(self, code: Path, *targets: str) -> list[str]:
        return [sys.executable, "-m", "nornir_portscan", "scan", *targets, "-p", PORTS,
                "--format", "jsonl", "-o", str(self.work / f"out{time.monotonic_ns()}.jsonl")]


def median_of(runs: dict[str, list[float]], key: str) -> str:
    """``wall s (own s)``: the wall time, and the time the tool's summary line gives."""
    values, own = runs.get(key) or [], runs.get(f"{key} (own)") or []
    if not values:
        return "-"
    text = f"{statistics.median(values):.2f} s"
    return f"{text} ({statistics.median(own):.2f} s)" if own else text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", type=Path, default=DEFAULT_LAB)
    ap.add_argument("--names", type=int, default=2000)
    ap.add_argument("--delay-ms", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--old", type=Path, default=None,
                    help="a checkout of an older nornir_portscan to compare with")
    ap.add_argument("--old-silent", action="store_true",
                    help="also time the old code's silent 2,000-name scan (minutes)")
    ap.add_argument("--no-nmap", action="store_true")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("benchmarks/names.py: run as root (it builds network namespaces)")
    if not a.lab.is_file():
        sys.exit(f"benchmarks/names.py: no netlab at {a.lab}: give --lab PATH/netlab.py")
    new = HERE.parent
    codes: dict[str, Path] = {"new": new}
    if a.old is not None:
        codes["old"] = a.old.resolve()
    # SIGTERM unwinds like Ctrl-C, so the lab and its dnsmasq are taken down
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="nptnames") as tmp:
        work = Path(tmp)
        bench = Bench(a, work)
        try:
            bench.up()
            return report(bench, a, codes, work)
        finally:
            bench.down()


def report(bench: Bench, a: argparse.Namespace, codes: dict[str, Path], work: Path) -> int:
    names = [n for n, _ in bench.pairs]
    addresses = [ip for _, ip in bench.pairs]
    name_file, addr_file = work / "names.txt", work / "addresses.txt"
    name_file.write_text("\n".join(names) + "\n", encoding="ascii")
    addr_file.write_text("\n".join(addresses) + "\n", encoding="ascii")
    inventory = work / "inventory"
    inventory.mkdir()
    inventory.joinpath("hosts.yaml").write_text("".join(
        f"{n.split('.')[0]}:\n  hostname: {n}\n  data: {{portscan: {{ports: [22, 80, 443]}}}}\n"
        for n in names), encoding="ascii")
    runs: dict[str, list[float]] = {}

    def add(key: str, timed: tuple[float, str]) -> None:
        took, said = timed
        runs.setdefault(key, []).append(took)
        own = IN_SCAN.search(said)
        if own:
            runs.setdefault(f"{key} (own)", []).append(float(own.group(1)))
        print(f"  {key}: {took:.2f} s  [{said[:100]}]", file=sys.stderr, flush=True)

    def name_scan(code: Path, label: str) -> list[str]:
        # the old code has no -iL: its names go on the command line, as the did
        return bench.scan(code, *(["-iL", str(name_file)] if label == "new" else names))

    def argv_for(kind: str, label: str, code: Path) -> list[str]:
        if kind == "scan addresses":
            return bench.scan(code, *addresses)
        if kind == "scan names":
            return name_scan(code, label)
        return [sys.executable, "-m", "nornir_portscan", "run", "-i", str(inventory),
                "--format", "json", "-o", str(work / "run.json")]

    for _ in range(a.repeat):  # alternated, so a busy spell hits every kind alike
        for label, code in codes.items():
            for kind in ("scan addresses", "scan names", "run names"):
                add(f"{label} {kind}", bench.timed(argv_for(kind, label, code), code))
    if not a.no_nmap and shutil.which("nmap"):
        add("nmap -sT -Pn -iL names", bench.timed(
            ["nmap", "-sT", "-Pn", "-p", PORTS, "-iL", str(name_file),
             "-oX", str(work / "nmap.xml")]))
    bench.resolver(SILENT)
    silent16 = work / "silent16.txt"
    silent16.write_text("\n".join(names[:16]) + "\n", encoding="ascii")
    for label, code in codes.items():
        few = bench.scan(code, *(["-iL", str(silent16)] if label == "new" else names[:16]))
        add(f"{label} silent 16 names", bench.timed(few, code))
        if label == "new" or a.old_silent:
            add(f"{label} silent {len(names)} names", bench.timed(name_scan(code, label),
                                                                   code))
    bench.resolver(RESOLVER)

    print(f"\n{len(names)} hosts x {PORTS} behind a {a.delay_ms:g} ms relay, dnsmasq beside "
          f"them; median of {a.repeat}: wall, start-up included (and the summary line's "
          f"own time)\n")
    print(f"| what | {' | '.join(codes)} |")
    print(f"| --- | {' | '.join('---' for _ in codes)} |")
    rows = [("scan of the addresses", "scan addresses"),
            ("scan of the names", "scan names"), ("run over hosts.yaml of the names",
                                                  "run names"),
            ("scan of 16 names, silent resolver", "silent 16 names"),
            (f"scan of {len(names)} names, silent resolver", f"silent {len(names)} names")]
    for text, key in rows:
        print(f"| {text} | {' | '.join(median_of(runs, f'{lb} {key}') for lb in codes)} |")
    if "nmap -sT -Pn -iL names" in runs:
        print(f"| nmap -sT -Pn -iL of the names | {median_of(runs, 'nmap -sT -Pn -iL names')}"
              f"{' | -' * (len(codes) - 1)} |")
    print()
    for label in codes:
        for what, suffix in (("wall", ""), ("own time", " (own)")):
            scans = (runs.get(f"{label} scan addresses{suffix}"),
                     runs.get(f"{label} scan names{suffix}"))
            if scans[0] and scans[1]:
                ratio = statistics.median(scans[1]) / statistics.median(scans[0])
                print(f"{label}: scan of the names / of the addresses, {what}: {ratio:.2f} "
                      f"(the goal: at most 1.25)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
