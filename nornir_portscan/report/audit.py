"""The audit's report in every format ``run`` has.

- ``json``: ``{"findings": [...], "summary": {...}, "options": {...}, "changes": {...}}``,
  each finding naming the source-of-truth object to fix (type, id, URL of its page);
- ``jsonl`` and ``csv``: one finding a line (a line-per-finding feed for a ticket system);
- ``table``: the findings grouped by device or virtual machine;
- ``junit``, ``html``, ``nmap-xml``: a run document (``document.py``) whose "hosts" are the
  audited addresses (``web1 127.0.0.10``: one JUnit case each, the CI gate on the source of
  truth), each address's findings as its violations and its probes as its result, rendered
  by the run's own renderers.

Only addresses that have a record or answered are kept for the run document (of those
without a record, only the ports that answered): a scope's thousands of silent unrecorded
addresses cost nothing.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from ..engine.core.outcome import PortRun, PortState, ProbeOutcome
from ..plugins.tasks.result import finish_targets, port_entry
from ..sot.model import KINDS, Changes, Finding, ObjectRef, Snapshot
from . import render_document
from .document import RunDocument, new_document

AUDIT_FORMATS = ("table", "json", "jsonl", "csv", "junit", "nmap-xml", "html")
CSV_FIELDS = ("kind", "address", "port", "state", "reason", "open_ports", "object_type",
              "object_id", "object_url", "owner")


@dataclass
class AuditReport:
    """Everything a report says: the findings, what was read and scanned, the changes."""

    url: str
    findings: list[Finding]
    snapshot: Snapshot
    options: dict[str, Any]
    changes: Changes
    applied: dict[str, int] | None = None
    probes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    #: address -> port -> port entry, for the run-document formats (``Probes``).
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        by = Counter(f.kind for f in self.findings)
        return {kind: by.get(kind, 0) for kind in KINDS}

    def summary(self) -> dict[str, Any]:
        return {"findings": len(self.findings), "by_kind": self.counts(),
                "addresses": len(self.snapshot.addresses),
                "services": len(self.snapshot.services),
                "networks": list(self.snapshot.networks), "probes": self.probes,
                "duplicate_records": self.snapshot.duplicates,
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "interrupted": self.interrupted}

    def line(self) -> str:
        counts = ", ".join(f"{n} {kind}" for kind, n in self.counts().items() if n)
        secs = ", ".join(f"{k} {v:.2f} s" for k, v in self.seconds.items())
        part = " (interrupted: partial results)" if self.interrupted else ""
        return (f"{len(self.findings)} finding{'s' if len(self.findings) != 1 else ''}"
                f"{': ' + counts if counts else ''} on {len(self.snapshot.addresses)} "
                f"recorded addresses, {self.probes} probes ({secs}){part}")


class Probes:
    """The probes of the addresses a report shows, as run-document port entries: every
    probe of a recorded address; of an address without a record, only what answered (its
    open and closed ports), so a scope's thousands of silent addresses cost nothing."""

    def __init__(self, recorded: Iterable[str]) -> None:
        self.recorded = frozenset(recorded)
        self.targets: dict[str, dict[str, Any]] = {}

    def add(self, outcomes: Sequence[ProbeOutcome], runs: Sequence[PortRun] = ()) -> None:
        for run in runs:  # a host that gave no sign of life
            if run.host in self.recorded:
                self.add(run.outcomes())
        answered = (PortState.OPEN, PortState.CLOSED)
        for o in outcomes:
            if o.host in self.recorded or o.state in answered:
                entry = self.targets.setdefault(o.host, {"name": o.name, "ports": {}})
                entry["ports"][o.port] = port_entry(o)

    def finish(self) -> dict[str, dict[str, Any]]:
        return self.targets


def _owner_label(ref: ObjectRef | None) -> str:
    return "no device or virtual machine" if ref is None else f"{ref.name} ({ref.type})"


def _text(f: Finding) -> str:
    """One finding as a line: what, where, and the object's page."""
    where = f"{f.address}:{f.port}" if f.port is not None else f.address
    page = f" {f.object.url}" if f.object is not None else ""
    obj = f"{f.object.type} {f.object.name}".rstrip() if f.object is not None else "no prefix"
    if f.kind == "missing-service":
        what = f"{where}/tcp is {f.state} ({f.reason}), documented by {obj}"
    elif f.kind == "undocumented-service":
        what = f"{where}/tcp is open, and no service of {obj} lists it"
    elif f.kind == "unknown-host":
        ports = ", ".join(map(str, f.open_ports)) or "none"
        what = f"{where} answers (open: {ports}) and has no IP address record (in {obj})"
    else:
        what = f"{where} (status Active) gave no sign of life on any port probed"
    return f"{f.kind}: {what}{page}"


def as_json(report: AuditReport) -> dict[str, Any]:
    return {"findings": [f.as_dict() for f in report.findings], "summary": report.summary(),
            "options": report.options, "changes": report.changes.as_dict(),
            "applied": report.applied}


def _table(report: AuditReport, stream: IO[str]) -> None:
    groups: dict[str, list[Finding]] = {}
    for f in report.findings:
        groups.setdefault(_owner_label(f.owner), []).append(f)
    for label in sorted(groups, key=lambda g: (g.startswith("no device"), g)):
        stream.write(f"{label}\n")
        for f in groups[label]:
            stream.write(f"  {_text(f)}\n")
    if not report.findings:
        stream.write("no findings: the source of truth matches what listens\n")
    stream.write(f"\n{report.line()}\n")


def _csv(report: AuditReport, stream: IO[str]) -> None:
    out = csv.writer(stream, lineterminator="\n")
    out.writerow(CSV_FIELDS)
    for f in report.findings:
        obj = f.object
        out.writerow([f.kind, f.address, "" if f.port is None else f.port, f.state or "",
                      f.reason or "", " ".join(map(str, f.open_ports)),
                      obj.type if obj else "", obj.id if obj else "", obj.url if obj else "",
                      f.owner.name if f.owner else ""])


def run_document(report: AuditReport) -> RunDocument:
    """The audit as a run document: one "host" per address shown, its findings as
    violations (what junit, html and nmap-xml render)."""
    doc = new_document({**report.options, "source_of_truth": report.url})
    by_address: dict[str, list[Finding]] = {}
    for f in report.findings:
        by_address.setdefault(f.address, []).append(f)
    owners = {a: r.owner for a, r in report.snapshot.addresses.items()}
    shown = sorted(set(report.targets) | set(by_address) | set(owners))
    for address in shown:
        owner = owners.get(address)
        label = f"{owner.name} {address}" if owner is not None else address
        entry = report.targets.get(address, {"name": None, "ports": {}})
        result = finish_targets({address: {"status": "down", "name": entry.get("name"),
                                           "ports": dict(entry["ports"])}})
        result["violations"] = [_text(f) for f in by_address.get(address, [])]
        doc["hosts"][label] = {"failed": False, "error": None, "result": result}
    from .document import finish_document

    finish_document(doc, sum(report.seconds.values()), report.interrupted)
    doc["summary"]["audit"] = report.summary()
    return doc


def render(fmt: str, report: AuditReport, stream: IO[str]) -> None:
    if fmt == "json":
        json.dump(as_json(report), stream, indent=2, default=str)
        stream.write("\n")
    elif fmt == "jsonl":
        for f in report.findings:
            stream.write(json.dumps(f.as_dict(), separators=(",", ":")) + "\n")
    elif fmt == "csv":
        _csv(report, stream)
    elif fmt == "table":
        _table(report, stream)
    else:
        render_document(fmt, run_document(report), stream)
    stream.flush()
