"""The human format: open ports per host, then one summary line of counts per state.

Closed and filtered ports are only counted: on a sweep they are the noise
around the few ports a person is looking for.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import IO

from ..engine.core.outcome import STATE_TEXT, PortRun, PortState, ProbeOutcome
from ..inputs.targets import address_order
from .base import ScanSummary


class TableWriter:
    def __init__(self, stream: IO[str], color: bool = False) -> None:
        self.stream = stream
        self.color = color
        self.open: dict[str, list[ProbeOutcome]] = defaultdict(list)
        self.names: dict[str, str] = {}
        self.other: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def write(self, outcomes: Sequence[ProbeOutcome], runs: Sequence[PortRun] = ()) -> None:
        for run in runs:  # a down host's ports: only counted, as closed and filtered ports are
            if run.name:
                self.names[run.host] = run.name
            self.other[run.host][STATE_TEXT[run.state]] += len(run.ports)
        for o in outcomes:
            if o.name:
                self.names[o.host] = o.name
            if o.state is PortState.OPEN:
                self.open[o.host].append(o)
            else:
                self.other[o.host][STATE_TEXT[o.state]] += 1

    def _c(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def finish(self, summary: ScanSummary) -> None:
        out = self.stream
        hosts = sorted(set(self.open) | set(self.other), key=address_order)
        for host in hosts:
            label = f"{self.names[host]} ({host})" if host in self.names else host
            opened = sorted(self.open.get(host, []), key=lambda o: o.port)
            rest = ", ".join(f"{n} {s}" for s, n in sorted(self.other[host].items()))
            if not opened:
                continue
            out.write(self._c(label, "1") + (f"  [{rest}]" if rest else "") + "\n")
            out.write(f"  {'PORT':<8}{'STATE':<8}{'REASON':<10}{'RTT':>10}  BANNER\n")
            for o in opened:
                rtt = "-" if o.rtt_ms is None else f"{o.rtt_ms:.2f}ms"
                out.write(f"  {o.port:<8}{self._c(f'{o.state.value:<8}', '32')}"
                          f"{o.reason:<10}{rtt:>10}  {o.banner or ''}".rstrip() + "\n")
        quiet = [h for h in hosts if h not in self.open]
        if quiet:
            out.write(f"{len(quiet)} host(s) with no open port\n")
        out.write(summary.line() + "\n")
        out.flush()
