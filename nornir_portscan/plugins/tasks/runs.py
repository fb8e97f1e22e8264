"""One nornir run, one burst of jobs: pre-submission of every host's scan.

nornir's threaded runner gives each host a worker (20 by default). A task that
submitted its own scan and then waited for it would keep at most 20 scans in
flight, and a /24 would crawl through in batches of 20. So the first host task
of a run resolves the options of every host of the run, submits all their jobs
to the shared engine at once, and parks the handles here; each host task then
only collects its own.

nornir tells a task nothing about "its run", so runs are inferred, per Nornir
object (``nr.filter`` makes a new one): a pending handle is used only if it was
planned with the same scan settings, and a batch is over when one of its hosts
asks again (it collected its scan in an earlier run). A host the batch left out
(a failed host run with ``on_failed=True``) simply submits its own job.

A runner may submit the batch itself before any task runs (``start_run``, what
``plugins/runner.PortscanRunner`` does): the batch then hands it the names of its hosts
as their scans come in, and each host's task takes its scan as above.

Subtasks (``task.run(portscan)`` inside a grouped task) are not pre-submitted:
their results must describe the moment the subtask runs, not the moment the
first host started the group.

With ``resume`` (a journal's path) a run survives a crash: the journal has a section per
nornir host, holding the (address, port) pairs decided so far, so the same run again hands
each host's decided outcomes out first and probes only the rest. All of a batch's hosts
are known when its first task opens the journal, so one look at the file serves them all.

A batch resolves its hosts' options once (``RunOptions``: equal inventory data is checked
once) and hands each host its options with its scan, so a host's task parses nothing. The
hosts that scan their own address with the same settings share one plan (merged.py).
"""

from __future__ import annotations

import functools
import queue
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ...engine.core.errors import Abandoned
from ...engine.core.outcome import ProbeOutcome
from ...engine.io.local import resume_point
from ...engine.io.service import JobHandle, Resumed, shared_engine, waiting_stopped
from ...errors import PortscanError
from ..common.collector import collector_paused
from . import merged
from .options import ScanOptions, resolve_options, run_settings
from .run_options import Addressed, RunOptions

if TYPE_CHECKING:
    from nornir.core import Nornir
    from nornir.core.inventory import Host
    from nornir.core.task import Task

    from ...engine.io.journal import Journal
    from ...engine.shards.cluster import ClusterJob


@runtime_checkable
class ScanObserver(Protocol):
    """What a processor implements to hear about probes, not just hosts (see progress.py).

    ``probe_done`` runs on the engine thread: it must be quick and must not block.
    """

    def scan_submitted(self, host: str, probes: int) -> None: ...

    def probe_done(self, outcome: ProbeOutcome) -> None: ...

    def scan_collected(self, host: str, planned: int, probes: int) -> None: ...


@dataclass(slots=True)
class Pending:
    """A submitted scan, and how many probes it was planned to be (for progress totals)."""

    handle: JobHandle | ClusterJob | merged.HostShare
    planned: int
    #: the options the scan was planned with (a batch resolved them for the host's task)
    options: ScanOptions | None = None


@dataclass
class _Batch:
    members: set[str]
    args: dict[str, object] = field(default_factory=dict)
    resume: str | None = None
    #: each member's scan (or the error of its input), until the member's task takes it
    pending: dict[str, Pending | PortscanError] = field(default_factory=dict)
    #: a newer batch replaced this one: what is left in ``pending`` is stale
    closed: bool = False
    #: the members whose scans are in (or whose input was invalid), as they come: what a
    #: runner that takes hosts as they finish reads (plugins/runner.py)
    ready: queue.SimpleQueue[str] = field(default_factory=queue.SimpleQueue)

    def same(self, args: dict[str, object], resume: str | None) -> bool:
        """Whether a task's arguments are the batch's (every host of one nr.run gets the
        same objects, so identity decides before any deep comparison)."""
        return resume == self.resume and args.keys() == self.args.keys() and all(
            value is self.args[key] or value == self.args[key] for key, value in args.items())

    def over(self, host: str, pending: Pending | PortscanError | None) -> bool:
        # This host already collected its scan: a new run has begun. (Whether the run's
        # worker threads are alive is no signal: under load a pool thread of the same run
        # was seen reported dead, and a second batch then scanned every host twice.)
        return pending is None and host in self.members


@dataclass
class _RunState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    batch: _Batch | None = None


_states: weakref.WeakKeyDictionary[Nornir, _RunState] = weakref.WeakKeyDictionary()
_states_lock = threading.Lock()


_seen: tuple[object, list[ScanObserver]] = (None, [])


def observers(task: Task) -> list[ScanObserver]:
    """The task's processors that watch probes: a Protocol check is slow, and every host
    of a run has the same processors, so the last answer is kept."""
    global _seen
    processors = task.processors
    seen, found = _seen
    if seen is not processors:
        found = [p for p in processors if isinstance(p, ScanObserver)]
        _seen = (processors, found)
    return found


def open_journal(path: str, plans: dict[str, ScanOptions], new_run: bool = False) -> Journal:
    """The run's journal (one per path and process), holding a section per host of
    ``plans``; ``JournalMismatch`` names a host whose scan differs from its section's.
    ``new_run``: a run's first batch, which reads the file again (an earlier run of this
    process may have recorded more since it was read)."""
    from ...engine.io.journal import shared_journal  # only a run that keeps a journal

    return shared_journal(path, "run", {name: options.plan or options.make_plan()
                                        for name, options in plans.items()},
                          reopen=new_run)


def _resumed(journal: Journal, host: str) -> Resumed:
    """Where a host's scan stands in the run's journal."""
    section = journal.section(host)
    replayed = list(section.replayed or [])
    if section.done:  # every outcome is in the journal: nothing to probe
        return Resumed(replayed, None, lambda outcome: None, lambda: None)
    recorder = journal.recorder(host)
    return Resumed(replayed, resume_point(section.decided), recorder.add,
                   lambda: journal.mark_done(host, recorder))


def submit(host: str, options: ScanOptions, watchers: list[ScanObserver],
           journal: Journal | None = None,
           on_ready: Callable[[], None] | None = None) -> Pending:
    """Hand one host's scan to the process's engine; watchers hear every outcome, and
    ``on_ready`` its end. With a
    ``journal``, what it decided before comes first and only the rest is probed. A scan on
    a Dask cluster bypasses the engine, and with it the run's rate cap (``run --rate``):
    it shares that cap with the run's other cluster scans instead."""
    plan = options.plan or options.make_plan()
    planned = plan.spec.count() * len(plan.ports)
    callback: Callable[[ProbeOutcome], None] | None = None
    if watchers:
        def callback(outcome: ProbeOutcome) -> None:
            for w in watchers:
                w.probe_done(outcome)
        for w in watchers:
            w.scan_submitted(host, planned)
    resumed = None if journal is None else _resumed(journal, host)
    if plan.cluster is not None:  # this host's scan runs on a Dask cluster, not here
        from ...engine.shards.cluster import ClusterJob  # here: Dask's side loads on use

        job = ClusterJob(plan, on_outcome=callback, resumed=resumed,
                         shared_rate=shared_engine().rate)
        if on_ready is not None:
            job.when_done(on_ready)
        return Pending(job, planned, options)
    on_end = None if on_ready is None else (lambda error: on_ready())
    return Pending(shared_engine().submit(plan, on_outcome=callback, resumed=resumed,
                                          on_end=on_end), planned, options)


def _run_hosts(task: Task) -> list[Host]:
    """The hosts nornir is running this task on, as far as a task can tell.

    nr.run skips failed hosts unless asked; a task cannot see on_good/on_failed, so it
    takes the hosts that share its own host's failed state.
    """
    failed = task.nornir.data.failed_hosts
    mine = task.host.name in failed
    return [h for name, h in task.nornir.inventory.hosts.items() if (name in failed) == mine]


def claim(task: Task, args: dict[str, object],
          resume: str | None = None) -> tuple[ScanOptions, Pending]:
    """This host's options and scan: resolved and submitted by the run's first task, or
    now. Raises the ``PortscanError`` of invalid input (the host's own data, the config,
    another run's journal)."""
    watchers = observers(task)
    name = task.host.name
    if task.parent_task is not None:
        return _alone(task, args, watchers, resume)
    state = _state_of(task.nornir)
    # The usual case, with no lock: the host's task takes what its batch's first task
    # submitted for it (a dict's pop is atomic). A run's 20 threads taking the run's lock
    # for each of its hosts, one after the other, cost a 4,094-host run a third of a
    # second. A batch closed after the pop is as if this task had taken the lock first.
    batch = state.batch
    if batch is not None and not batch.closed and batch.same(args, resume):
        entry = batch.pending.pop(name, None)
        if entry is not None and not batch.closed:
            return _taken(entry)
    with state.lock:
        batch = state.batch
        entry = None if batch is None else batch.pending.pop(name, None)
        fresh = batch is not None and not batch.over(name, entry)
        if fresh and batch is not None:
            if entry is not None and batch.same(args, resume):
                return _taken(entry)
            if name not in batch.members:
                return _alone(task, args, watchers, resume)
        with collector_paused():
            batch = _submit_batch(task.nornir, state, _run_hosts(task), args, watchers,
                                  resume)
        return _taken(batch.pending.pop(name))


def start_run(task: Task, hosts: list[Host], args: dict[str, object],
              resume: str | None = None) -> queue.SimpleQueue[str]:
    """Submit the scans of a run's ``hosts`` before any of their tasks runs, as the run's
    first task would, and hand back the names of the hosts whose scans are in, as they
    come in: a runner that takes hosts in that order (plugins/runner.py) waits on no one
    host. ``args`` and ``resume`` must be what the hosts' tasks claim with; each task then
    takes its scan as usual. Raises ``Abandoned`` once the run stopped waiting."""
    state = _state_of(task.nornir)
    with state.lock, collector_paused():
        return _submit_batch(task.nornir, state, hosts, args, observers(task), resume).ready


def _state_of(nornir: Nornir) -> _RunState:
    state = _states.get(nornir)
    if state is None:
        with _states_lock:
            state = _states.setdefault(nornir, _RunState())
    return state


def _taken(entry: Pending | PortscanError) -> tuple[ScanOptions, Pending]:
    if isinstance(entry, PortscanError):
        raise entry
    assert entry.options is not None
    return entry.options, entry


def _not_let_go() -> None:
    """A run that stopped waiting (an interrupt) starts no scan: its tasks may still run,
    to hand over the scans that finished (cli/run.py), but a task that would submit a
    scan, its own or a new batch's, lets go instead."""
    if waiting_stopped():
        raise Abandoned("the run stopped: no new scan")


def _alone(task: Task, args: dict[str, object], watchers: list[ScanObserver],
           resume: str | None) -> tuple[ScanOptions, Pending]:
    _not_let_go()
    name = task.host.name
    options = resolve_options(task.host, args, run=run_settings(task.nornir.config))
    journal = None if resume is None else open_journal(resume, {name: options})
    return options, submit(name, options, watchers, journal)


def _submit_batch(nornir: Nornir, state: _RunState, run_hosts: list[Host],
                  args: dict[str, object], watchers: list[ScanObserver],
                  resume: str | None) -> _Batch:
    """Resolve and submit every host of the run, as the run's batch; an invalid host's
    error waits for its own task."""
    _not_let_go()
    if state.batch is not None:  # its leftovers would be stale results: tasks stop taking them
        state.batch.closed = True
    resolver = RunOptions(args, run_settings(nornir.config))
    hosts = {host.name: host for host in run_hosts}
    batch = _Batch(set(hosts), args, resume)  # filled here, seen once it is complete
    pending, ready = batch.pending, batch.ready
    resolved: dict[str, ScanOptions | Addressed] = {}
    for host_name, host in hosts.items():
        try:
            resolved[host_name] = (resolver.resolve(host) if resume is not None
                                   else resolver.resolve_lean(host))
        except PortscanError as exc:
            pending[host_name] = exc
            ready.put(host_name)
    if resume is None:
        journal = None
        groups, alone = merged.group(resolved)
    else:  # the journal keeps a section per host: each host's own job
        valid = {n: resolver.full(hosts[n], o) for n, o in resolved.items()}
        journal = open_journal(resume, valid, new_run=True)
        groups, alone = [], list(valid)
    probe_done = _probe_done(watchers)
    for plan, members in groups:
        planned = len(plan.ports)  # each host's: one address
        for host_name, _ in members.values():
            for w in watchers:
                w.scan_submitted(host_name, planned)
        shares = merged.submit(plan, members, probe_done, ready.put)
        for host_name, options in members.values():
            pending[host_name] = Pending(shares[host_name], planned, options)
    for other in alone:
        try:
            options = resolver.full(hosts[other], resolved[other])
        except PortscanError as exc:  # not seen before: resolved alone only now
            pending[other] = exc
            ready.put(other)
            continue
        pending[other] = submit(other, options, watchers, journal,
                                functools.partial(ready.put, other))
    state.batch = batch
    return batch


def _probe_done(watchers: list[ScanObserver]) -> Callable[[ProbeOutcome], None] | None:
    if not watchers:
        return None

    def probe_done(outcome: ProbeOutcome) -> None:
        for w in watchers:
            w.probe_done(outcome)
    return probe_done
