"""What the journal tells its user: the three ways it can refuse or fail, and the
messages that say how a journal differs from the scan that would resume it."""

from __future__ import annotations

from collections.abc import Mapping

from ....errors import PortscanError
from ...core.errors import EngineError
from ...core.identity import describe, differences


class JournalMismatch(PortscanError):
    """The journal was written for another scan: resuming it would mix two scans."""

    def __init__(self, path: str, items: list[str], detail: str) -> None:
        self.items = items
        super().__init__(f"{path} was written for a different scan: {detail}; rerun the "
                         f"command that wrote it, or delete it to start over")


class JournalUnusable(PortscanError):
    """The journal cannot be opened or read: another user's file, a link, not a journal."""


class JournalError(EngineError):
    """The journal cannot be written any more (a disk error) while the scan goes on."""


def check_identity(path: str, key: str, recorded: Mapping[str, str],
                   now: Mapping[str, str]) -> None:
    """``JournalMismatch`` naming what differs when a section's scan is not the plan's."""
    items = differences(recorded, now)
    if items:
        where = f"host {key!r}: " if key else ""
        raise JournalMismatch(path, items, where + describe(recorded, now, items))


def check_hosts(path: str, recorded: set[str], now: set[str]) -> None:
    """``JournalMismatch`` naming a few hosts when a run's hosts are not the file's."""
    extra, missing = sorted(recorded - now), sorted(now - recorded)
    if not extra and not missing:
        return

    def names(keys: list[str]) -> str:
        return ", ".join(map(repr, keys[:3])) + (" and more" if len(keys) > 3 else "")

    parts = []
    if extra:
        parts.append(f"it has {names(extra)}, which this run does not scan")
    if missing:
        parts.append(f"this run also scans {names(missing)}")
    raise JournalMismatch(path, ["hosts"], f"hosts differ ({'; '.join(parts)})")
