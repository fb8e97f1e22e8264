"""What every output writer gets: outcomes one by one, then a summary."""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress
from operator import itemgetter
from typing import IO, Any, Protocol

from ..engine.core.outcome import STATE_ORDER, STATE_TEXT, PortRun, PortState, ProbeOutcome
from .human import (
    Trouble,
    address_key,
    counted,
    host_label,
    ports_text,
    shortlist,
    trouble_text,
)

_HOST, _STATE = itemgetter(0), itemgetter(2)  # ProbeOutcome.host, .state: C-level getters
#: States that say the port could not be looked at: never hidden behind "no open port".
TROUBLE = frozenset({PortState.ERROR, PortState.UNREACHABLE})


@dataclass
class ScanSummary:
    """Counts kept while streaming, so no writer has to hold every outcome to summarise."""

    counts: Counter[str] = field(default_factory=Counter)
    hosts: set[str] = field(default_factory=set)
    elapsed: float = 0.0
    connects: int = 0  # connect() attempts behind the outcomes (retries, discovery included)
    interrupted: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    #: address -> its errors and unreachable ports (the table and the stderr warning list them)
    trouble: dict[str, Trouble] = field(default_factory=dict)
    #: ports asked for per address, and how they were named when that is not obvious
    port_count: int = 0
    ports_label: str = ""
    started: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(
        timespec="seconds"))

    def add(self, outcomes: Sequence[ProbeOutcome], runs: Sequence[PortRun] = ()) -> None:
        counts = self.counts
        troubled = counts["error"] + counts["unreachable"]
        counts.update(map(STATE_TEXT.__getitem__, map(_STATE, outcomes)))
        self.hosts.update(map(_HOST, outcomes))
        if counts["error"] + counts["unreachable"] != troubled:  # picked out in C
            for o in compress(outcomes, map(TROUBLE.__contains__, map(_STATE, outcomes))):
                self._trouble(o.host, o.name).add(STATE_TEXT[o.state], o.reason, (o.port,))
        for run in runs:  # a down host's ports: counted whole
            counts[STATE_TEXT[run.state]] += len(run.ports)
            self.hosts.add(run.host)
            if run.state in TROUBLE:
                self._trouble(run.host, run.name).add(STATE_TEXT[run.state], run.reason,
                                                      run.ports)

    def _trouble(self, host: str, name: str | None) -> Trouble:
        entry = self.trouble.get(host)
        if entry is None:
            entry = self.trouble[host] = Trouble(name)
        elif name and not entry.name:
            entry.name = name
        return entry

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        parts = [f"{self.counts.get(s, 0)} {s}" for s in STATE_ORDER if self.counts.get(s)]
        status = " (interrupted: partial results)" if self.interrupted else ""
        sent = f" ({self.connects} connects)" if self.connects else ""
        return (f"{counted(self.total, 'probe')} on {counted(len(self.hosts), 'host')} in "
                f"{self.elapsed:.2f} s{sent}: "
                f"{', '.join(parts) or 'nothing scanned'}{status}")

    def warning(self) -> str | None:
        """One line for stderr naming what could not be probed, or None when all could.

        Addresses are grouped by why (a name that did not resolve, host-unreach, ...) and
        runs of consecutive addresses are ranges, so a dead /16 is still one short line.
        """
        if not self.trouble:
            return None
        from .human import compact_labels

        by_why: dict[str, list[str]] = {}
        for host in sorted(self.trouble, key=address_key):  # inet_pton: a dead /16 is quick
            entry = self.trouble[host]
            state, reason = entry.worst()
            count, sample = entry.groups[(state, reason)]
            why = trouble_text(state, reason)
            if self.port_count and count < self.port_count:
                why += f" on {ports_text(count, sample, self.port_count)}"
            by_why.setdefault(why, []).append(host_label(host, entry.name))
        parts = [f"{shortlist(compact_labels(hosts))} ({why})" for why, hosts in by_why.items()]
        n = len(self.trouble)
        return (f"warning: {n} address{'es' if n != 1 else ''} could not be probed: "
                f"{'; '.join(parts)}")


class OutcomeWriter(Protocol):
    def __init__(self, stream: IO[str], color: bool = False, ports_per_host: int = 0
                 ) -> None: ...

    def write(self, outcomes: Sequence[ProbeOutcome], runs: Sequence[PortRun] = ()) -> None:
        """A batch as the engine hands out: single outcomes, and down hosts' port runs
        (each run stands for one outcome per port)."""

    def finish(self, summary: ScanSummary) -> None: ...
