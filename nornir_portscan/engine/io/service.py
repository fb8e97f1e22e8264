"""One long-lived engine per process that many callers feed at once.

nornir runs host tasks on a thread pool; if each task ran its own loop, a run
would be capped at the pool size and every task would learn RTTs and respect
rate caps alone. Here every task submits a job to the same scheduler on one
engine thread, so concurrency, timing and rate caps cover the whole inventory.

A big plan may run on worker processes instead (``engine.shards.shard.submit_sharded``),
its outcomes handed out through the same ``JobHandle``.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from ..core.errors import Abandoned, EngineError
from ..core.outcome import ProbeOutcome
from ..core.plan import ScanPlan
from ..core.scheduler import Scheduler
from ..core.stats import ScanStats
from ..core.work import Job
from .limits import concurrency_budget
from .local import jobs_for
from .loop import ReadinessLoop
from .resolve import resolve

if TYPE_CHECKING:
    from ..core.resume import ResumePoint

_DONE = object()


class Resumed:
    """How a handle's scan continues a journal: what it decided before (handed out first),
    where it stands (None: nothing is left to probe), where new outcomes are recorded
    and what to call once every outcome is (the journal marks the section done)."""

    def __init__(self, replayed: list[ProbeOutcome], point: ResumePoint | None,
                 record: Callable[[ProbeOutcome], None],
                 finished: Callable[[], None]) -> None:
        self.replayed, self.point = replayed, point
        self.record, self.finished = record, finished


#: Set when the process stops waiting for its scans (``stop_waiting``).
_stopping = threading.Event()
#: How often a thread waiting for outcomes looks whether it should stop waiting: an
#: interrupted run is let go this soon; a waiting thread costs 4 wake-ups a second.
WAIT_POLL_S = 0.25


def stop_waiting() -> None:
    """Let every thread that waits for a scan's outcomes go, with ``Abandoned`` (outcomes
    already in are still handed out). A nornir run's host tasks wait on pool threads, and
    nornir's runner joins them before an interrupt of the thread that queues them can
    unwind: interrupted while it queued, a run waited for every probe to time out."""
    _stopping.set()


def resume_waiting() -> None:
    """Undo ``stop_waiting`` (the interrupted run is over; the process goes on)."""
    _stopping.clear()


def waiting_stopped() -> bool:
    return _stopping.is_set()


class JobHandle:
    """A submitted scan: iterate it for outcomes as they are decided (thread-safe).

    ``keep=False``: the outcomes go only to ``on_outcome`` (a caller that sorts them as
    they come, a nornir run's merged scan), so the handle does not hold a second copy of
    them; iterating it then only waits for the end and raises what failed.
    ``on_end`` hears the end (None) or the failure, on the thread that ran the scan."""

    def __init__(self, plan: ScanPlan,
                 on_outcome: Callable[[ProbeOutcome], None] | None = None,
                 resumed: Resumed | None = None, *, keep: bool = True,
                 on_end: Callable[[BaseException | None], None] | None = None) -> None:
        self.plan = plan
        self.on_outcome = on_outcome
        self.keep = keep
        self.on_end = on_end
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.jobs: list[Job] = []
        self.cancelled = False
        self.resumed = resumed
        self._left = 0  # jobs not ended yet
        self._ended = False
        self._lost: BaseException | None = None  # what on_outcome raised (keep=False)
        self._record: Callable[[ProbeOutcome], None] | None = None
        #: From submission to the last outcome, once the scan ended (a report's per-host
        #: time: junit's testcase time); None before.
        self.elapsed_s: float | None = None
        self._submitted = time.monotonic()
        if resumed is not None:
            self._record = resumed.record
            for outcome in resumed.replayed:
                self._hand_out(outcome)

    def _start(self, jobs: list[Job]) -> None:
        """The engine took the handle's jobs (one, or a resumed scan's several)."""
        self.jobs = jobs
        self._left = len(jobs)

    def _put(self, outcome: ProbeOutcome | None) -> None:
        if outcome is None:
            self._left -= 1
            if self._left <= 0:
                self.elapsed_s = time.monotonic() - self._submitted
                if self.resumed is not None:
                    self.resumed.finished()
                self._end(self._accounting_error())
            return
        if self._record is not None:
            self._record(outcome)
        self._hand_out(outcome)

    def hand_out(self, outcome: ProbeOutcome) -> None:
        """An outcome decided elsewhere than the engine's loop (a plan on shards)."""
        self._hand_out(outcome)

    def end(self, error: BaseException | None) -> None:
        """The scan ended elsewhere than the engine's loop: done (None) or failed."""
        self._end(error)

    def _hand_out(self, outcome: ProbeOutcome) -> None:
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except Exception as exc:
                self.on_outcome = None
                if not self.keep:  # the caller's only copy is lost: the scan has failed
                    self._lost = exc
        if self.keep:
            self._queue.put(outcome)

    def _accounting_error(self) -> EngineError | None:
        for job in self.jobs:
            if job.emitted != job.addresses * len(job.ports):
                return EngineError(f"accounting error: {job.emitted} outcomes for "
                                   f"{job.addresses} hosts x {len(job.ports)} ports")
        return None

    def _end(self, error: BaseException | None) -> None:
        """The first end counts (a resumed scan's jobs may each fail with the engine)."""
        if self._ended:
            return
        self._ended = True
        error = error or self._lost
        if self.on_end is not None:
            self.on_end(error)
        self._queue.put(_DONE if error is None else error)

    def _fail(self, exc: BaseException) -> None:
        self._end(exc)

    def __iter__(self) -> Iterator[ProbeOutcome]:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:  # asked before each wait: a run let go ends at once
                if _stopping.is_set():
                    raise Abandoned("the run stopped waiting for this scan") from None
                try:
                    item = self._queue.get(timeout=WAIT_POLL_S)
                except queue.Empty:
                    continue
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, ProbeOutcome)
            yield item

    def result(self) -> list[ProbeOutcome]:
        return list(self)


class Engine:
    """A readiness loop on a daemon thread, accepting jobs at any time."""

    def __init__(self, concurrency: int | None = None, rate: float | None = None) -> None:
        self.concurrency = concurrency_budget(concurrency)
        self.concurrency_asked = concurrency is not None  # a cap shards could not share
        self.rate = rate
        self._lock = threading.Lock()
        self._inbox: list[JobHandle] = []
        self._thread: threading.Thread | None = None
        self._rfd, self._wfd = os.pipe()
        os.set_blocking(self._rfd, False)
        self.sched: Scheduler | None = None
        #: Whose each running job is: the engine's own map, core's jobs hold no handle.
        self._handles: dict[Job, JobHandle] = {}
        #: names silent resolvers cost jobs that ran off the loop (shard workers, Dask)
        self._elsewhere: Counter[str] = Counter()

    def resolver_timeouts(self) -> Counter[str]:
        """Names each silent resolver cost, by resolver, over every job this engine ran:
        on its loop, on shard workers and on a cluster (``count_resolver_timeouts``)."""
        with self._lock:
            total = Counter(self._elsewhere)
        sched = self.sched
        if sched is not None:
            total.update(sched.intake.resolvers.timeouts)
        return total

    def count_resolver_timeouts(self, timeouts: Mapping[str, int]) -> None:
        """Add what a job run off the loop (shard workers, a cluster) counted."""
        with self._lock:
            self._elsewhere.update(timeouts)

    def resolver_warning(self) -> str | None:
        """The line naming each resolver that did not answer and the names it cost, over
        every job this engine ran (``run`` prints it once its hosts are done)."""
        return ScanStats(resolver_timeouts=self.resolver_timeouts()).resolver_warning()

    def configure(self, concurrency: int | None = None, rate: float | None = None) -> None:
        """Settings for the engine's next start (the command line's --concurrency/--rate)."""
        if concurrency is not None:
            self.concurrency = concurrency_budget(concurrency)
        self.concurrency_asked = concurrency is not None
        self.rate = rate

    def submit(self, plan: ScanPlan,
               on_outcome: Callable[[ProbeOutcome], None] | None = None,
               resumed: Resumed | None = None, *, keep: bool = True,
               on_end: Callable[[BaseException | None], None] | None = None) -> JobHandle:
        """Queue a plan's scan; with ``resumed``, only what its journal has not decided
        (and nothing at all, no engine, when nothing is left). ``keep`` and ``on_end``:
        see ``JobHandle``."""
        handle = JobHandle(plan, on_outcome, resumed, keep=keep, on_end=on_end)
        if resumed is not None and resumed.point is None:
            handle._put(None)
            return handle
        with self._lock:
            self._inbox.append(handle)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="portscan-engine",
                                                daemon=True)
                self._thread.start()
        os.write(self._wfd, b"x")
        return handle

    def _take_inbox(self) -> None:
        with self._lock:
            handles, self._inbox = self._inbox, []
        assert self.sched is not None
        for handle in handles:
            resumed = handle.resumed
            jobs, early = jobs_for(handle.plan, None if resumed is None else resumed.point)
            handle._start(jobs)
            for job in jobs:
                self._handles[job] = handle
            for run in early:
                for outcome in run.outcomes():
                    handle._put(outcome)
            for job in jobs:
                self.sched.add_job(job)
        self._apply_rate()

    def _apply_rate(self) -> None:
        """The strictest rate among the engine's own and its running jobs' plans (their
        ``rate`` and ``worker_rate``).

        The rate is the engine's (one shared loop), so a job beyond loopback caps the
        probes of every job running beside it until it is done."""
        sched = self.sched
        assert sched is not None
        # a job's worker_rate is this process's cap when the job runs here
        plans = [self._handles[j].plan for j in sched.jobs]
        rates = [r for r in (self.rate, *(p.rate for p in plans),
                             *(p.settings.worker_rate for p in plans))
                 if r]
        rate = min(rates) if rates else None
        if rate != sched.rate.rate:
            sched.set_rate(rate)

    def _serve(self) -> None:
        sched = self.sched = Scheduler(concurrency=self.concurrency, rate=self.rate,
                                       resolver=resolve, keep_alive=True)
        handles = self._handles
        loop = ReadinessLoop(sched, wake_fd=self._rfd, on_wake=self._take_inbox)
        self._take_inbox()
        try:
            for job, outcome in loop.run():
                if outcome is None:  # the job ended
                    handles.pop(job)._put(None)
                    if sched.rate.rate is not None:
                        self._apply_rate()  # its rate cap may go with it
                else:
                    handles[job]._put(outcome)
        except BaseException as exc:
            for job in list(sched.jobs):
                handles.pop(job)._fail(exc)
            handles.clear()
            with self._lock:
                for handle in self._inbox:
                    handle._fail(exc)
                self._inbox = []
            self.sched = None


_engine: Engine | None = None
_engine_lock = threading.Lock()


def shared_engine() -> Engine:
    """The process's engine, created on first use."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = Engine()
        return _engine


def _forget_after_fork() -> None:
    global _engine
    _engine = None


os.register_at_fork(after_in_child=_forget_after_fork)
