"""What every output writer gets: outcomes one by one, then a summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from ..engine.outcome import STATE_ORDER, ProbeOutcome


@dataclass
class ScanSummary:
    """Counts kept while streaming, so no writer has to hold every outcome to summarise."""

    counts: Counter[str] = field(default_factory=Counter)
    hosts: set[str] = field(default_factory=set)
    elapsed: float = 0.0
    interrupted: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def add(self, outcome: ProbeOutcome) -> None:
        self.counts[outcome.state.value] += 1
        self.hosts.add(outcome.host)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        parts = [f"{self.counts.get(s, 0)} {s}" for s in STATE_ORDER if self.counts.get(s)]
        status = " (interrupted: partial results)" if self.interrupted else ""
        return (f"{self.total} probes on {len(self.hosts)} hosts in {self.elapsed:.2f} s: "
                f"{', '.join(parts) or 'nothing scanned'}{status}")


class OutcomeWriter(Protocol):
    def __init__(self, stream: IO[str], color: bool = False) -> None: ...

    def write(self, outcome: ProbeOutcome) -> None: ...

    def finish(self, summary: ScanSummary) -> None: ...
