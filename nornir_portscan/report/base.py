"""What every output writer gets: outcomes one by one, then a summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import IO, Any, Protocol

from ..engine.core.outcome import STATE_ORDER, STATE_TEXT, PortRun, ProbeOutcome

_HOST, _STATE = itemgetter(0), itemgetter(2)  # ProbeOutcome.host, .state: C-level getters


@dataclass
class ScanSummary:
    """Counts kept while streaming, so no writer has to hold every outcome to summarise."""

    counts: Counter[str] = field(default_factory=Counter)
    hosts: set[str] = field(default_factory=set)
    elapsed: float = 0.0
    connects: int = 0  # connect() attempts behind the outcomes (retries, discovery included)
    interrupted: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def add(self, outcomes: Sequence[ProbeOutcome], runs: Sequence[PortRun] = ()) -> None:
        self.counts.update(map(STATE_TEXT.__getitem__, map(_STATE, outcomes)))
        self.hosts.update(map(_HOST, outcomes))
        for run in runs:  # a down host's ports: counted whole
            self.counts[STATE_TEXT[run.state]] += len(run.ports)
            self.hosts.add(run.host)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        parts = [f"{self.counts.get(s, 0)} {s}" for s in STATE_ORDER if self.counts.get(s)]
        status = " (interrupted: partial results)" if self.interrupted else ""
        sent = f" ({self.connects} connects)" if self.connects else ""
        return (f"{self.total} probes on {len(self.hosts)} hosts in {self.elapsed:.2f} s{sent}: "
                f"{', '.join(parts) or 'nothing scanned'}{status}")


class OutcomeWriter(Protocol):
    def __init__(self, stream: IO[str], color: bool = False) -> None: ...

    def write(self, outcomes: Sequence[ProbeOutcome], runs: Sequence[PortRun] = ()) -> None:
        """A batch as the engine hands it out: single outcomes, and down hosts' port runs
        (each run stands for one outcome per port)."""

    def finish(self, summary: ScanSummary) -> None: ...
