"""One process's scan: a scheduler and a readiness loop over a plan (or a shard of one).

The I/O side's share of starting a scan happens here, not at planning: the descriptor
budget (raising the open-file limit) and the job's random port-order key."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ..core.errors import EngineError
from ..core.outcome import OutcomeBatch, PortRun, ProbeOutcome
from ..core.plan import ScanPlan
from ..core.scheduler import Scheduler
from ..core.stats import ScanStats
from ..core.timing import RttEstimator
from ..core.work import IcmpEvidence, Job
from .limits import concurrency_budget
from .loop import ReadinessLoop
from .resolve import resolve


def job_for(plan: ScanPlan, tag: object = None) -> Job:
    """A plan's job, its port-order key drawn here: the scheduler draws no randomness."""
    key = int.from_bytes(os.urandom(5), "big")
    return Job(plan.spec, plan.ports, plan.options, tag=tag, key=key)


def scan_here(plan: ScanPlan, stats: ScanStats, runs: bool = False,
              icmp_evidence: IcmpEvidence | None = None,
              max_active_hosts: int | None = None) -> Iterator[OutcomeBatch]:
    """One process's scan of a plan (the whole plan, or a shard worker's share, which
    shares what it learns of ICMP rejects with the other shards through ``icmp_evidence``).
    ``max_active_hosts`` bounds the hosts under way at once (None: from the window)."""
    sched = Scheduler(concurrency=concurrency_budget(plan.concurrency), rate=plan.rate,
                      resolver=resolve, rtt=RttEstimator(), icmp_evidence=icmp_evidence,
                      max_active_hosts=max_active_hosts)
    job = sched.add_job(job_for(plan))
    try:
        for batch in ReadinessLoop(sched).run_batches(runs):
            batch_runs = [item for _, item in batch if type(item) is PortRun]
            if batch_runs:
                outcomes = [item for _, item in batch if type(item) is ProbeOutcome]
            else:
                outcomes = [item for _, item in batch if item is not None]  # type: ignore[misc]
            if outcomes or batch_runs:
                yield OutcomeBatch(outcomes, batch_runs)
    finally:
        stats.connects += sched.probes_sent
    if job.emitted != job.addresses * len(plan.ports):
        raise EngineError(f"accounting error: {job.emitted} outcomes for "
                          f"{job.addresses} hosts x {len(plan.ports)} ports")
