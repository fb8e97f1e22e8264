"""One JSON object per probed (address, port): the format later tools and checks rely on.

``scan`` writes outcomes as they are decided; ``run`` writes its document's ports with the
same function, so the two cannot drift apart.

Rows are formatted by hand: a sweep writes hundreds of thousands of them and
building a dict plus a generic JSON encode per row doubled the writer's cost.
Only free text (name, banner) goes through the JSON encoder for escaping.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from ..engine.core.outcome import STATE_TEXT, PortRun, ProbeOutcome
from .anomaly import AnomalyGate, Flagged
from .base import ScanSummary

if TYPE_CHECKING:
    from ..plugins.common.shapes import PortEntry, TargetEntry

if TYPE_CHECKING:
    from .document import RunDocument

_quote = json.JSONEncoder(ensure_ascii=True).encode


_PORT = "\0"  # stands for the port number in a run's line: never in host, state or reason


def _line(host: str, port: int | str, state: str, reason: str, rtt_ms: float | None,
          attempts: int | str, name: str | None, banner: str | None,
          worker: str | None = None, anomaly: str | None = None) -> str:
    """One outcome's line: the one place the line's layout is written, for ``scan`` and
    ``run`` alike (``_run_line`` puts the nornir host in front)."""
    rtt = "null" if rtt_ms is None else repr(round(rtt_ms, 3))
    extra = ""
    if name is not None:
        extra = ',"name":' + _quote(name)
    if banner is not None:
        extra += ',"banner":' + _quote(banner)
    if worker is not None:  # a cluster scan: the vantage point that probed it
        extra += ',"worker":' + _quote(worker)
    if anomaly is not None:  # the host's verdict (anomaly.py), on each of its rows
        extra += ',"anomaly":"' + anomaly + '"'
    # host (an address or a validated hostname) and reason need no escaping
    return (f'{{"host":"{host}","port":{port},"state":"{state}","reason":"{reason}",'
            f'"rtt_ms":{rtt},"attempts":{attempts}{extra}}}\n')


def _run_line(nornir_host: str, address: str, port: int, target: TargetEntry,
              p: PortEntry) -> str:
    """A run document's port as ``scan``'s line, led by the nornir host it belongs to."""
    attempts = p.get("attempts")
    line = _line(address, port, str(p["state"]), str(p["reason"]), p.get("rtt_ms"),
                 "null" if attempts is None else int(attempts), target.get("name"),
                 p.get("banner"), p.get("worker"), target.get("anomaly"))
    return '{"nornir_host":' + _quote(nornir_host) + "," + line[1:]


class JsonlWriter:
    def __init__(self, stream: IO[str], color: bool = False, ports_per_host: int = 0) -> None:
        self.stream = stream
        self.buffer: list[str] = []
        self.buffered = 0  # lines in the buffer (a run's string holds many)
        self.gate = AnomalyGate(ports_per_host)

    def write(self, outcomes: Sequence[ProbeOutcome], runs: Sequence[PortRun] = ()) -> None:
        outcomes, flagged = self.gate.feed(outcomes, runs)
        if flagged:
            self._flagged(flagged)
        lines = self.buffer
        text = STATE_TEXT
        for run in runs:
            # one line per port, but built by str.join: a down host's thousand ports
            # differ only in the port number
            head, _, tail = _line(run.host, _PORT, text[run.state], run.reason, None, 0,
                                  run.name, None, run.worker).partition(_PORT)
            lines.append(head + (tail + head).join(map(str, run.ports)) + tail)
            self.buffered += len(run.ports)
        lines.extend([_line(host, port, text[state], reason, rtt_ms, attempts, name, banner,
                            worker)
                      for host, port, state, reason, rtt_ms, attempts, name, banner, worker
                      in outcomes])
        self.buffered += len(outcomes)
        if self.buffered >= 4096:
            self.stream.write("".join(lines))
            lines.clear()
            self.buffered = 0

    def _flagged(self, flagged: Flagged) -> None:
        text = STATE_TEXT
        for anomaly, rows in flagged:
            self.buffer.extend([_line(host, port, text[state], reason, rtt_ms, attempts, name,
                                      banner, worker, anomaly)
                                for host, port, state, reason, rtt_ms, attempts, name, banner,
                                worker in rows])
            self.buffered += len(rows)

    def finish(self, summary: ScanSummary) -> None:
        rest, flagged = self.gate.finish()
        self.write(rest)
        self._flagged(flagged)
        self.stream.write("".join(self.buffer))
        self.buffer.clear()
        self.buffered = 0
        self.stream.flush()


def render(doc: RunDocument, stream: IO[str]) -> None:
    """A run document as the lines ``scan`` writes, each led by its nornir host."""
    from .document import iter_ports

    stream.writelines(_run_line(str(host), str(address), port, target, p)
                      for host, address, target, port, p in iter_ports(doc))
    stream.flush()
