"""Throw-away Linux network namespaces for tests that need more than 127.0.0.1.

A namespace made here has only ``lo``: whatever a scan inside it sends can only
reach addresses of that loopback device, so nftables rules can play dead hosts,
dropped ports and ICMP rejects without a packet ever leaving the namespace.

Everything runs through ``ip netns exec NAME ...`` in subprocesses; the test
process itself never changes namespace. ``ip netns exec`` execs the command in
place (no extra fork), so a signal sent to the child's pid reaches the program.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable, Sequence
from itertools import count
from typing import Any

from tiers import needs

PYTHON = sys.executable

#: A small TCP server: binds every (address, port, banner) it is given, prints
#: "ready", then accepts forever, sending the banner (if any) on each accept.
LISTENER_CODE = textwrap.dedent("""
    import json, selectors, socket, sys
    sel = selectors.DefaultSelector()
    for addr, port, banner in json.loads(sys.argv[1]):
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(512)
        sel.register(s, selectors.EVENT_READ, banner)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            try:
                conn, _ = key.fileobj.accept()
            except OSError:
                continue
            try:
                if key.data:
                    conn.sendall(key.data.encode("latin-1"))
            except OSError:
                pass
            conn.close()
""")

_serial = count()


class NetNSUnavailable(RuntimeError):
    """Namespaces cannot be used here; the message says why (used as the skip reason)."""


def why_unavailable() -> str | None:
    """None when this process can build namespaces with nftables rules, else the reason."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (run the suite as root to include these tests)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"the {tool!r} command is not installed"
    return None


@needs("netns")
class NetNS:
    """One namespace with only ``lo`` up; ``destroy()`` removes it and its processes."""

    def __init__(self, tag: str = "") -> None:
        reason = why_unavailable()
        if reason:
            raise NetNSUnavailable(reason)
        # pid + serial + random: unique even beside another suite run in another pid namespace
        self.name = f"npt{os.getpid()}{tag}{next(_serial)}x{secrets.token_hex(2)}"
        self.children: list[subprocess.Popen[str]] = []
        made = subprocess.run(["ip", "netns", "add", self.name], capture_output=True, text=True)
        if made.returncode != 0:
            raise NetNSUnavailable(f"'ip netns add' failed: {made.stderr.strip()}")
        try:
            self.check("ip", "link", "set", "lo", "up")
        except BaseException:
            self.destroy()
            raise

    # ---- running things inside -------------------------------------------------------------

    def argv(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(self, *cmd: str, input: str | None = None, timeout: float = 30,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*cmd), input=input, capture_output=True, text=True,
                              timeout=timeout, env=env)

    def check(self, *cmd: str, input: str | None = None) -> str:
        done = self.run(*cmd, input=input)
        if done.returncode != 0:
            raise NetNSUnavailable(f"{' '.join(cmd)!r} in namespace failed: "
                                   f"{done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def popen(self, *cmd: str, **kwargs: Any) -> subprocess.Popen[str]:
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        proc = subprocess.Popen(self.argv(*cmd), text=True, **kwargs)
        self.children.append(proc)
        return proc

    def nft(self, ruleset: str) -> None:
        self.check("nft", "-f", "-", input=ruleset)

    def drop_syns_to(self, network: str) -> None:
        """Every connect to ``network`` waits for its timeout (its SYNs are dropped)."""
        self.nft("table inet dropsyn {\n chain c {\n type filter hook input priority 0;\n"
                 f" ip daddr {network} tcp flags syn drop\n }}\n}}\n")

    def sysctl(self, key: str, value: str) -> None:
        self.check("sysctl", "-q", "-w", f"{key}={value}")

    def python(self, code: str, *args: str,
               timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return self.run(PYTHON, "-c", code, *args, timeout=timeout)

    def scan(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """``nornir-portscan scan ARGS`` inside the namespace."""
        return self.run(PYTHON, "-m", "nornir_portscan", "scan", *args, timeout=timeout)

    def scan_popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        return self.popen(PYTHON, "-m", "nornir_portscan", "scan", *args, **kwargs)

    def listen(self, endpoints: Iterable[tuple[str, int, str | None]]) -> subprocess.Popen[str]:
        """Start listeners inside; returns once every socket is bound and listening."""
        spec = json.dumps([list(e) for e in endpoints])
        proc = self.popen(PYTHON, "-c", LISTENER_CODE, spec)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            _, err = proc.communicate(timeout=5)
            raise RuntimeError(f"listener in {self.name} did not start: {err.strip()}")
        return proc

    def run_until_ok(self, *cmd: str, what: str, seconds: float = 60, every: float = 0.2,
                     timeout: float = 30) -> None:
        """Run ``cmd`` inside until it exits 0 (a server answering, workers joined): a
        server's start time is an event to wait for, not a sleep. RuntimeError naming
        ``what`` and the last output after ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            done = self.run(*cmd, timeout=timeout)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                said = (done.stderr.strip() or done.stdout.strip())[-500:]
                raise RuntimeError(f"{what} within {seconds:.0f} s: {said}")
            time.sleep(every)

    def wait_for_syn_sent(self, timeout: float = 60) -> None:
        """Until a connect inside is waiting for an answer: a scan is mid-way (an event,
        where a fixed sleep is too short on a loaded machine)."""
        deadline = time.monotonic() + timeout
        while not self.run("ss", "-tnH", "state", "syn-sent").stdout.strip():
            if time.monotonic() > deadline:
                raise AssertionError(f"no connect waited in {self.name} within {timeout} s")
            time.sleep(0.05)

    # ---- teardown --------------------------------------------------------------------------

    def destroy(self) -> None:
        for proc in self.children:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.communicate(timeout=5)
            except (subprocess.TimeoutExpired, ValueError):
                pass
        self.children.clear()
        # anything else still living inside (a scan a test abandoned) goes too
        pids = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True,
                              text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)


# ---- the lab: one namespace, every port state -----------------------------------------------

LAB_UP = "127.77.1.1"  # answers: LAB_OPEN_PORT listens, LAB_CLOSED_PORT refuses
LAB_DEAD = "127.77.1.2"  # every packet to it is dropped: a dead host
LAB_REJECT = "127.77.1.3"  # TCP to it gets ICMP host-unreachable (deferred, via SO_ERROR)
LAB_NOROUTE = "127.77.9.1"  # 'unreachable' route: connect() fails at once (immediate path)
LAB_OPEN_PORT = 5000
LAB_BANNER_PORT = 5001  # sends LAB_BANNER on accept
LAB_BANNER = "SSH-2.0-lab"
LAB_CLOSED_PORT = 82
LAB_FILTERED_PORT = 81  # dropped on LAB_UP only

LAB_RULES = f"""
table inet nptlab {{
  chain input {{
    type filter hook input priority 0; policy accept;
    ip daddr {LAB_DEAD} drop
    ip daddr {LAB_UP} tcp dport {LAB_FILTERED_PORT} drop
    ip daddr {LAB_REJECT} meta l4proto tcp reject with icmp type host-unreachable
  }}
}}
"""


@needs("netns")
def build_lab() -> NetNS:
    """A namespace with the nftables rules above, the route, and listeners on LAB_UP."""
    ns = NetNS("lab")
    try:
        ns.nft(LAB_RULES)
        # a more specific route than 127/8 in the local table: connects fail in connect()
        ns.check("ip", "route", "add", "unreachable", "127.77.9.0/24", "table", "local")
        ns.listen([(LAB_UP, LAB_OPEN_PORT, None),
                   (LAB_UP, LAB_BANNER_PORT, LAB_BANNER + "\r\n")])
    except BaseException:
        ns.destroy()
        raise
    return ns


# ---- small helpers ---------------------------------------------------------------------------

def listening_ports(host: str = "127.0.0.1") -> set[int]:
    """TCP ports with a listener reachable on ``host`` (IPv4), from /proc/net/tcp{,6}.

    The oracle for "open": a scan may only call a port open if the kernel has a
    listener for it (bound to the address itself or to the wildcard).
    """
    want = {"".join(f"{int(b):02X}" for b in reversed(host.split("."))), "00000000"}
    ports: set[int] = set()
    with open("/proc/net/tcp", encoding="ascii") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            addr, port = fields[1].split(":")
            if fields[3] == "0A" and addr in want:
                ports.add(int(port, 16))
    try:
        with open("/proc/net/tcp6", encoding="ascii") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                addr, port = fields[1].split(":")
                # the IPv6 wildcard also accepts IPv4 unless the socket is v6-only
                if fields[3] == "0A" and addr == "0" * 32:
                    ports.add(int(port, 16))
    except FileNotFoundError:
        pass
    return ports


def jsonl(text: str) -> list[dict[str, Any]]:
    """Parse JSON-lines output; every non-empty line must be one JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def by_key(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Index outcomes by (host, port), failing on any duplicate."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        key = (row["host"], row["port"])
        assert key not in out, f"duplicate outcome for {key}: {out[key]} and {row}"
        out[key] = row
    return out
