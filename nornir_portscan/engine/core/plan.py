"""A scan, planned: targets and ports validated, options settled, before any socket exists.

Planning is its own module so every way of running a plan (one process, forked
shards, the shared engine of a nornir run) depends on it and on nothing above it. It is
pure: a nornir run plans a scan for every host, and none of that may touch the process
(the descriptor budget is taken by the I/O side when a plan runs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ...inputs.ports import parse_ports
from ...inputs.scope import DEFAULT_MAX_ADDRESSES, Scope, parse_networks
from ...inputs.settings import BY_NAME, PER_SCAN, settle
from ...inputs.targets import TargetSource, TargetSpec, parse_targets
from .work import JobOptions

#: Probes per second when targets lie beyond loopback and no rate was given: fast on a LAN,
#: yet far below what trips an IDS or fills a firewall's state table. ``rate=0`` lifts it.
DEFAULT_REMOTE_RATE = 10000.0

PortsArg = str | int | Iterable[str | int]
TargetsArg = str | Iterable[str] | TargetSpec


@dataclass(frozen=True)
class ScanPlan:
    """A validated scan: what and how, ready to run."""

    spec: TargetSource
    ports: tuple[int, ...]
    options: JobOptions
    # probes in flight asked for; None: as many as the descriptors allow. The I/O side
    # takes the budget (io/limits.py, which raises the open-file limit) when the plan runs
    concurrency: int | None
    rate: float | None
    shards: int | None = None  # worker processes; None decides from the scan's size
    cluster: str | None = None  # a Dask scheduler (tcp://host:port) or local:N; None: here
    max_addresses: int = DEFAULT_MAX_ADDRESSES  # the size guard, checked again on workers
    #: Every per-scan setting's value (inputs/settings.py), as the scan was asked for: the
    #: scan's identity (``scan_identity``), and where code acting on a setting reads it.
    settings: Mapping[str, Any] = field(default_factory=dict)


def plan_scan(targets: TargetsArg, ports: PortsArg, *, exclude: str | Iterable[str] = (),
              shards: int | None = None, **settings: Any) -> ScanPlan:
    """Validate a scan: targets, ports and every setting of inputs/settings.py (timeout,
    retries, concurrency, rate, worker_rate, discovery, banners, banner_wait, recheck,
    cluster, allowed, max_addresses), each by its one parser; None means "not given".
    ``SpecError`` names the bad value; an unknown setting is a ``TypeError``, as a
    misspelt keyword is."""
    unknown = sorted(set(settings) - set(BY_NAME))
    if unknown:
        raise TypeError(f"plan_scan() got unknown settings {', '.join(unknown)}; "
                        f"known: {', '.join(BY_NAME)}")
    values = settle(settings)
    spec = targets if isinstance(targets, TargetSpec) else parse_targets(targets, exclude)
    scope = Scope(parse_networks(values["allowed"]), values["max_addresses"])
    scope.check(spec)
    port_list = parse_ports(ports)
    options = JobOptions(timeout=values["timeout"], retries=values["retries"],
                         discovery=values["discovery"], banners=values["banners"],
                         banner_wait=values["banner_wait"], allowed=tuple(scope.allowed),
                         recheck=values["recheck"])
    return _from_targets(ScanPlan(spec, port_list, options, values["concurrency"] or None,
                                  values["rate"], shards, values["cluster"],
                                  values["max_addresses"],
                                  {s.name: values[s.name] for s in PER_SCAN}), spec)


def retarget(plan: ScanPlan, spec: TargetSource) -> ScanPlan:
    """The same scan of other targets: what a plan takes from its targets (the scope check,
    the default rate beyond loopback, discovery) taken anew, and nothing parsed again.
    A nornir run plans thousands of hosts that differ only in their address."""
    if isinstance(spec, TargetSpec):
        Scope(list(plan.options.allowed), plan.max_addresses).check(spec)
    return _from_targets(plan, spec)


def _from_targets(plan: ScanPlan, spec: TargetSource) -> ScanPlan:
    values = plan.settings
    rate = rate_for(plan, not isinstance(spec, TargetSpec) or spec.loopback_only())
    # discovery only pays when there is more than one host to tell apart
    discovery = bool(values.get("discovery", True)) and spec.count() > 1
    options = plan.options
    if options.discovery != discovery:
        options = replace(options, discovery=discovery)
    return replace(plan, spec=spec, options=options, rate=rate)


def rate_for(plan: ScanPlan, loopback: bool) -> float | None:
    """The rate cap of a plan's settings for targets within loopback or not."""
    values = plan.settings
    rate = values.get("rate")
    # a rate per vantage point asked for: the whole scan is capped only if asked as well
    # (the point of workers with rates of their own is that they add up)
    if rate is None and not values.get("worker_rate") and not loopback:
        rate = DEFAULT_REMOTE_RATE
    return rate or None
