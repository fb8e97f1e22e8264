"""``wait_for_ports``: block a runbook until a rebooted device's ports answer again.

Each round is an ordinary job on the shared engine (one try per port, since the
next round is the retry), and a port once seen open is not probed again: a
device coming back opens SSH before NETCONF, and re-probing SSH would only add
load. Rounds start ``interval`` seconds apart; the last one runs at the deadline,
so a port that opens just in time still counts.
"""

from __future__ import annotations

import time
from typing import Any

from nornir.core.task import Task

from ...engine.core.outcome import ProbeOutcome
from ...engine.io.service import shared_engine
from ...errors import PortscanError
from ...inputs.ports import parse_ports
from ...inputs.settings import BY_NAME, PER_RUN
from . import result as results
from .options import ScanOptions, resolve_options, run_settings
from .portscan import ScanResult

#: Per-try timeout when none is given: long enough for a slow WAN, short next to a deadline.
DEFAULT_TRY_TIMEOUT = 1.0


def _seconds(name: str, value: Any, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise PortscanError(f"argument {name}={value!r}: must be a number of seconds, "
                            f"{minimum:g} or more")
    return float(value)


def _setting(name: str, value: Any) -> float:
    """A scan setting's value, by its one parser (inputs/settings.py)."""
    try:
        return float(BY_NAME[name].parse(value))
    except PortscanError as exc:
        raise PortscanError(f"argument {name}={value!r}: {exc}") from None


def _round(options: ScanOptions, ports: tuple[int, ...], try_timeout: float) -> list[ProbeOutcome]:
    """One try per port, no discovery, within the run's scope guards; the host's other
    settings (banners, a cluster) are for its audits, not for waiting."""
    settings = {s.name: options.settings[s.name] for s in PER_RUN if s.name in options.settings}
    plan = ScanOptions(targets=options.targets, ports=ports, exclude=options.exclude,
                       settings={**settings, "timeout": try_timeout, "retries": 0,
                                 "discovery": False}).make_plan()
    return shared_engine().submit(plan).result()


def _never_open(latest: dict[tuple[str, int], ProbeOutcome], ports: tuple[int, ...],
                current: set[str]) -> dict[str, list[int]]:
    """Ports not yet seen open, on the addresses the targets stand for now (names move)."""
    missing: dict[str, list[int]] = {}
    for address in sorted(current):
        closed = [p for p in ports if (o := latest.get((address, p))) is None
                  or o.state.value != "open"]
        if closed:
            missing[address] = closed
    return missing


def _last(latest: dict[tuple[str, int], ProbeOutcome], address: str, port: int) -> str:
    o = latest.get((address, port))
    return "not probed" if o is None else f"{o.state} ({o.reason})"


def wait_for_ports(task: Task, ports: str | int | list[str | int], deadline: float = 300.0,
                   interval: float = 2.0, timeout: float | None = None,
                   targets: str | list[str] | None = None) -> ScanResult:
    """Probe until every port in ``ports`` is open on every target address, or fail at
    ``deadline`` seconds naming what never opened.

    Targets come from the argument, inventory ``portscan.targets`` or the hostname; the
    inventory's ``portscan.ports`` is ignored on purpose: waiting for every audited port
    would wait for ports nobody expects to open.
    """
    host = task.host
    try:
        try:
            wanted = parse_ports(ports)
        except PortscanError as exc:
            raise PortscanError(f"argument ports={ports!r}: {exc}") from None
        limit = _seconds("deadline", deadline, 0.0)
        pause = _seconds("interval", interval, 0.0)
        per_try = None if timeout is None else _setting("timeout", timeout)
        options = resolve_options(host, {"targets": targets, "ports": list(wanted),
                                         "expect": {}}, with_baseline=False,
                                  default_ports=None, run=run_settings(task.nornir.config))
    except PortscanError as exc:
        message = str(exc) if str(exc).startswith("host ") else f"host {host.name!r}: {exc}"
        return ScanResult(host=host, result=message, failed=True, exception=exc)
    started = time.monotonic()
    end = started + limit
    latest: dict[tuple[str, int], ProbeOutcome] = {}
    pending, rounds = wanted, 0
    while True:
        round_start = time.monotonic()
        try_timeout = min(per_try or DEFAULT_TRY_TIMEOUT, max(end - round_start, 0.05))
        try:
            outcomes = _round(options, pending, try_timeout)
        except Exception as exc:  # a failed scan is this host's Result
            return ScanResult(host=host, result=f"host {host.name!r}: scan failed: {exc}",
                              failed=True, exception=exc)
        rounds += 1
        if not outcomes:
            return ScanResult(host=host, failed=True,
                              result=f"host {host.name!r}: nothing to wait for: the targets "
                                     f"{list(options.targets)} are all excluded")
        for o in outcomes:
            latest[(o.host, o.port)] = o
        current = {o.host for o in outcomes}
        missing = _never_open(latest, wanted, current)
        pending = tuple(sorted({p for left in missing.values() for p in left}))
        now = time.monotonic()
        if not missing or now >= end:
            break
        time.sleep(max(0.0, min(round_start + pause - now, end - now)))
    doc = results.build(o for o in latest.values() if o.host in current)
    doc["waited_s"] = round(time.monotonic() - started, 3)
    doc["rounds"] = rounds
    if not missing:
        return ScanResult(host=host, result=doc, open_ports=doc["open"])
    doc["never_open"] = missing
    doc["violations"] = [
        f"{results.endpoint(address, port)} never opened within {limit:g} s, "
        f"last {_last(latest, address, port)}"
        for address, left in missing.items() for port in left]
    return ScanResult(host=host, result=doc, failed=True, open_ports=doc["open"],
                      violations=doc["violations"])
