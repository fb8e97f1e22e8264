"""Output formats for scan outcomes, one module per format.

Writers share one small protocol so the command line can stream outcomes to
any of them and still finish cleanly (with a summary) after an interruption.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from .base import OutcomeWriter, ScanSummary

if TYPE_CHECKING:
    from .document import RunDocument

#: format name -> "module:class"; imported on demand to keep start-up light.
WRITERS: dict[str, str] = {
    "table": "table:TableWriter",
    "jsonl": "jsonl:JsonlWriter",
    "json": "json_:JsonWriter",
    "csv": "csv_:CsvWriter",
}


def writer_for(fmt: str, stream: IO[str], color: bool = False,
               all_ports: bool = False, ports_per_host: int = 0) -> OutcomeWriter:
    """``all_ports``: the json document lists every port (the other formats always do).
    ``ports_per_host``: rows each address gets (0: unknown), so a streaming writer can
    write a host's rows, with its anomaly, once it has them all (``anomaly.py``)."""
    module, _, cls = WRITERS[fmt].partition(":")
    mod = importlib.import_module(f"{__name__}.{module}")
    extra = {"all_ports": True} if all_ports and fmt == "json" else {}
    writer: OutcomeWriter = getattr(mod, cls)(stream, color=color, ports_per_host=ports_per_host,
                                              **extra)
    return writer


#: whole-run format name -> module exposing ``render(doc, stream)`` for a run document
#: (see ``document.py``); imported on demand like the writers.
DOCUMENT_RENDERERS: dict[str, str] = {
    "json": "json_",
    "jsonl": "jsonl",
    "csv": "csv_",
    "junit": "junit",
    "nmap-xml": "nmap_xml",
    "html": "html",
}


def render_document(fmt: str, doc: RunDocument, stream: IO[str]) -> None:
    """Render a run document in a whole-run format; KeyError names an unknown format."""
    mod = importlib.import_module(f"{__name__}.{DOCUMENT_RENDERERS[fmt]}")
    render: Callable[[RunDocument, IO[str]], None] = mod.render
    render(doc, stream)


__all__ = ["DOCUMENT_RENDERERS", "WRITERS", "OutcomeWriter", "ScanSummary", "render_document",
           "writer_for"]
