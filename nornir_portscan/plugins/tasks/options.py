"""What one nornir host scans, and how: task arguments over inventory data.

Inventory data lives under the key ``portscan`` and is resolved key by key the
nornir way (the host, then its groups in inheritance order, then defaults), so a
group can set ``ports`` while a host adds only an ``expect``; a key set to null
still stops the search, which is how a host opts out of an inherited value.
``host.get`` is never used: it returns attributes before data.

Everything is validated here, before a socket exists, so a typo in one host's
data fails that host alone, with a message naming host, key, value and where the
value came from. The scan settings a host may set (timeout, retries, recheck, cluster
...) and the run-wide ones of the nornir config come from ``inputs/settings.py``: their
keys, arguments and parsers are not written here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nornir.core.inventory import Host

from ...engine.core.plan import ScanPlan, plan_scan
from ...errors import ConfigError, InventoryError, PortscanError, SpecError
from ...inputs.ports import parse_ports
from ...inputs.settings import BY_NAME, PER_HOST, PER_RUN, PER_SCAN, Setting, scan_key
from ...inputs.targets import parse_targets
from ..common.provenance import origin_of, written_data
from .baseline import BaselineError, load_baseline

DATA_KEY = "portscan"
#: What to scan, and what to check it against: the task's own keys.
TASK_KEYS = ("ports", "targets", "exclude", "expect", "baseline")
#: Every key of a ``portscan`` layer (and every task argument): the task's own, then the
#: settings a host may set (inputs/settings.py).
KEYS = (*TASK_KEYS, *(s.name for s in PER_HOST))
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
    #: The per-scan settings (inputs/settings.py) by name: the host's (its data, the task's
    #: arguments), the run's scope guards (the nornir config); a setting left out has its
    #: default.
    settings: Mapping[str, Any] = field(default_factory=dict)
    expect: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    baseline: Mapping[str, Any] | None = None
    #: Built by ``resolve_options``, so scope limits fail as invalid input, not mid-run.
    plan: ScanPlan | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> ScanKey:
        """What a pre-submitted scan must match to be this host's (runs.py): the targets,
        ports and every per-scan setting of the table, so none can be forgotten here."""
        return (self.targets, self.ports, self.exclude, *scan_key(self.settings))

    def make_plan(self) -> ScanPlan:
        return plan_scan(list(self.targets), self.ports, exclude=list(self.exclude),
                         **self.settings)


class DataError(InventoryError):
    """Bad ``portscan`` data, naming the file entry it was written in.

    ``where`` leaves the host out: a bad value in a group fails every host of the group,
    and the command line reports it once, not once per host.
    """

    def __init__(self, host: str | None, key: str, value: Any, origin: tuple[str | None, str],
                 problem: str) -> None:
        self.host, self.key, self.value, self.problem = host, key, value, problem
        self.file, self.entry = origin
        setting = f"{DATA_KEY}.{key}" if key else DATA_KEY
        shown = f"{setting} = {value!r:.80}"
        written = f"{self.entry} in {self.file}" if self.file else self.entry
        place = f"{self.file}: {self.entry}" if self.file else self.entry
        self.where = f"{place}: {shown}: {problem}"
        super().__init__(f"host {host!r}: {shown} (inventory data of {written}): {problem}"
                         if host is not None else self.where)


#: Where a key path inside one layer's ``portscan`` mapping was written: (file, entry).
Locate = Callable[[tuple[str, ...]], tuple[str | None, str]]


def _locator(element: object, label: str) -> Locate:
    """(file, entry) of values in an element's data; (None, label) for other plugins'."""
    def locate(path: tuple[str, ...]) -> tuple[str | None, str]:
        return origin_of(element, (DATA_KEY, *path)) or (None, label)
    return locate


def _fixed(origin: tuple[str, str]) -> Locate:
    def locate(path: tuple[str, ...]) -> tuple[str | None, str]:
        return origin
    return locate


class _Value:
    """A setting and where it came from, so an error can point at the right file entry.

    ``locate`` finds the file entry of a key path (None: a task argument).
    """

    __slots__ = ("host", "key", "label", "locate", "value")

    def __init__(self, host: str | None, key: str, value: Any, locate: Locate | None,
                 label: str = "argument") -> None:
        self.host, self.key, self.value = host, key, value
        self.locate, self.label = locate, label

    def error(self, problem: str, sub: str | None = None, sub_value: Any = None
              ) -> PortscanError:
        """``sub``: the key inside this setting the problem is in (an ``expect`` key), whose
        value ``sub_value`` is shown instead of the whole setting."""
        if self.locate is None:
            where = f"{self.key}.{sub}" if sub is not None else self.key
            value = sub_value if sub is not None else self.value
            return PortscanError(f"host {self.host!r}: argument {where}={value!r}: {problem}")
        if sub is None:
            return DataError(self.host, self.key, self.value, self.locate((self.key,)),
                             problem)
        return DataError(self.host, f"{self.key}.{sub}", sub_value,
                         self.locate((self.key, sub)), problem)


def _layers(host: Host) -> list[tuple[str, object, Any]]:
    """The ``portscan`` mappings that apply to a host, most specific first."""
    layers: list[tuple[str, object, Any]] = [
        (f"host {host.name!r}", host, host.data.get(DATA_KEY))]
    layers += [(f"group {g.name!r}", g, g.data.get(DATA_KEY)) for g in host.extended_groups()]
    layers.append(("defaults", host.defaults, host.defaults.data.get(DATA_KEY)))
    return [(label, element, data) for label, element, data in layers if data is not None]


def _unknown(what: str, key: str) -> str:
    """Why ``key`` is refused: unknown, or a setting that is not a host's to set."""
    setting = BY_NAME.get(key)
    why = ""
    if setting is not None and setting.config:
        why = f": {key} is the run's, set in the nornir config's user_defined.{DATA_KEY}." \
              f"{setting.config}"
    elif setting is not None and setting.per == "engine":
        why = f": {key} is the shared engine's, set by {setting.flags[0]} of run and monitor"
    elif setting is not None:
        why = f": {key} is set in Python only (plan_scan, scan)"
    return f"unknown {what}{why}; allowed: {', '.join(KEYS)}"


def check_layer(host: str | None, label: str, locate: Locate, data: Any,
                with_baseline: bool = True) -> dict[str, _Value]:
    """One element's own ``portscan`` settings, each checked on its own.

    Every layer is checked, not only the values a host ends up with: a bad value that a
    host happens to override is still a bad value in the file.
    """
    if not isinstance(data, Mapping):
        raise DataError(host, "", data, locate(()), "must be a mapping of settings")
    found: dict[str, _Value] = {}
    for key, value in data.items():
        v = _Value(host, str(key), value, locate, label)
        if key not in KEYS:
            raise v.error(_unknown("key", str(key)))
        if value is not None and (with_baseline or key != "baseline"):
            _CHECKS[key](v)
        found[key] = v
    return found


def data_errors(inventory: Any) -> list[DataError]:
    """The first problem of each entry's ``portscan`` data, over the whole inventory.

    Hosts find the problems of the layers they inherit when they run; this finds the rest
    too (a group no host is in, a subnet's value that a known host overrides), so that a
    bad value anywhere is reported, once, with its file entry.
    """
    layers: list[tuple[str, Locate, Any]] = []
    written = written_data(inventory.defaults)
    if written is not None:
        for origin, data in written:
            layers.append((origin[1], _fixed(origin), data))
    else:
        elements: list[tuple[str, object]] = [("defaults", inventory.defaults)]
        elements += [(f"group {n!r}", g) for n, g in inventory.groups.items()]
        elements += [(f"host {n!r}", h) for n, h in inventory.hosts.items()]
        layers += [(label, _locator(e, label), getattr(e, "data", None))
                   for label, e in elements]
    errors: list[DataError] = []
    for label, locate, data in layers:
        section = data.get(DATA_KEY) if isinstance(data, Mapping) else None
        if section is None:
            continue
        try:
            check_layer(None, label, locate, section)
        except DataError as exc:
            errors.append(exc)
    return errors


def inventory_values(host: Host, with_baseline: bool = True) -> dict[str, _Value]:
    """Each key's most specific inventory value; any layer's bad value fails the host."""
    found: dict[str, _Value] = {}
    for label, element, data in _layers(host):
        for key, v in check_layer(host.name, label, _locator(element, label), data,
                                  with_baseline).items():
            found.setdefault(key, v)
    return found


def _port_spec(ports: Any) -> tuple[int, ...]:
    """parse_ports, refusing a mapping (whose keys it would take as ports)."""
    if isinstance(ports, Mapping):
        raise SpecError(f"port list must be a string or a list, not a mapping {ports!r:.60}")
    return parse_ports(ports)


def _ports(v: _Value) -> tuple[int, ...]:
    try:
        return _port_spec(v.value)
    except SpecError as exc:
        raise v.error(str(exc)) from None


def _strings(v: _Value, what: str) -> tuple[str, ...]:
    value = v.value
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Iterable) or isinstance(items, Mapping) or not all(
            isinstance(x, str) for x in items):
        raise v.error(f"{what} must be a string or a list of strings")
    return tuple(items)


def _setting(setting: Setting) -> Callable[[_Value], object]:
    """A setting's one parser (inputs/settings.py), its problem named with the value's
    source."""
    def check(v: _Value) -> object:
        try:
            return setting.parse(v.value)
        except SpecError as exc:
            raise v.error(str(exc)) from None
    return check


def _expect(v: _Value) -> dict[str, tuple[int, ...]]:
    if not isinstance(v.value, Mapping):
        raise v.error(f"must be a mapping of {', '.join(EXPECT_KEYS)} to port lists")
    out: dict[str, tuple[int, ...]] = {}
    for key, ports in v.value.items():
        if key not in EXPECT_KEYS:
            raise v.error(f"unknown expectation; allowed: {', '.join(EXPECT_KEYS)}",
                          str(key), ports)
        try:
            out[key] = _port_spec(ports)
        except SpecError as exc:
            raise v.error(str(exc), key, ports) from None
    return out


def _baseline(v: _Value) -> Mapping[str, Any]:
    """A Result dict or the command line's saved JSON, given inline or as a file path."""
    try:
        return load_baseline(v.value)
    except BaselineError as exc:
        raise v.error(str(exc)) from None


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


def _targets(v: _Value) -> tuple[str, ...]:
    entries = _strings(v, v.key)
    if entries or v.key != "exclude":  # nothing to exclude is fine; nothing to scan is not
        _check_targets(v, entries)
    return entries


#: How each key of a ``portscan`` layer is checked (and read), in the order of KEYS.
_CHECKS: dict[str, Callable[[_Value], object]] = {
    "ports": _ports, "targets": _targets, "exclude": _targets, "expect": _expect,
    "baseline": _baseline, **{s.name: _setting(s) for s in PER_HOST}}


#: The keys of the nornir config's ``user_defined.portscan`` section: the run-wide settings.
_BY_CONFIG_KEY = {s.config: s for s in PER_RUN if s.config}
CONFIG_KEYS = tuple(_BY_CONFIG_KEY)


def _config_section(config: Any) -> Mapping[str, Any]:
    """``user_defined.portscan`` of a nornir config, checked whole: a bad value there
    concerns the run, and must not surface as the same failure on every host."""
    section = (getattr(config, "user_defined", None) or {}).get(DATA_KEY)
    check_config_section(section)
    return section or {}


def check_config_section(section: Any) -> None:
    """Raise ConfigError naming the key for anything wrong in ``user_defined.portscan``."""
    key = f"user_defined.{DATA_KEY}"
    if section is None:
        return
    if not isinstance(section, Mapping):
        raise ConfigError(key, f"must be a mapping of {', '.join(CONFIG_KEYS)}, "
                               f"not {section!r:.60}")
    for name, value in section.items():
        if name not in CONFIG_KEYS:
            raise ConfigError(f"{key}.{name}", f"unknown key (value {value!r:.60}); allowed: "
                                               f"{', '.join(CONFIG_KEYS)}")
        if value is None:
            continue
        try:
            _BY_CONFIG_KEY[name].parse(value)
        except SpecError as exc:
            raise ConfigError(f"{key}.{name}", f"{exc}, got {value!r:.60}") from None


def run_settings(config: Any) -> dict[str, Any]:
    """The run-wide settings of a nornir config's ``user_defined.portscan`` (the scope
    guards), by setting name; those not written are left out (their defaults apply)."""
    section = _config_section(config)
    return {s.name: s.parse(section[s.config]) for s in PER_RUN
            if s.config and section.get(s.config) is not None}


def resolve_options(host: Host, args: Mapping[str, Any], *, with_baseline: bool = True,
                    default_ports: str | None = DEFAULT_PORTS,
                    run: Mapping[str, Any] | None = None) -> ScanOptions:
    """Merge ``args`` (None means "not given") over inventory data and validate the result.

    ``run`` holds the run-wide settings (``run_settings`` of the nornir config). Expected
    ports are always scanned, so an expectation can never pass by not looking.
    ``with_baseline=False`` skips reading baseline files when only the scan matters.
    """
    values = inventory_values(host, with_baseline)
    for key, value in args.items():
        if key not in _CHECKS:
            raise PortscanError(f"host {host.name!r}: argument {key}={value!r:.60}: "
                                f"{_unknown('argument', key)}")
        if value is not None:
            values[key] = _Value(host.name, key, value, None)
    given = {k: v for k, v in values.items() if v.value is not None}
    expect = _expect(given["expect"]) if "expect" in given else {}
    ports: set[int] = set(_ports(given["ports"])) if "ports" in given else set()
    if "ports" not in given and default_ports is not None:
        ports.update(parse_ports(default_ports))
    for listed in expect.values():
        ports.update(listed)
    if not ports:
        raise InventoryError(f"host {host.name!r}: no ports to scan: give ports")
    targets = _targets(given["targets"]) if "targets" in given else _default_target(host)
    exclude = _targets(given["exclude"]) if "exclude" in given else ()
    settings = {s.name: s.default for s in PER_SCAN}
    settings.update(run or {})
    settings.update((s.name, _CHECKS[s.name](given[s.name])) for s in PER_HOST
                    if s.name in given)
    options = ScanOptions(
        targets=targets, ports=tuple(sorted(ports)), exclude=exclude, settings=settings,
        expect=expect,
        baseline=_baseline(given["baseline"]) if with_baseline and "baseline" in given else None)
    try:
        plan = options.make_plan()
    except (PortscanError, ValueError) as exc:
        source = given.get("targets")
        where = (f"targets {list(targets)!r}" if source is None
                 else f"{source.key} {source.value!r} ({source.label})")
        raise InventoryError(f"host {host.name!r}: cannot scan {where}: {exc}") from None
    return dataclasses.replace(options, plan=plan)
