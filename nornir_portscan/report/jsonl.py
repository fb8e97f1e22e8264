"""One JSON object per probed (address, port): the format later tools and checks rely on.

Rows are formatted by hand: a sweep writes hundreds of thousands of them and
building a dict plus a generic JSON encode per row doubled the writer's cost.
Only free text (name, banner) goes through the JSON encoder for escaping.
"""

from __future__ import annotations

import json
from typing import IO

from ..engine.outcome import ProbeOutcome
from .base import ScanSummary

_quote = json.JSONEncoder(ensure_ascii=True).encode


class JsonlWriter:
    def __init__(self, stream: IO[str], color: bool = False) -> None:
        self.stream = stream
        self.buffer: list[str] = []

    def write(self, o: ProbeOutcome) -> None:
        rtt = "null" if o.rtt_ms is None else repr(round(o.rtt_ms, 3))
        extra = ""
        if o.name is not None:
            extra = ',"name":' + _quote(o.name)
        if o.banner is not None:
            extra += ',"banner":' + _quote(o.banner)
        # host (an address or a validated hostname) and reason need no escaping
        self.buffer.append(
            f'{{"host":"{o.host}","port":{o.port},"state":"{o.state.value}",'
            f'"reason":"{o.reason}","rtt_ms":{rtt},"attempts":{o.attempts}{extra}}}\n')
        if len(self.buffer) >= 512:
            self.stream.write("".join(self.buffer))
            self.buffer.clear()

    def finish(self, summary: ScanSummary) -> None:
        self.stream.write("".join(self.buffer))
        self.buffer.clear()
        self.stream.flush()
