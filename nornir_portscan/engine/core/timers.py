"""The deadline heap: when each probe whose connect is under way is due (as trio's
``Deadlines``: add, next_deadline, expire).

An entry is never searched for and removed when its probe is answered: that would cost
more than the answer. It stays until it comes due and is dropped then (``probe.done``).
What a due probe means (wait longer, try again, filtered) is not the heap's question:
``verdicts.py`` answers it.
"""

from __future__ import annotations

import heapq
import itertools

from .work import Probe


class Timers:
    """Probes by deadline; ties keep the order they were added in."""

    def __init__(self, timeout: float) -> None:
        self.heap: list[tuple[float, int, Probe]] = []
        self._seq = itertools.count()
        #: The adaptive timeout the adaptive entries' keys were computed with (``follow``).
        self.keyed_for = timeout

    def add(self, deadline: float, probe: Probe) -> None:
        heapq.heappush(self.heap, (deadline, next(self._seq), probe))

    def next_deadline(self) -> float | None:
        """The earliest deadline, or None when nothing waits."""
        heap = self.heap
        return heap[0][0] if heap else None

    def expire(self, now: float) -> list[Probe]:
        """The probes due at ``now`` and not yet over, earliest first; they leave the heap."""
        heap = self.heap
        out: list[Probe] = []
        while heap and heap[0][0] <= now:
            probe = heapq.heappop(heap)[2]
            if not probe.done:
                out.append(probe)
        return out

    def follow(self, timeout: float) -> None:
        """The adaptive timeout fell below half of what the keys were computed with: re-key
        adaptive entries (sent + timeout), else they would wait out the old, longer one.
        Fixed-timeout entries keep their keys (their next-try points)."""
        if timeout >= self.keyed_for / 2:
            return
        self.heap = [(key if p.host.job.options.timeout else p.sent + timeout, seq, p)
                     for key, seq, p in self.heap if not p.done]
        heapq.heapify(self.heap)
        self.keyed_for = timeout
