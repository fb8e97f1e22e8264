"""Holding a host's rows back until its ``anomaly`` is known, for the streaming writers.

jsonl and csv write rows as the engine decides them, but a host's anomaly
(``engine/core/anomaly.py``) goes on every one of its rows and is known only once the
host is finished. Only hosts that could still be anomalous wait: a host is a candidate
while every row it had was open or a reset after the handshake; its first other row
rules it out, and what it held is written at once without the key. A candidate is judged
as soon as it has ``ports_per_host`` rows (every address gets exactly that many), or at
the end of the scan. An ordinary scan's batches, with no open port in them, pass
through a C-level check.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter

from ..engine.core.anomaly import (
    ALL_OPEN_MIN_PORTS,
    SYN_PROXY_MIN_RESETS,
    judge,
)
from ..engine.core.hold import RESET_AFTER_SYN_ACK
from ..engine.core.outcome import PortRun, PortState, ProbeOutcome

_HOST, _STATE, _REASON = itemgetter(0), itemgetter(2), itemgetter(3)
_OPEN = PortState.OPEN

#: Rows of hosts judged anomalous: (anomaly, the host's rows).
Flagged = list[tuple[str, list[ProbeOutcome]]]


def _judge_rows(rows: Sequence[ProbeOutcome]) -> str | None:
    opened = sum(1 for o in rows if o.state is _OPEN)
    return judge(len(rows), opened, len(rows) - opened)


class AnomalyGate:
    """Splits each batch into rows to write as they are and hosts judged anomalous."""

    def __init__(self, ports_per_host: int = 0) -> None:
        self.ports_per_host = ports_per_host
        # with fewer ports than either rule needs, no host can be anomalous
        self.off = 0 < ports_per_host < min(ALL_OPEN_MIN_PORTS, SYN_PROXY_MIN_RESETS)
        self.candidates: dict[str, list[ProbeOutcome]] = {}
        self.ruled_out: set[str] = set()

    def feed(self, outcomes: Sequence[ProbeOutcome], runs: Sequence[PortRun] = ()
             ) -> tuple[Sequence[ProbeOutcome], Flagged]:
        """(rows to write now, plainly; hosts finished and anomalous). ``runs`` (down or
        unreachable hosts) are never anomalous: the caller writes them as they are."""
        if self.off:
            return outcomes, []
        cands, ruled_out = self.candidates, self.ruled_out
        plain: list[ProbeOutcome] = []
        ruled_out.update(map(_HOST, runs))  # PortRun.host is field 0 too
        if cands:
            for run in runs:
                plain.extend(cands.pop(run.host, ()))
        if (_OPEN not in map(_STATE, outcomes)
                and RESET_AFTER_SYN_ACK not in map(_REASON, outcomes)):
            # the common batch: nothing here keeps a host a candidate
            if cands:
                for host in set(map(_HOST, outcomes)).intersection(cands):
                    plain.extend(cands.pop(host))
            ruled_out.update(map(_HOST, outcomes))
            if not plain:
                return outcomes, []
            plain.extend(outcomes)
            return plain, []
        flagged: Flagged = []
        full = self.ports_per_host
        for o in outcomes:
            host = o.host
            if host in ruled_out:
                plain.append(o)
            elif o.state is _OPEN or o.reason == RESET_AFTER_SYN_ACK:
                held = cands.get(host)
                if held is None:
                    held = cands[host] = []
                held.append(o)
                if len(held) == full:
                    del cands[host]
                    ruled_out.add(host)
                    anomaly = _judge_rows(held)
                    if anomaly is None:
                        plain.extend(held)
                    else:
                        flagged.append((anomaly, held))
            else:
                ruled_out.add(host)
                plain.extend(cands.pop(host, ()))
                plain.append(o)
        return plain, flagged

    def finish(self) -> tuple[list[ProbeOutcome], Flagged]:
        """What candidates still hold at the end (an interrupted scan, or no port count),
        judged on the rows they had."""
        plain: list[ProbeOutcome] = []
        flagged: Flagged = []
        self.ruled_out.update(self.candidates)  # judged: a later feed passes their rows on
        for rows in self.candidates.values():
            anomaly = _judge_rows(rows)
            if anomaly is None:
                plain.extend(rows)
            else:
                flagged.append((anomaly, rows))
        self.candidates.clear()
        return plain, flagged
