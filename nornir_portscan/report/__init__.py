"""Output formats for scan outcomes, one module per format.

Writers share one small protocol so the command line can stream outcomes to
any of them and still finish cleanly (with a summary) after an interruption.
"""

from __future__ import annotations

import importlib
from typing import IO

from .base import OutcomeWriter, ScanSummary

#: format name -> "module:class"; imported on demand to keep start-up light.
WRITERS: dict[str, str] = {
    "table": "table:TableWriter",
    "jsonl": "jsonl:JsonlWriter",
    "json": "json_:JsonWriter",
    "csv": "csv_:CsvWriter",
}


def writer_for(fmt: str, stream: IO[str], color: bool = False) -> OutcomeWriter:
    module, _, cls = WRITERS[fmt].partition(":")
    mod = importlib.import_module(f"{__name__}.{module}")
    writer: OutcomeWriter = getattr(mod, cls)(stream, color=color)
    return writer


__all__ = ["WRITERS", "OutcomeWriter", "ScanSummary", "writer_for"]
