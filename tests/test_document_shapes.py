"""The declared shapes (plugins/common/shapes.py, report/document.py) against real documents.

mypy checks every place that builds or indexes a Result or a run document by a literal
key; what it cannot see is a key written under a computed name, or a document that a
real run writes and the declarations forgot. So real runs on loopback (a listener and
ports bound without listening, as tests/test_compact.py does) write documents, and each
is walked against the TypedDicts: every key declared, every required key present, every
value of the declared type. Nothing but 127.0.0.1 is probed.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union, cast

import pytest
from _nornir_support import init_nornir, write_yaml_files
from report_docs import anomaly_document, hand_document

from nornir_portscan.plugins.common.shapes import HostResult, TargetEntry
from nornir_portscan.plugins.tasks import portscan, wait_for_ports
from nornir_portscan.report import writer_for
from nornir_portscan.report.base import ScanSummary
from nornir_portscan.report.document import RunDocument

CLOSED = 30  # more than FOLD_ABOVE: the closed ports fold into extraports


def _is_typeddict(tp: object) -> bool:
    return isinstance(tp, type) and typing.is_typeddict(tp)


def problems(value: object, tp: Any, where: str = "$") -> list[str]:
    """Where ``value`` departs from the type ``tp`` (TypedDicts walked key by key)."""
    if tp is Any or tp is object:
        return []
    if _is_typeddict(tp):
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not a {tp.__name__}"]
        hints = typing.get_type_hints(tp)
        out = [f"{where}.{k}: not declared in {tp.__name__}" for k in value if k not in hints]
        out += [f"{where}: {tp.__name__} lacks required {k!r}"
                for k in tp.__required_keys__ if k not in value]
        for key, item in value.items():
            if key in hints:
                out += problems(item, hints[key], f"{where}.{key}")
        return out
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = tuple(o for o in typing.get_args(tp)
                        if value is None or o is not type(None))
        if len(options) == 1:  # X | None and a value: what is wrong inside X
            return problems(value, options[0], where)
        if any(not problems(value, option, where) for option in options):
            return []
        return [f"{where}: {value!r:.60} is none of {options}"]
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not a dict"]
        return [p for k, v in value.items()
                for p in problems(k, key_tp, f"{where}[key {k!r}]")
                + problems(v, value_tp, f"{where}[{k!r}]")]
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__}, not a list"]
        return [p for i, v in enumerate(value) for p in problems(v, item_tp, f"{where}[{i}]")]
    if tp is type(None):
        return [] if value is None else [f"{where}: {value!r:.60} is not None"]
    if tp is float:  # JSON and round() give an int where a float may be
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, tp)
    return [] if ok else [f"{where}: {value!r:.60} is not {tp.__name__}"]


@pytest.fixture
def ports() -> Iterator[tuple[int, list[int]]]:
    """(open port, closed ports) on 127.0.0.1: a listener, and CLOSED ports bound without
    listening (refused, and reserved for the test)."""
    held: list[socket.socket] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held.append(server)
    for _ in range(CLOSED):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        held.append(sock)
    yield server.getsockname()[1], sorted(s.getsockname()[1] for s in held[1:])
    for sock in held:
        sock.close()


def _inventory(directory: Path, ports: list[int], **data: Any) -> Path:
    portscan_data = json.dumps({"ports": ports, **data})
    return write_yaml_files(directory, hosts=f"web:\n  hostname: 127.0.0.1\n"
                                             f"  data: {{portscan: {portscan_data}}}\n",
                            groups="{}\n", defaults="{}\n")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nornir_portscan", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))


def test_run_documents_have_the_declared_shape(tmp_path: Path,
                                               ports: tuple[int, list[int]]) -> None:
    """``run --save``, compact and with every port, then again against a baseline with
    expectations (diff, changed, expect, violations): every key is declared."""
    op, closed = ports
    everything = sorted([op, *closed])
    inv = _inventory(tmp_path / "inv", everything, expect={"open": [op, closed[0]]})
    first = _cli("run", "-i", str(inv), "--save", "base.json", cwd=tmp_path)
    assert first.returncode == 1, first.stderr  # closed[0] is not open: a violation
    second = _cli("run", "-i", str(inv), "--baseline", "base.json", "--save", "full.json",
                  "--all-ports", "--format", "json", "-o", "report.json", cwd=tmp_path)
    assert second.returncode == 1, second.stderr
    docs = {name: json.loads((tmp_path / name).read_text()) for name in
            ("base.json", "full.json", "report.json")}
    web = docs["base.json"]["hosts"]["web"]["result"]
    assert "extraports" in web["targets"]["127.0.0.1"] and web["violations"]
    assert "baseline" in docs["full.json"] and "diff" in docs["full.json"]["hosts"]["web"]
    for name, doc in docs.items():
        assert problems(doc, RunDocument) == [], name


def test_task_results_have_the_declared_shape(tmp_path: Path,
                                              ports: tuple[int, list[int]]) -> None:
    """The ``portscan`` Result (compact, every port, with a baseline) and ``wait_for_ports``'
    (waited_s, rounds, never_open) as nornir hands them out, ports keyed by int."""
    op, closed = ports
    nr = init_nornir(_inventory(tmp_path / "inv", sorted([op, *closed]),
                                expect={"only_open": [closed[1]]}))
    compact = nr.run(task=portscan)["web"][0].result
    # a violated expectation fails the host: later runs must still include it
    full = nr.run(task=portscan, all_ports=True, baseline=compact,
                  on_failed=True)["web"][0].result
    waited = nr.run(task=wait_for_ports, ports=[op, closed[2]], deadline=0.5,
                    interval=0.1, on_failed=True)["web"][0].result
    assert "diff" in full and "expect" in compact and "never_open" in waited
    for result in (compact, full, waited):
        assert problems(result, HostResult) == []


def test_scan_json_entries_are_targets(ports: tuple[int, list[int]]) -> None:
    """``scan --format json``'s hosts are address entries, with their ``open`` list."""
    from nornir_portscan import scan

    op, closed = ports
    outcomes = list(scan("127.0.0.1", [op, *closed]))
    for all_ports in (False, True):
        out = io.StringIO()
        writer = writer_for("json", out, all_ports=all_ports)
        writer.write(outcomes)
        writer.finish(ScanSummary())
        entry = json.loads(out.getvalue())["hosts"]["127.0.0.1"]
        assert ("extraports" in entry) is not all_ports
        assert problems(entry, TargetEntry) == []


def test_report_test_documents_have_the_declared_shape() -> None:
    """The hand-built and anomaly documents the report tests render are real shapes too."""
    for doc in (hand_document(), anomaly_document(True), anomaly_document(False)):
        assert problems(cast(object, doc), RunDocument) == []


def test_problems_finds_a_departure() -> None:
    """The walker itself: an undeclared key, a missing required one, a wrong type."""
    doc = hand_document()
    bad = cast("dict[str, Any]", json.loads(json.dumps(doc)))
    bad["hosts"]["core-sw1"]["result"]["targets"]["127.0.0.2"]["state"] = "up"
    del bad["tool"]
    bad["summary"]["probes"] = "many"
    found = problems(bad, RunDocument)
    assert any("['127.0.0.2'].state: not declared in TargetEntry" in p for p in found), found
    assert any("lacks required 'tool'" in p for p in found), found
    assert any("summary.probes: 'many' is not int" in p for p in found), found
