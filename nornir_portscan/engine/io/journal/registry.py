"""Process-wide journal state: the journals with a writer, written and closed at exit
when the process ends without closing them (a nornir script whose run is over), and who
wants to hear that a journal closed (``shared.py``'s table of open journals)."""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Callable
from typing import Protocol


class Closable(Protocol):
    def close(self, sync: bool = True) -> None: ...


#: Journals with a writer: written and closed at exit.
_live: weakref.WeakSet[Closable] = weakref.WeakSet()
_on_close: list[Callable[[Closable], None]] = []


def live(journal: Closable) -> None:
    """``journal``'s writer started: close it at exit if nothing else does."""
    _live.add(journal)


def closed(journal: Closable) -> None:
    """``journal`` is closed: tell whoever keeps it."""
    for hook in _on_close:
        hook(journal)


def on_close(hook: Callable[[Closable], None]) -> None:
    _on_close.append(hook)


@atexit.register
def _close_at_exit() -> None:
    for journal in list(_live):
        try:
            journal.close()
        except Exception:  # exiting: nothing better to do with it
            pass
