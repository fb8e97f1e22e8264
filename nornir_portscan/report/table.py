"""The human format: every host named, what matters first, one summary line of counts.

Hosts with an open port get a block (ports with their services, reasons, RTTs,
banners); an address whose ports could not be probed or were unreachable gets
its own lines, never folded into "no open port"; the hosts with nothing open are
listed last as address ranges, those that answered apart from those that did not,
so a sweep of a /16 stays a few lines. Closed and filtered ports are only counted:
on a sweep they are the noise around the few ports a person is looking for.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from operator import itemgetter
from typing import IO

from ..engine.core.anomaly import judge
from ..engine.core.hold import RESET_AFTER_SYN_ACK
from ..engine.core.names import NAME_REASONS
from ..engine.core.outcome import STATE_TEXT, PortRun, PortState, ProbeOutcome
from .base import ScanSummary
from .human import (
    OpenPort,
    Paint,
    Trouble,
    address_key,
    address_lines,
    anomaly_lines,
    host_label,
    host_list,
)

_HOST, _STATE, _REASON, _NAME = itemgetter(0), itemgetter(2), itemgetter(3), itemgetter(6)
_OPEN = PortState.OPEN

#: The host categories of the count line, in its order.
CATEGORIES = (("open", "with open ports"), ("up", "up with no open port"),
              ("silent", "no answer"), ("unreachable", "unreachable"),
              ("no-such-name", "no such name"), ("no-address", "name without address"),
              ("resolver-timeout", "resolver did not answer"),
              ("unresolved", "name not resolved"), ("error", "not probed"))


def _category(counts: Counter[str], trouble: Trouble | None) -> str:
    if counts["open"]:
        return "open"
    if trouble is not None:
        state, reason = trouble.worst()
        if reason in NAME_REASONS:  # why the name gave no address is its category
            return reason
        if counts["closed"] == 0:
            return "unreachable" if state == "unreachable" else "error"
    return "up" if counts["closed"] else "silent"


class TableWriter:
    def __init__(self, stream: IO[str], color: bool = False, ports_per_host: int = 0) -> None:
        self.stream = stream
        self.resets: Counter[str] = Counter()  # ports reset after the handshake, per address
        self.paint = Paint(color)
        self.open: dict[str, list[OpenPort]] = defaultdict(list)
        self.names: dict[str, str] = {}
        # (address, state) -> ports: counted in C, a sweep writes millions of outcomes
        self.counts: Counter[tuple[str, PortState]] = Counter()

    def write(self, outcomes: Sequence[ProbeOutcome], runs: Sequence[PortRun] = ()) -> None:
        for run in runs:  # a down host's ports: only counted, as closed and filtered ports are
            if run.name:
                self.names[run.host] = run.name
            self.counts[(run.host, run.state)] += len(run.ports)
        self.counts.update(zip(map(_HOST, outcomes), map(_STATE, outcomes), strict=True))
        if any(map(_NAME, outcomes)):
            self.names.update((o.host, o.name) for o in outcomes if o.name)
        if RESET_AFTER_SYN_ACK in map(_REASON, outcomes):
            self.resets.update(o.host for o in outcomes if o.reason == RESET_AFTER_SYN_ACK)
        if _OPEN in map(_STATE, outcomes):
            for o in outcomes:
                if o.state is _OPEN:
                    self.open[o.host].append(OpenPort(o.port, o.reason, o.rtt_ms, o.banner))

    def finish(self, summary: ScanSummary) -> None:
        out, paint = self.stream, self.paint
        per_host: dict[str, Counter[str]] = defaultdict(Counter)
        for (host, state), n in self.counts.items():
            per_host[host][STATE_TEXT[state]] += n
        if summary.ports_label:
            out.write(f"ports: {summary.ports_label}\n")
        quiet: dict[str, list[str]] = {"up": [], "silent": []}
        names: dict[str, list[str]] = {reason: [] for reason in NAME_REASONS}
        tally: Counter[str] = Counter()
        for host in sorted(per_host, key=address_key):
            counts = per_host[host]
            trouble = summary.trouble.get(host)
            category = _category(counts, trouble)
            tally[category] += 1
            label = host_label(host, self.names.get(host) or (trouble.name if trouble else None))
            total, resets = sum(counts.values()), self.resets[host]
            anomaly = judge(total, counts["open"], resets)
            if anomaly is not None:
                out.writelines(line + "\n" for line in anomaly_lines(
                    label, anomaly, counts, self.open.get(host, []), resets, trouble, paint))
                continue
            if category in quiet:
                if trouble is None:
                    quiet[category].append(label)
                    continue
            elif category in names:  # grouped by why: 2,000 silent names are one list
                names[category].append(label)
                continue
            out.writelines(line + "\n" for line in address_lines(
                label, counts, self.open.get(host, []), trouble, paint))
        for category, head in (("up", "up, no open port"), ("silent", "no answer")):
            if quiet[category]:
                out.writelines(line + "\n" for line in host_list(paint(head, "2"),
                                                                 quiet[category]))
        for reason, words in NAME_REASONS.items():
            if names[reason]:
                out.writelines(line + "\n" for line in host_list(
                    paint(f"{words}, not probed", "33"), names[reason]))
        if tally:
            total = sum(tally.values())
            parts = [f"{tally[c]} {text}" for c, text in CATEGORIES if tally[c]]
            out.write(f"{total} host{'s' if total != 1 else ''}: {', '.join(parts)}\n")
        out.write(summary.line() + "\n")
        out.flush()
