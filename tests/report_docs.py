"""Run documents for the report tests: one from a real loopback scan, one built by hand.

The real one proves the renderers read what the engine and ``document.py``
actually produce; the hand-built one covers what a loopback scan cannot show
on demand (down and unreachable hosts, engine errors, violations, baseline
diffs, hostile banners). Only loopback is ever scanned; the hand-built
addresses are 127.x and are never probed.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import nornir_portscan
from nornir_portscan.plugins.common.shapes import (
    Diff,
    HostResult,
    PortEntry,
    PortKey,
    TargetEntry,
)
from nornir_portscan.report.document import (
    RunDocument,
    finish_document,
    new_document,
    result_from_outcomes,
)

#: What the loopback listener says first: markup, quotes and non-ASCII, as a device might.
NASTY_GREETING = "SSH-2.0-<script>alert(\"pwn\")</script> 'q' & ünïcødé ✓"

#: A banner no engine would produce but a saved document could carry.
RAW_BANNER = "<script>alert(1)</script>\x00\x07\x1b[31m \"quoted\" & 'single' ünï\r\nline2"

STARTED = _dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=_dt.timezone.utc)


@contextmanager
def listener(greeting: str | None = NASTY_GREETING) -> Iterator[int]:
    """A TCP listener on 127.0.0.1 that sends ``greeting`` to whoever connects."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                if greeting is not None:
                    try:
                        conn.sendall((greeting + "\r\n").encode())
                    except OSError:
                        pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        server.close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound once for a free number, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def scanned_document(host_name: str = "lo") -> tuple[RunDocument, int, int]:
    """(run document, open port, closed port) from a real scan of 127.0.0.1."""
    with listener() as open_port:
        shut = closed_port()
        outcomes = list(nornir_portscan.scan("127.0.0.1", [open_port, shut], banners=True,
                                             banner_wait=2.0))
    doc = new_document({"ports": f"{open_port},{shut}", "banners": True}, started=STARTED)
    doc["hosts"][host_name] = {"failed": False, "error": None,
                               "result": result_from_outcomes(outcomes)}
    finish_document(doc, 0.25)
    return doc, open_port, shut


def _port(state: str, reason: str, rtt: float | None = None,
          banner: str | None = None) -> PortEntry:
    entry: PortEntry = {"state": state, "reason": reason, "rtt_ms": rtt}
    if banner is not None:
        entry["banner"] = banner
    return entry


def _result(targets: dict[str, TargetEntry], violations: list[str] | None = None,
            diff: Diff | None = None) -> HostResult:
    summary: dict[str, int] = {}
    for target in targets.values():
        for port in target["ports"].values():
            summary[port["state"]] = summary.get(port["state"], 0) + 1
    result: HostResult = {
        "targets": targets,
        "open": {a: [int(p) for p, v in t["ports"].items() if v["state"] == "open"]
                 for a, t in targets.items()},
        "summary": summary, "violations": violations or []}
    if diff is not None:
        result["diff"] = diff
    return result


def hand_document() -> RunDocument:
    """Every case a renderer must handle, with string port keys as after JSON."""
    doc = new_document({"ports": "22,23,80,443,830", "timeout": 1.0}, started=STARTED)
    hosts = doc["hosts"]
    hosts["core-sw1"] = {"failed": True, "error": None, "result": _result(
        {"127.0.0.2": {"status": "up", "name": "core-sw1.lab", "ports": {
            "22": _port("open", "syn-ack", 0.412, "SSH-2.0-Cisco-1.25"),
            "23": _port("closed", "conn-refused", 0.3),
            "80": _port("open", "syn-ack", 0.5, RAW_BANNER),
            "830": _port("closed", "reset", 0.4)}}},
        violations=["127.0.0.2:23 expected open, got closed (conn-refused)",
                    "127.0.0.2:80 expected not open (only_open: 22), got open (syn-ack)"],
        diff={"opened": {"127.0.0.2": [80]}, "closed": {"127.0.0.2": [830]},
              "appeared": [], "vanished": ["127.0.0.9"]})}
    hosts["edge-fw"] = {"failed": True, "error": None, "result": _result(
        {"127.0.0.3": {"status": "unreachable", "name": None, "ports": {
            "22": _port("unreachable", "host-unreach"),
            "443": _port("unreachable", "admin-prohibited")}},
         "127.0.0.4": {"status": "down", "name": "edge-fw-b", "ports": {
             "22": _port("filtered", "no-response"),
             "443": _port("error", "EINVAL")}},
         "::1": {"status": "up", "name": "ipv6-loopback", "ports": cast(
             "dict[PortKey, PortEntry]",  # string keys, as after JSON
             {str(p): _port("closed", "conn-refused", 0.05) for p in range(1000, 1030)}
             | {"1030": _port("open", "syn-ack", 0.07)})},
         "no-such-host.invalid": {"status": "down", "name": "no-such-host.invalid", "ports": {
             "22": _port("error", "unresolved")}}},
        diff={"opened": {"::1": [1030]}})}
    # what the portscan task adds when probes could not be made at all
    edge = hosts["edge-fw"]["result"]
    assert edge is not None
    edge["errors"] = [
        "127.0.0.4: 1 port(s) could not be probed (EINVAL)",
        "no-such-host.invalid: name could not be resolved"]
    hosts['we"ird <name>'] = {"failed": True, "error": "Traceback: boom <b>& \"x\"\x01",
                              "result": None}
    hosts["not-reached"] = {"failed": False, "error": None, "result": None}
    finish_document(doc, 3.5)
    return doc


def xmllint(*args: str) -> subprocess.CompletedProcess[str]:
    """Run xmllint; callers skip when it is missing."""
    exe = shutil.which("xmllint")
    assert exe is not None
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60,
                          check=False)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def anomaly_document(anomalies: bool = True) -> RunDocument:
    """A run of two anomalous addresses (issue 25) built by the task's own Result builder
    from outcomes as the engine gives them: 198.18.30.1 a SYN proxy (3 real open ports, the
    rest reset after the handshake), 198.18.30.2 all-open. ``anomalies=False``: the same
    addresses as ordinary hosts (the proxy's ports refused, the other with 3 open), for a
    baseline to compare against. Never probed: the addresses are only text here."""
    from nornir_portscan.engine.core.outcome import PortState, ProbeOutcome
    from nornir_portscan.plugins.tasks.result import build

    ports = range(1, 101)
    proxy_closed = "reset-after-syn-ack" if anomalies else "conn-refused"
    outcomes = [ProbeOutcome("198.18.30.1", p, PortState.OPEN, "syn-ack", 10.0)
                if p in (22, 80, 99) else
                ProbeOutcome("198.18.30.1", p, PortState.CLOSED, proxy_closed, 10.0)
                for p in ports]
    doc = new_document({"ports": "1-100"}, started=STARTED)
    doc["hosts"]["proxy"] = {"failed": False, "error": None, "result": build(outcomes)}
    outcomes = [ProbeOutcome("198.18.30.2", p, PortState.OPEN, "syn-ack", 12.0)
                if anomalies or p in (22, 80, 99) else
                ProbeOutcome("198.18.30.2", p, PortState.CLOSED, "conn-refused", 12.0)
                for p in ports]
    doc["hosts"]["dnat"] = {"failed": False, "error": None, "result": build(outcomes)}
    finish_document(doc, 1.5)
    return doc
