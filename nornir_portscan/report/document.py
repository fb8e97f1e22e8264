"""The run document: one JSON-ready dict describing a whole scan or nornir run.

Every whole-run format (json, junit, nmap-xml, html) renders this one shape,
and ``--save`` / ``--baseline`` read and write it, so formats cannot drift.

Shape::

    {"tool": "nornir-portscan", "version": str, "started": ISO-8601 UTC str,
     "elapsed_s": float, "interrupted": bool, "options": {...},
     "hosts": {nornir_host_name: {
         "failed": bool, "error": str | None,
         "result": {"targets": {address: {"status": "up"|"down"|"unreachable",
                                          "name": str | None,
                                          "ports": {port: {"state", "reason", "rtt_ms",
                                                           "attempts", "banner"?}}}},
                    "open": {address: [port, ...]},
                    "summary": {state: count},
                    "violations": [str, ...],
                    "elapsed_s"?: float,
                    "diff"?: {...}}}},
     "summary": {"hosts": int, "failed": int, "probes": int, "counts": {state: count},
                 "violations": int},
     "baseline"?: {"file": str, "started": ISO-8601 str | None}}   (run --baseline only)

``port`` keys are ints in memory and strings once through JSON; readers
normalise with ``int()``. The TypedDicts below (and plugins/common/shapes.py for a
host's ``result``) are this shape as mypy checks it: a key renamed on one side fails
the type check rather than a report.
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, TypedDict

from .. import __version__
from ..engine.core.outcome import STATE_ORDER, ProbeOutcome
from ..plugins.common.ports import compact_targets, each_port
from ..plugins.common.shapes import HostResult, PortEntry, TargetEntry

STATES = STATE_ORDER


class HostEntry(TypedDict, total=False):
    """One nornir host in ``hosts``; ``result`` is None when the task failed or never ran."""

    failed: bool
    error: str | None
    result: HostResult | None
    changed: bool  # since the baseline
    diff: str  # the change as the text nornir's Result carries


class RunSummary(TypedDict, total=False):
    hosts: int
    failed: int
    probes: int
    counts: dict[str, int]  # state -> ports
    violations: int
    audit: dict[str, Any]  # an audit's own summary, when the document is one (audit.py)


class BaselineRef(TypedDict, total=False):
    """``run --baseline``: which document the diffs are against, and when it was taken."""

    file: str
    started: str | None


class _RunRequired(TypedDict):
    tool: str
    version: str
    started: str  # ISO-8601, UTC
    elapsed_s: float
    interrupted: bool
    options: dict[str, Any]  # settings as given: values of every type a setting has
    hosts: dict[str, HostEntry]
    summary: RunSummary


class RunDocument(_RunRequired, total=False):
    baseline: BaselineRef
    hostname: str  # the machine the run was on (junit); documents may carry it


def result_from_outcomes(outcomes: Iterable[ProbeOutcome]) -> HostResult:
    """A Result-shaped dict (targets/open/summary/violations) from raw outcomes.

    The same builder the ``portscan`` task uses, so a scan's document and a nornir
    run's cannot disagree on host status or summaries.
    """
    from ..plugins.tasks.result import build

    return build(outcomes)


def new_document(options: dict[str, Any], started: _dt.datetime | None = None) -> RunDocument:
    started = started or _dt.datetime.now(_dt.timezone.utc)
    return {"tool": "nornir-portscan", "version": __version__,
            "started": started.isoformat(timespec="seconds"), "elapsed_s": 0.0,
            "interrupted": False, "options": options, "hosts": {}, "summary": {}}


def finish_document(doc: RunDocument, elapsed: float, interrupted: bool = False) -> None:
    counts: Counter[str] = Counter()
    violations = failed = 0
    for entry in doc["hosts"].values():
        result = entry.get("result") or {}
        counts.update(result.get("summary", {}))
        violations += len(result.get("violations", []))
        failed += bool(entry.get("failed"))
    doc["elapsed_s"] = round(elapsed, 3)
    doc["interrupted"] = interrupted
    doc["summary"] = {"hosts": len(doc["hosts"]), "failed": failed,
                      "probes": sum(counts.values()), "counts": dict(counts),
                      "violations": violations}


def compact_document(doc: RunDocument) -> None:
    """Fold each address's most common port state into ``extraports`` (plugins/tasks/
    ports.py), in place: what ``--save`` and the json format write unless ``--all-ports``.
    Already compact entries stay as they are."""
    for entry in doc["hosts"].values():
        result = entry.get("result")
        if isinstance(result, dict) and isinstance(result.get("targets"), dict):
            result["targets"] = compact_targets(result["targets"])


def iter_ports(doc: RunDocument) -> Iterator[tuple[str, str, TargetEntry, int, PortEntry]]:
    """(nornir host, address, address entry, port, port entry) for every probe, sorted."""
    for host_name, entry in doc["hosts"].items():
        targets = (entry.get("result") or {}).get("targets", {})
        for address, target in targets.items():
            for port, pentry in each_port(target):
                yield host_name, address, target, port, pentry
