"""When the journal writes and syncs: durability without slowing the scan.

``record`` only encodes and queues; the writer writes what is queued every
``FLUSH_INTERVAL`` (a SIGKILL loses at most that much) and makes it durable
(``fdatasync``) at most every ``SYNC_INTERVAL`` (a power loss loses at most about that
much more, plus one sync's time)."""

from __future__ import annotations

#: Seconds between writes of what was recorded: what a SIGKILL can lose at most.
FLUSH_INTERVAL = 0.25
#: Seconds between syncs to the disk: with ``FLUSH_INTERVAL``, what a power loss can lose.
SYNC_INTERVAL = 1.0
#: Outcomes a ``Recorder`` gathers before it encodes them as one frame.
RECORDER_BATCH = 2048


def sync_due(dirty: bool, since_sync: float, closed: bool) -> bool:
    """Whether the writer syncs now: something was written since the last sync, which was
    ``SYNC_INTERVAL`` or more ago, and the journal is still open."""
    return dirty and since_sync >= SYNC_INTERVAL and not closed
