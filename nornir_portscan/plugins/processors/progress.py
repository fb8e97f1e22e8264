"""A nornir Processor that shows scan progress on stderr: probes, hosts, open ports.

Host-level hooks alone would leave the bar at 0 % for most of a run, because the
first host task submits every host's scan (see tasks/runs.py) and the scans
finish together; so the processor also implements the tasks' ``ScanObserver``
interface, and the engine thread reports every probe outcome to it. The tasks
find it in ``task.processors``: no global registry, and two runs with two
processors never mix their counts.

Counters are guarded by one lock; rich is updated at most ``max_rate`` times a
second from the engine thread, so a big scan does not spend its time redrawing.
"""

from __future__ import annotations

import threading
import time

from nornir.core.inventory import Host
from nornir.core.task import AggregatedResult, MultiResult, Task
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from ...engine.core.outcome import PortState, ProbeOutcome


class ProgressProcessor:
    """``nr.with_processors([ProgressProcessor()]).run(task=portscan, ...)``."""

    def __init__(self, console: Console | None = None, transient: bool = False,
                 max_rate: float = 20.0) -> None:
        self.console = console or Console(stderr=True)
        self.transient = transient
        self.min_interval = 1.0 / max_rate if max_rate > 0 else 0.0
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._bar: TaskID | None = None
        self._last_push = 0.0
        self.probes_total = 0
        self.probes_done = 0
        self.hosts_total = 0
        self.hosts_done = 0
        self.open_found = 0
        self.subtasks_running = 0

    # ---- nornir's Processor interface -----------------------------------------------------

    def task_started(self, task: Task) -> None:
        failed = task.nornir.data.failed_hosts
        with self._lock:
            self.probes_total = self.probes_done = self.open_found = 0
            self.hosts_done = self.subtasks_running = 0
            # nr.run's default: hosts that have not failed (a task cannot see on_failed)
            self.hosts_total = sum(1 for name in task.nornir.inventory.hosts
                                   if name not in failed)
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            TextColumn("probes {task.completed:.0f}/{task.fields[probes]}"),
                            TextColumn("hosts {task.fields[hosts]}"),
                            TextColumn("open {task.fields[open]}"), TimeElapsedColumn(),
                            console=self.console, transient=self.transient)
        self._bar = progress.add_task(task.name, total=None, probes="?",
                                      hosts=f"0/{self.hosts_total}", open=0)
        self._progress = progress
        progress.start()

    def task_instance_started(self, task: Task, host: Host) -> None:
        self._push(force=False)

    def task_instance_completed(self, task: Task, host: Host, result: MultiResult) -> None:
        with self._lock:
            self.hosts_done += 1
            self.hosts_total = max(self.hosts_total, self.hosts_done)
        self._push(force=True)

    def subtask_instance_started(self, task: Task, host: Host) -> None:
        # a portscan inside a grouped task: its probes arrive through the observer calls
        with self._lock:
            self.subtasks_running += 1
        self._push(force=False)

    def subtask_instance_completed(self, task: Task, host: Host, result: MultiResult) -> None:
        with self._lock:
            self.subtasks_running = max(0, self.subtasks_running - 1)
        self._push(force=False)

    def task_completed(self, task: Task, result: AggregatedResult) -> None:
        self._push(force=True)
        progress, self._progress = self._progress, None
        if progress is not None:
            progress.stop()

    # ---- the tasks' ScanObserver interface ------------------------------------------------

    def scan_submitted(self, host: str, probes: int) -> None:
        with self._lock:
            self.probes_total += probes
        self._push(force=False)

    def probe_done(self, outcome: ProbeOutcome) -> None:
        with self._lock:
            self.probes_done += 1
            if outcome.state is PortState.OPEN:
                self.open_found += 1
            self.probes_total = max(self.probes_total, self.probes_done)
        self._push(force=False)

    def scan_collected(self, host: str, planned: int, probes: int) -> None:
        # the plan counted excluded addresses and names as one address: settle the total
        with self._lock:
            self.probes_total = max(self.probes_done, self.probes_total - planned + probes)
        self._push(force=False)

    # ---- drawing --------------------------------------------------------------------------

    def _push(self, force: bool) -> None:
        progress, bar = self._progress, self._bar
        if progress is None or bar is None:
            return
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_push < self.min_interval:
                return
            self._last_push = now
            done, total = self.probes_done, self.probes_total
            hosts = f"{self.hosts_done}/{self.hosts_total}"
            # under the lock: an engine-thread update read earlier must not land after
            # (and overwrite) the final one from nornir's thread
            progress.update(bar, completed=done, total=total or None,
                            probes=str(total) if total else "?", hosts=hosts,
                            open=self.open_found)
