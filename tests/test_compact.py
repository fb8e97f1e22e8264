"""Compact documents: an address's most common port state given once as ``extraports``.

Real nornir runs and real command lines on loopback: a listener and 30 ports bound but
not listening (each refuses, and nothing else can listen there during the test), so
every port's state is known. Documents written by the code before ``extraports`` (in
tests/data/old_documents, made as its README says) still load as baselines, in a
namespace where the ports they name are free.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from _nornir_support import init_nornir, write_yaml_files
from hypothesis import event, given, settings
from hypothesis import strategies as st
from netns import PYTHON, NetNS

from nornir_portscan.engine.core.outcome import PortState, ProbeOutcome
from nornir_portscan.plugins.common.ports import (
    FOLD_ABOVE,
    compact_target,
    each_port,
    lookup,
    port_ranges,
    ports_in_state,
    target_states,
)
from nornir_portscan.plugins.common.shapes import TargetEntry
from nornir_portscan.plugins.tasks import portscan
from nornir_portscan.plugins.tasks.portscan import ScanResult
from nornir_portscan.plugins.tasks.result import build

OLD = Path(__file__).parent / "data" / "old_documents"
CLOSED = 30  # more than FOLD_ABOVE: the closed ports fold


@pytest.fixture
def held() -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    yield socks
    for sock in socks:
        sock.close()


@pytest.fixture
def ports(held: list[socket.socket]) -> tuple[int, list[int]]:
    """(open port, closed ports) on 127.0.0.1: a listener, and CLOSED ports bound without
    listening (refused, and reserved for the test)."""
    assert CLOSED > FOLD_ABOVE
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held.append(server)
    closed = []
    for _ in range(CLOSED):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        held.append(sock)
        closed.append(sock.getsockname()[1])
    return server.getsockname()[1], sorted(closed)


def inventory(directory: Path, ports: list[int], **data: Any) -> Path:
    portscan_data = json.dumps({"ports": ports, **data})
    return write_yaml_files(directory, hosts=f"web:\n  hostname: 127.0.0.1\n"
                                             f"  data: {{portscan: {portscan_data}}}\n",
                            groups="{}\n", defaults="{}\n")


def scan_one(directory: Path, **args: Any) -> ScanResult:
    result = init_nornir(directory).run(task=portscan, **args)
    return cast(ScanResult, result["web"][0])


def test_result_folds_the_common_state_and_state_reads_every_port(
        tmp_path: Path, ports: tuple[int, list[int]]) -> None:
    op, closed = ports
    everything = sorted([op, *closed])
    never = next(p for p in range(1024, 65535) if p not in everything)  # not probed
    r = scan_one(inventory(tmp_path / "inv", everything,
                           expect={"closed": closed[:3], "open": [closed[5]]}))
    target = r.result["targets"]["127.0.0.1"]
    assert list(target["ports"]) == [op]
    assert target["extraports"] == {"state": "closed", "reason": "conn-refused",
                                    "count": CLOSED}
    assert target["scanned"] == port_ranges(everything)
    assert r.result["summary"]["closed"] == CLOSED and r.result["open"] == {"127.0.0.1": [op]}
    # the accessor: listed, folded, and not probed
    assert r.state("127.0.0.1", op) == "open"
    assert all(r.state("127.0.0.1", p) == "closed" for p in closed)
    assert r.port("127.0.0.1", closed[0]) == {"state": "closed", "reason": "conn-refused"}
    assert r.state("127.0.0.1", never) is None and r.state("127.0.0.9", op) is None
    # expectations read folded ports: three hold, one is violated with the folded reason
    assert r.violations == [f"127.0.0.1:{closed[5]} expected open, got closed (conn-refused)"]
    # every probe accounted for once, through the accessor
    assert [p for p, _ in each_port(target)] == everything


def test_all_ports_lists_every_port(tmp_path: Path, ports: tuple[int, list[int]]) -> None:
    op, closed = ports
    r = scan_one(inventory(tmp_path / "inv", [op, *closed]), all_ports=True)
    target = r.result["targets"]["127.0.0.1"]
    assert sorted(target["ports"]) == sorted([op, *closed]) and "extraports" not in target
    assert all(v["attempts"] == 1 for v in target["ports"].values())
    bad = scan_one(inventory(tmp_path / "inv2", [op]), all_ports="false")
    assert bad.failed and "all_ports='false'" in str(bad.result)


def test_few_ports_stay_listed(tmp_path: Path, ports: tuple[int, list[int]]) -> None:
    """A state shared by FOLD_ABOVE ports or fewer is not folded (nmap's rule): a Result of
    a handful of ports reads as it always did."""
    op, closed = ports
    r = scan_one(inventory(tmp_path / "inv", [op, *closed[:FOLD_ABOVE]]))
    target = r.result["targets"]["127.0.0.1"]
    assert len(target["ports"]) == FOLD_ABOVE + 1 and "extraports" not in target


def test_diff_against_a_compact_baseline_reads_folded_ports(
        tmp_path: Path, ports: tuple[int, list[int]], held: list[socket.socket]) -> None:
    """A port open in the baseline and folded (closed) now is 'closed'; a port folded in
    the baseline and open now is 'opened'."""
    op, closed = ports
    going = socket.socket()
    going.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    going.bind(("127.0.0.1", 0))
    going.listen(4)
    gone = going.getsockname()[1]
    everything = sorted([op, gone, *closed])
    before = scan_one(inventory(tmp_path / "inv", everything))
    assert before.state("127.0.0.1", gone) == "open"
    saved = tmp_path / "before.json"
    saved.write_text(json.dumps(before.result), encoding="utf-8")  # through JSON: str keys
    going.close()
    again = socket.socket()  # the same port, bound and not listening: refused
    again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    again.bind(("127.0.0.1", gone))
    held.append(again)
    # and a folded port starts listening
    opener = next(s for s in held if s.getsockname()[1] == closed[0])
    opener.listen(4)
    after = scan_one(inventory(tmp_path / "inv", everything), baseline=str(saved))
    assert after.changed
    assert after.result["diff"]["opened"] == {"127.0.0.1": [closed[0]]}
    assert after.result["diff"]["closed"] == {"127.0.0.1": [gone]}
    assert f"- 127.0.0.1:{gone} closed (now closed (conn-refused))" in after.diff


# ---- the command line ------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    return subprocess.run([sys.executable, "-m", "nornir_portscan", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=env)


def test_run_save_and_json_are_compact_unless_all_ports(
        tmp_path: Path, ports: tuple[int, list[int]]) -> None:
    op, closed = ports
    inv = inventory(tmp_path / "inv", [op, *closed])
    done = cli("run", "-i", str(inv), "--format", "json", "-o", "report.json", "--save",
               "saved.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in ("report.json", "saved.json"):
        target = json.loads((tmp_path / name).read_text())["hosts"]["web"]["result"][
            "targets"]["127.0.0.1"]
        assert list(target["ports"]) == [str(op)], name
        assert target["extraports"]["count"] == CLOSED
    done = cli("run", "-i", str(inv), "--save", "full.json", "--all-ports", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    target = json.loads((tmp_path / "full.json").read_text())["hosts"]["web"]["result"][
        "targets"]["127.0.0.1"]
    assert sorted(map(int, target["ports"])) == sorted([op, *closed])
    # the per-probe formats list every probe with its own rtt, as before
    done = cli("run", "-i", str(inv), "--format", "csv", cwd=tmp_path)
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert sorted(int(r["port"]) for r in rows) == sorted([op, *closed])
    assert all(r["rtt_ms"] and r["attempts"] == "1" for r in rows)


def test_scan_json_is_compact_unless_all_ports(tmp_path: Path,
                                               ports: tuple[int, list[int]]) -> None:
    op, closed = ports
    spec = ",".join(map(str, [op, *closed]))
    done = cli("scan", "127.0.0.1", "-p", spec, "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stdout)["hosts"]["127.0.0.1"]
    assert list(entry["ports"]) == [str(op)] and entry["open"] == [op]
    assert entry["extraports"] == {"state": "closed", "reason": "conn-refused",
                                   "count": CLOSED}
    assert [p for p, _ in each_port(entry)] == sorted([op, *closed])
    # the compact scan document is a run's baseline: nothing moved
    (tmp_path / "scan.json").write_text(done.stdout)
    inv = inventory(tmp_path / "inv", [op, *closed])
    same = cli("run", "-i", str(inv), "--baseline", "scan.json", "--fail-on-change",
               "--format", "json", cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["hosts"]["web"]["result"]["diff"]["closed"] == {}
    done = cli("scan", "127.0.0.1", "-p", spec, "--format", "json", "--all-ports",
               cwd=tmp_path)
    entry = json.loads(done.stdout)["hosts"]["127.0.0.1"]
    assert sorted(map(int, entry["ports"])) == sorted([op, *closed])


def test_a_bad_extraports_in_a_baseline_is_one_line(tmp_path: Path,
                                                    ports: tuple[int, list[int]]) -> None:
    op, _ = ports
    inv = inventory(tmp_path / "inv", [op])
    (tmp_path / "old.json").write_text(json.dumps({"hosts": {"web": {"result": {"targets": {
        "127.0.0.1": {"ports": {}, "extraports": {"state": "closed", "count": 3},
                      "scanned": "9-7"}}}}}}))
    done = cli("run", "-i", str(inv), "--baseline", "old.json", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "baseline old.json" in done.stderr
    assert "hosts.web.result.targets.127.0.0.1.scanned '9-7'" in done.stderr


# ---- documents written before extraports -----------------------------------------------


@pytest.fixture
def old_lab(make_netns: Callable[[], NetNS], tmp_path: Path) -> tuple[NetNS, Path]:
    """A namespace where 2223 listens on 127.0.0.1 (the old documents saw 2222 open), and
    the inventory the old run document was made with."""
    ns = make_netns()
    ns.listen([("127.0.0.1", 2223, None)])
    inv = tmp_path / "inv"
    inv.mkdir()
    shutil.copy(OLD / "hosts.yaml", inv / "hosts.yaml")
    (inv / "groups.yaml").write_text("{}\n")
    (inv / "defaults.yaml").write_text("{}\n")
    return ns, inv


def ns_run(ns: NetNS, *args: str) -> subprocess.CompletedProcess[str]:
    return ns.run(PYTHON, "-m", "nornir_portscan", "run", *args, timeout=90)


@pytest.mark.parametrize("old", ["run_save_b6182ea.json", "scan_json_b6182ea.json"])
def test_a_baseline_saved_in_the_old_full_form_still_loads(
        old_lab: tuple[NetNS, Path], tmp_path: Path, old: str) -> None:
    ns, inv = old_lab
    saved = tmp_path / "new.json"
    done = ns_run(ns, "-i", str(inv), "--baseline", str(OLD / old), "--save", str(saved),
                  "--fail-on-change")
    assert done.returncode == 1, done.stdout + done.stderr
    doc = json.loads(saved.read_text())
    web = doc["hosts"]["web"]["result"]
    assert web["diff"] == {"opened": {"127.0.0.1": [2223]}, "closed": {"127.0.0.1": [2222]},
                           "appeared": [], "vanished": []}
    target = web["targets"]["127.0.0.1"]
    assert list(target["ports"]) == ["2223"] and target["scanned"] == "2200-2239"
    assert target["extraports"] == {"state": "closed", "reason": "conn-refused", "count": 39}
    if old.startswith("run"):  # the small host is its own host in a run document only
        assert doc["hosts"]["small"]["result"]["diff"]["closed"] == {"127.0.0.1": [2222]}
    # and the new compact document is itself a baseline: nothing moved since
    again = ns_run(ns, "-i", str(inv), "--baseline", str(saved), "--fail-on-change")
    assert again.returncode == 0, again.stdout + again.stderr


# ---- the fold itself, on any map of ports ------------------------------------------------

_STATES = st.sampled_from([("open", "syn-ack"), ("closed", "conn-refused"),
                           ("filtered", "no-response"), ("filtered", "host-unreach"),
                           ("unreachable", "host-unreach"), ("error", "EMFILE")])


@st.composite
def _port_maps(draw: st.DrawFn) -> dict[int, tuple[str, str]]:
    """A run of ports sharing one state (often more than FOLD_ABOVE) under scattered
    others: the shape of a real address, where a fold is likely."""
    start = draw(st.integers(1, 65535))
    common = draw(_STATES)
    ports = {p: common for p in range(start, min(start + draw(st.integers(0, 90)), 65536))}
    ports.update(draw(st.dictionaries(st.integers(1, 65535), _STATES, max_size=40)))
    return ports


@settings(max_examples=300, deadline=None)
@given(_port_maps(), st.booleans())
def test_folding_loses_no_port_state_or_reason(ports: dict[int, tuple[str, str]],
                                               through_json: bool) -> None:
    """Whatever the ports, the compact entry read back through the accessor gives every
    probed port its state and reason, and nothing for a port not probed."""
    full: TargetEntry = {"status": "up", "name": None,
            "ports": {p: {"state": s, "reason": r, "rtt_ms": 0.1, "attempts": 1}
                      for p, (s, r) in sorted(ports.items())}}
    compact = compact_target(full)
    if through_json:
        compact = json.loads(json.dumps(compact))
    got = [(p, v["state"], v["reason"]) for p, v in each_port(compact)]
    assert got == [(p, s, r) for p, (s, r) in sorted(ports.items())]
    for port in {*ports, 1, 65535, *(p + 1 for p in ports if p < 65535)}:
        entry = lookup(compact, port)
        assert (entry is None) == (port not in ports)
        if entry is not None:
            assert (entry["state"], entry["reason"]) == ports[port]
    assert target_states(compact) == Counter(s for s, _ in ports.values())
    extra = compact.get("extraports")
    assert extra is None or (extra["state"] != "open" and extra["count"] > FOLD_ABOVE)
    assert sorted(ports_in_state(compact, "open")) == sorted(
        p for p, (s, _) in ports.items() if s == "open")


_STATE_OF = {s.value: s for s in PortState}


@st.composite
def _anomalous_maps(draw: st.DrawFn) -> dict[int, tuple[str, str]]:
    """An all-open host (64 ports or more, every one open) or one behind a SYN proxy
    (resets right after the handshake, some open): the hosts an anomaly is judged on."""
    start = draw(st.integers(1, 60000))
    count = draw(st.integers(8, 120))
    resets = draw(st.integers(0, count))
    return {p: ("closed", "reset-after-syn-ack") if i < resets else ("open", "syn-ack")
            for i, p in enumerate(range(start, start + count))}


@st.composite
def _outcomes(draw: st.DrawFn) -> list[ProbeOutcome]:
    """A host's outcomes as the engine hands them out: one address or a few, in any
    order, a port now and then twice (the last one counts), names and banners."""
    out: list[ProbeOutcome] = []
    for address in draw(st.lists(st.sampled_from(["127.0.0.1", "127.0.0.9", "::1",
                                                  "10.0.0.2"]), min_size=1, max_size=3,
                                 unique=True)):
        name = draw(st.none() | st.just("a.test"))
        for port, (state, reason) in draw(_port_maps() | _anomalous_maps()).items():
            out.append(ProbeOutcome(address, port, _STATE_OF[state], reason,
                                    draw(st.none() | st.floats(0, 100)), 1, name,
                                    draw(st.none() | st.just("SSH-2.0"))))
    dupes = draw(st.lists(st.sampled_from(out), max_size=3)) if out else []
    out += [o._replace(reason="again") for o in dupes]
    return draw(st.permutations(out))


@settings(max_examples=200, deadline=None)
@given(_outcomes())
def test_a_compact_result_is_built_as_a_full_one_then_folded(
        outcomes: list[ProbeOutcome]) -> None:
    """The compact Result (built without an entry per folded port) is, to the byte, the
    full Result folded afterwards by compact_target, as it was built before."""
    fast = build(outcomes, all_ports=False)
    slow = build(outcomes, all_ports=True)
    slow["targets"] = {a: compact_target(t) for a, t in slow["targets"].items()}
    assert fast == slow
    assert json.dumps(fast) == json.dumps(slow)  # key order too
    for target in fast["targets"].values():  # --hypothesis-show-statistics counts them
        event(f"anomaly {target.get('anomaly')}, folded {'extraports' in target}")
