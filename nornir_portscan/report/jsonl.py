"""One JSON object per probed (address, port): the format later tools and checks rely on."""

from __future__ import annotations

import json
from typing import IO

from ..engine.outcome import ProbeOutcome
from .base import ScanSummary


class JsonlWriter:
    def __init__(self, stream: IO[str], color: bool = False) -> None:
        self.stream = stream
        self._dumps = json.JSONEncoder(separators=(",", ":")).encode

    def write(self, outcome: ProbeOutcome) -> None:
        self.stream.write(self._dumps(outcome.as_dict()) + "\n")

    def finish(self, summary: ScanSummary) -> None:
        self.stream.flush()
