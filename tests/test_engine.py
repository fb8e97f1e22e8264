"""The engine against real sockets: loopback in this process, and the namespace lab.

Oracle for "open": the kernel's own list of listeners (/proc/net/tcp), so a test
can scan wide port ranges and still know exactly which ports must be open.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import select
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from accounting import exactly_once
from netns import (
    LAB_BANNER,
    LAB_BANNER_PORT,
    LAB_CLOSED_PORT,
    LAB_DEAD,
    LAB_FILTERED_PORT,
    LAB_NOROUTE,
    LAB_OPEN_PORT,
    LAB_REJECT,
    LAB_UP,
    PYTHON,
    NetNS,
    by_key,
    jsonl,
    listening_ports,
)

from nornir_portscan import PortState, ProbeOutcome, SpecError, ascan, scan
from nornir_portscan.engine import Job, JobOptions, Scheduler, classify
from nornir_portscan.engine.core.work import DISCOVERY_PORTS
from nornir_portscan.inputs import Target

OPEN, CLOSED, FILTERED = PortState.OPEN, PortState.CLOSED, PortState.FILTERED
UNREACHABLE, ERROR = PortState.UNREACHABLE, PortState.ERROR




def ephemeral_range() -> tuple[int, int]:
    with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
        lo, hi = f.read().split()
    return int(lo), int(hi)


def free_ports_near(port: int, below: int, above: int) -> list[int]:
    """Ports around ``port`` with no listener on 127.0.0.1 (so they are closed)."""
    busy = listening_ports()
    lower = [p for p in range(port - 1, 0, -1) if p not in busy][:below]
    upper = [p for p in range(port + 1, 65536) if p not in busy][:above]
    return sorted(lower + upper)


# ---- open, closed, and how the kernel's answer is read --------------------------------------


def test_open_and_closed_ports(listener: Callable[..., int],
                               closed_port: Callable[..., int]) -> None:
    op, cp = listener(), closed_port()
    got = exactly_once(list(scan("127.0.0.1", [op, cp])), ["127.0.0.1"], [op, cp])
    o = got[("127.0.0.1", op)]
    assert (o.state, o.reason, o.attempts, o.name, o.banner) == (OPEN, "syn-ack", 1, None, None)
    assert o.rtt_ms is not None and 0 < o.rtt_ms < 1000
    c = got[("127.0.0.1", cp)]
    assert (c.state, c.reason, c.attempts) == (CLOSED, "conn-refused", 1)
    assert c.rtt_ms is not None


def test_classify_maps_the_kernels_answers() -> None:
    assert classify(0) == (OPEN, "syn-ack")
    assert classify(errno.ECONNREFUSED) == (CLOSED, "conn-refused")
    assert classify(errno.ETIMEDOUT) == (FILTERED, "no-response")
    assert classify(errno.EHOSTUNREACH) == (UNREACHABLE, "host-unreach")
    assert classify(errno.ENETUNREACH) == (UNREACHABLE, "net-unreach")
    assert classify(errno.EACCES) == (UNREACHABLE, "admin-prohibited")
    # accepted, then reset before the loop looked: a SYN proxy's closed port (issue 25)
    assert classify(errno.ECONNRESET) == (CLOSED, "reset-after-syn-ack")
    for local in (errno.EMFILE, errno.ENFILE, errno.EADDRNOTAVAIL, errno.ENOBUFS, errno.EAGAIN):
        assert classify(local) is None  # never a port state: try again later
    state, reason = classify(errno.EIO)  # type: ignore[misc]
    assert state is ERROR and reason == "EIO"


def refused_immediately(port: int) -> int:
    """connect() itself returns the refusal (a blocking connect waits for the RST)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port))


def refused_deferred(port: int) -> int:
    """Non-blocking connect(): EINPROGRESS, then the refusal from SO_ERROR once writable."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK) as s:
        assert s.connect_ex(("127.0.0.1", port)) == errno.EINPROGRESS
        _, writable, _ = select.select([], [s], [], 5)
        assert writable
        return s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)


def test_immediate_and_deferred_refusal_give_the_same_outcome(
        closed_port: Callable[..., int]) -> None:
    port = closed_port()
    immediate, deferred = refused_immediately(port), refused_deferred(port)
    assert immediate == deferred == errno.ECONNREFUSED
    assert classify(immediate) == classify(deferred) == (CLOSED, "conn-refused")

    def outcome(err: int, via_so_error: bool) -> ProbeOutcome:
        sched = Scheduler(concurrency=4)
        sched.add_job(Job([Target("127.0.0.1", None, 4)], [port], JobOptions(discovery=False)))
        [probe] = sched.next_probes(10.0, 1)
        sched.flight.stamp(probe, 10.0)  # as the loop does before connect()
        if via_so_error:
            sched.on_sent(probe, 10.0)  # the loop only starts a clock for EINPROGRESS
        assert sched.on_answer(probe, err, 10.002) is False
        [o] = [o for _, o in sched.drain_some(100) if o is not None]
        assert isinstance(o, ProbeOutcome)
        return o

    a, b = outcome(immediate, False), outcome(deferred, True)
    assert a == b
    assert (a.state, a.reason, a.attempts) == (CLOSED, "conn-refused", 1)
    # and the real engine says the same about that port
    [real] = scan("127.0.0.1", [port])
    assert (real.state, real.reason, real.attempts) == (a.state, a.reason, a.attempts)


def settled_connect(s: socket.socket, addr: tuple[str, int]) -> int:
    """The readiness loop's way: connect(), then connect() again for the verdict."""
    err = s.connect_ex(addr)
    while err in (errno.EINPROGRESS, errno.EALREADY):
        select.select([], [s], [], 5)
        err = s.connect_ex(addr)
    return err


def test_a_refused_socket_is_reset_by_the_second_connect_and_can_be_reused(
        closed_port: Callable[..., int]) -> None:
    """What the loop's socket reuse rests on: after a refusal, a second connect() reports
    ECONNREFUSED and leaves the socket unconnected, so it can probe the next port, and a
    real connection through it goes to that port."""
    cp = closed_port()
    with socket.socket() as server, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK) as s:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        op = server.getsockname()[1]
        assert settled_connect(s, ("127.0.0.1", cp)) == errno.ECONNREFUSED
        assert settled_connect(s, ("127.0.0.1", cp)) == errno.ECONNREFUSED  # again: not stale
        assert settled_connect(s, ("127.0.0.1", op)) in (0, errno.EISCONN)
        assert s.getpeername() == ("127.0.0.1", op)
        conn, peer = server.accept()
        conn.close()
        assert peer == s.getsockname()


# ---- self-connects ----------------------------------------------------------------------------


def test_no_self_connect_is_ever_reported_open(listener: Callable[..., int]) -> None:
    """Ports in the ephemeral range can be picked as a probe's own source port."""
    lo, hi = ephemeral_range()
    mine = [listener(), listener()]  # port 0 binds land in the ephemeral range too
    start = max(lo, min(mine[0] - 1500, hi - 3500))
    window = range(start, min(hi, start + 3500) + 1)
    before = listening_ports()
    outcomes = list(scan("127.0.0.1", f"{window.start}-{window.stop - 1}"))
    after = listening_ports()
    got = exactly_once(outcomes, ["127.0.0.1"], window)
    opened = {p for (_, p), o in got.items() if o.state is OPEN}
    assert opened <= (before | after), f"open without a listener: {opened - before - after}"
    assert {p for p in mine if p in window} <= opened
    assert {o.state for o in got.values()} <= {OPEN, CLOSED}


SELF_CONNECT_SCRIPT = textwrap.dedent("""
    import json, sys
    from nornir_portscan.engine import Job, JobOptions, Scheduler
    from nornir_portscan.engine.io.loop import ReadinessLoop
    from nornir_portscan.inputs import Target
    ports = [int(p) for p in sys.argv[1].split(",")]
    rounds = []
    for _ in range(int(sys.argv[2])):
        sched = Scheduler(concurrency=1)
        sched.add_job(Job([Target("127.0.0.1", None, 4)], ports, JobOptions(discovery=False)))
        outs = [o.as_dict() for _, o in ReadinessLoop(sched).run() if o is not None]
        rounds.append({"sent": sched.probes_sent, "outcomes": outs})
    print(json.dumps(rounds))
""")


def test_forced_self_connects_are_retried_not_reported(make_netns: Callable[[], NetNS]) -> None:
    """With only four source ports, connects to those ports often pick themselves."""
    ns = make_netns()
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40003")
    ports = [40000, 40001, 40002, 40003]
    done = ns.python(SELF_CONNECT_SCRIPT, ",".join(map(str, ports)), "25", timeout=30)
    assert done.returncode == 0, done.stderr
    rounds = json.loads(done.stdout)
    for r in rounds:
        rows = by_key(r["outcomes"])
        assert set(rows) == {("127.0.0.1", p) for p in ports}
        # a port that picks itself many times in a row may be called closed for that reason
        assert {(row["state"], row["attempts"]) for row in rows.values()} == {("closed", 1)}
        assert {row["reason"] for row in rows.values()} <= {"conn-refused", "self-connect"}
    extra = sum(r["sent"] for r in rounds) - len(ports) * len(rounds)
    assert extra > 0, "no self-connect happened: the test did not exercise the path"


def test_scan_ends_when_every_connect_is_a_self_connect(make_netns: Callable[[], NetNS]) -> None:
    """Regression: a self-connect was requeued without limit. With a two-port ephemeral
    range (and the kernel's even-port preference) every connect to 40000 picks 40000."""
    ns = make_netns()
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40001")
    try:
        done = ns.scan("127.0.0.1", "-p", "40000", "--format", "jsonl", timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("the scan of one port did not finish in 10 s")
    assert done.returncode == 0, done.stderr
    [row] = jsonl(done.stdout)
    assert row["state"] == "closed"  # nothing listens there; never "open"


# ---- concurrency, descriptors -----------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 7])
def test_low_concurrency_gives_the_same_results(listener: Callable[..., int],
                                                concurrency: int) -> None:
    op = listener()
    ports = [*free_ports_near(op, 100, 99), op]
    got = exactly_once(list(scan("127.0.0.1", ports, concurrency=concurrency)),
                       ["127.0.0.1"], ports)
    assert {p for (_, p), o in got.items() if o.state is OPEN} == {op}
    assert {o.reason for o in got.values() if o.state is not OPEN} == {"conn-refused"}


FD_SCRIPT = textwrap.dedent("""
    import json, os, resource, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    spare = int(sys.argv[2])
    if spare:  # use up descriptors until only `spare` are left: socket() will hit EMFILE
        held = []
        while True:
            try:
                held.append(os.dup(0))
            except OSError:
                break
        for _ in range(spare):
            os.close(held.pop())
    lo, hi = map(int, sys.argv[1].split("-"))
    if spare:
        from nornir_portscan.engine import Job, JobOptions, Scheduler
        from nornir_portscan.engine.io.loop import ReadinessLoop
        from nornir_portscan.inputs import Target
        sched = Scheduler(concurrency=1000)
        sched.add_job(Job([Target("127.0.0.1", None, 4)], range(lo, hi + 1),
                          JobOptions(discovery=False)))
        outs = [o for _, o in ReadinessLoop(sched).run() if o is not None]
        limit = sched.cwnd.limit if sched.local_errors else None
    else:
        from nornir_portscan import scan
        outs = list(scan("127.0.0.1", f"{lo}-{hi}", concurrency=1000))
        limit = None
    print(json.dumps({"limit": limit, "outcomes": [o.as_dict() for o in outs]}))
""")


@pytest.mark.parametrize("spare", [0, 4], ids=["rlimit64", "starved"])
def test_fd_limit_below_the_concurrency_asked_for(listener: Callable[..., int],
                                                  spare: int) -> None:
    op = listener()
    lo = max(1024, op - 1000)
    window = range(lo, lo + 2000)
    before = listening_ports()
    done = subprocess.run([sys.executable, "-c", FD_SCRIPT, f"{lo}-{lo + 1999}", str(spare)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(done.stdout)
    rows = by_key(doc["outcomes"])
    assert set(rows) == {("127.0.0.1", p) for p in window}
    opened = {p for (_, p), r in rows.items() if r["state"] == "open"}
    assert op in opened
    assert opened <= before | listening_ports()
    assert {r["state"] for r in rows.values()} <= {"open", "closed"}  # no error states
    if spare and doc["limit"] is not None:
        # it ran short (answers mostly arrive inside connect() now, so it may not have):
        # then it learned how many sockets it can hold
        assert doc["limit"] < spare


PLAN_IS_PURE_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
    from nornir_portscan.engine import plan_scan, run_plan
    plans = [plan_scan(f"127.0.0.{i}", sys.argv[1]) for i in range(1, 51)]
    planned = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    outcomes = list(run_plan(plans[0]))
    ran = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    print(json.dumps({"planned": planned, "ran": ran, "hard": hard,
                      "concurrency": [p.concurrency for p in plans[:2]],
                      "outcomes": len(outcomes)}))
""")


def test_planning_leaves_the_descriptor_limit_alone(closed_port: Callable[..., int]) -> None:
    """A nornir run plans a scan for every host: planning must not touch the process. The
    open-file limit is raised (to the hard limit) only when a plan runs."""
    done = subprocess.run([sys.executable, "-c", PLAN_IS_PURE_SCRIPT, str(closed_port())],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(done.stdout)
    assert doc["planned"] == 128  # fifty plans, no setrlimit
    assert doc["concurrency"] == [None, None]  # the budget is not the plan's to take
    assert doc["outcomes"] == 1
    assert doc["ran"] == min(doc["hard"], 1 << 20) > 128


def test_each_scan_draws_its_own_port_order() -> None:
    """The port order's key is drawn by the I/O side for every scan (the scheduler draws no
    randomness): two scans of one host probe its ports in two different keyed orders. On
    loopback every answer comes straight from connect(), so outcomes come in probe order."""
    orders = [[o.port for o in scan("127.0.0.1", "1-300", retries=0)] for _ in range(2)]
    for order in orders:
        assert sorted(order) == list(range(1, 301))
        assert order != sorted(order)
    assert orders[0] != orders[1]


PROBE_ORDER_SCRIPT = textwrap.dedent("""
    import errno, json, sys
    from nornir_portscan.engine import Job, Scheduler, plan_scan
    from nornir_portscan.engine.io.local import job_for
    mode, value = sys.argv[1], int(sys.argv[2])
    if mode == "seed":  # the job the I/O side makes of a plan with a seed
        job = job_for(plan_scan("127.0.0.1-4", "1-300", retries=0, seed=value))
    else:
        plan = plan_scan("127.0.0.1-4", "1-300", retries=0)
        job = Job(plan.spec, plan.ports, plan.options, key=value)
    sched = Scheduler(concurrency=64)
    sched.add_job(job)
    order, now = [], 0.0
    while not sched.done:
        probes = sched.next_probes(now, 16)
        for p in probes:
            sched.flight.stamp(p, now)
        order += [(p.host.addr, p.port) for p in probes]
        sched.on_failed_connects([(p, errno.ECONNREFUSED, now + 0.001) for p in probes])
        sched.drain_some(1 << 16)
        now += 0.002
    print(json.dumps(order))
""")


def probe_order(key: int, hashseed: str, mode: str = "key") -> list[list[Any]]:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    done = subprocess.run([sys.executable, "-c", PROBE_ORDER_SCRIPT, mode, str(key)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    order: list[list[Any]] = json.loads(done.stdout)
    return order


def test_same_plan_and_key_probe_in_the_same_order_in_every_process() -> None:
    """The port order is a function of the job's key and each address alone (CRC-32 with a
    fixed seed, work.PORT_ORDER_SEED), not of Python's per-process string hashing: the same
    plan and key, run in two processes with different PYTHONHASHSEED, send the same probes
    in the same order, so a scan can be replayed exactly. Four hosts, so discovery and each
    host's keyed order after it (``Verdicts.host_up``) both take part."""
    first, second = probe_order(0x1234567890, "1"), probe_order(0x1234567890, "2")
    assert len(first) == 4 * 300
    assert sorted(map(tuple, first)) == [(f"127.0.0.{h}", p) for h in range(1, 5)
                                         for p in range(1, 301)]
    assert first == second
    one_host = [port for addr, port in first if addr == "127.0.0.2"]
    assert one_host[8:] != sorted(one_host[8:])  # keyed, not in the order given
    assert probe_order(0x0987654321, "1") != first  # another key, another order


def test_same_plan_and_seed_probe_in_the_same_order_in_every_process() -> None:
    """The ``seed`` setting keys the order (``core/seed.py``): a plan with a seed, made into a
    job by the I/O side as every scan's is, sends the same probes in the same order in two
    processes with different PYTHONHASHSEED; seeds next to each other give other orders."""
    first = probe_order(7, "1", "seed")
    assert sorted(map(tuple, first)) == [(f"127.0.0.{h}", p) for h in range(1, 5)
                                         for p in range(1, 301)]
    assert probe_order(7, "2", "seed") == first
    one_host = [port for addr, port in first if addr == "127.0.0.3"]
    assert one_host[8:] != sorted(one_host[8:])
    assert probe_order(8, "1", "seed") != first


# ---- banners ----------------------------------------------------------------------------------


def test_banner_is_read_when_asked(listener: Callable[..., int]) -> None:
    port = listener(banner=b"SSH-2.0-test\r\n")
    [with_banner] = scan("127.0.0.1", [port], banners=True, banner_wait=3.0)
    assert (with_banner.state, with_banner.banner) == (OPEN, "SSH-2.0-test")
    [without] = scan("127.0.0.1", [port])
    assert (without.state, without.banner) == (OPEN, None)


def test_silent_service_gives_no_banner_after_the_wait(listener: Callable[..., int]) -> None:
    port = listener()  # handshakes complete in the backlog; nothing is ever sent
    started = time.monotonic()
    [o] = scan("127.0.0.1", [port], banners=True, banner_wait=0.3)
    assert (o.state, o.reason, o.banner) == (OPEN, "syn-ack", None)
    assert time.monotonic() - started >= 0.3


def test_banner_is_cleaned_of_control_characters(listener: Callable[..., int]) -> None:
    port = listener(banner=b"220 mail\x1b[31m ready\r\n\x00junk")
    [o] = scan("127.0.0.1", [port], banners=True, banner_wait=3.0)
    assert o.banner is not None
    assert o.banner.startswith("220 mail") and "\x1b" not in o.banner and "\x00" not in o.banner


def banner_ports(banner_port: int) -> list[int]:
    """Ten ports, the banner port first: a short list's discovery probes come from its head,
    so in a host sweep the banner port is answered by a discovery probe."""
    return [banner_port, *free_ports_near(banner_port, 0, 9)]


def test_banner_on_a_single_host_scan_of_nine_ports(listener: Callable[..., int]) -> None:
    port = listener(banner=b"SSH-2.0-test\r\n")
    ports = banner_ports(port)
    got = exactly_once(list(scan("127.0.0.1", ports, banners=True, banner_wait=3.0)),
                       ["127.0.0.1"], ports)
    assert got[("127.0.0.1", port)].banner == "SSH-2.0-test"


def test_banner_on_a_host_sweep(listener: Callable[..., int]) -> None:
    """Regression: in a multi-host scan with discovery, an open port that served as a
    discovery probe was reported without its banner."""
    port = listener(banner=b"SSH-2.0-test\r\n")
    ports = banner_ports(port)
    hosts = ["127.0.0.1", "127.0.0.2"]
    got = exactly_once(list(scan(hosts, ports, banners=True, banner_wait=3.0)), hosts, ports)
    assert got[("127.0.0.1", port)].state is OPEN
    assert got[("127.0.0.1", port)].banner == "SSH-2.0-test"


# ---- names, IPv6, async -----------------------------------------------------------------------


def test_ipv6_loopback(listener: Callable[..., int], closed_port: Callable[..., int]) -> None:
    try:
        op = listener("::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 on lo: {exc}")
    cp = closed_port("::1")
    got = exactly_once(list(scan("::1", [op, cp])), ["::1"], [op, cp])
    assert (got[("::1", op)].state, got[("::1", op)].reason) == (OPEN, "syn-ack")
    assert (got[("::1", cp)].state, got[("::1", cp)].reason) == (CLOSED, "conn-refused")


def test_hostname_is_resolved_and_named(listener: Callable[..., int]) -> None:
    op = listener()  # "localhost" comes from /etc/hosts: no DNS query is sent
    outcomes = list(scan("localhost", [op]))
    v4 = [o for o in outcomes if o.host == "127.0.0.1"]
    assert len(v4) == 1 and v4[0].state is OPEN and v4[0].name == "localhost"
    assert all(o.name == "localhost" for o in outcomes)


def test_ascan_inside_a_running_event_loop(listener: Callable[..., int],
                                           closed_port: Callable[..., int]) -> None:
    silent = listener()
    ports = [listener(), closed_port(), closed_port(), silent]
    ticks = 0

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    async def main() -> list[ProbeOutcome]:
        stop = asyncio.Event()
        tick = asyncio.ensure_future(ticker(stop))
        try:
            # banners on a silent port keep the scan busy ~0.4 s: the loop must keep running
            return await ascan("127.0.0.1", ports, banners=True, banner_wait=0.4)
        finally:
            stop.set()
            await tick

    async_outcomes = asyncio.run(main())
    sync_outcomes = list(scan("127.0.0.1", ports, banners=True, banner_wait=0.4))

    def key(outs: list[ProbeOutcome]) -> set[tuple[str, int, PortState, str, str | None]]:
        return {(o.host, o.port, o.state, o.reason, o.banner) for o in outs}

    exactly_once(async_outcomes, ["127.0.0.1"], ports)
    assert key(async_outcomes) == key(sync_outcomes)
    assert ticks >= 10, "the event loop was blocked while the scan ran"


def test_bad_input_raises_at_call_time_before_any_socket() -> None:
    with pytest.raises(SpecError):
        scan("127.0.0.1", "0")
    with pytest.raises(SpecError):
        scan("127.0.0.300", "22")
    with pytest.raises(ValueError):
        scan("127.0.0.1", "22", timeout=0)


# ---- the H x P invariant ----------------------------------------------------------------------


def test_multi_host_scan_yields_every_pair_once(listener: Callable[..., int]) -> None:
    op = listener()
    hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]
    ports = [*free_ports_near(op, 15, 14), op]
    got = exactly_once(list(scan("127.0.0.1-4", ports)), hosts, ports)
    # the listener is bound to 127.0.0.1 only
    assert {k for k, o in got.items() if o.state is OPEN} == {("127.0.0.1", op)}
    assert {o.state for o in got.values()} == {OPEN, CLOSED}


@pytest.mark.parametrize("shards", [1, 2])
def test_scan_stats_count_every_connect(shards: int) -> None:
    """ScanStats.connects is the traffic behind the outcomes, summed over the workers."""
    from nornir_portscan.engine import ScanStats, plan_scan, run_plan_batches

    ports = "1-10000"  # below the ephemeral range: no self-connect retries
    stats = ScanStats()
    plan = plan_scan("127.0.0.1", ports, shards=shards)
    got = [o for batch in run_plan_batches(plan, stats) for o in batch]
    assert len(got) == 10000
    # loopback answers every first try (RST or SYN-ACK): exactly one connect() per port
    assert {o.attempts for o in got} == {1}
    assert stats.connects == 10000


def test_excluded_hosts_are_not_scanned(closed_port: Callable[..., int]) -> None:
    ports = [closed_port(), closed_port()]
    outcomes = list(scan("127.0.0.1-6", ports, exclude=["127.0.0.2", "127.0.0.4-127.0.0.5"]))
    exactly_once(outcomes, ["127.0.0.1", "127.0.0.3", "127.0.0.6"], ports)


def test_many_hosts_and_ports(closed_port: Callable[..., int]) -> None:
    ports = [closed_port() for _ in range(40)]
    hosts = [f"127.0.1.{i}" for i in range(1, 51)]
    outcomes = list(scan("127.0.1.1-50", ports))
    got = exactly_once(outcomes, hosts, ports)
    assert len(outcomes) == 50 * 40
    assert {o.state for o in got.values()} == {CLOSED}


# ---- the namespace lab ------------------------------------------------------------------------


def lab_scan(lab: NetNS, *args: str) -> list[dict[str, object]]:
    done = lab.scan(*args, "--format", "jsonl", timeout=30)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return jsonl(done.stdout)


LAB_PORTS = [LAB_FILTERED_PORT, LAB_CLOSED_PORT, LAB_OPEN_PORT, LAB_BANNER_PORT,
             *range(6000, 6031)]
LAB_PORTS_ARG = f"{LAB_FILTERED_PORT},{LAB_CLOSED_PORT},{LAB_OPEN_PORT},{LAB_BANNER_PORT},6000-6030"


def check_lab_up_host(rows: dict[tuple[str, int], dict[str, object]]) -> None:
    def sr(port: int) -> tuple[object, object]:
        return rows[(LAB_UP, port)]["state"], rows[(LAB_UP, port)]["reason"]

    assert sr(LAB_OPEN_PORT) == ("open", "syn-ack")
    assert sr(LAB_BANNER_PORT) == ("open", "syn-ack")
    assert sr(LAB_CLOSED_PORT) == ("closed", "conn-refused")
    assert sr(LAB_FILTERED_PORT) == ("filtered", "no-response")
    assert rows[(LAB_UP, LAB_FILTERED_PORT)]["rtt_ms"] is None
    assert {sr(p) for p in range(6000, 6031)} == {("closed", "conn-refused")}


def test_lab_sweep_with_discovery(lab: NetNS) -> None:
    rows = by_key(lab_scan(lab, "127.77.1.1-3", "-p", LAB_PORTS_ARG, "--timeout", "0.3",
                           "--retries", "0"))
    assert set(rows) == {(h, p) for h in (LAB_UP, LAB_DEAD, LAB_REJECT) for p in LAB_PORTS}
    check_lab_up_host(rows)
    dead = [rows[(LAB_DEAD, p)] for p in LAB_PORTS]
    assert {r["state"] for r in dead} == {"filtered"}
    # ports not probed during discovery are decided by it: the host is down
    host_down = [r for r in dead if r["reason"] == "host-down"]
    assert len(host_down) >= len(LAB_PORTS) - len(DISCOVERY_PORTS)
    assert {(r["attempts"], r["rtt_ms"]) for r in host_down} == {(0, None)}
    assert {r["reason"] for r in dead} <= {"host-down", "no-response"}
    reject = {(rows[(LAB_REJECT, p)]["state"], rows[(LAB_REJECT, p)]["reason"])
              for p in LAB_PORTS}
    assert reject == {("unreachable", "host-unreach")}


def test_lab_sweep_without_discovery(lab: NetNS) -> None:
    rows = by_key(lab_scan(lab, "127.77.1.1-3", "-p", LAB_PORTS_ARG, "--timeout", "0.3",
                           "--retries", "0", "--no-discovery"))
    assert set(rows) == {(h, p) for h in (LAB_UP, LAB_DEAD, LAB_REJECT) for p in LAB_PORTS}
    check_lab_up_host(rows)
    assert {(rows[(LAB_DEAD, p)]["state"], rows[(LAB_DEAD, p)]["reason"],
             rows[(LAB_DEAD, p)]["attempts"]) for p in LAB_PORTS} == {
        ("filtered", "no-response", 1)}
    assert {(rows[(LAB_REJECT, p)]["state"], rows[(LAB_REJECT, p)]["reason"])
            for p in LAB_PORTS} == {("unreachable", "host-unreach")}


REUSE_SCRIPT = textwrap.dedent("""
    import json, sys
    from nornir_portscan.engine.io.loop import ReadinessLoop
    from nornir_portscan.engine.core.scheduler import Scheduler
    from nornir_portscan.engine.core.work import Job, JobOptions
    from nornir_portscan.inputs import Target
    hosts, ports = sys.argv[1].split(","), [int(p) for p in sys.argv[2].split(",")]
    sched = Scheduler(concurrency=6)
    sched.add_job(Job([Target(h, None, 4) for h in hosts], ports,
                      JobOptions(timeout=0.15, retries=1, discovery=False)))
    loop = ReadinessLoop(sched)
    rows = [(o.host, o.port, o.state.value, o.reason) for _, o in loop.run() if o is not None]
    print(json.dumps({"rows": rows, "opened": loop.sockets_opened, "probes": sched.probes_sent}))
""")


def test_lab_reused_sockets_report_every_kind_of_answer(lab: NetNS) -> None:
    """Sockets are reused: refused ones straight away, timed-out ones after shutdown()
    stops their SYNs. With six in flight, probes to the up and rejecting hosts run on
    sockets that last waited on the dead host: every answer must still be read right,
    the ICMP error that arrives while connect() holds the socket included."""
    hosts = [LAB_DEAD, LAB_REJECT, LAB_UP]
    done = lab.run(PYTHON, "-c", REUSE_SCRIPT, ",".join(hosts),
                   ",".join(map(str, LAB_PORTS)), timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    got: dict[tuple[str, int], tuple[str, str]] = {}
    for host, port, state, reason in report["rows"]:
        assert (host, port) not in got
        got[(host, port)] = (state, reason)
    assert set(got) == {(h, p) for h in hosts for p in LAB_PORTS}
    for port in LAB_PORTS:
        assert got[(LAB_DEAD, port)] == ("filtered", "no-response")
        assert got[(LAB_REJECT, port)] == ("unreachable", "host-unreach")
        want = ("open", "syn-ack") if port in (LAB_OPEN_PORT, LAB_BANNER_PORT) else (
            ("filtered", "no-response") if port == LAB_FILTERED_PORT else
            ("closed", "conn-refused"))
        assert got[(LAB_UP, port)] == want, port
    # the reuse really happened: a few sockets served every probe but the open ones
    assert report["probes"] >= 3 * len(LAB_PORTS)
    assert report["opened"] <= 6 + 2 + 4, report["opened"]


SHARDED_SCRIPT = textwrap.dedent("""
    import json, sys
    from collections import Counter
    from nornir_portscan.engine import ScanStats, plan_scan, run_plan_batches
    stats = ScanStats()
    plan = plan_scan(sys.argv[1], sys.argv[2], timeout=0.3, retries=0, shards=2)
    seen, kinds = set(), Counter()
    for batch in run_plan_batches(plan, stats):
        for o in batch:
            assert (o.host, o.port) not in seen, o
            seen.add((o.host, o.port))
            kinds[f"{o.host} {o.state.value} {o.reason}"] += 1
    print(json.dumps({"outcomes": len(seen), "kinds": kinds, "connects": stats.connects}))
""")


def test_lab_sharded_scan_sends_down_hosts_whole_and_loses_nothing(lab: NetNS) -> None:
    """Two workers, each with half the ports of an up, a dead and a rejecting host: the
    workers send each down host's remaining ports as one record, the parent expands it,
    and every (host, port) arrives exactly once with the right state."""
    done = lab.run(PYTHON, "-c", SHARDED_SCRIPT, f"{LAB_UP},{LAB_DEAD},{LAB_REJECT}",
                   "6000-8999", timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["outcomes"] == 3 * 3000
    kinds = report["kinds"]
    assert kinds[f"{LAB_UP} closed conn-refused"] == 3000
    assert kinds[f"{LAB_DEAD} filtered host-down"] + kinds[f"{LAB_DEAD} filtered no-response"] \
        == 3000
    assert kinds[f"{LAB_DEAD} filtered host-down"] >= 3000 - 2 * len(DISCOVERY_PORTS)
    assert kinds[f"{LAB_REJECT} unreachable host-unreach"] == 3000
    # the down hosts cost their discovery probes only (each worker discovers each host)
    assert report["connects"] <= 3000 + 2 * 3 * len(DISCOVERY_PORTS)


def test_lab_filtered_port_is_retried(lab: NetNS) -> None:
    rows = by_key(lab_scan(lab, LAB_UP, "-p", f"{LAB_FILTERED_PORT},{LAB_OPEN_PORT}",
                           "--timeout", "0.2", "--retries", "2"))
    assert rows[(LAB_UP, LAB_FILTERED_PORT)]["attempts"] == 3
    assert rows[(LAB_UP, LAB_FILTERED_PORT)]["state"] == "filtered"
    assert rows[(LAB_UP, LAB_OPEN_PORT)]["attempts"] == 1


def test_lab_banner(lab: NetNS) -> None:
    rows = by_key(lab_scan(lab, LAB_UP, "-p", f"{LAB_BANNER_PORT},{LAB_CLOSED_PORT}",
                           "--banners"))
    assert rows[(LAB_UP, LAB_BANNER_PORT)]["banner"] == LAB_BANNER
    assert "banner" not in rows[(LAB_UP, LAB_CLOSED_PORT)]


def test_lab_immediate_and_deferred_unreachable_agree(lab: NetNS) -> None:
    """The same ICMP verdict two ways: from connect() itself (no route), or via SO_ERROR."""
    rows = by_key(lab_scan(lab, LAB_REJECT, LAB_NOROUTE, "-p", "1-20", "--no-discovery"))
    assert set(rows) == {(h, p) for h in (LAB_REJECT, LAB_NOROUTE) for p in range(1, 21)}
    for host in (LAB_REJECT, LAB_NOROUTE):
        assert {(rows[(host, p)]["state"], rows[(host, p)]["reason"], rows[(host, p)]["attempts"])
                for p in range(1, 21)} == {("unreachable", "host-unreach", 1)}


def test_lab_scan_where_every_connect_fails_at_once(lab: NetNS) -> None:
    """Regression: outcomes decided in the send phase were lost when they ended the scan."""
    rows = by_key(lab_scan(lab, LAB_NOROUTE, "-p", "80,443"))
    assert set(rows) == {(LAB_NOROUTE, 80), (LAB_NOROUTE, 443)}
    assert {(r["state"], r["reason"]) for r in rows.values()} == {("unreachable", "host-unreach")}


UNRESOLVED_SCRIPT = textwrap.dedent("""
    import json, sys
    from nornir_portscan import scan
    ports = [int(p) for p in sys.argv[1].split(",")]
    targets = sys.argv[2:]
    outcomes = scan(targets, ports, timeout=1.0, retries=0)
    print(json.dumps([o.as_dict() for o in outcomes]))
""")


def scan_in_lab(lab: NetNS, ports: Iterable[int],
                *targets: str) -> dict[tuple[str, int], dict[str, Any]]:
    # inside the namespace the DNS query cannot leave (no route): nothing is sent anywhere
    done = lab.run(PYTHON, "-c", UNRESOLVED_SCRIPT, ",".join(map(str, ports)), *targets,
                   timeout=30)
    assert done.returncode == 0, done.stderr
    return by_key(json.loads(done.stdout))


def test_unresolvable_name_is_an_error_and_the_scan_goes_on(lab: NetNS) -> None:
    ports = (LAB_OPEN_PORT, LAB_CLOSED_PORT)
    # the dead host keeps the scan busy for a second, longer than the failed lookup takes
    rows = scan_in_lab(lab, ports, "nohost.invalid", LAB_UP, LAB_DEAD)
    assert set(rows) == {(h, p) for h in ("nohost.invalid", LAB_UP, LAB_DEAD) for p in ports}
    for p in ports:
        bad = rows[("nohost.invalid", p)]
        assert (bad["state"], bad["reason"], bad["name"]) == ("error", "unresolved",
                                                              "nohost.invalid")
        assert rows[(LAB_DEAD, p)]["state"] == "filtered"
    assert rows[(LAB_UP, LAB_OPEN_PORT)]["state"] == "open"
    assert rows[(LAB_UP, LAB_CLOSED_PORT)]["state"] == "closed"


def test_unresolvable_name_alone(lab: NetNS) -> None:
    """Regression: an unresolved name is decided in the send phase, which ended the scan
    before its outcomes were drained, so a scan of only that name yielded nothing."""
    ports = (LAB_OPEN_PORT, LAB_CLOSED_PORT)
    rows = scan_in_lab(lab, ports, "nohost.invalid")
    assert set(rows) == {("nohost.invalid", p) for p in ports}
    assert {(r["state"], r["reason"]) for r in rows.values()} == {("error", "unresolved")}


def test_fd_limit_is_really_hit_on_silent_ports(lab: NetNS) -> None:
    """Silent ports keep their sockets until the timeout, so with 64 descriptors and
    concurrency 1000 socket() must fail with EMFILE: every outcome still right, none an
    error, and the engine says it ran short rather than hiding it."""
    script = textwrap.dedent(f"""
        import json, resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        from nornir_portscan.engine import Job, JobOptions, Scheduler
        from nornir_portscan.engine.io.loop import ReadinessLoop
        from nornir_portscan.inputs import Target
        sched = Scheduler(concurrency=1000)
        sched.add_job(Job([Target({LAB_DEAD!r}, None, 4), Target({LAB_UP!r}, None, 4)],
                          range(6000, 6200), JobOptions(discovery=False, timeout=0.2)))
        outs = [o.as_dict() for _, o in ReadinessLoop(sched).run() if o is not None]
        print(json.dumps({{"local_errors": sched.local_errors, "limit": sched.cwnd.limit,
                          "outcomes": outs}}))
    """)
    done = lab.run(sys.executable, "-c", script, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(done.stdout)
    assert doc["local_errors"] > 0 and doc["limit"] < 64
    rows = by_key(doc["outcomes"])
    assert set(rows) == {(h, p) for h in (LAB_DEAD, LAB_UP) for p in range(6000, 6200)}
    assert {(r["state"], r["reason"]) for (h, _), r in rows.items() if h == LAB_DEAD} == {
        ("filtered", "no-response")}
    assert {r["state"] for (h, _), r in rows.items() if h == LAB_UP} == {"closed"}
