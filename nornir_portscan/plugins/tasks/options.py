"""What one nornir host scans, and how: task arguments over inventory data.

Inventory data lives under the key ``portscan`` and is resolved key by key the
nornir way (the host, then its groups in inheritance order, then defaults), so a
group can set ``ports`` while a host adds only an ``expect``; a key set to null
still stops the search, which is how a host opts out of an inherited value.
``host.get`` is never used: it returns attributes before data.

Everything is validated here, before a socket exists, so a typo in one host's
data fails that host alone, with a message naming host, key, value and where the
value came from.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nornir.core.inventory import Host

from ...engine.core.plan import ScanPlan, parse_cluster, plan_scan
from ...errors import InventoryError, PortscanError, SpecError
from ...inputs.ports import parse_ports
from ...inputs.scope import DEFAULT_MAX_ADDRESSES
from ...inputs.targets import parse_targets
from .result import baseline_shape_error

DATA_KEY = "portscan"
KEYS = ("ports", "targets", "exclude", "timeout", "retries", "discovery", "banners", "expect",
        "baseline", "cluster", "worker_rate")
EXPECT_KEYS = ("open", "closed", "not_open", "only_open", "filtered")
#: What a host scans when neither arguments nor inventory name ports (as on the command line).
DEFAULT_PORTS = "top100"

ScanKey = tuple[object, ...]


@dataclass(frozen=True)
class ScanOptions:
    """One host's validated settings; ``key`` says which of them change the scan itself."""

    targets: tuple[str, ...]
    ports: tuple[int, ...]
    exclude: tuple[str, ...] = ()
    timeout: float | None = None
    retries: int | None = None
    discovery: bool = True
    banners: bool = False
    expect: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    baseline: Mapping[str, Any] | None = None
    #: The run's allow-list (nornir config ``portscan.allowed_networks``); () allows anything.
    allowed: tuple[str, ...] = ()
    #: The size guard (nornir config ``portscan.max_addresses``), per host's target list.
    max_addresses: int = DEFAULT_MAX_ADDRESSES
    #: A Dask cluster (tcp://HOST:PORT or local:N) that runs this host's scan; None: here.
    cluster: str | None = None
    #: Probes per second at most from each cluster worker (from this process, here).
    worker_rate: float | None = None
    #: Built by ``resolve_options``, so scope limits fail as invalid input, not mid-run.
    plan: ScanPlan | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> ScanKey:
        return (self.targets, self.ports, self.exclude, self.timeout, self.retries,
                self.discovery, self.banners, self.allowed, self.max_addresses, self.cluster,
                self.worker_rate)

    def make_plan(self) -> ScanPlan:
        return plan_scan(list(self.targets), self.ports, exclude=list(self.exclude),
                         timeout=self.timeout, retries=self.retries, discovery=self.discovery,
                         banners=self.banners, allowed=self.allowed,
                         max_addresses=self.max_addresses, cluster=self.cluster,
                         worker_rate=self.worker_rate)


class _Value:
    """A setting and where it came from, so an error can point at the right file entry."""

    __slots__ = ("host", "key", "source", "value")

    def __init__(self, host: str, key: str, value: Any, source: str) -> None:
        self.host, self.key, self.value, self.source = host, key, value, source

    def error(self, problem: str) -> PortscanError:
        if self.source == "argument":
            return PortscanError(f"host {self.host!r}: argument {self.key}={self.value!r}: "
                                 f"{problem}")
        return InventoryError(f"host {self.host!r}: {DATA_KEY}.{self.key} = {self.value!r} "
                              f"(inventory data of {self.source}): {problem}")


def _layers(host: Host) -> list[tuple[str, Any]]:
    """The ``portscan`` mappings that apply to a host, most specific first."""
    layers: list[tuple[str, Any]] = [(f"host {host.name!r}", host.data.get(DATA_KEY))]
    layers += [(f"group {g.name!r}", g.data.get(DATA_KEY)) for g in host.extended_groups()]
    layers.append(("defaults", host.defaults.data.get(DATA_KEY)))
    return [(source, data) for source, data in layers if data is not None]


def inventory_values(host: Host) -> dict[str, _Value]:
    """Each key's most specific inventory value; unknown keys fail wherever they appear."""
    found: dict[str, _Value] = {}
    for source, data in _layers(host):
        if not isinstance(data, Mapping):
            raise InventoryError(f"host {host.name!r}: {DATA_KEY} = {data!r} (inventory data "
                                 f"of {source}): must be a mapping of settings")
        for key, value in data.items():
            if key not in KEYS:
                raise InventoryError(f"host {host.name!r}: unknown key {DATA_KEY}.{key} = "
                                     f"{value!r} (inventory data of {source}); allowed: "
                                     f"{', '.join(KEYS)}")
            found.setdefault(key, _Value(host.name, key, value, source))
    return found


def _ports(v: _Value) -> tuple[int, ...]:
    try:
        return parse_ports(v.value)
    except SpecError as exc:
        raise v.error(str(exc)) from None


def _strings(v: _Value, what: str) -> tuple[str, ...]:
    value = v.value
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Iterable) or isinstance(items, Mapping) or not all(
            isinstance(x, str) for x in items):
        raise v.error(f"{what} must be a string or a list of strings")
    return tuple(items)


def _number(v: _Value) -> float:
    if isinstance(v.value, bool) or not isinstance(v.value, (int, float)) or not v.value > 0:
        raise v.error("must be a number of seconds greater than 0")
    return float(v.value)


def _count(v: _Value) -> int:
    if isinstance(v.value, bool) or not isinstance(v.value, int) or v.value < 0:
        raise v.error("must be a whole number, 0 or more")
    return v.value


def _rate(v: _Value) -> float | None:
    if isinstance(v.value, bool) or not isinstance(v.value, (int, float)) or v.value < 0:
        raise v.error("must be a number of probes per second, 0 (no cap) or more")
    return float(v.value) or None


def _flag(v: _Value) -> bool:
    if not isinstance(v.value, bool):
        raise v.error("must be true or false")
    return v.value


def _cluster(v: _Value) -> str:
    if not isinstance(v.value, str):
        raise v.error("must be a string: tcp://HOST:PORT or local:N")
    try:
        return parse_cluster(v.value)
    except SpecError as exc:
        raise v.error(str(exc)) from None


def _expect(v: _Value) -> dict[str, tuple[int, ...]]:
    if not isinstance(v.value, Mapping):
        raise v.error(f"must be a mapping of {', '.join(EXPECT_KEYS)} to port lists")
    out: dict[str, tuple[int, ...]] = {}
    for key, ports in v.value.items():
        if key not in EXPECT_KEYS:
            raise v.error(f"unknown expectation {key!r}; allowed: {', '.join(EXPECT_KEYS)}")
        try:
            out[key] = parse_ports(ports)
        except SpecError as exc:
            raise v.error(f"expect.{key}: {exc}") from None
    return out


@functools.lru_cache(maxsize=8)
def _read_json(path: str, mtime_ns: int, size: int) -> Any:
    """Parsed once per file version: every host of a run names the same baseline file."""
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def _baseline(v: _Value) -> Mapping[str, Any]:
    """A Result dict or the command line's saved JSON, given inline or as a file path."""
    value = v.value
    if isinstance(value, (str, os.PathLike)):
        try:
            st = os.stat(value)
            value = _read_json(os.path.realpath(value), st.st_mtime_ns, st.st_size)
        except OSError as exc:
            raise v.error(f"cannot read the baseline file: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise v.error(f"the baseline file is not valid JSON: {exc}") from None
    if not isinstance(value, Mapping) or not ("targets" in value or "hosts" in value):
        raise v.error("must be a previous scan: a Result dict (with 'targets') or the saved "
                      "JSON of the command line (with 'hosts'), or a path to such a file")
    problem = baseline_shape_error(value)
    if problem:
        raise v.error(f"is not a previous scan: {problem}")
    return value


def _default_target(host: Host) -> tuple[str, ...]:
    address = host.hostname or host.name
    try:
        parse_targets([address])
    except SpecError as exc:
        raise InventoryError(f"host {host.name!r}: hostname {address!r} cannot be scanned: "
                             f"{exc}") from None
    return (address,)


def _check_targets(v: _Value, entries: tuple[str, ...]) -> None:
    try:
        parse_targets(list(entries))
    except SpecError as exc:
        raise v.error(str(exc)) from None


def allowed_networks(config: Any) -> tuple[str, ...]:
    """The allow-list from a nornir config's ``user_defined.portscan.allowed_networks``."""
    section = (getattr(config, "user_defined", None) or {}).get(DATA_KEY) or {}
    if not isinstance(section, Mapping):
        raise InventoryError(f"nornir config user_defined.{DATA_KEY} must be a mapping, "
                             f"not {section!r}")
    value = section.get("allowed_networks") or ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InventoryError(f"nornir config user_defined.{DATA_KEY}.allowed_networks must be "
                             f"a list of networks, not {value!r}")
    return tuple(value)


def max_addresses(config: Any) -> int:
    """The size guard from a nornir config's ``user_defined.portscan.max_addresses``."""
    section = (getattr(config, "user_defined", None) or {}).get(DATA_KEY) or {}
    value = section.get("max_addresses", DEFAULT_MAX_ADDRESSES) if isinstance(
        section, Mapping) else DEFAULT_MAX_ADDRESSES
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InventoryError(f"nornir config user_defined.{DATA_KEY}.max_addresses must be a "
                             f"whole number of 1 or more, not {value!r}")
    return value


def resolve_options(host: Host, args: Mapping[str, Any], *, with_baseline: bool = True,
                    default_ports: str | None = DEFAULT_PORTS,
                    allowed: tuple[str, ...] = (),
                    max_addresses: int = DEFAULT_MAX_ADDRESSES) -> ScanOptions:
    """Merge ``args`` (None means "not given") over inventory data and validate the result.

    Expected ports are always scanned, so an expectation can never pass by not looking.
    ``with_baseline=False`` skips reading baseline files when only the scan matters.
    """
    values = inventory_values(host)
    for key, value in args.items():
        if value is not None:
            values[key] = _Value(host.name, key, value, "argument")
    given = {k: v for k, v in values.items() if v.value is not None}
    expect = _expect(given["expect"]) if "expect" in given else {}
    ports: set[int] = set(_ports(given["ports"])) if "ports" in given else set()
    if "ports" not in given and default_ports is not None:
        ports.update(parse_ports(default_ports))
    for listed in expect.values():
        ports.update(listed)
    if not ports:
        raise InventoryError(f"host {host.name!r}: no ports to scan: give ports")
    if "targets" in given:
        targets = _strings(given["targets"], "targets")
        _check_targets(given["targets"], targets)
    else:
        targets = _default_target(host)
    exclude = _strings(given["exclude"], "exclude") if "exclude" in given else ()
    if exclude:
        _check_targets(given["exclude"], exclude)
    options = ScanOptions(
        targets=targets, ports=tuple(sorted(ports)), exclude=exclude,
        timeout=_number(given["timeout"]) if "timeout" in given else None,
        retries=_count(given["retries"]) if "retries" in given else None,
        discovery=_flag(given["discovery"]) if "discovery" in given else True,
        banners=_flag(given["banners"]) if "banners" in given else False,
        expect=expect,
        baseline=_baseline(given["baseline"]) if with_baseline and "baseline" in given else None,
        allowed=allowed, max_addresses=max_addresses,
        cluster=_cluster(given["cluster"]) if "cluster" in given else None,
        worker_rate=_rate(given["worker_rate"]) if "worker_rate" in given else None)
    try:
        plan = options.make_plan()
    except (PortscanError, ValueError) as exc:
        source = given.get("targets")
        where = (f"targets {list(targets)!r}" if source is None
                 else f"{source.key} {source.value!r} ({source.source})")
        raise InventoryError(f"host {host.name!r}: cannot scan {where}: {exc}") from None
    return dataclasses.replace(options, plan=plan)
