"""Sharded scans on Dask distributed: the worker's checks, the command line and a lost worker.

The partition itself (one split for process and cluster shards) is tested in test_split.py.

Every packet stays on loopback or inside a namespace a test built; a LocalCluster binds
127.0.0.1 only and its worker processes inherit the namespace of the process that made it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from netns import (
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
)

from nornir_portscan.engine.core.plan import plan_scan
from nornir_portscan.engine.core.split import ShardLayout
from nornir_portscan.engine.shards.cluster import run_shard
from nornir_portscan.errors import ScopeError, SpecError
from nornir_portscan.inputs.settings import cluster_address
from nornir_portscan.inputs.targets import Target, parse_targets

INSTALL_LINE = "nornir-portscan: error: --cluster needs Dask: pip install 'nornir-portscan[dask]'"


def cli(*args: str, env: dict[str, str] | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "nornir_portscan", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def needs_dask() -> None:
    pytest.importorskip("distributed")


# ---- a cluster worker re-checks its shard ------------------------------------------------------

def test_a_worker_checks_the_scope_again_before_sending() -> None:
    """A plan whose targets left the allow-list after planning is refused on the worker
    (loopback addresses only: even a missing check could not send beyond the machine)."""
    plan = plan_scan("127.0.0.1", "22", allowed=["127.0.0.0/24"])
    layout = ShardLayout.for_plan(plan, 1, 5)
    outside = replace(plan, spec=parse_targets("127.0.1.1"))
    with pytest.raises(ScopeError, match=r"127\.0\.1\.1.*outside the allowed"):
        run_shard(outside, layout, 0, "k", "q")
    bigger = replace(plan, spec=parse_targets("127.0.0.0/24"), max_addresses=16)
    with pytest.raises(ScopeError, match="over the limit of 16"):
        run_shard(bigger, ShardLayout.for_plan(bigger, 1, 5), 0, "k", "q")

    class Listed:  # a target source that is not a TargetSpec: checked target by target
        def __iter__(self) -> Iterator[Target]:
            return iter([Target("127.0.0.1"), Target("127.0.2.2")])

        def count(self) -> int:
            return 2

    listed = replace(plan, spec=Listed())
    listed_layout = ShardLayout.for_plan(listed, 1, 5, min_probes=1)
    with pytest.raises(ScopeError, match=r"127\.0\.2\.2"):
        for i in range(listed_layout.count):
            list(listed_layout.share(listed, i).spec)


@pytest.mark.parametrize("value", ["tcp://127.0.0.1:8786", "local:2", "tcp://[::1]:8786",
                                   "tcp://scheduler.example:8786"])
def test_cluster_values_accepted(value: str) -> None:
    assert cluster_address(value) == value
    assert plan_scan("127.0.0.1", "22", cluster=value).cluster == value


@pytest.mark.parametrize("value", ["", "local:", "local:0", "local:999", "127.0.0.1:8786",
                                   "tcp://127.0.0.1", "tcp://h:0", "tcp://h:70000", "udp://h:1"])
def test_bad_cluster_values_are_spec_errors(value: str) -> None:
    with pytest.raises(SpecError, match="cluster"):
        plan_scan("127.0.0.1", "22", cluster=value)


def test_bad_cluster_value_on_the_command_line_is_one_line_exit_2() -> None:
    done = cli("scan", "127.0.0.1", "-p", "22", "--cluster", "bogus:1")
    assert done.returncode == 2
    assert done.stderr.strip() == ("nornir-portscan: error: argument --cluster 'bogus:1': "
                                   "must be tcp://HOST:PORT or local:N")


def test_without_dask_cluster_is_one_line_exit_2(tmp_path: Path) -> None:
    """``distributed`` not importable (a stub that raises ImportError comes first)."""
    stub = tmp_path / "distributed"
    stub.mkdir()
    (stub / "__init__.py").write_text("raise ImportError('no dask here')\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)}
    done = cli("scan", "127.0.0.1", "-p", "22", "--cluster", "local:2", env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == INSTALL_LINE
    assert done.stdout == ""
    # nothing else imports Dask: a local scan works with the stub in place
    local = cli("scan", "127.0.0.1", "-p", "1", "--format", "jsonl", env=env)
    assert local.returncode == 0, local.stderr


def test_a_scheduler_that_does_not_answer_is_one_line_exit_3() -> None:
    needs_dask()
    with socket.socket() as sock:  # a free loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = cli("scan", "127.0.0.1", "-p", "22", "--cluster", f"tcp://127.0.0.1:{port}")
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"nornir-portscan: error: cannot use the Dask cluster at "
                               f"tcp://127.0.0.1:{port}")
    assert done.stdout == ""


# ---- real clusters, inside namespaces ---------------------------------------------------------

LAB_TARGETS = (LAB_UP, LAB_DEAD, LAB_REJECT, LAB_NOROUTE, "127.77.2.1-40")
LAB_PORTS = f"{LAB_OPEN_PORT},{LAB_BANNER_PORT},{LAB_CLOSED_PORT},{LAB_FILTERED_PORT},83,84"


def test_local_cluster_gives_the_local_engines_outcomes(lab: NetNS) -> None:
    needs_dask()
    common = ("-p", LAB_PORTS, "--timeout", "0.3", "--retries", "0", "--format", "jsonl")
    here = lab.scan(*LAB_TARGETS, *common)
    assert here.returncode == 0, here.stderr
    spread = lab.scan(*LAB_TARGETS, *common, "--cluster", "local:2", timeout=60)
    assert spread.returncode == 0, spread.stderr
    local, cluster = by_key(jsonl(here.stdout)), by_key(jsonl(spread.stdout))  # no duplicates
    assert len(cluster) == 44 * 6
    assert ({k: r["state"] for k, r in cluster.items()}
            == {k: r["state"] for k, r in local.items()})
    states = {r["state"] for r in cluster.values()}
    assert states == {"open", "closed", "filtered", "unreachable"}
    assert cluster[(LAB_UP, LAB_OPEN_PORT)]["state"] == "open"
    assert cluster[(LAB_NOROUTE, 83)]["state"] == "unreachable"
    # each row names the worker (vantage point) that probed it; a local scan's none
    assert {r["worker"] for r in cluster.values()} <= {"0", "1"}
    assert not any("worker" in r for r in local.values())


KILL_SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    from nornir_portscan.engine.api import ScanStats, plan_scan, stream_plan
    from nornir_portscan.engine.shards.cluster import close_all, connect

    def main():
        client = connect("local:2")
        before = client.run(os.getpid)
        plan = plan_scan(sys.argv[1], sys.argv[2], cluster="local:2", timeout=1.0,
                         retries=0, discovery=False, shards=8)
        rows, killed, stats = [], None, ScanStats()
        for batch in stream_plan(plan, stats):
            rows.extend((o.host, o.port, o.state.value) for o in batch.outcomes)
            if killed is None:  # a shard is in: kill a worker that still has work
                busy = [w for w, keys in client.processing().items() if keys] or list(before)
                killed = before[busy[0]]
                os.kill(killed, signal.SIGKILL)
        after = client.run(os.getpid)
        close_all()
        print(json.dumps({"rows": rows, "killed": killed, "after": list(after.values()),
                          "connects": stats.connects}))

    if __name__ == "__main__":
        main()
""")


def test_a_worker_killed_mid_scan_still_gives_every_outcome_once(
        make_netns: Callable[[], NetNS]) -> None:
    needs_dask()
    ns = make_netns()
    ns.nft("table inet nptkill {\n chain input {\n"
           "  type filter hook input priority 0; policy accept;\n"
           "  ip daddr 127.79.0.0/24 drop\n }\n}\n")
    # 128 hosts x 6 silent ports, 8 shards of about a second each on 2 workers
    done = ns.run(PYTHON, "-c", KILL_SCRIPT, "127.79.0.1-128", "1-6", timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    rows = [tuple(r) for r in out["rows"]]
    assert len(rows) == len(set(rows)) == 128 * 6
    assert {(h, p) for h, p, _ in rows} == {(f"127.79.0.{i}", p) for i in range(1, 129)
                                           for p in range(1, 7)}
    assert {s for _, _, s in rows} == {"filtered"}
    assert out["killed"] not in out["after"]  # the worker really died (the nanny made anew)
    assert out["connects"] >= 128 * 6


def test_cluster_progress_bar_goes_to_stderr_only(lab: NetNS) -> None:
    needs_dask()
    done = lab.scan(LAB_UP, "-p", f"{LAB_OPEN_PORT},{LAB_CLOSED_PORT}", "--format", "jsonl",
                    "--cluster", "local:1", "--progress", timeout=60)
    assert done.returncode == 0, done.stderr
    rows = by_key(jsonl(done.stdout))
    assert {k: r["state"] for k, r in rows.items()} == {(LAB_UP, LAB_OPEN_PORT): "open",
                                                        (LAB_UP, LAB_CLOSED_PORT): "closed"}
    assert "outcomes" in done.stderr  # the bar's label


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("Linux only")


# ---- nornir: `run --cluster` and the task's cluster= -------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "nornir_portscan", "run", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_run_on_a_local_cluster_reports_what_a_local_run_does() -> None:
    """The shipped inventory is loopback only; each host's scan runs on the cluster.

    Below the ephemeral range (-p 1-1024): the inventory's own full-range hosts would
    also see the short-lived listeners of whatever else runs on this machine meanwhile.
    """
    needs_dask()
    here = run_cli("--format", "jsonl", "-p", "1-1024")
    spread = run_cli("--format", "jsonl", "-p", "1-1024", "--cluster", "local:2")
    assert here.returncode == spread.returncode == 0, spread.stderr

    def rows(text: str) -> list[tuple[str, int, str]]:
        return sorted((r["host"], r["port"], r["state"]) for r in jsonl(text))

    assert rows(spread.stdout) == rows(here.stdout) and rows(here.stdout)
    assert len(set(rows(spread.stdout))) == len(rows(spread.stdout))


def test_run_with_a_bad_cluster_value_is_exit_2() -> None:
    done = run_cli("--cluster", "tcp://nowhere")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "nornir-portscan: error: argument --cluster 'tcp://nowhere': must be "
        "tcp://HOST:PORT or local:N")


def test_the_inventory_cluster_option_is_validated_per_host() -> None:
    from nornir.core.inventory import Host

    from nornir_portscan.errors import InventoryError
    from nornir_portscan.plugins.tasks.options import resolve_options

    host = Host("h1", hostname="127.0.0.1", data={"portscan": {"cluster": "local:3"}})
    options = resolve_options(host, {"ports": "22"})
    assert options.settings["cluster"] == "local:3" and options.plan is not None
    assert options.plan.cluster == "local:3"
    bad = Host("h2", hostname="127.0.0.1", data={"portscan": {"cluster": 8786}})
    with pytest.raises(InventoryError, match=r"h2.*portscan\.cluster = 8786"):
        resolve_options(bad, {"ports": "22"})


TASK_ON_CLUSTER = """
import asyncio, json, sys
from nornir import InitNornir
from nornir.core.processor import Processors
from nornir.core.task import Task
from nornir_portscan.plugins.tasks import aportscan, portscan


def main() -> None:
    nr = InitNornir(inventory={"plugin": "PortscanInventory",
                               "options": {"host_file": sys.argv[1]}},
                    logging={"enabled": False})
    out = {}
    for name in ("arg", "data"):
        cluster = {"cluster": "local:1"} if name == "arg" else {}
        out[f"portscan {name}"] = nr.run(task=portscan, on_failed=True, **cluster)[name][0].result
        task = Task(aportscan, nr, global_dry_run=False, processors=Processors())
        task.host = nr.inventory.hosts[name]
        out[f"aportscan {name}"] = asyncio.run(aportscan(task, **cluster)).result
    print(json.dumps(out))


if __name__ == "__main__":
    main()
"""


def test_the_tasks_cluster_from_an_argument_or_inventory_data_runs_there(
        tmp_path: Path) -> None:
    """Without Dask (a stub that refuses the import), a host whose scan should run on a
    cluster fails saying Dask is missing: the setting reached where the scan runs. Every
    path: the portscan and aportscan arguments and a host's inventory data, and monitor's
    flag."""
    stub = tmp_path / "stub" / "distributed"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('no dask here')\n")
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(json.dumps({
        "arg": {"hostname": "127.0.0.1", "data": {"portscan": {"ports": [1]}}},
        "data": {"hostname": "127.0.0.1", "data": {"portscan": {"ports": [1],
                                                                "cluster": "local:1"}}}}))
    script = tmp_path / "on_cluster.py"
    script.write_text(TASK_ON_CLUSTER)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{stub.parent}:{REPO}"}
    done = subprocess.run([PYTHON, str(script), str(hosts)], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert set(results) == {"portscan arg", "aportscan arg", "portscan data", "aportscan data"}
    for way, result in results.items():
        assert result == (f"host '{way.split()[1]}': scan failed: cluster scans need Dask: "
                          f"pip install 'nornir-portscan[dask]'"), way
    (tmp_path / "inv").mkdir()
    (tmp_path / "inv" / "hosts.yaml").write_text("a: {hostname: 127.0.0.1}\n")
    monitor = subprocess.run([PYTHON, "-m", "nornir_portscan", "monitor", "-i",
                              str(tmp_path / "inv"), "--once", "--cluster", "local:1"],
                             capture_output=True, text=True, timeout=60, env=env)
    assert monitor.returncode == 2 and monitor.stderr.strip() == INSTALL_LINE, monitor.stderr
