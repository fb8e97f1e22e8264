"""A real Dask cluster for tests: a ``dask scheduler`` process and ``dask worker``
processes, started inside a namespace the test built (only its own loopback: the
scheduler's port clashes with nothing outside it).

Workers run without a nanny unless asked, so a signal sent to a worker's pid reaches the
process that runs the shards (a nanny's worker is a child of the nanny). They inherit
this process's environment, PYTHONPATH included, so they import the code under test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from netns import PYTHON, NetNS
from tiers import needs

SCHEDULER_PORT = 8786


@needs("cluster")
class DaskProcesses:
    """A scheduler at ``address`` and workers by name, in ``ns`` (or in namespaces of
    their own: ``worker_ns``)."""

    def __init__(self, ns: NetNS, host: str = "127.0.0.1") -> None:
        self.ns, self.host = ns, host
        self.address = f"tcp://{host}:{SCHEDULER_PORT}"
        self.workers: dict[str, subprocess.Popen[str]] = {}
        self.stopped: list[int] = []
        self.scheduler = ns.popen(PYTHON, "-m", "dask", "scheduler", "--host", host,
                                  "--port", str(SCHEDULER_PORT), "--no-dashboard",
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def add_worker(self, name: str, ns: NetNS | None = None, host: str | None = None,
                   nanny: bool = False, threads: int = 1) -> None:
        where = ns or self.ns
        argv = [PYTHON, "-m", "dask", "worker", self.address, "--name", name,
                "--nthreads", str(threads), "--no-dashboard",
                "--nanny" if nanny else "--no-nanny", "--death-timeout", "60"]
        if host is not None:
            argv += ["--host", host]
        self.workers[name] = where.popen(*argv, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)

    def wait_for_workers(self, count: int, timeout: float = 60) -> None:
        """Until the scheduler has ``count`` workers (asked from inside the namespace)."""
        code = ("import sys\nfrom distributed import Client\n"
                f"c = Client({self.address!r}, timeout={timeout})\n"
                f"c.wait_for_workers({count}, timeout={timeout})\nc.close()\n")
        self.ns.run_until_ok(PYTHON, "-c", code, what=f"the Dask cluster did not get {count} "
                             "workers", seconds=timeout, every=0.5, timeout=timeout + 30)

    def signal(self, name: str, sig: signal.Signals) -> int:
        pid = self.workers[name].pid
        os.kill(pid, sig)
        if sig == signal.SIGSTOP and pid not in self.stopped:
            self.stopped.append(pid)
        return pid

    def close(self) -> None:
        """Stop everything (a stopped worker is woken first, so it can die)."""
        for pid in self.stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        procs: list[Any] = [*self.workers.values(), self.scheduler]
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


@needs("cluster")
@contextmanager
def dask_lab(ns: NetNS, rules: str, listening: Iterable[tuple[str, int]],
             workers: Sequence[str] = ()) -> Iterator[DaskProcesses]:
    """A cluster test's lab in ``ns``: its nftables ``rules``, listeners on ``listening``
    (address, port), a scheduler, and ``workers`` started and joined (none: the test
    starts its own, to signal them). Everything stops at the end."""
    pytest.importorskip("distributed")
    if sys.platform != "linux":  # pragma: no cover
        pytest.skip("Linux only")
    ns.nft(rules)
    ns.listen([(address, port, None) for address, port in listening])
    procs = DaskProcesses(ns)
    try:
        for name in workers:
            procs.add_worker(name)
        if workers:
            procs.wait_for_workers(len(workers))
        yield procs
    finally:
        procs.close()
