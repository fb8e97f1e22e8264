"""The portscan task in real nornir runs: Result shape, inheritance, expectations, baselines,
the async twin, progress, one engine for the whole run, and a namespace with filtered and
unreachable hosts. Loopback only (the namespace's loopback for the last tests)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from _nornir_support import (
    closed_port,
    init_nornir,
    listening,
    render_inventory,
    stalled_port,
    write_yaml_files,
)
from nornir.core import Nornir
from nornir.core.filter import F
from nornir.core.processor import Processors
from nornir.core.task import Result, Task
from rich.console import Console

from nornir_portscan.errors import InventoryError
from nornir_portscan.plugins.processors import ProgressProcessor
from nornir_portscan.plugins.tasks import aportscan, portscan
from nornir_portscan.plugins.tasks.options import resolve_options
from nornir_portscan.plugins.tasks.portscan import ScanResult

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def ports() -> Iterator[tuple[int, int]]:
    with listening() as open_port:
        yield open_port, closed_port()


@pytest.fixture
def nr(tmp_path: Path, ports: tuple[int, int]) -> Nornir:
    open_port, closed = ports
    return init_nornir(render_inventory(tmp_path / "inv", open_port=open_port,
                                        closed_port=closed))


def one(result: Any, host: str) -> ScanResult:
    """The host's result: the task returns a ScanResult (nornir types it as Result)."""
    return cast(ScanResult, result[host][0])


def test_result_structure(nr: Nornir, ports: tuple[int, int]) -> None:
    open_port, closed = ports
    r = one(nr.run(task=portscan), "web1")
    assert not r.failed and not r.changed
    doc = r.result
    assert set(doc) == {"targets", "open", "summary", "violations", "expect", "elapsed_s"}
    assert doc["expect"] == {"not_open": [closed]}  # what was checked (inventory data)
    assert isinstance(doc["elapsed_s"], float) and doc["elapsed_s"] >= 0
    target = doc["targets"]["127.0.0.1"]
    assert target["status"] == "up" and target["name"] is None
    assert list(target["ports"]) == sorted([open_port, closed])       # int keys, sorted
    assert target["ports"][open_port]["state"] == "open"
    assert target["ports"][open_port]["reason"] == "syn-ack"
    assert isinstance(target["ports"][open_port]["rtt_ms"], float)
    assert target["ports"][closed] == {"state": "closed", "reason": "conn-refused",
                                       "rtt_ms": target["ports"][closed]["rtt_ms"],
                                       "attempts": 1}
    assert doc["open"] == {"127.0.0.1": [open_port]}
    assert doc["summary"] == {"open": 1, "closed": 1, "filtered": 0, "unreachable": 0,
                              "error": 0}
    assert doc["violations"] == []
    assert r.open_ports == doc["open"] and r.summary == doc["summary"] and r.violations == []
    json.dumps(doc)  # plain builtins only


def test_closed_ports_never_fail_a_host(nr: Nornir) -> None:
    result = nr.run(task=portscan)
    subnet_host = one(result, "loop-mgmt/127.0.0.4")
    assert subnet_host.result["summary"]["closed"] == 1
    assert not subnet_host.failed
    assert not result.failed and not nr.data.failed_hosts


def test_inheritance_from_groups_and_defaults(nr: Nornir, ports: tuple[int, int]) -> None:
    open_port, closed = ports
    web1 = resolve_options(nr.inventory.hosts["web1"], {})
    assert web1.ports == tuple(sorted([open_port, closed]))     # group lab
    assert web1.expect == {"not_open": (closed,)}               # group lab
    assert (web1.settings["timeout"], web1.settings["retries"]) == (2.0, 0)  # defaults
    assert web1.targets == ("127.0.0.1",)                       # hostname
    web2 = resolve_options(nr.inventory.hosts["web2"], {})
    assert web2.ports == (open_port,)                           # its own
    assert web2.expect == {"open": (open_port,)}
    assert (web2.settings["timeout"], web2.settings["retries"]) == (0.5, 0)  # own, defaults
    sub = resolve_options(nr.inventory.hosts["loop-mgmt/127.0.0.3"], {})
    assert sub.ports == (closed,) and sub.expect == {"not_open": (closed,)}  # subnet + lab


def test_run_arguments_override_inventory(nr: Nornir, ports: tuple[int, int]) -> None:
    _, closed = ports
    result = nr.filter(name="web2").run(task=portscan, ports=[closed], expect={"closed": [closed]},
                                        timeout=1)
    r = one(result, "web2")
    assert list(r.result["targets"]["127.0.0.1"]["ports"]) == [closed]
    assert not r.failed
    r = one(nr.filter(name="web1").run(task=portscan, targets=["127.0.0.1", "127.0.0.3"]),
            "web1")
    assert list(r.result["targets"]) == ["127.0.0.1", "127.0.0.3"]


def test_expectations_pass_and_fail(nr: Nornir, ports: tuple[int, int]) -> None:
    open_port, closed = ports
    web = nr.filter(name="web1")
    r = one(web.run(task=portscan, expect={"open": [open_port], "closed": [closed],
                                           "not_open": [closed]}), "web1")
    assert not r.failed and r.violations == []
    r = one(web.run(task=portscan, expect={"not_open": [open_port], "open": [closed],
                                           "filtered": [closed]}), "web1")
    assert r.failed
    assert sorted(r.violations) == sorted([
        f"127.0.0.1:{open_port} expected not open, got open (syn-ack)",
        f"127.0.0.1:{closed} expected open, got closed (conn-refused)",
        f"127.0.0.1:{closed} expected filtered, got closed (conn-refused)"])
    assert r.result["violations"] == r.violations
    assert "web1" in nr.data.failed_hosts                      # nornir's usual bookkeeping
    r = one(web.run(task=portscan, on_failed=True, expect={"only_open": [closed]}), "web1")
    assert r.violations == [f"127.0.0.1:{open_port} expected not open (only_open: {closed}), "
                            f"got open (syn-ack)"]
    # the inventory's own expectation (web2: open) passes; core1 expects closed on .2: passes
    result = nr.filter(F(name__any=["web2", "core1"])).run(task=portscan)
    assert len(result) == 2 and not result.failed


@pytest.mark.parametrize(("data", "message"), [
    ({"ports": [22, 70000]}, "host 'bad': portscan.ports = [22, 70000] (inventory data of "
                             "host 'bad' in {file}): port '70000'"),
    ({"prots": [22]}, "host 'bad': portscan.prots = [22] (inventory data of host 'bad' in "
                      "{file}): unknown key; allowed: ports, targets"),
    ({"targets": ["127.0.0.300"]}, "host 'bad': portscan.targets = ['127.0.0.300']"),
    ({"timeout": "fast"}, "host 'bad': portscan.timeout = 'fast' (inventory data of host "
                          "'bad' in {file}): must be a number"),
    ({"expect": {"opened": [22]}}, "portscan.expect.opened = [22] (inventory data of host "
                                   "'bad' in {file}): unknown expectation; allowed: open,"),
    ({"expect": {"open": ["sshh"]}}, "portscan.expect.open = ['sshh'] (inventory data of "
                                     "host 'bad' in {file}): unknown port or service name "
                                     "'sshh'"),
    ({"targets": ["127.0.0.0/8"]}, "cannot scan targets"),
])
def test_invalid_host_data_fails_that_host_alone(tmp_path: Path, ports: tuple[int, int],
                                                 data: dict[str, Any], message: str) -> None:
    open_port, _ = ports
    d = write_yaml_files(tmp_path, hosts=json.dumps({
        "bad": {"hostname": "127.0.0.1", "data": {"portscan": data}},
        "good": {"hostname": "127.0.0.1", "data": {"portscan": {"ports": [open_port]}}}}))
    nr = init_nornir(d)
    result = nr.run(task=portscan)
    bad = one(result, "bad")
    assert bad.failed
    message = message.format(file=d / "hosts.yaml")
    assert isinstance(bad.result, str) and message in bad.result
    assert "Traceback" not in bad.result
    assert isinstance(bad.exception, InventoryError)
    good = one(result, "good")
    assert not good.failed and good.result["open"] == {"127.0.0.1": [open_port]}


def test_invalid_argument_names_the_argument(nr: Nornir) -> None:
    r = one(nr.filter(name="web1").run(task=portscan, ports="22-"), "web1")
    assert r.failed
    assert r.result.startswith("host 'web1': argument ports='22-': port range '22-'")


def test_baseline_from_a_result_dict_and_from_saved_json(nr: Nornir,
                                                         ports: tuple[int, int]) -> None:
    open_port, _ = ports
    web = nr.filter(name="web1")
    first = one(web.run(task=portscan), "web1").result
    same = one(web.run(task=portscan, baseline=first), "web1")
    assert not same.changed and same.diff == ""
    assert same.result["diff"] == {"opened": {}, "closed": {}, "appeared": [], "vanished": []}
    # the saved run document: host name -> result, through JSON (string port keys)
    saved = json.loads(json.dumps({"hosts": {"web1": {"failed": False, "result": first}}}))
    assert not one(web.run(task=portscan, baseline=saved), "web1").changed
    # the baseline had the open port closed and knew nothing of 127.0.0.3
    old = json.loads(json.dumps(first))
    old["targets"]["127.0.0.1"]["ports"][str(open_port)]["state"] = "closed"
    r = one(web.run(task=portscan, baseline=old, targets=["127.0.0.1", "127.0.0.3"]), "web1")
    assert r.changed and not r.failed
    assert r.result["diff"] == {"opened": {"127.0.0.1": [open_port]}, "closed": {},
                                "appeared": ["127.0.0.3"], "vanished": []}
    assert r.diff == f"+ host 127.0.0.3 appeared\n+ 127.0.0.1:{open_port} opened"


def test_baseline_file_path_and_vanished_host(nr: Nornir, tmp_path: Path) -> None:
    with stalled_port() as dark:
        if dark is None:
            pytest.skip("this kernel answers SYNs to a full accept queue")
        # baseline: 127.0.0.1 was up with `dark` open; now that port never answers
        baseline = {"targets": {"127.0.0.1": {"status": "up", "name": None, "ports": {
            str(dark): {"state": "open", "reason": "syn-ack", "rtt_ms": 0.1}}}}}
        path = tmp_path / "baseline.json"
        path.write_text(json.dumps(baseline), encoding="utf-8")
        r = one(nr.filter(name="web1").run(task=portscan, ports=[dark], expect={},
                                           timeout=0.3, baseline=str(path)), "web1")
    assert r.changed
    assert r.result["targets"]["127.0.0.1"]["status"] == "down"
    assert r.result["diff"] == {"opened": {}, "closed": {"127.0.0.1": [dark]},
                                "appeared": [], "vanished": ["127.0.0.1"]}
    assert f"- 127.0.0.1:{dark} closed (now filtered (no-response))" in r.diff


def test_aportscan_inside_a_running_event_loop(nr: Nornir, ports: tuple[int, int]) -> None:
    open_port, _ = ports

    async def main() -> tuple[list[Result], int, list[tuple[float, float]]]:
        ticks = 0
        running = True

        async def heartbeat() -> None:
            nonlocal ticks
            while running:
                ticks += 1
                await asyncio.sleep(0.02)

        beat = asyncio.create_task(heartbeat())
        tasks = []
        for name in ("web1", "web2", "core1"):
            task = Task(aportscan, nr, global_dry_run=False, processors=Processors())
            task.host = nr.inventory.hosts[name]
            tasks.append(task)
        with stalled_port() as dark:
            if dark is None:
                pytest.skip("this kernel answers SYNs to a full accept queue")
            spans: list[tuple[float, float]] = []

            async def timed(t: Task) -> Result:
                started = time.monotonic()
                # each waits 0.5 s on the silent port: long enough to see the loop run
                r = await aportscan(t, ports=[open_port, dark], timeout=0.5, retries=0,
                                    expect={})
                if t.host.hostname == "127.0.0.1":  # where the silent port is
                    spans.append((started, time.monotonic()))
                return r
            results = await asyncio.gather(*(timed(t) for t in tasks))
        running = False
        await beat
        return list(results), ticks, spans

    results, ticks, spans = asyncio.run(main())
    # the scans at once on the shared engine: the two that wait on the silent port take
    # about as long together as the quicker alone (one after the other: twice as long)
    shortest = min(end - start for start, end in spans)
    together = max(end for _, end in spans) - min(start for start, _ in spans)
    assert shortest >= 0.5 and together < 1.5 * shortest, (shortest, together)
    assert ticks >= 10                          # the loop kept running while they waited
    for r, address in zip(results, ("127.0.0.1", "127.0.0.1", "127.0.0.2"), strict=True):
        assert not r.failed
        scanned = r.result["targets"][address]["ports"]
        assert scanned[open_port]["state"] == ("open" if address == "127.0.0.1" else "closed")
    assert results[0].result["targets"]["127.0.0.1"]["status"] == "up"


def test_progress_processor_counts_probes_hosts_and_open_ports(nr: Nornir) -> None:
    stream = io.StringIO()
    progress = ProgressProcessor(console=Console(file=stream, force_terminal=True, width=120))
    result = nr.with_processors([progress]).run(task=portscan)
    probes = sum(sum(r[0].result["summary"].values()) for r in result.values())
    assert (progress.probes_done, progress.probes_total) == (probes, probes)
    assert (progress.hosts_done, progress.hosts_total) == (12, 12)
    assert progress.open_found == 2          # web1 and web2 each see the listener
    out = stream.getvalue()
    assert f"probes {probes}/{probes}" in out and "hosts 12/12" in out and "open 2" in out

    def grouped(task: Task) -> Result:
        task.run(task=portscan)
        return Result(host=task.host)

    progress2 = ProgressProcessor(console=Console(file=io.StringIO()))
    pair = nr.filter(F(name__any=["web1", "web2"]))
    result = pair.with_processors([progress2]).run(task=grouped)
    assert len(result) == 2 and not result.failed
    assert progress2.hosts_done == 2 and progress2.open_found == 2
    assert progress2.subtasks_running == 0


def test_every_host_of_a_run_is_scanned_at_once(tmp_path: Path) -> None:
    """40 hosts, 4 workers, a port that never answers and a 0.5 s timeout: scans run
    together (~0.5 s), not in batches of 4 (5 s)."""
    with stalled_port() as dark:
        if dark is None:
            pytest.skip("this kernel answers SYNs to a full accept queue")
        hosts = {f"h{i}": {"hostname": "127.0.0.1"} for i in range(40)}
        d = write_yaml_files(tmp_path, hosts=json.dumps(hosts))
        nr = init_nornir(d, workers=4)
        started = time.monotonic()
        nr.filter(name="h0").run(task=portscan, ports=[dark], timeout=0.5, retries=0)
        one = time.monotonic() - started  # the reference: one host alone
        started = time.monotonic()
        result = nr.run(task=portscan, ports=[dark], timeout=0.5, retries=0)
        elapsed = time.monotonic() - started
    assert all(r[0].result["summary"]["filtered"] == 1 for r in result.values())
    # batches of 4 would take ten times one host's scan; together, about one
    assert elapsed < 4 * one, (elapsed, one)


class _Finished:
    """A processor noting when each host's task completed."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    def task_started(self, task: Task) -> None: ...

    def task_completed(self, task: Task, result: Any) -> None: ...

    def task_instance_started(self, task: Task, host: Any) -> None: ...

    def task_instance_completed(self, task: Task, host: Any, result: Any) -> None:
        self.at[host.name] = time.monotonic()

    def subtask_instance_started(self, task: Task, host: Any) -> None: ...

    def subtask_instance_completed(self, task: Task, host: Any, result: Any) -> None: ...


def test_portscan_runner_takes_hosts_as_their_scans_finish(tmp_path: Path) -> None:
    """PortscanRunner (what ``run`` uses for a threaded config) runs on one thread, yet a
    host behind a slow one gets its Result when its own scan is in, not after the slow
    host's; the run's Results come back in the hosts' order, the same as nornir's
    runners give; another task runs host after host."""
    from nornir.plugins.runners import SerialRunner

    from nornir_portscan.plugins.runner import PortscanRunner

    with stalled_port() as dark, listening() as web:
        if dark is None:
            pytest.skip("this kernel answers SYNs to a full accept queue")
        shut = closed_port()
        # fast: its own job (a second host on 127.0.0.1); quick1 and quick2 share a plan
        hosts = {"slow": {"hostname": "127.0.0.1", "data": {"portscan": {"ports": [dark]}}},
                 "fast": {"hostname": "127.0.0.1", "data": {"portscan": {"ports": [web]}}},
                 "quick1": {"hostname": "127.0.0.2", "data": {"portscan": {"ports": [shut]}}},
                 "quick2": {"hostname": "127.0.0.3", "data": {"portscan": {"ports": [shut]}}}}
        d = write_yaml_files(tmp_path, hosts=json.dumps(hosts))
        nr = init_nornir(d).with_runner(PortscanRunner())
        seen = _Finished()
        started = time.monotonic()
        result = nr.with_processors([seen]).run(task=portscan, timeout=2, retries=0)
        ended = time.monotonic()
        # the same run in inventory order: the fast host waits for the slow one
        kept = _Finished()
        nr.with_runner(SerialRunner()).with_processors([kept]).run(
            task=portscan, timeout=2, retries=0)
    assert list(result) == list(hosts)
    assert one(result, "slow").result["summary"]["filtered"] == 1
    assert one(result, "fast").result["open"] == {"127.0.0.1": [web]}
    assert one(result, "quick2").result["summary"]["closed"] == 1
    assert 1.0 < ended - started
    for name in ("fast", "quick1", "quick2"):
        assert seen.at[name] - started < 1.0, name
        assert seen.at[name] < seen.at["slow"] < kept.at[name]  # what the runner is for
    other = nr.run(task=lambda task: Result(host=task.host, result=task.host.name))
    assert {name: r[0].result for name, r in other.items()} == {name: name for name in hosts}


def test_a_second_run_sees_fresh_state(nr: Nornir) -> None:
    web = nr.filter(F(name__any=["web1", "web2"]))
    port = closed_port()
    first = web.run(task=portscan, ports=[port], expect={})
    assert one(first, "web1").result["open"] == {"127.0.0.1": []}
    with listening() as now_open:
        second = web.run(task=portscan, ports=[port, now_open], expect={})
        third = web.run(task=portscan, ports=[port, now_open], expect={})
    for res in (second, third):
        assert one(res, "web1").result["open"] == {"127.0.0.1": [now_open]}
        assert one(res, "web2").result["open"] == {"127.0.0.1": [now_open]}


# ---- a namespace with filtered and unreachable hosts ------------------------------------

NFT_RULES = """
table inet pstest {
  chain input {
    type filter hook input priority 0; policy accept;
    ip daddr 127.0.0.2 drop
    ip daddr 127.0.2.0/24 drop
    ip daddr 127.0.0.3 meta l4proto tcp reject with icmp type host-unreachable
  }
}
"""

NS_SCRIPT = textwrap.dedent("""
    import json, socket, sys, time
    sys.path.insert(0, sys.argv[2])
    from _nornir_support import init_nornir, write_yaml_files, closed_port
    from pathlib import Path
    from nornir_portscan.plugins.tasks import portscan

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    closed = closed_port()
    hosts = {
        "up": {"hostname": "127.0.0.1"},
        "dark": {"hostname": "127.0.0.2", "data": {"portscan": {"expect": {"closed": [closed]}}}},
        "unreach": {"hostname": "127.0.0.3"},
    }
    d = write_yaml_files(Path(sys.argv[1]), hosts=json.dumps(hosts),
                         subnets="wide: {subnet: 127.0.2.0/26}\\n")
    nr = init_nornir(d, workers=4)
    started = time.monotonic()
    first_wide = min(name for name in nr.inventory.hosts if name.startswith("wide/"))
    nr.filter(name=first_wide).run(task=portscan, ports=[port, closed], timeout=0.5, retries=0)
    one = time.monotonic() - started  # the reference: one silent host alone
    started = time.monotonic()
    result = nr.run(task=portscan, ports=[port, closed], timeout=0.5, retries=0)
    elapsed = time.monotonic() - started
    print(json.dumps({"port": port, "closed": closed, "elapsed": elapsed, "one": one,
                      "failed": sorted(result.failed_hosts),
                      "results": {n: r[0].result for n, r in result.items()}}))
""")


@pytest.fixture(scope="module")
def lab_netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to build a network namespace")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs '{tool}' (apt-get install -y iproute2 nftables)")
    name = f"pstask{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True)
        subprocess.run(["ip", "netns", "exec", name, "nft", "-f", "-"], input=NFT_RULES,
                       text=True, check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_filtered_and_unreachable_hosts_in_a_namespace(lab_netns: str, tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(NS_SCRIPT, encoding="utf-8")
    out = subprocess.run(["ip", "netns", "exec", lab_netns, sys.executable, str(script),
                          str(tmp_path / "inv"), str(Path(__file__).parent)],
                         check=True, capture_output=True, text=True, timeout=120)
    doc = json.loads(out.stdout)
    port, closed, results = doc["port"], doc["closed"], doc["results"]
    up = results["up"]["targets"]["127.0.0.1"]
    assert up["status"] == "up" and up["ports"][str(port)]["state"] == "open"
    dark = results["dark"]["targets"]["127.0.0.2"]
    assert dark["status"] == "down"
    assert {p["state"] for p in dark["ports"].values()} == {"filtered"}
    assert results["dark"]["violations"] == [
        f"127.0.0.2:{closed} expected closed, got filtered (no-response)"]
    unreach = results["unreach"]["targets"]["127.0.0.3"]
    assert unreach["status"] == "unreachable"
    assert {p["reason"] for p in unreach["ports"].values()} == {"host-unreach"}
    assert doc["failed"] == ["dark"]                  # the violation, not the dark host itself
    wide = [n for n in results if n.startswith("wide/")]
    assert len(wide) == 62
    assert all(results[n]["summary"]["filtered"] == 2 for n in wide)
    # 65 hosts on 4 workers with 0.5 s timeouts: one engine for all, not batches of 4
    # (sixteen times one silent host's scan)
    assert doc["elapsed"] < 4 * doc["one"], (doc["elapsed"], doc["one"])
