"""A nornir runner for runs of ``portscan``: one thread, hosts taken as their scans finish.

A run of ``portscan`` scans all its hosts at once: the run's first task submits every
host's scan (tasks/runs.py), and each host's task then only waits for its own outcomes
and builds its Result. nornir's threaded runner gives those tasks 20 pool threads that
take turns at the interpreter, each turn a handoff between threads (often between
cores); its serial runner takes them in inventory order, so the hosts behind a slow one
wait for it, and so do their Results, the progress bar's host count and, on an
interrupt, the report. This runner submits the run's scans itself, then runs each host's
task as its scan comes in, on the calling thread: no host waits for another.

Any other task runs as nornir's serial runner would run it. ``run`` and ``monitor`` use
this runner where the config names nornir's threaded one (cli/inventory.py).
"""

from __future__ import annotations

import queue
from typing import TYPE_CHECKING, Any

from ..engine.core.errors import Abandoned
from ..engine.io.service import WAIT_POLL_S, waiting_stopped

if TYPE_CHECKING:
    from nornir.core.inventory import Host
    from nornir.core.task import AggregatedResult, MultiResult, Task


class PortscanRunner:
    """Runs each host's ``portscan`` task as its scan finishes, on one thread."""

    def run(self, task: Task, hosts: list[Host]) -> AggregatedResult:
        from nornir.core.task import AggregatedResult

        from .tasks.portscan import claim_arguments, portscan
        from .tasks.runs import start_run

        done: dict[str, MultiResult] = {}
        ready: queue.SimpleQueue[str] | None = None
        if task.task is portscan and hosts:
            params: dict[str, Any] = dict(task.params)
            args, resume = claim_arguments(**params)
            try:
                ready = start_run(task, hosts, args, resume)
            except Abandoned:  # the run stopped waiting: its tasks hand over what is in
                ready = None
        if ready is not None:
            by_name = {host.name: host for host in hosts}
            while len(done) < len(by_name):
                try:
                    name = ready.get(timeout=WAIT_POLL_S)
                except queue.Empty:
                    if waiting_stopped():
                        break  # an interrupt: the rest let go at once, below
                    continue
                if name not in done:
                    done[name] = task.copy().start(by_name[name])
        for host in hosts:  # another task; or what an interrupt left, which lets go
            if host.name not in done:
                done[host.name] = task.copy().start(host)
        result = AggregatedResult(task.name)
        for host in hosts:  # in the hosts' order, as nornir's runners give them
            result[host.name] = done[host.name]
        return result
