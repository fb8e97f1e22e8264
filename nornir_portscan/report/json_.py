"""The whole scan as one JSON document: hosts, their ports, the summary and options."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from ..engine.core.anomaly import judge_ports
from ..engine.core.outcome import STATE_TEXT, PortRun, ProbeOutcome
from ..plugins.common.ports import compact_target
from ..plugins.common.shapes import PortEntry, TargetEntry
from .base import ScanSummary
from .json_text import dump

if TYPE_CHECKING:
    from .document import RunDocument

class JsonWriter:
    """``all_ports`` lists every port of every address; by default each address's most
    common state is given once as ``extraports`` (plugins/common/ports.py)."""

    def __init__(self, stream: IO[str], color: bool = False, ports_per_host: int = 0,
                 all_ports: bool = False) -> None:
        self.stream = stream
        self.all_ports = all_ports
        self.hosts: dict[str, TargetEntry] = {}

    def write(self, outcomes: Sequence[ProbeOutcome], runs: Sequence[PortRun] = ()) -> None:
        for run in runs:
            self.write(run.outcomes())
        for o in outcomes:
            entry = self.hosts.setdefault(o.host, {"name": o.name, "ports": {}})
            port: PortEntry = {"state": STATE_TEXT[o.state], "reason": o.reason,
                                    "rtt_ms": None if o.rtt_ms is None else round(o.rtt_ms, 3),
                                    "attempts": o.attempts}
            if o.banner is not None:
                port["banner"] = o.banner
            if o.worker is not None:  # a cluster scan: the vantage point that probed it
                port["worker"] = o.worker
            entry["ports"][str(o.port)] = port

    def finish(self, summary: ScanSummary) -> None:
        for address, entry in self.hosts.items():
            entry["ports"] = dict(sorted(entry["ports"].items(), key=lambda kv: int(kv[0])))
            entry["open"] = [int(p) for p, v in entry["ports"].items() if v["state"] == "open"]
            anomaly = judge_ports([(v["state"], v["reason"]) for v in entry["ports"].values()])
            if anomaly is not None:  # the host's verdict (engine/core/anomaly.py)
                entry["anomaly"] = anomaly
            if not self.all_ports:  # after the verdict, which reads every port
                self.hosts[address] = compact_target(entry)
        # "started" as in a run document: a later `run --baseline` names when this was taken
        doc = {"started": summary.started,
               "summary": {"counts": dict(summary.counts), "probes": summary.total,
                           "connects": summary.connects,
                           "hosts": len(summary.hosts), "elapsed_s": round(summary.elapsed, 3),
                           "interrupted": summary.interrupted},
               "options": summary.options, "hosts": self.hosts}
        json.dump(doc, self.stream, indent=2)
        self.stream.write("\n")
        self.stream.flush()


def render(doc: RunDocument, stream: IO[str]) -> None:
    """Write a run document as indented JSON: the ``--save`` file ``--baseline`` reads back.

    ``default=str`` keeps a stray non-JSON value (a datetime in the options) from
    losing the whole report at the end of a long run. The text is what
    ``json.dump(doc, stream, indent=2, default=str)`` writes, a host at a time and
    faster (json_text.py).
    """
    dump(doc, stream, default=str)
    stream.flush()
