"""What a scan cost, counted while it runs: the traffic behind its outcomes.

Apart from the plan (what to scan) because it is filled in by whoever runs the plan: one
process's scan, the process shards' parent, or the cluster client, summing its workers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .names import ResolverTally


@dataclass
class ScanStats:
    """What a scan cost, filled in as it runs: the traffic behind its outcomes."""

    connects: int = 0  # connect() attempts: first tries, retries and discovery probes
    #: names each resolver did not answer for (``names.ResolverTally``), by resolver
    resolver_timeouts: Counter[str] = field(default_factory=Counter)

    def resolver_warning(self) -> str | None:
        """One line naming each resolver that did not answer and the names it cost."""
        tally = ResolverTally()
        tally.merge(self.resolver_timeouts)
        return tally.warning()
