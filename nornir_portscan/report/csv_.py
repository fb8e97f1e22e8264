"""One CSV row per probe, for spreadsheets: ``scan``'s rows, and ``run``'s with its nornir host
first, built by the same function so the two cannot drift apart."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import IO, TYPE_CHECKING

from ..engine.core.outcome import STATE_TEXT, PortRun, ProbeOutcome
from .anomaly import AnomalyGate, Flagged
from .base import ScanSummary

if TYPE_CHECKING:
    from .document import RunDocument

#: ``anomaly`` last: the host's verdict (engine/core/anomaly.py), empty on ordinary hosts
COLUMNS = ("host", "name", "port", "state", "reason", "rtt_ms", "attempts", "banner",
           "anomaly")
RUN_COLUMNS = ("nornir_host", *COLUMNS)


def _cells(host: str, name: str | None, port: int, state: str, reason: str,
           rtt_ms: float | None, attempts: int | None, banner: str | None,
           anomaly: str | None = None) -> tuple[str | int, ...]:
    """One probe's cells under COLUMNS: the one place a row's layout is written."""
    return (host, name or "", port, state, reason, "" if rtt_ms is None else f"{rtt_ms:.3f}",
            "" if attempts is None else attempts, banner or "", anomaly or "")


def _outcome_cells(o: ProbeOutcome, anomaly: str | None = None) -> tuple[str | int, ...]:
    host, port, state, reason, rtt_ms, attempts, name, banner, _ = o
    return _cells(host, name, port, STATE_TEXT[state], reason, rtt_ms, attempts, banner,
                  anomaly)


class CsvWriter:
    def __init__(self, stream: IO[str], color: bool = False, ports_per_host: int = 0) -> None:
        self.stream = stream
        self.csv = csv.writer(stream, lineterminator="\n")
        self.csv.writerow(COLUMNS)
        self.gate = AnomalyGate(ports_per_host)

    def write(self, outcomes: Sequence[ProbeOutcome], runs: Sequence[PortRun] = ()) -> None:
        outcomes, flagged = self.gate.feed(outcomes, runs)
        for run in runs:
            self._rows(run.outcomes())
        self._rows(outcomes)
        self._flagged(flagged)

    def _rows(self, outcomes: Iterable[ProbeOutcome]) -> None:
        self.csv.writerows(map(_outcome_cells, outcomes))

    def _flagged(self, flagged: Flagged) -> None:
        for anomaly, rows in flagged:
            self.csv.writerows(_outcome_cells(o, anomaly) for o in rows)

    def finish(self, summary: ScanSummary) -> None:
        rest, flagged = self.gate.finish()
        self._rows(rest)
        self._flagged(flagged)
        self.stream.flush()


def render(doc: RunDocument, stream: IO[str]) -> None:
    """A run document as ``scan``'s rows, each led by its nornir host."""
    from .document import iter_ports

    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(RUN_COLUMNS)
    writer.writerows(
        (host, *_cells(str(address), target.get("name"), port, str(p["state"]),
                       str(p["reason"]), p.get("rtt_ms"), p.get("attempts"), p.get("banner"),
                       target.get("anomaly")))
        for host, address, target, port, p in iter_ports(doc))
    stream.flush()
