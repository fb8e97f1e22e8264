"""A nornir run over many hosts: one plan for the hosts that scan their own address, options
resolved once per distinct inventory data, big plans on worker processes, and the run's
JSON written faster with the standard library's bytes. Each is checked against the way it
replaced: a host scanned alone, ``resolve_options`` per host, the engine's loop, json.dump.
Loopback only (addresses of 127.0.0.0/8, which Linux answers on ``lo``)."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from _nornir_support import closed_port, init_nornir, write_yaml_files
from hypothesis import given, settings
from hypothesis import strategies as st
from nornir.core import Nornir
from nornir.core.exceptions import NornirSubTaskError
from nornir.core.task import Result, Task

from nornir_portscan.cli.run import _host_entry
from nornir_portscan.engine.api import run_plan
from nornir_portscan.engine.core.plan import plan_scan
from nornir_portscan.engine.io.service import Engine
from nornir_portscan.engine.shards.shared import shards_for, submit_sharded
from nornir_portscan.errors import PortscanError
from nornir_portscan.plugins.tasks import merged, portscan
from nornir_portscan.plugins.tasks.options import resolve_options, run_settings
from nornir_portscan.plugins.tasks.run_options import Addressed, RunOptions
from nornir_portscan.report.document import finish_document, new_document
from nornir_portscan.report.json_ import render
from nornir_portscan.report.json_text import dump

SUBNET = "127.0.7.0/27"  # 30 hosts
LISTENING = ("127.0.7.3", "127.0.7.9")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """30 subnet hosts and two known hosts; two of the addresses listen on a port."""
    with ExitStack() as stack:
        ports = []
        for address in LISTENING:
            sock = stack.enter_context(socket.socket())
            sock.bind((address, 0))
            sock.listen(16)
            ports.append(sock.getsockname()[1])
        closed = closed_port()
        listed = ", ".join(map(str, [*ports, closed]))
        d = write_yaml_files(
            tmp_path / "inv",
            subnets=f"""\
lab:
  subnet: {SUBNET}
  exclude: [127.0.7.20]
  groups: [audited]
  data: {{portscan: {{ports: [{listed}], timeout: 1.0, retries: 0,
                      expect: {{open: [{ports[0]}], closed: [{closed}]}}}}}}
""",
            groups="audited: {data: {portscan: {banners: false}}}\n",
            hosts=f"""\
named: {{hostname: 127.0.7.20, data: {{portscan: {{targets: [127.0.7.20, 127.0.7.21],
                                                  ports: [{listed}]}}}}}}
badly: {{hostname: 127.0.7.40, data: {{portscan: {{ports: "70000"}}}}}}
""")
        yield {"dir": d, "open": ports, "closed": closed}


def _comparable(r: Result) -> dict[str, Any]:
    """What a host's Result says, without the round-trip and scan times a second scan
    changes."""
    result = json.loads(json.dumps(r.result)) if isinstance(r.result, dict) else r.result
    if isinstance(result, dict):
        result["elapsed_s"] = "time" if result.get("elapsed_s") is not None else None
        for target in result["targets"].values():
            for port in target["ports"].values():
                port["rtt_ms"] = "rtt" if port["rtt_ms"] is not None else None
    return {"result": result, "failed": r.failed, "changed": r.changed, "diff": r.diff,
            "exception": type(r.exception).__name__,
            "extra": [getattr(r, k, None) for k in ("open_ports", "violations", "summary")]}


def test_a_run_gives_each_host_what_it_gets_scanned_alone(lab: dict[str, Any]) -> None:
    """The run's hosts share one plan; a subtask scans its host alone, as before. Every
    host's Result (expectations, failure, baseline diff) is the same both ways."""
    nr: Nornir = init_nornir(lab["dir"], workers=7)
    first = nr.run(task=portscan)
    baseline = {"hosts": {n: {"failed": m[0].failed, "result": m[0].result}
                          for n, m in first.items() if isinstance(m[0].result, dict)}}
    moved = json.loads(json.dumps(baseline))
    moved["hosts"]["lab/127.0.7.3"]["result"]["targets"]["127.0.7.3"]["ports"][
        str(lab["open"][0])]["state"] = "closed"

    def alone(task: Task) -> Result:
        try:
            task.run(task=portscan, baseline=moved)
        except NornirSubTaskError:  # a violated expectation: the subtask's Result says so
            pass
        return Result(host=task.host)

    nr.data.reset_failed_hosts()
    together = nr.run(task=portscan, baseline=moved)
    nr.data.reset_failed_hosts()
    separate = nr.run(task=alone)
    assert set(together) == set(separate) == set(nr.inventory.hosts)
    for name in nr.inventory.hosts:
        assert _comparable(together[name][0]) == _comparable(separate[name][1]), name
    web = together["lab/127.0.7.3"][0]
    assert web.changed and web.diff == f"+ 127.0.7.3:{lab['open'][0]} opened"
    assert web.result["open"] == {"127.0.7.3": [lab["open"][0]]} and not web.failed
    other = together["lab/127.0.7.9"][0]
    assert other.failed and other.result["open"] == {"127.0.7.9": [lab["open"][1]]}
    assert together["named"][0].result["open"] == {"127.0.7.20": [], "127.0.7.21": []}
    assert isinstance(together["badly"][0].exception, PortscanError)
    # the 29 subnet hosts (not the one with two targets, nor the invalid one) share a plan
    resolver = RunOptions({"ports": None}, run_settings(nr.config))
    resolved = {}
    for name, host in nr.inventory.hosts.items():
        try:
            resolved[name] = resolver.resolve_lean(host)
        except PortscanError:
            pass
    plans, alone_hosts = merged.group(resolved)
    assert [plan.spec.count() for plan, _ in plans] == [29] and alone_hosts == ["named"]


def test_options_resolved_for_a_run_are_each_hosts_own(lab: dict[str, Any]) -> None:
    """RunOptions against resolve_options, host by host: the same options, the same plan
    (targets, rate, discovery), the same error."""
    nr: Nornir = init_nornir(lab["dir"])
    args = {"ports": None, "expect": None}
    run = run_settings(nr.config)
    resolver = RunOptions(args, run)
    addressed = 0
    for host in nr.inventory.hosts.values():
        try:
            alone = resolve_options(host, args, run=run)
        except PortscanError as exc:
            with pytest.raises(PortscanError) as got:
                resolver.resolve_lean(host)
            assert str(got.value) == str(exc)
            continue
        lean = resolver.resolve_lean(host)
        mine = resolver.resolve(host)
        assert mine == alone and mine.plan is not None and alone.plan is not None
        assert (list(mine.plan.spec), mine.plan.rate, mine.plan.options) == (
            list(alone.plan.spec), alone.plan.rate, alone.plan.options)
        if isinstance(lean, Addressed):
            addressed += 1
            assert [lean.target] == list(alone.plan.spec)
            assert (lean.options.ports, lean.options.expect) == (alone.ports, alone.expect)
        else:
            assert lean == alone
    assert addressed == 28  # every subnet host but the first of its kind


def test_the_engine_shards_a_big_plan_and_loses_no_outcome() -> None:
    """A plan big enough for worker processes runs on them, with the loop's outcomes; a
    rate cap (which the loop's jobs share) keeps it on the loop."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: scans never shard")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        port = sock.getsockname()[1]
        plan = plan_scan(["127.0.0.1"], f"1-9000,{port}", timeout=1.0)
        engine = Engine()
        assert shards_for(engine, plan) > 1
        sharded = {o.port: o.state.value for o in submit_sharded(engine, plan).result()}
        here = {o.port: o.state.value for o in run_plan(plan)}
    assert len(sharded) == len(plan.ports) == 9001
    assert sharded == here and sharded[port] == "open"
    assert shards_for(Engine(rate=100000), plan) == 1
    assert shards_for(Engine(concurrency=512), plan) == 1


# ---- the run document's JSON --------------------------------------------------------------

_TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12) | \
    st.sampled_from(["caf\u00e9", "\x7f", "\x00\x1f", "\U0001f600", "a\"b\\c", "\u2028"])
_PORT_ENTRY = st.fixed_dictionaries(
    {"state": _TEXT, "reason": _TEXT,
     "rtt_ms": st.none() | st.floats(0, 1e6).map(lambda f: round(f, 3)),
     "attempts": st.integers(0, 10)},
    optional={"banner": _TEXT, "worker": _TEXT})
_RESULT = st.fixed_dictionaries({
    "targets": st.dictionaries(_TEXT, st.fixed_dictionaries({
        "status": _TEXT, "name": st.none() | _TEXT,
        "ports": st.dictionaries(st.integers(1, 65535), _PORT_ENTRY, max_size=4)}), max_size=3),
    "open": st.dictionaries(_TEXT, st.lists(st.integers(1, 65535), max_size=3), max_size=2),
    "summary": st.dictionaries(_TEXT, st.integers(0, 10**6), max_size=5),
    "violations": st.lists(_TEXT, max_size=3)},
    optional={"diff": st.fixed_dictionaries({"opened": st.dictionaries(
        _TEXT, st.lists(st.integers(1, 65535), max_size=2), max_size=2),
        "appeared": st.lists(_TEXT, max_size=2)})})
#: Anything json writes (with default=str), for the parts of a document that go through it
_ANY = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _TEXT
    | st.datetimes().map(lambda d: d.replace(tzinfo=dt.timezone.utc)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8)
_HOST = st.fixed_dictionaries(
    {"failed": st.booleans(), "error": st.none() | _TEXT, "result": st.none() | _RESULT},
    optional={"changed": st.booleans(), "diff": _TEXT, "odd": _ANY})
_DOC = st.fixed_dictionaries({
    "tool": _TEXT, "elapsed_s": st.floats(), "options": st.dictionaries(_TEXT, _ANY),
    "hosts": st.dictionaries(_TEXT | st.integers(), _HOST, max_size=6),
    "summary": st.dictionaries(_TEXT, _ANY, max_size=3)})


@settings(max_examples=120, deadline=None)
@given(_DOC)
def test_the_json_writer_writes_json_dumps_bytes(doc: dict[str, Any]) -> None:
    """Any run document (a host's Result holds plain values; options and stray fields may
    hold anything json writes with default=str): the same text as json.dump."""
    expected = io.StringIO()
    json.dump(doc, expected, indent=2, default=str)
    expected.write("\n")
    got = io.StringIO()
    dump(doc, got)
    assert got.getvalue() == expected.getvalue()


def test_a_real_runs_document_is_written_as_json_dump_writes_it(lab: dict[str, Any]) -> None:
    nr: Nornir = init_nornir(lab["dir"])
    ran = nr.run(task=portscan)
    doc = new_document({"inventory": str(lab["dir"]), "when": dt.datetime.now()})
    for name in sorted(nr.inventory.hosts):
        doc["hosts"][name] = _host_entry(name, ran[name][0])
    finish_document(doc, 1.5)
    expected = io.StringIO()
    json.dump(doc, expected, indent=2, default=str)
    got = io.StringIO()
    render(doc, got)
    assert got.getvalue() == expected.getvalue() + "\n"
    assert len(doc["hosts"]) == 31


def test_a_cluster_run_scans_every_host_on_the_cluster() -> None:
    """Hosts that share inventory data share their options (run_options.py), and the run
    merges hosts of one literal address into one local plan: never those whose settings
    send them to a cluster. Each outcome of a cluster scan names its worker; the subnet
    hosts of the shipped inventory were once merged and scanned here, without one."""
    pytest.importorskip("distributed")
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "nornir_portscan", "run", "-p", "1-3",
                           "--cluster", "local:2", "--all-ports", "--format", "json"],
                          capture_output=True, text=True, timeout=120, cwd=repo)
    assert done.returncode == 0, done.stderr
    hosts = json.loads(done.stdout)["hosts"]
    assert len(hosts) == 7
    local = {name: sorted(address for address, target in entry["result"]["targets"].items()
                          if any("worker" not in p for p in target["ports"].values()))
             for name, entry in hosts.items()}
    assert {name: found for name, found in local.items() if found} == {}
