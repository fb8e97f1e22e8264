"""How many sockets this process may hold at once.

The concurrency budget comes from RLIMIT_NOFILE: the soft limit is raised to
the hard one (allowed without privileges), and a reserve is kept for the
interpreter, output files and the resolver's threads.
"""

from __future__ import annotations

import os
import resource

FD_RESERVE = 32
DEFAULT_CAP = 16384


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return int(min(soft, 1 << 20)) if soft != resource.RLIM_INFINITY else 1 << 20


def concurrency_budget(requested: int | None = None) -> int:
    """Probes in flight allowed: what was asked for, never more than the descriptors allow."""
    fds = raise_fd_limit()
    budget = max(1, fds - FD_RESERVE) if fds > FD_RESERVE * 2 else max(1, fds // 2)
    if requested is None:
        return min(budget, DEFAULT_CAP)
    return max(1, min(requested, budget))


def usable_cores() -> int:
    """The cores this process may run on (its affinity, where the OS has one): how many
    shard workers can run at once."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cpus or 1
