"""One JSON object per probed (address, port): the format later tools and checks rely on.

Rows are formatted by hand: a sweep writes hundreds of thousands of them and
building a dict plus a generic JSON encode per row doubled the writer's cost.
Only free text (name, banner) goes through the JSON encoder for escaping.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import IO

from ..engine.core.outcome import STATE_TEXT, PortRun, ProbeOutcome
from .base import ScanSummary

_quote = json.JSONEncoder(ensure_ascii=True).encode


_PORT = "\0"  # stands for the port number in a run's line: never in host, state or reason


def _line(host: str, port: int | str, state: str, reason: str, rtt_ms: float | None,
          attempts: int, name: str | None, banner: str | None) -> str:
    """One outcome's line: the one place the line's layout is written."""
    rtt = "null" if rtt_ms is None else repr(round(rtt_ms, 3))
    extra = ""
    if name is not None:
        extra = ',"name":' + _quote(name)
    if banner is not None:
        extra += ',"banner":' + _quote(banner)
    # host (an address or a validated hostname) and reason need no escaping
    return (f'{{"host":"{host}","port":{port},"state":"{state}","reason":"{reason}",'
            f'"rtt_ms":{rtt},"attempts":{attempts}{extra}}}\n')


class JsonlWriter:
    def __init__(self, stream: IO[str], color: bool = False) -> None:
        self.stream = stream
        self.buffer: list[str] = []
        self.buffered = 0  # lines in the buffer (a run's string holds many)

    def write(self, outcomes: Sequence[ProbeOutcome], runs: Sequence[PortRun] = ()) -> None:
        lines = self.buffer
        text = STATE_TEXT
        for run in runs:
            # one line per port, but built by str.join: a down host's thousand ports
            # differ only in the port number
            head, _, tail = _line(run.host, _PORT, text[run.state], run.reason, None, 0,
                                  run.name, None).partition(_PORT)
            lines.append(head + (tail + head).join(map(str, run.ports)) + tail)
            self.buffered += len(run.ports)
        lines.extend([_line(host, port, text[state], reason, rtt_ms, attempts, name, banner)
                      for host, port, state, reason, rtt_ms, attempts, name, banner in outcomes])
        self.buffered += len(outcomes)
        if self.buffered >= 4096:
            self.stream.write("".join(lines))
            lines.clear()
            self.buffered = 0

    def finish(self, summary: ScanSummary) -> None:
        self.stream.write("".join(self.buffer))
        self.buffer.clear()
        self.buffered = 0
        self.stream.flush()
