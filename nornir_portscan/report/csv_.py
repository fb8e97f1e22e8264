"""One CSV row per probe, for spreadsheets."""

from __future__ import annotations

import csv
from typing import IO

from ..engine.outcome import ProbeOutcome
from .base import ScanSummary

COLUMNS = ("host", "name", "port", "state", "reason", "rtt_ms", "attempts", "banner")


class CsvWriter:
    def __init__(self, stream: IO[str], color: bool = False) -> None:
        self.stream = stream
        self.csv = csv.writer(stream, lineterminator="\n")
        self.csv.writerow(COLUMNS)

    def write(self, o: ProbeOutcome) -> None:
        self.csv.writerow((o.host, o.name or "", o.port, o.state.value, o.reason,
                           "" if o.rtt_ms is None else f"{o.rtt_ms:.3f}", o.attempts,
                           o.banner or ""))

    def finish(self, summary: ScanSummary) -> None:
        self.stream.flush()
