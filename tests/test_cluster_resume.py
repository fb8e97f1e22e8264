"""``scan --cluster ... -o FILE --resume``: a client killed mid-scan (SIGKILL) and started
again leaves out the hosts its journal holds, on a new layout of shards, and the report ends
as an uninterrupted run's, every pair once.

First the decisions without sockets (which places of which shard the journal decided, and
the repeats a host probed again whole brings), then a real cluster: ``dask scheduler`` and
two ``dask worker`` processes in a namespace the test builds, with the targets, and
nftables counting the SYNs each target gets.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dask_procs import DaskProcesses, dask_lab
from netns import PYTHON, NetNS, jsonl

from nornir_portscan.engine.core.decided import DecidedPairs
from nornir_portscan.engine.core.outcome import PortRun, PortState, ProbeOutcome
from nornir_portscan.engine.core.plan import plan_scan
from nornir_portscan.engine.core.records import OUTCOMES, decode_batch, parse_frame
from nornir_portscan.engine.core.shard_skips import Repeats, decided_places
from nornir_portscan.engine.core.split import HostSlice, ShardLayout
from nornir_portscan.engine.shards.ledger import Ledger
from nornir_portscan.inputs.targets import TargetSpec

CLOSED = PortState.CLOSED


def closed(host: str, ports: tuple[int, ...] | list[int]) -> list[ProbeOutcome]:
    return [ProbeOutcome(host, p, CLOSED, "conn-refused") for p in ports]


# ---- the decisions ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_decided_hosts_are_the_places_each_shard_leaves_out(seed: int) -> None:
    """Whatever the key and the cut, a shard given its skip yields exactly its targets that
    the journal did not decide, and counts the others as skipped."""
    rnd = random.Random(seed)
    plan = plan_scan("127.0.0.1-60 127.0.1.0/28", "1,2", exclude=["127.0.0.7-9"])
    spec = plan.spec
    assert isinstance(spec, TargetSpec)
    targets = [str(t.address) for t in spec]
    decided = DecidedPairs(spec, plan.ports)
    done = set(rnd.sample(targets, 30))
    for host in done:
        decided.add(closed(host, plan.ports))
    layout = ShardLayout(rnd.getrandbits(48), spec.count(), rnd.randint(1, 7), 1, None)
    skips = decided_places(layout, decided)
    assert len(skips) == layout.count
    left: list[str] = []
    for index, before in enumerate(skips):
        hosts = HostSlice(spec, layout, index, (), bytes(before.skip))
        left.extend(str(t.address) for t in hosts)
        assert hosts.skipped == before.count
    assert sorted(left) == sorted(set(targets) - done)
    assert sum(s.count for s in skips) == len(done)


def test_with_port_classes_a_host_is_left_out_where_its_class_is_decided() -> None:
    """Two hosts, ports cut in three classes: a host whose class-0 ports are decided is left
    out of class 0's shard only; a host decided whole, of every class's."""
    plan = plan_scan("127.0.0.1-2", "10-15")
    spec = plan.spec
    assert isinstance(spec, TargetSpec)
    layout = ShardLayout(12345, 2, 2, 3, None)
    decided = DecidedPairs(spec, plan.ports)
    decided.add(closed("127.0.0.1", layout.ports_of(plan.ports, 0)))  # 10, 13: class 0
    decided.add(closed("127.0.0.1", (11,)))  # class 1 in part
    decided.add(closed("127.0.0.2", plan.ports))
    skips = decided_places(layout, decided)
    for index, before in enumerate(skips):
        left = [t.address for t in HostSlice(spec, layout, index // 3, (), bytes(before.skip))]
        everyone = [t.address for t in HostSlice(spec, layout, index // 3, ())]
        want = [h for h in everyone if h != "127.0.0.2"
                and not (h == "127.0.0.1" and index % 3 == 0)]
        assert left == want, index
        assert before.everything == (not want)


def test_a_host_probed_again_whole_reports_only_what_the_journal_lacks() -> None:
    """A host decided in part runs again whole on its shard; the pairs the journal holds
    are dropped, single outcomes and port runs alike, and a host not decided at all
    passes untouched."""
    plan = plan_scan("127.0.0.1-3", "1-4")
    spec = plan.spec
    assert isinstance(spec, TargetSpec)
    decided = DecidedPairs(spec, plan.ports)
    decided.add(closed("127.0.0.1", (1, 2)))
    decided.add(closed("127.0.0.3", plan.ports))
    repeats = Repeats(decided)
    assert repeats.hosts == {"127.0.0.1"}
    again = closed("127.0.0.1", (1, 2, 3))
    fresh = closed("127.0.0.2", plan.ports)
    run = PortRun("127.0.0.1", None, (2, 4), PortState.FILTERED, "no-response")
    kept, runs = repeats.new([*again, *fresh], [run])
    assert kept == [again[2], *fresh]
    assert runs == [run._replace(ports=(4,))]
    assert repeats.new(again, []) == ([], [])  # sent twice: still once


def test_a_shard_whose_places_are_all_decided_is_finished_without_a_run() -> None:
    plan = plan_scan("127.0.0.1-8", "1,2")
    spec = plan.spec
    assert isinstance(spec, TargetSpec)
    layout = ShardLayout.for_plan(plan, 2, 99, min_probes=1)
    assert (layout.host_slices, layout.port_classes) == (2, 1)
    first = [t.address for t in HostSlice(spec, layout, 0, ())]
    second = [t.address for t in HostSlice(spec, layout, 1, ())]
    decided = DecidedPairs(spec, plan.ports)
    for host in [*first, second[0]]:
        decided.add(closed(str(host), plan.ports))
    ledger = Ledger(layout, plan.ports, 0.0)
    skips = decided_places(layout, decided)
    assert ledger.taken_before(0, bytes(skips[0].skip), skips[0].count, 1.0)
    assert not ledger.taken_before(1, bytes(skips[1].skip), skips[1].count, 1.0)
    assert ledger.unfinished == 1 and ledger.shards[0].finished == 1.0
    assert ledger.shards[1].hosts == 1
    assert ledger.skip_for(1) == bytes(skips[1].skip)  # every run leaves them out


# ---- a real cluster, its client killed ---------------------------------------------------------

PREFIX = "127.83"
HOSTS = [f"{PREFIX}.{a}.{b}" for a in (0, 1) for b in range(1, 129)]
TARGETS = f"{PREFIX}.0-1.1-128"
OPEN_HOSTS = set(HOSTS[:32])
RULES = f"""
table inet cresume {{
 set syns {{ type ipv4_addr; flags dynamic; counter; size 1024; }}
 chain output {{
  type filter hook output priority 0; policy accept;
  ip daddr {PREFIX}.0.0/23 tcp flags & (syn | ack) == syn add @syns {{ ip daddr }}
 }}
 chain input {{
  type filter hook input priority 0; policy accept;
  ip daddr {PREFIX}.0.1-{PREFIX}.0.32 tcp dport 2 accept
  ip daddr {PREFIX}.0.0/23 tcp dport 2 drop
 }}
}}
"""
#: fields that say when or where, not what
NOT_COMPARED = ("rtt_ms", "worker")


def truth() -> dict[tuple[str, int], str]:
    return {**{(h, 1): "closed" for h in HOSTS},
            **{(h, 2): "open" if h in OPEN_HOSTS else "filtered" for h in HOSTS}}


@pytest.fixture
def cluster(make_netns: Callable[[], NetNS]) -> Iterator[DaskProcesses]:
    with dask_lab(make_netns(), RULES, [(h, 2) for h in sorted(OPEN_HOSTS)],
                  ("w1", "w2")) as procs:
        yield procs


def syns(ns: NetNS, table: str = "cresume") -> Counter[str]:
    """SYNs sent to each target so far (the nftables set's counters)."""
    doc = json.loads(ns.check("nft", "-j", "list", "set", "inet", table, "syns"))
    out: Counter[str] = Counter()
    for item in doc["nftables"]:
        for element in item.get("set", {}).get("elem", []):
            elem = element["elem"]
            out[str(elem["val"])] = int(elem["counter"]["packets"])
    return out


def settled_syns(ns: NetNS) -> Counter[str]:
    """The counters once they stop moving: a killed client's runs on the workers stop
    within a message or two (they see their task cancelled)."""
    before = syns(ns)
    while True:
        time.sleep(1.5)
        now = syns(ns)
        if now == before:
            return now
        before = now


def journal_hosts(path: Path) -> Counter[str]:
    """Outcomes per host that a journal file holds, read as a crash left it."""
    out: Counter[str] = Counter()
    data = path.read_bytes() if path.exists() else b""
    pos = 0
    while pos < len(data):
        end, kind, payload = parse_frame(data, pos)
        if end <= 0:
            break
        if kind == OUTCOMES and payload is not None:
            batch = decode_batch(payload)
            out.update(o.host for o in batch.outcomes)
            for run in batch.runs:
                out[run.host] += len(run.ports)
        pos = end
    return out


def compared(rows: list[dict[str, Any]]) -> Counter[str]:
    return Counter(json.dumps({k: v for k, v in r.items() if k not in NOT_COMPARED},
                              sort_keys=True) for r in rows)


def scan_argv(procs: DaskProcesses, out: Path) -> list[str]:
    return [PYTHON, "-m", "nornir_portscan", "scan", TARGETS, "-p", "1,2", "--timeout", "0.5",
            "--retries", "0", "--rate", "86", "--cluster", procs.address, "--format", "jsonl",
            "-o", str(out)]


def test_a_killed_client_resumes_without_probing_what_arrived(cluster: DaskProcesses,
                                                              tmp_path: Path) -> None:
    """SIGKILL the client at a random moment after hosts came home, run the same command:
    the report is an uninterrupted run's (rows as a multiset, timing and worker aside),
    exact against the lab, each pair once, nothing left beside it; the hosts the journal
    held get no SYN from the resumed scan, and the others do."""
    ns = cluster.ns
    whole = tmp_path / "whole.jsonl"
    done = ns.run(*scan_argv(cluster, whole), timeout=120)
    assert done.returncode == 0, done.stderr
    expected = compared(jsonl(whole.read_text()))

    out = tmp_path / "out" / "scan.jsonl"
    out.parent.mkdir()
    journal = Path(f"{out}.journal")
    argv = [*scan_argv(cluster, out), "--resume"]
    proc = ns.popen(*argv)
    deadline = time.monotonic() + 60
    while sum(journal_hosts(journal).values()) < 40 and time.monotonic() < deadline:
        assert proc.poll() is None, "the scan ended before it could be killed"
        time.sleep(0.05)
    delay = random.uniform(0.0, 2.0)  # a random moment (the machine's timing moves it too)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert not out.exists()
    held = journal_hosts(journal)
    whole_hosts = {h for h, n in held.items() if n == 2}
    assert 0 < len(whole_hosts) < len(HOSTS), f"killed too late ({delay:.2f} s) to prove anything"
    assert all(n == 2 for n in held.values())  # a cluster sends whole hosts home
    before = settled_syns(ns)

    resumed = ns.run(*argv, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert f"resuming from {journal}: {2 * len(whole_hosts)} of at most 512" in resumed.stderr
    sent = syns(ns) - before
    assert not {h for h in whole_hosts if sent[h]}, "hosts the journal held were probed again"
    assert all(sent[h] for h in HOSTS if h not in whole_hosts)

    rows = jsonl(out.read_text())
    assert compared(rows) == expected
    keys = Counter((str(r["host"]), int(r["port"])) for r in rows)
    assert max(keys.values()) == 1
    assert {r.get("worker") for r in rows} == {"w1", "w2"}  # the journal keeps who probed
    assert {(str(r["host"]), int(r["port"])): r["state"] for r in rows} == truth()
    assert sorted(p.name for p in out.parent.iterdir()) == ["scan.jsonl"]


#: A journal as a local run killed mid-scan leaves it: of each host of ``sys.argv[2]``'s
#: list (JSON: host -> how many of its ports, lowest first) only that many pairs.
LOCAL_JOURNAL = """
import json, sys
from nornir_portscan.engine.api import open_journal, plan_scan, replay, run_plan
keep = json.loads(sys.argv[2])
plan = plan_scan(sys.argv[3].split(), sys.argv[4], timeout=0.5, retries=0, rate=86)
chosen = [o for o in run_plan(plan) if o.port < plan.ports[0] + keep.get(o.host, 0)]
journal = open_journal(sys.argv[1], plan)
list(replay(journal))
for i in range(0, len(chosen), 50):
    journal.record("", chosen[i:i + 50])
journal.close()
"""


@pytest.mark.parametrize("kept", ["all", "some"])
def test_a_local_runs_journal_continues_on_the_cluster(cluster: DaskProcesses, tmp_path: Path,
                                                      kept: str) -> None:
    """A journal a local run wrote continues on the cluster. Holding every pair: no shard
    runs and no SYN is sent. Holding 100 hosts whole and 20 in part (port 1 only): the
    whole ones get no SYN, the others do (the part-decided ones are probed again whole by
    their shard), and each pair is in the report once, exact against the lab."""
    ns = cluster.ns
    out = tmp_path / "scan.jsonl"
    keep = ({h: 2 for h in HOSTS} if kept == "all"
            else {**{h: 2 for h in HOSTS[10:110]}, **{h: 1 for h in HOSTS[110:130]}})
    made = ns.run(PYTHON, "-c", LOCAL_JOURNAL, f"{out}.journal", json.dumps(keep), TARGETS,
                  "1,2", timeout=120)
    assert made.returncode == 0, made.stderr
    before = syns(ns)
    resumed = ns.run(*scan_argv(cluster, out), "--resume", timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f": {sum(keep.values())} of at most 512 probes were decided" in resumed.stderr
    sent = syns(ns) - before
    assert {h for h in HOSTS if sent[h]} == {h for h in HOSTS if keep.get(h) != 2}
    rows = jsonl(out.read_text())
    assert len(rows) == 512
    assert {(str(r["host"]), int(r["port"])): r["state"] for r in rows} == truth()
    assert [p.name for p in tmp_path.iterdir()] == ["scan.jsonl"]


#: A journal holding one port class of the scan (``sys.argv[4]`` of ``sys.argv[5]``: the
#: plan's ports at index c mod n), as a cluster scan cut by ports leaves it.
CLASS_JOURNAL = """
import sys
from nornir_portscan.engine.api import open_journal, plan_scan, replay, run_plan
plan = plan_scan([sys.argv[2]], sys.argv[3], timeout=0.5, retries=0, rate=86)
c, n = int(sys.argv[4]), int(sys.argv[5])
kept = set(plan.ports[c::n])
journal = open_journal(sys.argv[1], plan)
list(replay(journal))
journal.record("", [o for o in run_plan(plan) if o.port in kept])
journal.close()
"""


def test_a_port_class_decided_is_not_run_again(cluster: DaskProcesses, tmp_path: Path) -> None:
    """One host x 400 ports on two workers is cut by ports (two classes of 200). With one
    class's ports in the journal that class's shard leaves the host out: the resumed scan
    sends the other class's 200 SYNs (and a few for discovery), not 400, and the report
    has each of the 400 pairs once."""
    ns = cluster.ns
    host = HOSTS[0]
    out = tmp_path / "scan.jsonl"
    made = ns.run(PYTHON, "-c", CLASS_JOURNAL, f"{out}.journal", host, "1-400", "0", "2",
                  timeout=120)
    assert made.returncode == 0, made.stderr
    before = syns(ns)
    resumed = ns.run(PYTHON, "-m", "nornir_portscan", "scan", host, "-p", "1-400",
                     "--timeout", "0.5", "--retries", "0", "--rate", "86", "--cluster",
                     cluster.address, "--format", "jsonl", "-o", str(out), "--resume",
                     timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert ": 200 of at most 400 probes were decided" in resumed.stderr
    sent = (syns(ns) - before)[host]
    assert 200 <= sent < 220, sent
    rows = jsonl(out.read_text())
    assert sorted(int(r["port"]) for r in rows) == list(range(1, 401))
    assert {int(r["port"]) for r in rows if r["state"] == "open"} == {2}
    assert [p.name for p in tmp_path.iterdir()] == ["scan.jsonl"]


def test_a_name_decided_in_part_is_probed_again_and_reported_once(
        dns_netns: NetNS, tmp_path: Path) -> None:
    """A name with two addresses (``multi.test``: 127.0.0.2 and .3), one decided whole and
    one in part, beside an address decided whole: on the cluster the name is looked up
    and probed again by its shard, the journal's pairs are dropped as they come home, and
    the report has each pair once; the address decided whole gets no SYN."""
    pytest.importorskip("distributed")
    ns = dns_netns
    ns.nft("table inet cresname {\n set syns { type ipv4_addr; flags dynamic; counter; }\n"
           " chain output {\n  type filter hook output priority 0; policy accept;\n"
           "  ip daddr 127.0.0.2-127.0.0.4 tcp flags & (syn | ack) == syn add @syns "
           "{ ip daddr }\n }\n}\n")
    ns.listen([("127.0.0.3", 2007, None)])
    procs = DaskProcesses(ns)
    try:
        procs.add_worker("w1")
        procs.add_worker("w2")
        procs.wait_for_workers(2)
        out = tmp_path / "scan.jsonl"
        targets, ports = "multi.test 127.0.0.4", "2000-2009"
        keep = {"127.0.0.2": 10, "127.0.0.3": 5, "127.0.0.4": 10}
        made = ns.run(PYTHON, "-c", LOCAL_JOURNAL, f"{out}.journal", json.dumps(keep),
                      targets, ports, timeout=120)
        assert made.returncode == 0, made.stderr
        before = syns(ns, "cresname")
        resumed = ns.run(PYTHON, "-m", "nornir_portscan", "scan", *targets.split(), "-p",
                         ports, "--timeout", "0.5", "--retries", "0", "--rate", "86",
                         "--cluster", procs.address, "--format", "jsonl", "-o", str(out),
                         "--resume", timeout=120)
        assert resumed.returncode == 0, resumed.stderr
        assert ": 25 of at most" in resumed.stderr
        sent = syns(ns, "cresname") - before
    finally:
        procs.close()
    assert sent["127.0.0.4"] == 0 and sent["127.0.0.3"] > 0
    rows = jsonl(out.read_text())
    keys = Counter((str(r["host"]), int(r["port"])) for r in rows)
    assert set(keys) == {(h, p) for h in ("127.0.0.2", "127.0.0.3", "127.0.0.4")
                         for p in range(2000, 2010)}
    assert max(keys.values()) == 1
    assert {(r["host"], r["port"]) for r in rows if r["state"] == "open"} == {
        ("127.0.0.3", 2007)}
    assert all(r.get("name") == "multi.test" for r in rows if r["host"] != "127.0.0.4")
    assert [p.name for p in tmp_path.iterdir()] == ["scan.jsonl"]


# ---- a nornir run on the cluster, its client killed --------------------------------------------

#: Two nornir hosts of 128 targets each: each host's scan runs on the cluster, its two
#: shards at once (one on each worker), about 6 s at this rate per worker (a run's --rate
#: paces this machine's engine, not the cluster's).
RUN_INVENTORY = {f"part{i}": {"hostname": f"{PREFIX}.{i}.1", "data": {
    "portscan": {"targets": [f"{PREFIX}.{i}.1-128"]}}} for i in range(2)}


def run_argv(procs: DaskProcesses, inventory: Path, out: Path) -> list[str]:
    return [PYTHON, "-m", "nornir_portscan", "run", "-i", str(inventory), "-p", "1,2",
            "--timeout", "0.5", "--retries", "0", "--worker-rate", "20", "--cluster",
            procs.address, "--no-progress", "--format", "jsonl", "-o", str(out)]


def test_a_killed_run_resumes_on_the_cluster(cluster: DaskProcesses, tmp_path: Path) -> None:
    """``run --cluster ... --resume`` killed (SIGKILL) when a nornir host's scan had
    targets home but was not finished, then run again: the report is an uninterrupted
    run's, each pair once, exact, nothing left beside it, and no target the journal held
    gets a SYN."""
    ns = cluster.ns
    inventory = tmp_path / "inv"
    inventory.mkdir()
    (inventory / "hosts.yaml").write_text(json.dumps(RUN_INVENTORY), encoding="utf-8")
    (inventory / "defaults.yaml").write_text("{}", encoding="utf-8")
    whole = tmp_path / "whole.jsonl"
    done = ns.run(*run_argv(cluster, inventory, whole), timeout=180)
    assert done.returncode == 0, done.stderr
    expected = compared(jsonl(whole.read_text()))
    assert sum(expected.values()) == 512

    out = tmp_path / "out" / "run.jsonl"
    out.parent.mkdir()
    journal = Path(f"{out}.journal")
    argv = [*run_argv(cluster, inventory, out), "--resume"]
    proc = ns.popen(*argv)
    deadline = time.monotonic() + 90
    while sum(journal_hosts(journal).values()) < 40 and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    time.sleep(random.Random(3).uniform(0.0, 1.5))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    held = journal_hosts(journal)
    whole_hosts = {h for h, n in held.items() if n == 2}
    # a nornir host killed half-way: its scan resumes (a finished one is only replayed)
    assert any(0 < len({h for h in whole_hosts if h.startswith(f"{PREFIX}.{i}.")}) < 128
               for i in range(2)), "killed at a moment that proves nothing"
    before = settled_syns(ns)

    resumed = ns.run(*argv, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {journal}: {sum(held.values())} probes were decided" in resumed.stderr
    sent = syns(ns) - before
    assert not {h for h in whole_hosts if sent[h]}, "hosts the journal held were probed again"
    rows = jsonl(out.read_text())
    assert compared(rows) == expected
    assert {(str(r["host"]), int(r["port"])): r["state"] for r in rows} == truth()
    assert len(rows) == 512
    assert sorted(p.name for p in out.parent.iterdir()) == ["run.jsonl"]
