"""A scan, planned: targets and ports validated, options settled, before any socket exists.

Planning is its own module so every way of running a plan (one process, forked
shards, the shared engine of a nornir run) depends on it and on nothing above it. It is
pure: a nornir run plans a scan for every host, and none of that may touch the process
(the descriptor budget is taken by the I/O side when a plan runs).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ...inputs.ports import parse_ports
from ...inputs.scope import DEFAULT_MAX_ADDRESSES, Scope, parse_networks
from ...inputs.settings import BY_NAME, settle
from ...inputs.targets import TargetSource, TargetSpec, parse_targets
from .work import JobOptions

#: Probes per second when targets lie beyond loopback and no rate was given: fast on a LAN,
#: yet far below what trips an IDS or fills a firewall's state table. ``rate=0`` lifts it.
DEFAULT_REMOTE_RATE = 10000.0

PortsArg = str | int | Iterable[str | int]
TargetsArg = str | Iterable[str] | TargetSpec


@dataclass(frozen=True)
class ScanSettings(Mapping[str, Any]):
    """Every setting's value (inputs/settings.py), typed, as the scan was asked for: each
    reader takes its field (``plan.settings.worker_rate``), parsed once by the setting's
    one parser, instead of a string key and a coercion of its own.

    One field per ``SETTINGS`` entry, in table order, with the table's default
    (tests/test_settings.py checks both): a new setting's row gets its field here. As a
    mapping (name -> value) it is what ``scan_identity`` and the reuse key read."""

    allowed: tuple[str, ...] = ()
    max_addresses: int = DEFAULT_MAX_ADDRESSES
    timeout: float | None = None
    retries: int | None = None
    concurrency: int | None = None
    rate: float | None = None
    worker_rate: float | None = None
    discovery: bool = True
    banners: bool = False
    banner_wait: float = 1.0
    recheck: float | None = None
    cluster: str | None = None
    seed: int | None = None  # None: the I/O side draws one when the plan runs (io/local.py)

    @classmethod
    def settle(cls, given: Mapping[str, Any]) -> ScanSettings:
        """Each given value parsed by its setting's parser, the defaults for the rest
        (``inputs.settings.settle``; ``SpecError`` names a bad value)."""
        return cls(**settle(given))

    def __getitem__(self, name: str) -> Any:
        if name not in BY_NAME:
            raise KeyError(name)
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return (f.name for f in fields(self))

    def __len__(self) -> int:
        return len(fields(self))


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
    #: Every setting's value, typed (``ScanSettings``), as the scan was asked for: the
    #: scan's identity (``scan_identity``), and where code acting on a setting reads it.
    settings: ScanSettings = field(default_factory=ScanSettings)


def plan_scan(targets: TargetsArg, ports: PortsArg, *, exclude: str | Iterable[str] = (),
              shards: int | None = None, **settings: Any) -> ScanPlan:
    """Validate a scan: targets, ports and every setting of inputs/settings.py (timeout,
    retries, concurrency, rate, worker_rate, discovery, banners, banner_wait, recheck,
    cluster, allowed, max_addresses, seed), each by its one parser; None means "not given".
    ``SpecError`` names the bad value; an unknown setting is a ``TypeError``, as a
    misspelt keyword is."""
    unknown = sorted(set(settings) - set(BY_NAME))
    if unknown:
        raise TypeError(f"plan_scan() got unknown settings {', '.join(unknown)}; "
                        f"known: {', '.join(BY_NAME)}")
    values = ScanSettings.settle(settings)
    spec = targets if isinstance(targets, TargetSpec) else parse_targets(targets, exclude)
    scope = Scope(parse_networks(values.allowed), values.max_addresses)
    scope.check(spec)
    port_list = parse_ports(ports)
    options = JobOptions(timeout=values.timeout, retries=values.retries,
                         discovery=values.discovery, banners=values.banners,
                         banner_wait=values.banner_wait, allowed=tuple(scope.allowed),
                         recheck=values.recheck)
    return _from_targets(ScanPlan(spec, port_list, options, values.concurrency or None,
                                  values.rate, shards, values.cluster, values.max_addresses,
                                  values), spec)


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
    discovery = values.discovery and spec.count() > 1
    options = plan.options
    if options.discovery != discovery:
        options = replace(options, discovery=discovery)
    return replace(plan, spec=spec, options=options, rate=rate)


def rate_for(plan: ScanPlan, loopback: bool) -> float | None:
    """The rate cap of a plan's settings for targets within loopback or not."""
    values = plan.settings
    rate = values.rate
    # a rate per vantage point asked for: the whole scan is capped only if asked as well
    # (the point of workers with rates of their own is that they add up)
    if rate is None and not values.worker_rate and not loopback:
        rate = DEFAULT_REMOTE_RATE
    return rate or None
