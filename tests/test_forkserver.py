"""The fork server: a run's shard workers are forked from a process started before the
inventory, so they carry none of what the run built since (engine/shards/forkserver.py).

The scans go to loopback addresses. A ballast allocated after the server started stands
for a big run's inventory: a worker forked from this process maps it (its RSS counts it),
a worker forked by the server does not.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _nornir_support import subnet_inventory
from netns import NetNS

from nornir_portscan.engine.core.outcome import PortState, ProbeOutcome
from nornir_portscan.engine.core.plan import ScanPlan, plan_scan
from nornir_portscan.engine.core.stats import ScanStats
from nornir_portscan.engine.shards.forkserver import current_fork_server, serving
from nornir_portscan.engine.shards.shard import run_sharded

BALLAST_MIB = 96
NETWORK = "127.88.0.0/22"  # 1,024 addresses, each on 10 ports: sharded (8,192 probes or more)


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found.update(int(c) for c in f.read().split())
    return found


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.fixture
def one_open() -> Iterator[tuple[str, int]]:
    """A listener on one address of NETWORK: the scan's one open port."""
    sock = socket.socket()
    sock.bind(("127.88.1.7", 0))
    sock.listen(64)
    try:
        yield "127.88.1.7", sock.getsockname()[1]
    finally:
        sock.close()


def _plan(port: int) -> ScanPlan:
    # a rate keeps the workers alive long enough to be looked at (about 2 s)
    return plan_scan(NETWORK, f"1-9,{port}", rate=5000, retries=0)


def _scan(plan: ScanPlan, forked_by: int) -> tuple[list[ProbeOutcome], dict[int, float]]:
    """Every outcome, and the RSS of each worker (a child of ``forked_by``), taken when
    the first batch arrived."""
    outcomes: list[ProbeOutcome] = []
    workers: dict[int, float] = {}
    before = _children(forked_by)
    for batch in run_sharded(plan, 2, ScanStats()):
        if not workers:
            workers = {pid: _rss_mib(pid) for pid in _children(forked_by) - before}
        outcomes.extend(batch.outcomes)
    return outcomes, workers


def _check_every_probe(outcomes: list[ProbeOutcome], open_at: tuple[str, int]) -> None:
    pairs = [(o.host, o.port) for o in outcomes]
    assert len(pairs) == len(set(pairs)) == 1022 * 10  # each probe exactly once (a /22 has
    # 1,022 host addresses)
    opened = [(o.host, o.port) for o in outcomes if o.state is PortState.OPEN]
    assert opened == [open_at]
    assert {o.state for o in outcomes} == {PortState.OPEN, PortState.CLOSED}


def _ballast() -> bytearray:
    ballast = bytearray(BALLAST_MIB << 20)
    for i in range(0, len(ballast), 4096):  # resident, page by page
        ballast[i] = 1
    return ballast


def test_served_workers_carry_nothing_built_after_the_server(
        one_open: tuple[str, int]) -> None:
    others = _children(os.getpid())  # a session's own (a lab's listeners, say)
    with serving():
        server = current_fork_server()
        assert server is not None
        ballast = _ballast()
        outcomes, workers = _scan(_plan(one_open[1]), server.pid)
        sizes = list(workers.values())
        assert len(workers) == 2, "the server forks the plan's two workers"
        # what the workers map is what the server has (this process as it was when the
        # server started: the test session's imports), not the ballast
        assert max(sizes) < _rss_mib(server.pid) + BALLAST_MIB / 2, sizes
        assert _children(os.getpid()) - others == {server.pid}  # none forked from here
        del ballast
    _check_every_probe(outcomes, one_open)


def test_without_a_server_workers_map_the_whole_process(one_open: tuple[str, int]) -> None:
    """The reference for the test above: the same scan, forked from here."""
    assert current_fork_server() is None
    ballast = _ballast()
    outcomes, workers = _scan(_plan(one_open[1]), os.getpid())
    sizes = list(workers.values())
    del ballast
    assert len(workers) == 2
    assert min(sizes) > BALLAST_MIB * 0.9, sizes
    _check_every_probe(outcomes, one_open)


def test_a_server_that_is_gone_leaves_the_forking_here(one_open: tuple[str, int]) -> None:
    with serving():
        server = current_fork_server()
        assert server is not None
        os.kill(server.pid, signal.SIGKILL)
        os.waitpid(server.pid, 0)
        outcomes, workers = _scan(_plan(one_open[1]), os.getpid())
        assert len(workers) == 2  # forked from here
    _check_every_probe(outcomes, one_open)


def test_a_forked_child_never_uses_its_parents_server() -> None:
    with serving():
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child answers through the pipe
            os.write(write, b"none" if current_fork_server() is None else b"some")
            os._exit(0)
        os.close(write)
        answer = os.read(read, 8)
        os.close(read)
        os.waitpid(pid, 0)
    assert answer == b"none"


def _marked(mark: str) -> list[int]:
    """Processes whose environment carries ``mark``: a run and everything it started."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if mark.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_a_run_stopped_leaves_no_process_behind(tmp_path: Path, how: signal.Signals,
                                                make_netns: Callable[[], NetNS]) -> None:
    """A run's server and workers end with it, however it ends (SIGKILL gives it no word:
    the server sees its socket close, the workers their pipe)."""
    ns = make_netns()
    ns.drop_syns_to("127.90.0.0/16")  # the workers are busy when the run is stopped
    config = subnet_inventory(tmp_path / "inv", "127.90.0.0/22", "1-10")
    mark = f"PORTSCAN_TEST_MARK={uuid.uuid4().hex}"
    env = {**os.environ, mark.split("=")[0]: mark.split("=")[1]}
    proc = ns.popen(sys.executable, "-m", "nornir_portscan", "run", "-c",
                    str(config), "--timeout", "120", "--retries", "0",
                    "--format", "json", "--no-progress", "-o", str(tmp_path / "out.json"),
                    env=env, cwd=tmp_path)
    try:
        # the run and two workers at least (ip netns exec became the run)
        deadline = time.monotonic() + 120
        while len(_marked(mark)) < 3:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, _marked(mark)
            time.sleep(0.1)
        ns.wait_for_syn_sent()
        proc.send_signal(how)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while _marked(mark):
            assert time.monotonic() < deadline, f"left behind: {_marked(mark)}"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == (130 if how is signal.SIGINT else -signal.SIGKILL)


def test_a_merged_plan_reaches_the_server_without_nornir() -> None:
    """A nornir run's merged plan, unpickled in a fresh interpreter as the server does,
    imports no nornir and no plugin: a class of the plugins in the plan imported nornir
    into the server at its first request (about 50 ms before any worker started)."""
    from nornir.core.inventory import Host

    from nornir_portscan.engine.core.split import ShardLayout
    from nornir_portscan.engine.shards.workers import WorkRequest
    from nornir_portscan.plugins.tasks import merged
    from nornir_portscan.plugins.tasks.run_options import RunOptions

    resolver = RunOptions({}, {})
    hosts = [Host(name=f"h{i}", hostname=f"127.88.0.{i}",
                  data={"portscan": {"ports": "22,80"}}) for i in range(1, 5)]
    groups, alone = merged.group({h.name: resolver.resolve_lean(h) for h in hosts})
    assert alone == [] and len(groups) == 1
    plan = groups[0][0]
    request = WorkRequest(plan, ShardLayout.for_processes(plan, 2, 7), None, None)
    code = ("import pickle, sys; request = pickle.loads(sys.stdin.buffer.read()); "
            "print(sorted(m for m in sys.modules if m.startswith('nornir')), "
            "[t.address for t in request.plan.spec])")
    done = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(request),
                          capture_output=True, check=True)
    modules, addresses = done.stdout.decode().split("] [")
    assert "nornir_portscan.engine" in modules
    assert "'nornir'" not in modules and "nornir." not in modules
    assert "nornir_portscan.plugins" not in modules
    assert addresses.count("127.88.0.") == 4
