"""Faults a scan must survive (issue 6): the machine runs short of descriptors or source
ports, listeners misbehave, the user interrupts, one nornir host's data is broken, names
resolve oddly. Plus the accounting invariant: H addresses x P ports give H x P outcomes,
each (address, port) exactly once, whatever happened on the way.

Network rule: loopback of this machine, or of a namespace the test builds (``netns.py``).
"""

from __future__ import annotations

import errno
import json
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _nornir_support import closed_port as free_port
from _nornir_support import init_nornir, listening, stalled_port, write_yaml_files
from accounting import exactly_once
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from netns import LAB_DEAD, LAB_UP, PYTHON, NetNS, by_key, jsonl

from nornir_portscan import PortState, scan
from nornir_portscan.errors import InventoryError
from nornir_portscan.plugins.common.ports import each_port
from nornir_portscan.plugins.tasks import portscan

OPEN, CLOSED, FILTERED = PortState.OPEN, PortState.CLOSED, PortState.FILTERED




# ---- descriptors ------------------------------------------------------------------------------

LISTEN_PORTS = (1500, 1501, 2222, 3999, 4000)  # inside the namespace; scanned as 1001-4000


@pytest.mark.parametrize("held", [0, 40], ids=["rlimit64", "rlimit64-40-fds-held"])
def test_fd_limit_far_below_the_concurrency_asked_for(make_netns: Callable[[], NetNS],
                                                      held: int) -> None:
    """``ulimit -n 64`` and --concurrency 5000: the scan completes, every outcome right.

    With 40 inherited descriptors held open, fewer sockets fit than the limit suggests.
    Loopback answers mostly arrive inside connect(), so sockets are short-lived here;
    test_engine.py::test_fd_limit_is_really_hit_on_silent_ports forces EMFILE itself.
    """
    ns = make_netns()
    ns.listen([("127.0.0.1", p, None) for p in LISTEN_PORTS])
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(held)]

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    try:
        done = subprocess.run(
            ns.argv(PYTHON, "-m", "nornir_portscan", "scan", "127.0.0.1", "-p", "1001-4000",
                    "--concurrency", "5000", "--format", "jsonl"),
            preexec_fn=limit, pass_fds=fds, capture_output=True, text=True, timeout=60)
    finally:
        for fd in fds:
            os.close(fd)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    rows = by_key(jsonl(done.stdout))
    assert set(rows) == {("127.0.0.1", p) for p in range(1001, 4001)}
    assert {p for (_, p), r in rows.items() if r["state"] == "open"} == set(LISTEN_PORTS)
    assert Counter((r["state"], r["reason"]) for r in rows.values()) == {
        ("open", "syn-ack"): len(LISTEN_PORTS), ("closed", "conn-refused"): 3000 - 5}


# ---- ephemeral ports --------------------------------------------------------------------------

#: Runs a scan inside a namespace and counts the local errors the engine retried.
COUNTING_SCAN = textwrap.dedent("""
    import collections, json, sys
    from nornir_portscan.engine.core import scheduler
    retried = collections.Counter()
    original = scheduler.Scheduler.on_local_error
    def counting(self, probe, err, now):
        retried[err] += 1
        return original(self, probe, err, now)
    scheduler.Scheduler.on_local_error = counting
    from nornir_portscan import scan
    outcomes = [o.as_dict() for o in scan("127.0.0.1", sys.argv[1], concurrency=5000)]
    print(json.dumps({"retried": retried, "outcomes": outcomes}))
""")

#: Binds every port of the namespace's ephemeral range (so connect() finds no source port),
#: says "ready", and lets them go after argv[1] seconds.
HOLD_SOURCE_PORTS = textwrap.dedent("""
    import socket, sys, time
    held = []
    for port in range(40000, 40008):
        s = socket.socket()
        s.bind(("0.0.0.0", port))
        held.append(s)
    print("ready", flush=True)
    time.sleep(float(sys.argv[1]))
    for s in held:
        s.close()
    time.sleep(60)
""")


def check_port_sweep(rows: dict[tuple[str, int], dict[str, Any]], ports: range,
                     listening: set[int]) -> None:
    assert set(rows) == {("127.0.0.1", p) for p in ports}
    states = {(p, r["state"], r["reason"]) for (_, p), r in rows.items()}
    assert states == {(p, "open", "syn-ack") if p in listening else (p, "closed", "conn-refused")
                      for p in ports}


def test_tiny_ephemeral_port_range(make_netns: Callable[[], NetNS]) -> None:
    """Eight source ports for 5000 probes: the scan completes with every outcome right."""
    ns = make_netns()
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40007")
    ns.listen([("127.0.0.1", p, None) for p in LISTEN_PORTS])
    done = ns.scan("127.0.0.1", "-p", "1-5000", "--concurrency", "5000", "--format", "jsonl",
                   timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    check_port_sweep(by_key(jsonl(done.stdout)), range(1, 5001), set(LISTEN_PORTS))


def test_ephemeral_ports_exhausted_slows_down_rather_than_fails(
        make_netns: Callable[[], NetNS]) -> None:
    """Every source port taken for half a second: connect() fails with EADDRNOTAVAIL.

    (Distinct destinations can share a source port, so a small range alone rarely runs
    dry; binding the whole range does.) The engine must retry those probes once ports are
    free again, so the outcomes are exactly those of an undisturbed scan.
    """
    ns = make_netns()
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40007")
    ns.listen([("127.0.0.1", p, None) for p in LISTEN_PORTS])
    holder = ns.popen(PYTHON, "-c", HOLD_SOURCE_PORTS, "0.5")
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    done = ns.python(COUNTING_SCAN, "1-5000", timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(done.stdout)
    assert int(doc["retried"].get(str(errno.EADDRNOTAVAIL), 0)) > 0, \
        "no connect() ran short of source ports: the test did not exercise the fault"
    check_port_sweep(by_key(doc["outcomes"]), range(1, 5001), set(LISTEN_PORTS))


# ---- listeners that misbehave -----------------------------------------------------------------


class ResettingListeners:
    """Listeners on a thread that accept each connection and reset it at once."""

    def __init__(self, count: int) -> None:
        self.socks = []
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            s.listen(128)
            s.setblocking(False)
            self.socks.append(s)
        self.ports = sorted(s.getsockname()[1] for s in self.socks)
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        by_fd = {s.fileno(): s for s in self.socks}
        with select.epoll() as ep:
            for fd in by_fd:
                ep.register(fd, select.EPOLLIN)
            while not self._stop.is_set():
                for fd, _ in ep.poll(0.05):
                    while True:
                        try:
                            conn, _ = by_fd[fd].accept()
                        except OSError:
                            break
                        self.accepted += 1
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                        conn.close()  # RST, right after the handshake completed

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for s in self.socks:
            s.close()


@pytest.fixture
def resetting() -> Iterator[ResettingListeners]:
    listeners = ResettingListeners(50)
    yield listeners
    listeners.close()


def test_accept_then_reset_gives_one_outcome_per_port(resetting: ResettingListeners) -> None:
    for _ in range(3):
        got = exactly_once(list(scan("127.0.0.1", resetting.ports)), ["127.0.0.1"],
                        resetting.ports)
        assert {o.state for o in got.values()} <= {OPEN, CLOSED}
    assert resetting.accepted > 0


def test_accept_then_reset_reads_as_a_reset_after_the_handshake(
        resetting: ResettingListeners) -> None:
    """A service that accepts and resets at once cannot be told from a SYN proxy's closed
    port (docs/engine.md): both are ``closed``, ``reset-after-syn-ack``. A reset that comes
    after the hold (this listener's thread is slow to run on a loaded machine) leaves the
    port ``open``; nothing else may be said of it."""
    said: set[tuple[str, str]] = set()
    for _ in range(5):
        got = exactly_once(list(scan("127.0.0.1", resetting.ports)), ["127.0.0.1"],
                        resetting.ports)
        said |= {(o.state.value, o.reason) for o in got.values()}
    assert said <= {("closed", "reset-after-syn-ack"), ("open", "syn-ack")}, said
    assert ("closed", "reset-after-syn-ack") in said


def test_full_backlog_listener_is_filtered(listener: Callable[..., int],
                                           closed_port: Callable[..., int]) -> None:
    """listen(0) and a queue already full: Linux drops further SYNs without an answer.

    To a connect scanner that is silence, exactly as behind a dropping firewall, so the
    honest outcome is filtered / no-response (after the retries), once, and the rest of
    the scan is unaffected.
    """
    with stalled_port() as port:
        if port is None:
            pytest.skip("this kernel does not stall connects to a listener with a full queue")
        op, cp = listener(), closed_port()
        ports = sorted([port, op, cp])
        got = exactly_once(list(scan("127.0.0.1", ports, timeout=0.3, retries=1)),
                        ["127.0.0.1"], ports)
    stalled = got[("127.0.0.1", port)]
    assert (stalled.state, stalled.reason, stalled.rtt_ms) == (FILTERED, "no-response", None)
    assert stalled.attempts == 2
    assert got[("127.0.0.1", op)].state is OPEN
    assert got[("127.0.0.1", cp)].state is CLOSED


class FlappingPorts:
    """Ports whose listener a thread opens and closes every couple of milliseconds.

    The ports lie below the ephemeral range, so no connect elsewhere takes one as its
    source port while it is closed, and the listener can bind it again.
    """

    def __init__(self, count: int, period: float = 0.002) -> None:
        lo = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        self.ports: list[int] = []
        for port in range(max(1024, lo - 4000), lo):
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("127.0.0.1", port))
            except OSError:
                continue
            self.ports.append(port)
            if len(self.ports) == count:
                break
        self.period = period
        self.toggles = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._flap, daemon=True)
        self._thread.start()

    def _flap(self) -> None:
        live: dict[int, socket.socket] = {}
        while not self._stop.is_set():
            for port in self.ports:
                sock = live.pop(port, None)
                if sock is not None:
                    sock.close()
                    continue
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                    sock.listen(16)
                except OSError:
                    sock.close()
                    continue
                live[port] = sock
            self.toggles += 1
            time.sleep(self.period)
        for sock in live.values():
            sock.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def test_port_flipping_state_during_the_scan(listener: Callable[..., int],
                                              closed_port: Callable[..., int]) -> None:
    # a listener that closes resets the connections still in its queue: one closed within
    # the engine's hold after the handshake (a couple of ms on loopback) reads as closed,
    # reset-after-syn-ack, so the ports stay up several holds at a time
    flapping = FlappingPorts(20, period=0.02)
    try:
        steady_open, steady_closed = listener(), closed_port()
        ports = sorted([*flapping.ports, steady_open, steady_closed])
        seen: Counter[str] = Counter()
        for _ in range(30):
            got = exactly_once(list(scan("127.0.0.1", ports, timeout=1.0)), ["127.0.0.1"], ports)
            assert got[("127.0.0.1", steady_open)].state is OPEN
            assert got[("127.0.0.1", steady_closed)].state is CLOSED
            for p in flapping.ports:
                o = got[("127.0.0.1", p)]
                assert o.state in (OPEN, CLOSED), o
                seen[o.state.value] += 1
    finally:
        flapping.close()
    assert len(flapping.ports) == 20
    assert seen["open"] and seen["closed"], f"the ports never flipped under the scan: {seen}"


# ---- interruption -----------------------------------------------------------------------------


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".portscan-"))


@pytest.mark.parametrize(("sig", "fmt", "ports"), [
    (signal.SIGINT, "jsonl", "1-2000"),
    (signal.SIGTERM, "jsonl", "1-2000"),
    (signal.SIGINT, "json", "1-2000"),
    (signal.SIGTERM, "json", "1-2000"),
    (signal.SIGTERM, "jsonl", "1-6000"),  # 12000 probes: sharded over worker processes
], ids=["sigint-jsonl", "sigterm-jsonl", "sigint-json", "sigterm-json", "sigterm-sharded"])
def test_interrupt_mid_scan_writes_a_complete_file(lab: NetNS, tmp_path: Path,
                                                   sig: signal.Signals, fmt: str,
                                                   ports: str) -> None:
    out = tmp_path / f"partial.{fmt}"
    # LAB_UP answers at once; LAB_DEAD holds its probes for 5 s: mid-scan 1 s after the
    # first probe waits (counted from then: a loaded machine may take longer to start)
    proc = lab.scan_popen(LAB_UP, LAB_DEAD, "-p", ports, "--no-discovery", "--timeout", "5",
                          "--format", fmt, "-o", str(out))
    lab.wait_for_syn_sent()
    time.sleep(1.0)
    assert proc.poll() is None, "the scan ended before it could be interrupted"
    assert not out.exists()  # written by rename only
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert "interrupted" in stderr
    assert stdout == ""
    text = out.read_text(encoding="utf-8")
    assert text.endswith("\n")
    last = int(ports.split("-")[1])
    if fmt == "jsonl":
        rows = by_key([json.loads(line) for line in text.splitlines()])  # each line whole
        assert rows, "nothing was written"
        assert all(h in (LAB_UP, LAB_DEAD) and 1 <= p <= last for h, p in rows)
        assert {r["state"] for (h, _), r in rows.items() if h == LAB_UP} <= {"open", "closed"}
    else:
        doc = json.loads(text)
        assert doc["summary"]["interrupted"] is True
        written = sum(1 for h in doc["hosts"].values() for _ in each_port(h))  # folded too
        assert 0 < written == doc["summary"]["probes"] < 2 * last
    assert temp_files(tmp_path) == []


# ---- nornir: one broken host ------------------------------------------------------------------


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


def test_broken_host_fails_alone(tmp_path: Path) -> None:
    with listening() as op:
        cp = free_port()
        inventory = write_yaml_files(
            tmp_path,
            hosts=json.dumps({
                "good": {"hostname": "127.0.0.1", "data": {"portscan": {"ports": [op, cp]}}},
                "bad-range": {"hostname": "127.0.0.1",
                              "data": {"portscan": {"ports": [22, 70000]}}},
                "bad-text": {"hostname": "127.0.0.1", "data": {"portscan": {"ports": "22-"}}},
                "bad-type": {"hostname": "127.0.0.1", "data": {"portscan": {"ports": {"a": 1}}}},
            }),
            subnets=json.dumps({"loop": {"subnet": "127.0.0.8/30",
                                         "data": {"portscan": {"ports": [op, cp]}}}}))
        nr = init_nornir(inventory)
        result = nr.run(task=portscan)
    expected_bad = {
        "bad-range": f"host 'bad-range': portscan.ports = [22, 70000] (inventory data of "
                     f"host 'bad-range' in {inventory / 'hosts.yaml'}): port '70000'",
        "bad-text": f"host 'bad-text': portscan.ports = '22-' (inventory data of host "
                    f"'bad-text' in {inventory / 'hosts.yaml'}): port range '22-'",
        "bad-type": "host 'bad-type': portscan.ports = {'a': 1}",
    }
    assert set(result) == {"good", *expected_bad, "loop/127.0.0.9", "loop/127.0.0.10"}
    assert sorted(result.failed_hosts) == sorted(expected_bad)
    for name, message in expected_bad.items():
        r = result[name][0]
        assert r.failed and isinstance(r.exception, InventoryError)
        assert isinstance(r.result, str) and r.result.startswith(message), r.result
        assert "Traceback" not in r.result
    good = result["good"][0]
    assert not good.failed
    assert good.result["open"] == {"127.0.0.1": [op]}
    assert nonzero(good.result["summary"]) == {"open": 1, "closed": 1}
    for name in ("loop/127.0.0.9", "loop/127.0.0.10"):
        r = result[name][0]
        address = name.split("/")[1]
        assert not r.failed, r.result
        assert r.result["open"] == {address: []}  # the listener is on 127.0.0.1 only
        assert nonzero(r.result["summary"]) == {"closed": 2}


# ---- names: unresolved, several addresses, IPv6 only ------------------------------------------


NS_COUNTERS = """
table inet nptcount {
  counter to_two {}
  counter to_three {}
  chain out {
    type filter hook output priority 0; policy accept;
    ip daddr 127.0.0.2 meta l4proto tcp counter name to_two
    ip daddr 127.0.0.3 meta l4proto tcp counter name to_three
  }
}
"""


def packets(ns: NetNS, counter: str) -> int:
    doc = json.loads(ns.check("nft", "-j", "list", "counter", "inet", "nptcount", counter))
    return int(next(item["counter"]["packets"] for item in doc["nftables"] if "counter" in item))


def test_names_with_several_addresses_ipv6_only_or_none(dns_netns: NetNS) -> None:
    ns = dns_netns
    ns.listen([("127.0.0.2", 5000, None), ("::1", 5001, None)])
    # a plain address after the names: the scan goes on past the failed lookup
    done = ns.scan("multi.test", "six.test", "nohost.invalid", "127.0.0.4", "-p", "5000,5001",
                   "--format", "jsonl", timeout=30)
    assert done.returncode == 0, done.stderr
    rows = by_key(jsonl(done.stdout))
    hosts = ("127.0.0.2", "127.0.0.3", "::1", "nohost.invalid", "127.0.0.4")
    assert set(rows) == {(h, p) for h in hosts for p in (5000, 5001)}
    names = {h: {rows[(h, p)].get("name") for p in (5000, 5001)} for h in hosts}
    assert names == {"127.0.0.2": {"multi.test"}, "127.0.0.3": {"multi.test"},
                     "::1": {"six.test"}, "nohost.invalid": {"nohost.invalid"},
                     "127.0.0.4": {None}}
    sr = {k: (r["state"], r["reason"]) for k, r in rows.items()}
    assert sr[("127.0.0.2", 5000)] == ("open", "syn-ack")
    assert sr[("::1", 5001)] == ("open", "syn-ack")
    for key in [("127.0.0.2", 5001), ("127.0.0.3", 5000), ("127.0.0.3", 5001), ("::1", 5000),
                ("127.0.0.4", 5000), ("127.0.0.4", 5001)]:
        assert sr[key] == ("closed", "conn-refused"), key
    assert {sr[("nohost.invalid", p)] for p in (5000, 5001)} == {("error", "unresolved")}


def test_name_resolving_outside_the_allow_list_is_not_probed(dns_netns: NetNS) -> None:
    ns = dns_netns
    ns.nft(NS_COUNTERS)
    ns.listen([("127.0.0.2", 5000, None), ("127.0.0.3", 5000, None)])
    done = ns.scan("multi.test", "-p", "5000,5001", "--allow", "127.0.0.2/32",
                   "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    rows = by_key(jsonl(done.stdout))
    assert {k: (r["state"], r["reason"]) for k, r in rows.items()} == {
        ("127.0.0.2", 5000): ("open", "syn-ack"), ("127.0.0.2", 5001): ("closed", "conn-refused"),
        ("127.0.0.3", 5000): ("error", "out-of-scope"),
        ("127.0.0.3", 5001): ("error", "out-of-scope")}
    assert packets(ns, "to_two") > 0  # the counters count
    assert packets(ns, "to_three") == 0


# ---- accounting -------------------------------------------------------------------------------


def runs_of(values: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for v in values:
        if out and v == out[-1][1] + 1:
            out[-1] = (out[-1][0], v)
        else:
            out.append((v, v))
    return out


@pytest.fixture(scope="module")
def accounting_listeners() -> Iterator[dict[str, int]]:
    """One listener on each of 127.0.0.1-4 (hosts the property test may pick)."""
    socks = []
    ports: dict[str, int] = {}
    for i in range(1, 5):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((f"127.0.0.{i}", 0))
        s.listen(512)
        socks.append(s)
        ports[f"127.0.0.{i}"] = s.getsockname()[1]
    yield ports
    for s in socks:
        s.close()


@settings(max_examples=15, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hosts=st.sets(st.integers(1, 40), min_size=1, max_size=12),
       extra_ports=st.sets(st.integers(1, 65535), max_size=30),
       listener_hosts=st.sets(st.sampled_from(["127.0.0.1", "127.0.0.2", "127.0.0.3",
                                               "127.0.0.4"])),
       ranges=st.booleans(), discovery=st.booleans())
def test_every_address_port_pair_exactly_once(accounting_listeners: dict[str, int],
                                              hosts: set[int], extra_ports: set[int],
                                              listener_hosts: set[str], ranges: bool,
                                              discovery: bool) -> None:
    listen_ports = {accounting_listeners[h] for h in listener_hosts}
    ports = sorted(extra_ports | listen_ports) or [accounting_listeners["127.0.0.1"]]
    addresses = [f"127.0.0.{i}" for i in sorted(hosts)]
    if ranges:  # the same addresses as ranges, as a user would write them
        targets = [f"127.0.0.{a}" if a == b else f"127.0.0.{a}-{b}"
                   for a, b in runs_of(sorted(hosts))]
    else:
        targets = addresses
    outcomes = list(scan(targets, ports, timeout=1.0, discovery=discovery))
    assert len(outcomes) == len(addresses) * len(ports)
    got = exactly_once(outcomes, addresses, ports)
    for (host, port), o in got.items():
        assert o.state in (OPEN, CLOSED), o
        if accounting_listeners.get(host) == port:
            assert o.state is OPEN, o


def test_overlapping_targets_give_each_pair_once(closed_port: Callable[..., int]) -> None:
    """A user may name an address twice, in a network and a range: one outcome each."""
    port = closed_port()
    outcomes = list(scan(["127.0.0.1", "127.0.0.0/30", "127.0.0.1-2"], [port]))
    exactly_once(outcomes, ["127.0.0.1", "127.0.0.2"], [port])


def test_accounting_is_checked_at_run_time(monkeypatch: pytest.MonkeyPatch,
                                           closed_port: Callable[..., int]) -> None:
    """The engine compares what it emitted with H x P at the end of every scan."""
    from nornir_portscan.engine.core.errors import EngineError
    from nornir_portscan.engine.core.intake import Intake

    original = Intake.add_host

    def miscounting(self: Any, job: Any, *args: Any) -> None:
        original(self, job, *args)
        job.addresses += 1  # one host more than was scanned: outcomes are now missing

    monkeypatch.setattr(Intake, "add_host", miscounting)
    with pytest.raises(EngineError, match="accounting"):
        list(scan("127.0.0.1", [closed_port()]))
