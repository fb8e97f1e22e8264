"""The run document as JUnit XML, so a CI system shows reachability as tests.

One ``testcase`` per nornir host, in one ``testsuite`` named ``nornir-portscan``:

* violated expectations are a ``failure`` (type ``ExpectationViolated``), one
  violation per line in its text, so the CI page shows what to fix;
* a host whose task failed with an error, or whose probes could not all be
  made (``result["errors"]``), is an ``error`` (type ``ScanError``): the scan
  itself broke, which is not the same news as a port being wrong; a host with
  both carries both elements and counts as an error;
* a host that has no result and no error (the run was interrupted before it)
  is ``skipped``;
* ``system-out`` lists what was found open per address, for the passing
  cases too.

The attributes are the union of what the JUnit schemas in use require (Ant's
``JUnit.xsd``, the Jenkins xunit plugin's ``junit-10.xsd``, which GitLab reads
too): ``timestamp`` is a UTC ``YYYY-MM-DDTHH:MM:SS`` without a zone because
Ant's pattern admits none, and the zone-aware start is kept as a property.
"""

from __future__ import annotations

import datetime as _dt
import socket
from collections.abc import Mapping
from typing import IO, Any

from ..engine.core.anomaly import ALL_OPEN, describe
from ..engine.core.hold import RESET_AFTER_SYN_ACK
from ..engine.core.outcome import STATE_ORDER
from ._common import (
    address_key,
    elapsed_of,
    errors_of,
    host_result,
    one_line,
    service_name,
    sorted_ports,
    started_at,
    targets_of,
    violations_of,
    xml_attr,
    xml_text,
)
from .document import HostEntry, RunDocument

SUITE_NAME = "nornir-portscan"



def _seconds(value: Any) -> str:
    try:
        return f"{max(0.0, float(value)):.3f}"
    except (TypeError, ValueError):
        return "0.000"


def _open_summary(entry: HostEntry) -> str:
    """What a reader of a CI page wants next to the verdict: per address, what is open."""
    lines: list[str] = []
    targets = targets_of(entry)
    for address in sorted(targets, key=address_key):
        target = targets[address]
        ports = sorted_ports(target)
        name = target.get("name")
        label = f"{address} ({name})" if name and name != address else address
        counts: dict[str, int] = {}
        for _, pentry in ports:
            state = str(pentry.get("state"))
            counts[state] = counts.get(state, 0) + 1
        tally = ", ".join(f"{counts[s]} {s}" for s in STATE_ORDER if counts.get(s))
        lines.append(f"{label}: {target.get('status', 'down')} [{tally or 'nothing scanned'}]")
        anomaly = target.get("anomaly")
        if anomaly:  # one line for the host's verdict; an all-open host's ports are not listed
            resets = sum(1 for _, p in ports if p.get("reason") == RESET_AFTER_SYN_ACK)
            lines.append("  " + describe(str(anomaly), len(ports), counts.get("open", 0), resets))
            if anomaly == ALL_OPEN:
                continue
        for port, pentry in ports:
            if pentry.get("state") != "open":
                continue
            rtt = pentry.get("rtt_ms")
            parts = [f"  {port}/tcp open ({pentry.get('reason')})"]
            if rtt is not None:
                parts.append(f"{float(rtt):.2f} ms")
            name = service_name(port)
            if name:
                parts.append(name)
            if pentry.get("banner"):
                parts.append(f"banner: {one_line(pentry['banner'], 120)}")
            lines.append("  ".join(parts))
    return "\n".join(lines)


def _testcase(host_name: str, entry: HostEntry) -> tuple[str, str]:
    """(kind, xml) for one nornir host; kind is passed, failure, error or skipped."""
    violations = violations_of(entry)
    errors = errors_of(entry)
    has_result = bool(host_result(entry))
    kind = "passed"
    body: list[str] = []
    if errors or (entry.get("failed") and not violations):
        kind = "error"
        text = "\n".join(errors) or "the portscan task failed without a message"
        body.append(f"<error message={xml_attr(one_line(text, 200))} type=\"ScanError\">"
                    f"{xml_text(text)}</error>\n")
    if violations:
        kind = "failure" if kind == "passed" else kind
        count = len(violations)
        body.append(f'<failure message="{count} expectation{"" if count == 1 else "s"} '
                    f'violated" type="ExpectationViolated">'
                    f"{xml_text(chr(10).join(violations))}</failure>\n")
    if kind == "passed" and not has_result:
        kind = "skipped"
        body.append('<skipped message="not scanned: the run stopped before this host"/>\n')
    out = _open_summary(entry)
    if out:
        body.append(f"<system-out>{xml_text(out)}</system-out>\n")
    time = _seconds(entry.get("elapsed_s", host_result(entry).get("elapsed_s", 0)))
    head = (f"<testcase classname={xml_attr('portscan.' + host_name)} "
            f"name={xml_attr(host_name)} time=\"{time}\"")
    xml = f"{head}>\n{''.join(body)}</testcase>\n" if body else f"{head}/>\n"
    return kind, xml


def _properties(doc: RunDocument) -> str:
    props: list[tuple[str, object]] = [("tool", doc.get("tool", "nornir-portscan")),
                                    ("version", doc.get("version", "")),
                                    ("started", doc.get("started", "")),
                                    ("interrupted", str(bool(doc.get("interrupted"))).lower())]
    options = doc.get("options") or {}
    if isinstance(options, Mapping):
        props += [(f"option.{k}", v) for k, v in options.items() if v is not None]
    lines = [f"<property name={xml_attr(k)} value={xml_attr(one_line(v))}/>\n"
             for k, v in props]
    return f"<properties>\n{''.join(lines)}</properties>\n"


def render(doc: RunDocument, stream: IO[str]) -> None:
    """Write ``doc`` as a JUnit XML report to ``stream``."""
    cases: list[str] = []
    kinds = {"passed": 0, "failure": 0, "error": 0, "skipped": 0}
    for host_name, entry in (doc.get("hosts") or {}).items():
        kind, xml = _testcase(str(host_name), entry if isinstance(entry, Mapping) else {})
        kinds[kind] += 1
        cases.append(xml)
    tests, time = len(cases), _seconds(elapsed_of(doc))
    timestamp = started_at(doc).astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    # Ant's schema requires the machine the tests ran on; a saved document may carry it
    hostname = str(doc.get("hostname") or socket.gethostname() or "localhost")
    counts = (f'tests="{tests}" failures="{kinds["failure"]}" errors="{kinds["error"]}"')
    w = stream.write
    w('<?xml version="1.0" encoding="UTF-8"?>\n')
    w(f'<testsuites name="{SUITE_NAME}" {counts} time="{time}">\n')
    w(f'<testsuite name="{SUITE_NAME}" {counts} skipped="{kinds["skipped"]}" '
      f'time="{time}" timestamp="{timestamp}" hostname={xml_attr(hostname)}>\n')
    w(_properties(doc))
    for xml in cases:
        w(xml)
    if doc.get("interrupted"):
        w("<system-err>interrupted: partial results</system-err>\n")
    w("</testsuite>\n</testsuites>\n")
    stream.flush()
