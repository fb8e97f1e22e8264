"""What a scan cost, counted while it runs: the traffic behind its outcomes.

Apart from the plan (what to scan) because it is filled in by whoever runs the plan: one
process's scan, the process shards' parent, or the cluster client, summing its workers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ScanStats:
    """What a scan cost, filled in as it runs: the traffic behind its outcomes."""

    connects: int = 0  # connect() attempts: first tries, retries and discovery probes
