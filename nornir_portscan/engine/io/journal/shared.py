"""The process's one open journal per file, shared by a nornir run's hosts."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

from ...core.plan import ScanPlan
from . import registry
from .sections import Journal

_open: dict[str, Journal] = {}
_open_lock = threading.RLock()


def shared_journal(path: str, kind: str, plans: Mapping[str, ScanPlan],
                   keep: bool = True, reopen: bool = False, exact: bool = False) -> Journal:
    """The process's one open journal at ``path`` (a nornir run's hosts share it), opened
    and loaded on first use; later callers' plans are checked against it, or added. With
    ``reopen`` (a new run begins: what the last one recorded is in the file) an open one is
    closed and read again (if it recorded anything since it was read); one whose file was
    deleted or replaced is never reused."""
    real = os.path.realpath(path)
    with _open_lock:
        journal = _open.get(real)
        if journal is not None and ((reopen and (journal.wrote or journal.recording))
                                    or not _same_file(journal, path)):
            del _open[real]
            journal.close()
            journal = None
        if journal is None:
            journal = Journal.open(path, kind, plans, exact)
            try:
                journal.load(keep=keep)
            except BaseException:
                journal.close()
                raise
            _open[real] = journal
            return journal
    for key, plan in plans.items():
        journal.add_section(key, plan, keep=keep)
    return journal


def _same_file(journal: Journal, path: str) -> bool:
    try:
        now, mine = os.stat(path), os.fstat(journal.fd)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)


def _forget(journal: registry.Closable) -> None:
    with _open_lock:
        for real, known in list(_open.items()):
            if known is journal:
                del _open[real]


registry.on_close(_forget)
