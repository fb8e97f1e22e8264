"""One process's scan: a scheduler and a readiness loop over a plan (or a shard of one).

The I/O side's share of starting a scan happens here, not at planning: the descriptor
budget (raising the open-file limit), the scan's seed when none was given (the port-order
and shard layout keys follow from it, ``core/seed.py``) and, for a resumed
scan, fresh lookups of the names decided in part (``core/resume.py``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

from ..core.errors import EngineError
from ..core.outcome import OutcomeBatch, PortRun, ProbeOutcome
from ..core.plan import ScanPlan
from ..core.scheduler import Scheduler
from ..core.seed import port_order_key
from ..core.stats import ScanStats
from ..core.timing import RttEstimator
from ..core.work import IcmpEvidence, Job
from .limits import concurrency_budget
from .loop import ReadinessLoop
from .resolve import resolve

if TYPE_CHECKING:  # a resumed scan's modules load only when one resumes
    from ..core.decided import DecidedPairs
    from ..core.resume import ResumePoint


#: The seed of plans that have none, while a caller sets one (``default_seed``): a nornir
#: run's, so every host without a seed of its own scans with the one its report records.
_default_seed: int | None = None


def draw_seed() -> int:
    """A fresh random seed, drawn here: the scheduler draws no randomness. 48 bits, so a
    JSON reader that holds numbers as doubles (JavaScript) keeps it exact."""
    return int.from_bytes(os.urandom(6), "big")


@contextmanager
def default_seed(seed: int) -> Iterator[None]:
    """While inside, a plan with no seed of its own runs with ``seed`` (``seeded``)."""
    global _default_seed
    before, _default_seed = _default_seed, seed
    try:
        yield
    finally:
        _default_seed = before


def seeded(plan: ScanPlan) -> ScanPlan:
    """The plan with a seed: its own, the caller's default (``default_seed``), or drawn now.
    Every way of running a plan seeds it first, before it is split into shards, so every
    shard, forked or on a cluster worker, keys its port order and the layout the same."""
    if plan.settings.seed is not None:
        return plan
    return replace(plan, settings=replace(plan.settings, seed=seed_of(plan)))


def seed_of(plan: ScanPlan) -> int:
    """The seed a plan runs with (``seeded``), without a copy of the plan: a nornir run's
    engine asks it of every host's plan."""
    seed = plan.settings.seed
    if seed is not None:
        return seed
    return draw_seed() if _default_seed is None else _default_seed


def job_for(plan: ScanPlan) -> Job:
    """A plan's job, with its port-order key."""
    return Job(plan.spec, plan.ports, plan.options, key=port_order_key(seed_of(plan)))


def jobs_for(plan: ScanPlan, resume: ResumePoint | None) -> tuple[list[Job], list[PortRun]]:
    """A plan's jobs: one, or a resumed plan's (``resume_work``), and the outcomes a resumed
    plan decides without a probe."""
    if resume is None:
        return [job_for(plan)], []
    from ..core.resume import resume_work

    return resume_work(plan, resume, port_order_key(seed_of(plan)))


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
