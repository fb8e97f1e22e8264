"""``PortscanInventory``: nornir's SimpleInventory files plus subnets expanded to hosts.

Audits describe whole subnets, not devices, yet nornir filters and reports per
host; expanding each subnet into one host per address gives ``nr.filter`` and
per-address Results for free. This module is the inventory entry point, which
nornir imports at ``InitNornir`` time, so it imports only the standard library
and nornir, with nornir's own YAML library (ruamel.yaml, read the way SimpleInventory
reads it; ``nornir_portscan.errors`` is stdlib-only): a broken inventory
is reported before any scanner code loads, and listing inventories stays cheap.

Unlike SimpleInventory, unknown keys are errors: a misspelt ``group:`` that is
silently ignored puts a device outside every audit that filters on groups; and a
file named in an option must exist, or a typo in ``defaults_file`` would silently
drop every expectation the defaults hold.

Every element it makes remembers the file entry it was written in (``origin_of``),
so an error found later in a host's data, at scan time, can name that entry.
"""

from __future__ import annotations

import codecs
import copy
import ipaddress
import os
import pathlib
from collections.abc import Iterator, Mapping
from typing import Any

from nornir.core.inventory import (
    ConnectionOptions,
    Defaults,
    Group,
    Groups,
    Host,
    Hosts,
    Inventory,
    ParentGroups,
)
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from nornir_portscan.errors import InventoryError, OptionError

from ..common.collector import collector_paused
from ..common.provenance import Origin, sourced

DEFAULT_MAX_HOSTS = 4096
DEFAULT_NAME_FORMAT = "{entry}/{address}"

#: The keys each kind of entry may hold (the loader's checks and the tests' generator of
#: broken inventories both read these).
_ATTRS = ("hostname", "port", "username", "password", "platform")
DEFAULTS_KEYS = frozenset({*_ATTRS, "data", "connection_options"})
ELEMENT_KEYS = DEFAULTS_KEYS | {"groups"}
SUBNET_KEYS = frozenset({"subnet", "exclude", "groups", "data", "max_hosts", "name_format",
                          "port", "username", "password", "platform", "connection_options"})
CONNECTION_KEYS = frozenset({*_ATTRS, "extras"})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: What str.format can raise for a bad format string or a field it cannot look up.
_FORMAT_ERRORS = (KeyError, IndexError, ValueError, AttributeError, TypeError, OverflowError)
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SourcedHost(Host):
    """A nornir Host that knows its file entry, and the entries parts of its data came from."""

    __slots__ = ("filled", "origin")
    filled: dict[tuple[str, ...], Origin]
    origin: Origin


class SourcedGroup(Group):
    """A nornir Group that knows its file entry."""

    __slots__ = ("filled", "origin")


class SourcedDefaults(Defaults):
    """nornir's Defaults, knowing their file; shared by every element of one load, they
    also keep the ``data`` of every entry as written (``written_data``)."""

    __slots__ = ("filled", "origin", "written")
    written: list[tuple[Origin, Any]]


def _fail(path: pathlib.Path, where: str, message: str) -> InventoryError:
    return InventoryError(f"{path}: {where}: {message}" if where else f"{path}: {message}")


def missing_file(path: pathlib.Path) -> str | None:
    """Why ``path`` cannot be a file to read, or None when it is one."""
    if path.is_file():
        return None
    if path.is_dir():
        return f"{path} is a directory, not a file"
    where = "" if path.is_absolute() else f" (relative to the working directory {os.getcwd()})"
    if path.is_symlink():
        return f"{path} is a link to {os.readlink(path)}, which does not exist{where}"
    return f"{path} does not exist{where}"


def load_yaml_mapping(path: pathlib.Path, encoding: str = "utf-8",
                      expected: str = "a mapping of names to entries") -> dict[str, Any] | None:
    """A file's top-level mapping, or None for an empty file; any problem is one line
    naming the file (and the line, for malformed YAML)."""
    problem = missing_file(path)
    if problem is not None:
        raise InventoryError(problem)
    try:
        text = path.read_text(encoding=encoding)
    except OSError as exc:
        raise _fail(path, "", f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise _fail(path, f"line {line}", f"not {encoding} text: {exc.reason} "
                                          f"(byte {exc.object[exc.start]:#04x})") from None
    except LookupError:
        raise _fail(path, "", f"cannot read: unknown encoding {encoding!r}") from None
    try:
        doc = YAML(typ="safe").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        if context and problem.startswith("but "):  # "expected a single document ..."
            problem = f"{context}, {problem}"
        raise _fail(path, where, f"malformed YAML: {' '.join(problem.split())}") from None
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise _fail(path, "", f"expected {expected}, got {yaml_kind(doc)} {doc!r:.60}")
    return {str(k): v for k, v in doc.items()}


def yaml_kind(value: Any) -> str:
    """A value's YAML kind, for messages read by people who wrote YAML, not Python."""
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (int, "a number"), (float, "a number"),
                       (str, "a string"), (list, "a list"), (dict, "a mapping")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _check_keys(path: pathlib.Path, where: str, entry: Any,
                allowed: frozenset[str]) -> dict[str, Any]:
    if entry is None:
        return {}
    if not isinstance(entry, dict):
        raise _fail(path, where, f"expected a mapping, got {entry!r:.60}")
    for key, value in entry.items():
        if key not in allowed:
            raise _fail(path, where, f"unknown key {key!r} (value {value!r:.60}); "
                                     f"allowed: {', '.join(sorted(allowed))}")
    return entry


def _typed(path: pathlib.Path, where: str, key: str, value: Any,
           kind: type | tuple[type, ...], label: str) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise _fail(path, where, f"{key}: expected {label}, got {value!r:.60}")
    return value


def _str_list(path: pathlib.Path, where: str, key: str, value: Any,
              single: bool = True) -> list[str]:
    """A list of strings; ``single`` also takes one string alone as a list of one."""
    if value is None:
        return []
    if isinstance(value, str) and single:
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, where, f"{key}: expected a list of names, got {value!r:.60}")
    return list(value)


def _port(path: pathlib.Path, where: str, value: Any) -> int | None:
    port = _typed(path, where, "port", value, int, "a port number")
    if port is not None and not 1 <= port <= 65535:
        raise _fail(path, where, f"port: expected a port number (1-65535), got {port!r}")
    return port  # type: ignore[no-any-return]


def _connection_options(path: pathlib.Path, where: str,
                        value: Any) -> dict[str, ConnectionOptions]:
    options = _typed(path, where, "connection_options", value, dict, "a mapping") or {}
    out: dict[str, ConnectionOptions] = {}
    for name, raw in options.items():
        at = f"{where}: connection_options {name!r}"
        opts = _check_keys(path, at, raw, CONNECTION_KEYS)
        out[str(name)] = ConnectionOptions(
            **{k: _typed(path, at, k, opts.get(k), str, "a string")
               for k in ("hostname", "username", "password", "platform")},
            port=_port(path, at, opts.get("port")),
            extras=_typed(path, at, "extras", opts.get("extras"), dict, "a mapping"))
    return out


def _attributes(path: pathlib.Path, where: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes and data every element kind shares, type-checked."""
    attrs: dict[str, Any] = {
        name: _typed(path, where, name, entry.get(name), str, "a string")
        for name in ("hostname", "username", "password", "platform")}
    attrs["port"] = _port(path, where, entry.get("port"))
    attrs["data"] = copy.deepcopy(_typed(path, where, "data", entry.get("data"), dict,
                                         "a mapping")) or {}
    attrs["connection_options"] = _connection_options(path, where,
                                                      entry.get("connection_options"))
    return attrs


def _parent_groups(path: pathlib.Path, where: str, names: list[str],
                   groups: Groups) -> ParentGroups:
    parents = ParentGroups()
    for name in names:
        if name not in groups:
            raise _fail(path, where, f"groups: unknown group {name!r}")
        parents.add(groups[name])
    return parents


def _fill(target: dict[str, Any], extra: Mapping[str, Any], origin: Origin,
          filled: dict[tuple[str, ...], Origin], path: tuple[str, ...] = ()) -> None:
    """Add what ``target`` lacks, recursing into mappings: the target's own values win.
    ``filled`` learns which key paths came from ``origin``."""
    for key, value in extra.items():
        here = (*path, str(key))
        if key not in target:
            target[key] = copy.deepcopy(value)
            filled[here] = origin
        elif isinstance(target[key], dict) and isinstance(value, Mapping):
            _fill(target[key], value, origin, filled, here)


def _address_of(host: Host) -> IPAddress | None:
    """The address a known host answers on, when its inventory names one (no DNS lookups)."""
    for text in (host.hostname, host.name):
        if text:
            try:
                return ipaddress.ip_address(text)
            except ValueError:
                pass
    return None


def _host_count(net: IPNetwork) -> int:
    """Addresses ``hosts()`` yields: the network (and IPv4 broadcast) address is no host."""
    if net.version == 4:
        return net.num_addresses - 2 if net.prefixlen < 31 else net.num_addresses
    return net.num_addresses - 1 if net.prefixlen < 127 else net.num_addresses


def _format_problem(exc: Exception) -> str:
    """What str.format disliked, in a format string's terms, not Python's."""
    if isinstance(exc, KeyError):
        return f"unknown placeholder {{{exc.args[0]}}}"
    if isinstance(exc, IndexError):
        return "a placeholder without a name, such as {} or {0}"
    if isinstance(exc, (ValueError, OverflowError)) and "__" not in str(exc):
        return " ".join(str(exc).split())
    return "an attribute, index or format spec that does not fit its placeholder"


class _SubnetEntry:
    """One validated entry of the subnet file."""

    def __init__(self, path: pathlib.Path, name: str, raw: Any, groups: Groups,
                 default_limit: int) -> None:
        where = f"subnet entry {name!r}"
        entry = _check_keys(path, where, raw, SUBNET_KEYS)
        self.name = name
        text = entry.get("subnet")
        if not isinstance(text, str) or not text.strip():
            raise _fail(path, where, f"subnet: required, a CIDR such as 10.1.0.0/28, "
                                     f"got {text!r:.60}")
        try:
            # host bits name the network they sit in, as for scan's targets (docs/inventory.md)
            self.net: IPNetwork = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            # only here: loading an inventory imports no scanner code
            from nornir_portscan.inputs.targets import network_problem

            raise _fail(path, where, f"subnet: {text!r} is not a valid CIDR: "
                                     f"{network_problem(text)}") from None
        limit = _typed(path, where, "max_hosts", entry.get("max_hosts"), int, "a whole number")
        if limit is not None and limit < 1:
            raise _fail(path, where, f"max_hosts: must be 1 or more, got {limit!r}")
        count = _host_count(self.net)
        if count > (limit or default_limit):
            raise _fail(path, where, f"subnet {text!r} expands to {count} addresses, over the "
                                     f"limit of {limit or default_limit}; set max_hosts: "
                                     f"{count} on the entry to allow it")
        self.excludes: list[IPNetwork] = []
        for item in _str_list(path, where, "exclude", entry.get("exclude")):
            try:
                self.excludes.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise _fail(path, where, f"exclude: {item!r} is not an address or CIDR") from None
        self.name_format = _typed(path, where, "name_format", entry.get("name_format"), str,
                                  "a format string") or DEFAULT_NAME_FORMAT
        self.path, self.where = path, where
        self.host_name(self.net.network_address, 0)  # an unusable format fails here, early
        self.groups = _str_list(path, where, "groups", entry.get("groups"), single=False)
        _parent_groups(path, where, self.groups, groups)
        self.attrs = _attributes(path, where, entry)

    def host_name(self, address: IPAddress, index: int) -> str:
        try:
            return self.name_format.format(entry=self.name, address=address, index=index)
        except _FORMAT_ERRORS as exc:
            raise _fail(self.path, self.where,
                        f"name_format: {self.name_format!r} is not usable "
                        f"({_format_problem(exc)}); placeholders: {{entry}}, {{address}}, "
                        f"{{index}}") from None

    def addresses(self) -> Iterator[IPAddress]:
        for address in self.net.hosts() if _host_count(self.net) else ():
            if not any(address in ex for ex in self.excludes):
                yield address


class PortscanInventory:
    """SimpleInventory's host/group/defaults files, plus ``subnet_file`` expanded to hosts.

    Each file defaults to ``hosts.yaml``, ``groups.yaml``, ``defaults.yaml`` and
    ``subnets.yaml`` when present; a file named explicitly must exist, so a typo in a path
    is an error, not an empty inventory or defaults whose expectations are never checked.
    ``max_hosts`` caps every subnet (an entry may raise its own cap).
    """

    #: How errors in the options name the plugin (``simple()`` reads SimpleInventory's).
    plugin = "PortscanInventory"

    def __init__(self, host_file: str | None = None, group_file: str | None = None,
                 defaults_file: str | None = None, subnet_file: str | None = None,
                 encoding: str = "utf-8", max_hosts: int = DEFAULT_MAX_HOSTS) -> None:
        self.encoding = self._encoding(encoding)
        self.host_file, self.host_required = self._path("host_file", host_file, "hosts.yaml")
        self.group_file, _ = self._path("group_file", group_file, "groups.yaml")
        self.defaults_file, _ = self._path("defaults_file", defaults_file, "defaults.yaml")
        self.subnet_file: pathlib.Path | None
        self.subnet_file, self.subnet_required = self._path("subnet_file", subnet_file,
                                                            "subnets.yaml")
        if isinstance(max_hosts, bool) or not isinstance(max_hosts, int) or max_hosts < 1:
            raise OptionError(self.plugin, "max_hosts", f"must be a whole number of 1 or "
                                                        f"more, got {max_hosts!r}")
        self.max_hosts = max_hosts

    def _encoding(self, encoding: Any) -> str:
        if not isinstance(encoding, str):
            raise OptionError(self.plugin, "encoding", f"must be an encoding name such as "
                                                       f"utf-8, got {encoding!r:.60}")
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise OptionError(self.plugin, "encoding", f"unknown encoding {encoding!r:.60}"
                              ) from None
        return encoding

    def _path(self, option: str, value: Any, default: str) -> tuple[pathlib.Path, bool]:
        """The option's path and whether it was named; a named path must be a file."""
        if value is None:
            return pathlib.Path(default), False
        if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
            raise OptionError(self.plugin, option, f"must be a file path, got {value!r:.60}")
        path = pathlib.Path(value).expanduser()
        problem = missing_file(path)
        if problem is not None:
            raise OptionError(self.plugin, option, problem)
        return path, True

    def _read(self, path: pathlib.Path | None, required: bool) -> dict[str, Any] | None:
        """The file's entries; None for a default file that is not there."""
        if path is None or (not required and not path.exists()):
            return None
        return load_yaml_mapping(path, self.encoding) or {}

    def load(self) -> Inventory:
        hosts_doc = self._read(self.host_file, self.host_required)
        subnets_doc = self._read(self.subnet_file, self.subnet_required)
        if hosts_doc is None and subnets_doc is None:
            if self.subnet_file is None:
                raise OptionError(self.plugin, "host_file", f"not given, and the default "
                                                            f"{missing_file(self.host_file)}")
            raise OptionError(self.plugin, "host_file", f"not given, and neither "
                                                        f"{self.host_file} nor "
                                                        f"{self.subnet_file} exists: give "
                                                        f"host_file or subnet_file")
        defaults = self._defaults()
        groups = self._groups(defaults)
        hosts = Hosts()
        for name, raw in (hosts_doc or {}).items():
            hosts[name] = self._host(name, raw, groups, defaults)
        # before subnets fill in known hosts' data: as the files wrote it
        elements: list[Any] = [defaults, *groups.values(), *hosts.values()]
        defaults.written = [(e.origin, copy.deepcopy(e.data)) for e in elements]
        if subnets_doc:
            assert self.subnet_file is not None
            with collector_paused():  # a host is a few objects that all stay
                self._expand(self.subnet_file, subnets_doc, hosts, groups, defaults)
        return Inventory(hosts=hosts, groups=groups, defaults=defaults)

    def _defaults(self) -> SourcedDefaults:
        doc = self._read(self.defaults_file, False) or {}
        entry = _check_keys(self.defaults_file, "defaults", doc, DEFAULTS_KEYS)
        attrs = _attributes(self.defaults_file, "defaults", entry)
        defaults = SourcedDefaults(**attrs)
        sourced(defaults, (str(self.defaults_file), "defaults"))
        return defaults

    def _groups(self, defaults: Defaults) -> Groups:
        doc = self._read(self.group_file, False) or {}
        groups = Groups()
        parents: dict[str, list[str]] = {}
        for name, raw in doc.items():
            where = f"group {name!r}"
            entry = _check_keys(self.group_file, where, raw, ELEMENT_KEYS)
            parents[name] = _str_list(self.group_file, where, "groups", entry.get("groups"),
                                      single=False)
            groups[name] = sourced(SourcedGroup(name=name, defaults=defaults,
                                                 **_attributes(self.group_file, where, entry)),
                                    (str(self.group_file), where))
        for name, names in parents.items():
            groups[name].groups = _parent_groups(self.group_file, f"group {name!r}", names,
                                                 groups)
        self._check_cycles(parents)
        return groups

    def _check_cycles(self, parents: dict[str, list[str]]) -> None:
        """A group that is its own ancestor would send nornir's lookups into endless recursion."""
        done: set[str] = set()
        for start in parents:
            if start in done:
                continue
            path: list[str] = []
            on_path: set[str] = set()
            stack: list[tuple[str, Iterator[str]]] = [(start, iter(parents[start]))]
            path.append(start)
            on_path.add(start)
            while stack:
                name, children = stack[-1]
                child = next(children, None)
                if child is None:
                    stack.pop()
                    path.pop()
                    on_path.discard(name)
                    done.add(name)
                    continue
                if child in on_path:
                    loop = [*path[path.index(child):], child]
                    raise _fail(self.group_file, f"group {child!r}",
                                f"groups: cycle {' -> '.join(map(repr, loop))}")
                if child not in done:
                    stack.append((child, iter(parents[child])))
                    path.append(child)
                    on_path.add(child)

    def _host(self, name: str, raw: Any, groups: Groups, defaults: Defaults) -> Host:
        path, where = self.host_file, f"host {name!r}"
        entry = _check_keys(path, where, raw, ELEMENT_KEYS)
        parents = _parent_groups(path, where, _str_list(path, where, "groups",
                                                        entry.get("groups"), single=False),
                                 groups)
        return sourced(SourcedHost(name=name, groups=parents,  # type: ignore[no-any-return]
                                    defaults=defaults, **_attributes(path, where, entry)),
                        (str(path), where))

    def _expand(self, path: pathlib.Path, doc: dict[str, Any], hosts: Hosts, groups: Groups,
                defaults: SourcedDefaults) -> None:
        """One host per address; an address already in the inventory gains groups and data."""
        by_address: dict[IPAddress, SourcedHost] = {}
        for host in hosts.values():
            address = _address_of(host)
            if address is not None and isinstance(host, SourcedHost):
                by_address.setdefault(address, host)
        for entry_name, raw in doc.items():
            entry = _SubnetEntry(path, entry_name, raw, groups, self.max_hosts)
            origin = (str(path), entry.where)
            defaults.written.append((origin, entry.attrs["data"]))
            for index, address in enumerate(entry.addresses()):
                known = by_address.get(address)
                if known is not None:
                    for group in entry.groups:
                        known.groups.add(groups[group])
                    _fill(known.data, entry.attrs["data"], origin, known.filled)
                    continue
                text = str(address)
                name = (f"{entry.name}/{text}" if entry.name_format == DEFAULT_NAME_FORMAT
                        else entry.host_name(address, index))
                if name in hosts:
                    raise _fail(path, entry.where,
                                f"host name {name!r} made by name_format is already taken")
                # nornir completes a host's connection options in place: never share them
                attrs = dict(entry.attrs, hostname=text, data=_copied(entry.attrs["data"]),
                             connection_options=_copied(entry.attrs["connection_options"]))
                host = sourced(SourcedHost(name=name, defaults=defaults,
                                            groups=ParentGroups(groups[g] for g in entry.groups),
                                            **attrs), origin)
                hosts[name] = host
                by_address[address] = host


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _copied(value: Any) -> Any:
    """``copy.deepcopy`` of what YAML gives (dicts, lists, scalars) at a fifth of its cost,
    which a /16 pays 65,534 times; anything else goes through deepcopy."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        return {k: _copied(v) for k, v in value.items()}
    if kind is list:
        return [_copied(v) for v in value]
    return copy.deepcopy(value)


class SimpleFiles(PortscanInventory):
    """nornir's SimpleInventory files (no subnets), read with PortscanInventory's checks.

    ``nornir-portscan run`` reads a SimpleInventory config's files with this, so that a
    misspelt key or a missing ``group_file`` fails there as it fails here, instead of
    being skipped. The hosts file is required, as SimpleInventory requires it.
    """

    plugin = "SimpleInventory"

    def __init__(self, host_file: str | None = None, group_file: str | None = None,
                 defaults_file: str | None = None, encoding: str = "utf-8") -> None:
        super().__init__(host_file=host_file, group_file=group_file,
                         defaults_file=defaults_file, encoding=encoding)
        self.subnet_file, self.subnet_required = None, False
