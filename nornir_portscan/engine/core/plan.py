"""A scan, planned: targets and ports validated, options settled, before any socket exists.

Planning is its own module so every way of running a plan (one process, forked
shards, the shared engine of a nornir run) depends on it and on nothing above it. It is
pure: a nornir run plans a scan for every host, and none of that may touch the process
(the descriptor budget is taken by the I/O side when a plan runs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ...errors import SpecError
from ...inputs.ports import parse_ports
from ...inputs.scope import DEFAULT_MAX_ADDRESSES, Scope, parse_networks
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
    # probes per second at most from each vantage point: each cluster worker's shards
    # together, or this process (and its process shards) on a local scan; None: no cap.
    # ``rate`` stays the whole scan's cap
    worker_rate: float | None = None


_CLUSTER = re.compile(r"tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})"
                      r"|local:([0-9]{1,3})")


def parse_cluster(value: str) -> str:
    """A cluster address as given (``tcp://HOST:PORT`` or ``local:N``), or ``SpecError``."""
    match = _CLUSTER.fullmatch(value.strip())
    if match is None:
        raise SpecError(f"cluster {value!r} is not tcp://HOST:PORT or local:N")
    port, workers = match.group(2), match.group(3)
    if port is not None and not 0 < int(port) < 65536:
        raise SpecError(f"cluster {value!r}: port {port} is out of range 1-65535")
    if workers is not None and not 0 < int(workers) <= 64:
        raise SpecError(f"cluster {value!r}: local workers must be 1-64")
    return value.strip()


def plan_scan(targets: TargetsArg, ports: PortsArg, *, exclude: str | Iterable[str] = (),
              timeout: float | None = None, retries: int | None = None,
              concurrency: int | None = None, rate: float | None = None,
              discovery: bool = True, banners: bool = False,
              banner_wait: float = 1.0, shards: int | None = None,
              allowed: Iterable[str] = (), max_addresses: int = DEFAULT_MAX_ADDRESSES,
              cluster: str | None = None, recheck: float | None = None,
              worker_rate: float | None = None) -> ScanPlan:
    cluster = None if cluster is None else parse_cluster(cluster)
    spec = targets if isinstance(targets, TargetSpec) else parse_targets(targets, exclude)
    scope = Scope(parse_networks(allowed), max_addresses)
    scope.check(spec)
    port_list = parse_ports(ports)
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be positive, not {timeout!r}")
    if retries is not None and retries < 0:
        raise ValueError(f"retries must be 0 or more, not {retries!r}")
    if rate is not None and rate < 0:
        raise ValueError(f"rate must be 0 (no cap) or positive, not {rate!r}")
    if worker_rate is not None and worker_rate < 0:
        raise ValueError(f"worker_rate must be 0 (no cap) or positive, not {worker_rate!r}")
    if recheck is not None and recheck < 0:
        raise ValueError(f"recheck must be 0 (none) or more seconds, not {recheck!r}")
    # a rate per vantage point asked for: the whole scan is capped only if asked as well
    # (the point of workers with rates of their own is that they add up)
    if (rate is None and not worker_rate and isinstance(spec, TargetSpec)
            and not spec.loopback_only()):
        rate = DEFAULT_REMOTE_RATE
    if rate == 0:
        rate = None
    if worker_rate == 0:
        worker_rate = None
    # discovery only pays when there is more than one host to tell apart
    discovery = discovery and spec.count() > 1
    options = JobOptions(timeout=timeout, retries=retries, discovery=discovery,
                         banners=banners, banner_wait=banner_wait,
                         allowed=tuple(scope.allowed), recheck=recheck)
    return ScanPlan(spec, port_list, options, concurrency, rate, shards,
                    cluster, max_addresses, worker_rate)

