"""The resume journal: an append-only file of decided outcomes, kept beside a report.

A scan (or a nornir run) that keeps a journal can be killed at any moment, SIGKILL and
power loss included, and continued: what the journal holds is reported as it was decided,
and only the rest is probed (``core/resume.py``). The file is a header (the journal's
kind and its sections, each a plan's identity and index) and frames of outcomes
(``core/records.py``), each with its length and checksum, so a frame cut short by a crash
costs only that frame.

Durability without slowing the scan: ``record`` only encodes and queues; a thread writes
and syncs (``policy.py`` says when, ``writer.py`` does it).

One journal has sections: a scan has one (key ``""``), a nornir run one per nornir host,
each with its own plan. A Dask client can use the same calls: ``record`` a batch, ask
``section(key).decided`` what is decided, keep its own bookkeeping as ``note`` records.

The parts, one concern each: ``fileformat.py`` (the file: header, declarations, raw
writes), ``sections.py`` (``Journal``: opening, loading, sections, recording),
``writer.py`` (the queue and its thread), ``policy.py`` (when to write and sync),
``shared.py`` (the process's one open journal per file), ``registry.py`` (process-wide
state: the exit hook), ``errors.py`` (what the user is told).
"""

from .errors import JournalError, JournalMismatch, JournalUnusable
from .fileformat import FORMAT, VERSION, journal_beside
from .policy import FLUSH_INTERVAL, SYNC_INTERVAL
from .sections import Journal, Section
from .shared import shared_journal
from .writer import Recorder

__all__ = ["FLUSH_INTERVAL", "FORMAT", "SYNC_INTERVAL", "VERSION", "Journal", "JournalError",
           "JournalMismatch", "JournalUnusable", "Recorder", "Section", "journal_beside",
           "shared_journal"]
