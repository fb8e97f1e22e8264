"""The engine's own failure: a scan that cannot go on, or whose accounting does not add up.

Its own module because every part raises it (the scheduler on a machine that cannot open
sockets, the local scan, process shards and cluster shards on a count that is off), and
none of them should have to import another to name it.
"""

from __future__ import annotations


class EngineError(RuntimeError):
    """The scan cannot go on (the machine cannot open sockets at all), or its outcomes do
    not add up to hosts x ports."""


class Abandoned(EngineError):
    """No one waits for this scan any more: the process is stopping (``run`` was
    interrupted), and a thread that waited for its outcomes is let go."""
