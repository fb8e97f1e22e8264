"""One CSV row per probe, for spreadsheets."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import IO

from ..engine.core.outcome import STATE_TEXT, PortRun, ProbeOutcome
from .base import ScanSummary

COLUMNS = ("host", "name", "port", "state", "reason", "rtt_ms", "attempts", "banner")


class CsvWriter:
    def __init__(self, stream: IO[str], color: bool = False) -> None:
        self.stream = stream
        self.csv = csv.writer(stream, lineterminator="\n")
        self.csv.writerow(COLUMNS)

    def write(self, outcomes: Sequence[ProbeOutcome], runs: Sequence[PortRun] = ()) -> None:
        for run in runs:
            self._rows(run.outcomes())
        self._rows(outcomes)

    def _rows(self, outcomes: Iterable[ProbeOutcome]) -> None:
        self.csv.writerows((o.host, o.name or "", o.port, STATE_TEXT[o.state], o.reason,
                            "" if o.rtt_ms is None else f"{o.rtt_ms:.3f}", o.attempts,
                            o.banner or "") for o in outcomes)

    def finish(self, summary: ScanSummary) -> None:
        self.stream.flush()
