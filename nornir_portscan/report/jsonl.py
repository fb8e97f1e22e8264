"""One JSON object per probed (address, port): the format later tools and checks rely on.

Rows are formatted by hand: a sweep writes hundreds of thousands of them and
building a dict plus a generic JSON encode per row doubled the writer's cost.
Only free text (name, banner) goes through the JSON encoder for escaping.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import IO

from ..engine.outcome import STATE_TEXT, PortRun, ProbeOutcome
from .base import ScanSummary

_quote = json.JSONEncoder(ensure_ascii=True).encode


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
            extra = "" if run.name is None else ',"name":' + _quote(run.name)
            head = f'{{"host":"{run.host}","port":'
            tail = (f',"state":"{text[run.state]}","reason":"{run.reason}","rtt_ms":null,'
                    f'"attempts":0{extra}}}\n')
            lines.append(head + (tail + head).join(map(str, run.ports)) + tail)
            self.buffered += len(run.ports)
        for host, port, state, reason, rtt_ms, attempts, name, banner in outcomes:
            rtt = "null" if rtt_ms is None else repr(round(rtt_ms, 3))
            extra = ""
            if name is not None:
                extra = ',"name":' + _quote(name)
            if banner is not None:
                extra += ',"banner":' + _quote(banner)
            # host (an address or a validated hostname) and reason need no escaping
            lines.append(f'{{"host":"{host}","port":{port},"state":"{text[state]}",'
                         f'"reason":"{reason}","rtt_ms":{rtt},"attempts":{attempts}{extra}}}\n')
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
