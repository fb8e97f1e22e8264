"""The ``portscan`` task and its ``async`` twin ``aportscan``.

Both feed the process's one shared engine, never an engine per host, so
concurrency, adaptive timeouts and rate caps cover the whole inventory. The
threaded variant collects a scan the run's first task pre-submitted (runs.py);
the async variant submits its own, since coroutines do not queue behind workers.

Invalid input is returned as a failed Result with one line naming host, key and
value, not raised: nornir would print a traceback for a typo in a YAML file.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from nornir.core.inventory import Host
from nornir.core.task import Result, Task

from ...engine.core.outcome import ProbeOutcome
from ...errors import PortscanError
from ..common.ports import lookup
from ..common.shapes import PortEntry
from . import result as results
from .options import ScanOptions, resolve_options, run_settings
from .run_options import RunOptions
from .runs import Pending, claim, observers, open_journal, submit

if TYPE_CHECKING:
    import asyncio

    from ...engine.io.journal import Journal

PortsArg = str | int | list[str | int] | None
TargetsArg = str | list[str] | None


class ScanResult(Result):
    """nornir's Result with the scan's attributes declared, so type checkers know them.

    They are set on every ScanResult, empty when the host's input was invalid, so code
    reading ``r.open_ports`` across a run needs no special case for failed hosts.
    """

    open_ports: dict[str, list[int]]
    violations: list[str]
    summary: dict[str, int]

    def __init__(self, host: Host | None, result: Any = None, *,
                 open_ports: dict[str, list[int]] | None = None,
                 violations: list[str] | None = None, summary: dict[str, int] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(host, result, open_ports=open_ports or {},
                         violations=violations or [], summary=summary or {}, **kwargs)

    def port(self, address: str, port: int) -> PortEntry | None:
        """The entry of ``port`` on ``address`` (``state``, ``reason``, and for a port not
        folded into ``extraports`` its ``rtt_ms``, ``attempts``, ``banner``); None when it
        was not probed (or the host's scan failed)."""
        if not isinstance(self.result, dict):
            return None
        target = (self.result.get("targets") or {}).get(address)
        return None if target is None else lookup(target, int(port))

    def state(self, address: str, port: int) -> str | None:
        """``open``, ``closed``, ``filtered``, ``unreachable`` or ``error`` for a probed
        port, None for one that was not: the way to read a port, since ``ports`` lists only
        those that differ from the address's ``extraports``."""
        entry = self.port(address, port)
        return None if entry is None else str(entry.get("state"))


def _check_all_ports(host: Host, value: object) -> None:
    if not isinstance(value, bool):  # "false" would be true
        raise PortscanError(f"host {host.name!r}: argument all_ports={value!r:.60}: must be "
                            f"true or false")


def _invalid(host: Host, exc: PortscanError) -> ScanResult:
    return ScanResult(host=host, result=str(exc), failed=True, exception=exc)


def _scan_failed(host: Host, exc: Exception) -> ScanResult:
    return ScanResult(host=host, result=f"host {host.name!r}: scan failed: {exc}",
                      failed=True, exception=exc)


def _collected(task: Task, options: ScanOptions, pending: Pending,
               outcomes: list[ProbeOutcome], all_ports: bool) -> ScanResult:
    """Build the Result; tell progress watchers the real probe count (excludes shrink it)."""
    for watcher in observers(task):
        watcher.scan_collected(task.host.name, pending.planned, len(outcomes))
    return make_result(task.host, options, outcomes, all_ports, pending.handle.elapsed_s)


def make_result(host: Host, options: ScanOptions, outcomes: list[ProbeOutcome],
                all_ports: bool = False, elapsed_s: float | None = None) -> ScanResult:
    """The host's Result; ``all_ports`` lists every port, else the address's most common
    state is folded into ``extraports`` (plugins/common/ports.py)."""
    doc = results.build(outcomes, all_ports=all_ports)
    if elapsed_s is not None:  # submission to last outcome: the hosts' scans overlap
        doc["elapsed_s"] = round(elapsed_s, 3)
    targets = doc["targets"]
    doc["violations"] = violations = results.check(targets, options.expect)
    if options.expect:  # what was checked, so a report can say so of a host that passed
        doc["expect"] = {key: list(ports) for key, ports in options.expect.items()}
    errors = results.scan_errors(targets)
    if errors:
        doc["errors"] = errors
    changed, diff_text = False, ""
    if options.baseline is not None:
        old = results.baseline_targets(options.baseline, host.name)
        doc["diff"] = d = results.diff(old, targets)
        changed = results.changed(d)
        diff_text = results.diff_text(d, targets)
    return ScanResult(host=host, result=doc, changed=changed, diff=diff_text,
                      failed=bool(violations or errors), open_ports=doc["open"],
                      violations=violations, summary=doc["summary"])


def portscan(task: Task, ports: PortsArg = None, targets: TargetsArg = None, *,
             exclude: TargetsArg = None, expect: dict[str, Any] | None = None,
             baseline: Any = None, resume: str | None = None, all_ports: bool = False,
             **settings: Any) -> ScanResult:
    """Scan the host's address (or its ``portscan.targets``) on the shared engine.

    ``settings`` are the scan settings a host may set, by name (``timeout``, ``retries``,
    ``discovery``, ``banners``, ``recheck``, ``cluster``: inputs/settings.py declares
    them); an unknown one fails the host, naming it. Every argument left at None comes
    from inventory data under ``portscan``; see the Results documentation for the dict in
    ``Result.result``. ``failed`` means an expectation was violated, the input is invalid
    or the scan failed: closed ports alone never fail a host, since nornir would skip it
    in later runs. ``resume`` (a path) keeps the run's journal there: the same run after
    a crash takes each host's decided (address, port) outcomes from it and probes only
    the rest. The journal stays until the caller deletes it (once the results are safe
    elsewhere): it is not a scan setting, since where outcomes are kept changes none.
    ``all_ports`` lists every probed port in ``Result.result``; by default an address's
    most common state is given once as ``extraports`` (read ports with ``Result.state``).
    Neither is a scan setting: they change what is kept, not what is scanned.
    """
    args, resume_path = claim_arguments(ports, targets, exclude=exclude, expect=expect,
                                        baseline=baseline, resume=resume, **settings)
    try:
        _check_all_ports(task.host, all_ports)
        options, pending = claim(task, args, resume_path)
    except PortscanError as exc:  # invalid input, or the journal belongs to another run
        return _invalid(task.host, exc)
    except Exception as exc:
        return _scan_failed(task.host, exc)
    try:
        outcomes = pending.handle.result()
    except Exception as exc:  # a failed scan is this host's Result, not a crash
        return _scan_failed(task.host, exc)
    return _collected(task, options, pending, outcomes, all_ports)


def claim_arguments(ports: PortsArg = None, targets: TargetsArg = None, *,
                    exclude: TargetsArg = None, expect: dict[str, Any] | None = None,
                    baseline: Any = None, resume: str | None = None,
                    all_ports: bool = False, **settings: Any
                    ) -> tuple[dict[str, object], str | None]:
    """What a host's task claims its scan with (runs.claim), from the task's arguments:
    the run's batch is matched on exactly these, so a runner that submits the batch
    itself (plugins/runner.py) derives them here, as the task does."""
    return ({"ports": ports, "targets": targets, "exclude": exclude, "expect": expect,
             "baseline": baseline, **settings}, None if resume is None else str(resume))


def open_run_journal(nr: Any, path: str, **arguments: Any) -> Journal:
    """A whole run's journal, checked before anything runs: the same hosts, each with the
    same scan (``JournalMismatch`` otherwise; the file is left as it is). ``arguments``
    are the task's, as ``nr.run(task=portscan, ...)`` will get them; the run's tasks then
    share the journal opened here."""
    args = {k: v for k, v in arguments.items() if k not in ("baseline", "resume", "all_ports")}
    resolver = RunOptions(args, run_settings(nr.config), with_baseline=False)
    plans: dict[str, Any] = {}
    for name, host in nr.inventory.hosts.items():
        try:
            options = resolver.resolve(host)
        except PortscanError:
            continue  # its own task fails with the message
        plans[name] = options.plan or options.make_plan()
    from ...engine.io.journal import shared_journal  # only a run that keeps a journal

    return shared_journal(path, "run", plans, exact=True)


async def _gather(pending: Pending) -> list[ProbeOutcome]:
    """Await a handle without blocking the loop or borrowing the loop's default executor.

    The default executor has a few dozen threads: a thousand awaiting hosts would queue
    behind them. A plain daemon thread per scan only sleeps on the handle's queue.
    """
    import asyncio  # here: a threaded run (``nornir-portscan run``) starts without it

    loop = asyncio.get_running_loop()
    future: asyncio.Future[list[ProbeOutcome]] = loop.create_future()

    def deliver(outcomes: list[ProbeOutcome] | None, exc: BaseException | None) -> None:
        if future.done():
            return  # the awaiting coroutine was cancelled
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(outcomes or [])

    def drain() -> None:
        try:
            outcomes = pending.handle.result()
        except BaseException as exc:  # handed to the awaiting coroutine
            loop.call_soon_threadsafe(deliver, None, exc)
        else:
            loop.call_soon_threadsafe(deliver, outcomes, None)

    threading.Thread(target=drain, name="portscan-await", daemon=True).start()
    return await future


async def aportscan(task: Task, ports: PortsArg = None, targets: TargetsArg = None, *,
                    exclude: TargetsArg = None, expect: dict[str, Any] | None = None,
                    baseline: Any = None, resume: str | None = None,
                    all_ports: bool = False, **settings: Any) -> ScanResult:
    """``portscan`` for async callers: same arguments, same Result, same shared engine."""
    args = {"ports": ports, "targets": targets, "exclude": exclude, "expect": expect,
            "baseline": baseline, **settings}
    try:
        _check_all_ports(task.host, all_ports)
        options = resolve_options(task.host, args, run=run_settings(task.nornir.config))
    except PortscanError as exc:
        return _invalid(task.host, exc)
    try:
        journal = None if resume is None else open_journal(str(resume),
                                                            {task.host.name: options})
        pending = submit(task.host.name, options, observers(task), journal)
    except PortscanError as exc:  # the journal belongs to another run, say
        return _invalid(task.host, exc)
    except Exception as exc:
        return _scan_failed(task.host, exc)
    try:
        outcomes = await _gather(pending)
    except Exception as exc:  # a failed scan is this host's Result
        return _scan_failed(task.host, exc)
    return _collected(task, options, pending, outcomes, all_ports)
