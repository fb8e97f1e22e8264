"""One process's scan: a scheduler and a readiness loop over a plan (or a shard of one).

The I/O side's share of starting a scan happens here, not at planning: the descriptor
budget (raising the open-file limit), the job's random port-order key and, for a resumed
scan, fresh lookups of the names decided in part (``core/resume.py``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:  # a resumed scan's modules load only when one resumes
    from ..core.decided import DecidedPairs
    from ..core.resume import ResumePoint


def port_order_key() -> int:
    """A job's port-order key, drawn here: the scheduler draws no randomness."""
    return int.from_bytes(os.urandom(5), "big")


def job_for(plan: ScanPlan) -> Job:
    """A plan's job, with its port-order key."""
    return Job(plan.spec, plan.ports, plan.options, key=port_order_key())


def jobs_for(plan: ScanPlan, resume: ResumePoint | None) -> tuple[list[Job], list[PortRun]]:
    """A plan's jobs: one, or a resumed plan's (``resume_work``), and the outcomes a resumed
    plan decides without a probe."""
    if resume is None:
        return [job_for(plan)], []
    from ..core.resume import resume_work

    return resume_work(plan, resume, port_order_key())


def resume_point(decided: DecidedPairs, timeout: float = 30.0) -> ResumePoint:
    """A resumed plan's starting point: its decided pairs, and a fresh lookup of each name
    decided in part (made once, here, so every shard sees the same addresses)."""
    from ..core.resume import ResumePoint

    point = ResumePoint(decided)
    pending = [(pos, resolve(name)) for pos, name in point.names_to_look_up()]
    for pos, future in pending:
        try:
            point.lookups[pos] = future.result(timeout).addresses
        except Exception:  # no answer in time: as a failed lookup, the old addresses stay
            point.lookups[pos] = []
    return point


def scan_here(plan: ScanPlan, stats: ScanStats, runs: bool = False,
              icmp_evidence: IcmpEvidence | None = None,
              max_active_hosts: int | None = None,
              resume: ResumePoint | None = None) -> Iterator[OutcomeBatch]:
    """One process's scan of a plan (the whole plan, or a shard worker's share, which
    shares what it learns of ICMP rejects with the other shards through ``icmp_evidence``);
    with ``resume``, only the pairs not decided yet. ``max_active_hosts`` bounds the hosts
    under way at once (None: from the window)."""
    sched = Scheduler(concurrency=concurrency_budget(plan.concurrency), rate=plan.rate,
                      resolver=resolve, rtt=RttEstimator(), icmp_evidence=icmp_evidence,
                      max_active_hosts=max_active_hosts)
    jobs, early = jobs_for(plan, resume)
    for job in jobs:
        sched.add_job(job)
    try:
        if early:
            yield (OutcomeBatch([], early) if runs
                   else OutcomeBatch(OutcomeBatch([], early).expanded(), []))
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
        stats.resolver_timeouts.update(sched.intake.resolvers.timeouts)
    for job in jobs:
        if job.emitted != job.addresses * len(job.ports):
            raise EngineError(f"accounting error: {job.emitted} outcomes for "
                              f"{job.addresses} hosts x {len(job.ports)} ports")
