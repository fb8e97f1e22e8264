"""The schema of a nornir_portscan inventory, and broken inventories generated from it
(issue 14): every file, every key, every wrong type. test_broken_inventories.py runs them.

The keys come from the code that reads them (PortscanInventory's key sets, the ``portscan``
task's KEYS and EXPECT_KEYS, nornir's own Config classes, the plugins' signatures), so a
key added there is generated here. What each key accepts is stated below (``*_ACCEPTS``),
from docs/inventory.md, independently of the code: a case is generated only for a value
the documentation says is wrong. Every inventory is of loopback hosts, and no value
generated is a name that would be looked up (a host without an address is valid input,
so it is never generated).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nornir_portscan.cli.inventory import config_sections
from nornir_portscan.plugins.inventory import subnets
from nornir_portscan.plugins.tasks import options

# ---- the valid inventory every case breaks one thing of ----------------------------------

GROUPS = ("core", "base")
EXPANDED = "lab/127.0.0.2"  # the subnet's one address that is not the known host web


def base_files(d: Path, port: int, closed: int) -> dict[str, Any]:
    """Each kind of entry once, loopback only; a case adds the key it breaks. (Small on
    purpose: reading YAML is most of a case's time. ``full_files`` sets every key.)"""
    return {
        "config": {
            "inventory": {"plugin": "PortscanInventory", "options": {
                "host_file": str(d / "hosts.yaml"), "group_file": str(d / "groups.yaml"),
                "defaults_file": str(d / "defaults.yaml"),
                "subnet_file": str(d / "subnets.yaml")}},
            "runner": {"plugin": "threaded", "options": {"num_workers": 4}},
            "logging": {"enabled": False}},
        "hosts": {
            "web": {"hostname": "127.0.0.1", "groups": ["core"],
                    "data": {"portscan": {"ports": [port], "expect": {"open": [port]}}}},
            "solo": {"hostname": "127.0.0.3",
                     "data": {"portscan": {"ports": [closed], "expect": {"closed": [closed]}}}}},
        "groups": {"core": {"groups": ["base"], "data": {"portscan": {"timeout": 2.0}}},
                   "base": {"data": {"site": "lab"}}},
        "defaults": {"data": {"portscan": {"retries": 1}}},
        "subnets": {"lab": {"subnet": "127.0.0.0/30", "groups": ["core"],
                            "data": {"portscan": {"ports": [port]}}}},
    }


def full_files(d: Path, port: int, closed: int) -> dict[str, Any]:
    """Every key of every file set to a valid value: the control that nothing valid is
    refused."""
    attrs = {"port": 22, "username": "u", "password": "p", "platform": "linux"}
    connection = {"ssh": {"hostname": "127.0.0.1", **attrs, "extras": {"k": 1}}}
    docs = base_files(d, port, closed)
    docs["config"]["inventory"]["options"].update({"encoding": "utf-8", "max_hosts": 16})
    docs["config"].update({
        "logging": {"enabled": False, "level": "INFO", "log_file": str(d / "nornir.log"),
                    "format": "%(message)s", "to_console": False, "loggers": ["nornir"]},
        "ssh": {"config_file": str(d / "ssh_config")},
        "core": {"raise_on_error": False},
        "user_defined": {"portscan": {"allowed_networks": ["127.0.0.0/8"],
                                      "max_addresses": 256}, "team": "netops"}})
    docs["hosts"]["web"].update({**attrs, "connection_options": connection})
    docs["hosts"]["web"]["data"] = {"role": "web", "portscan": {
        "ports": [port], "targets": ["127.0.0.1"], "exclude": [], "timeout": 2.0,
        "retries": 1, "discovery": True, "banners": False, "baseline": None, "cluster": None,
        "recheck": 1.5, "seed": 12345,
        "expect": {"open": [port], "not_open": [closed], "closed": [closed],
                   "only_open": [port]}}}  # (filtered: no port is, on loopback)
    docs["groups"]["core"].update({**attrs, "connection_options": connection})
    docs["defaults"].update({**attrs, "connection_options": connection})
    docs["subnets"]["lab"].update({"subnet": "127.0.0.1/30",  # host bits: the same /30
                                   "exclude": ["127.0.0.3"], "max_hosts": 4,
                                   "name_format": "{entry}/{address}", **attrs,
                                   "connection_options": connection})
    return docs


FILES = ("config", "hosts", "groups", "defaults", "subnets")
#: The config option that names each inventory file.
OPTION = {"hosts": "host_file", "groups": "group_file", "defaults": "defaults_file",
          "subnets": "subnet_file"}
#: Where each file's entries sit, and how errors name them.
ENTRIES = {"hosts": ("web", "host 'web'"), "groups": ("core", "group 'core'"),
           "subnets": ("lab", "subnet entry 'lab'")}

# ---- junk: every wrong type, each with a marker its error line must show ------------------

JUNK: dict[str, tuple[Any, str]] = {
    "list": (["junk-item"], "junk-item"),
    "mapping": ({"junk-key": "junk-value"}, "junk-key"),
    "string": ("junk-text", "junk-text"),
    "int": (-7, "-7"),
    "float": (2.5, "2.5"),
    "bool": (True, "True"),
    "null": (None, "None|null"),
    "nested": ([{"junk-key": ["junk-item", {"deep": None}]}], "junk-key"),
}

# ---- what each key accepts (docs/inventory.md), independent of the code -------------------


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _none_or(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _port_spec(v: Any) -> bool:
    """A port list: a number, a spec string, or a list of numbers and names (no junk here
    is a known service name, so a generated string is never one)."""
    if _int(v):
        return bool(1 <= v <= 65535)
    if isinstance(v, list):
        return bool(v) and all(_int(x) and 1 <= x <= 65535 for x in v)
    return False


BAD_TARGETS = ("127.0.0.0/33", "300.1.1.1")


def _targets(allow_empty: bool) -> Callable[[Any], bool]:
    """Addresses, networks or names: any string is a name (and valid) unless known bad."""
    def check(v: Any) -> bool:
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            return False
        return (allow_empty or bool(items)) and not any(x in BAD_TARGETS for x in items)
    return _none_or(check)


def _expect(v: Any) -> bool:
    return isinstance(v, dict) and all(
        k in options.EXPECT_KEYS and _port_spec(x) for k, x in v.items())


def _seconds(v: Any) -> bool:
    """A number of seconds, 0 or more and finite (a string only as the command line would
    take it: no junk string is a number)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < float("inf")


TEXT = _none_or(lambda v: isinstance(v, str))
PORT = _none_or(lambda v: _int(v) and 1 <= v <= 65535)
MAPPING = _none_or(lambda v: isinstance(v, dict))
GROUP_LIST = _none_or(lambda v: isinstance(v, list) and all(x in GROUPS for x in v))


def _connection_options(v: Any) -> bool:
    return v is None or (isinstance(v, dict) and all(
        e is None or (isinstance(e, dict) and all(
            k in subnets.CONNECTION_KEYS and CONNECTION_ACCEPTS[k](x) for k, x in e.items()))
        for e in v.values()))


def _data(v: Any) -> bool:
    return v is None or (isinstance(v, dict) and PORTSCAN(v.get("portscan")))


def _portscan(v: Any) -> bool:
    return v is None or (isinstance(v, dict) and all(
        k in PORTSCAN_ACCEPTS and PORTSCAN_ACCEPTS[k](x) for k, x in v.items()))


PORTSCAN = _portscan
CONNECTION_ACCEPTS: dict[str, Callable[[Any], bool]] = {
    "hostname": TEXT, "port": PORT, "username": TEXT, "password": TEXT, "platform": TEXT,
    "extras": MAPPING}
ELEMENT_ACCEPTS: dict[str, Callable[[Any], bool]] = {
    "hostname": TEXT, "port": PORT, "username": TEXT, "password": TEXT, "platform": TEXT,
    "data": _data, "connection_options": _connection_options, "groups": GROUP_LIST}
SUBNET_ACCEPTS: dict[str, Callable[[Any], bool]] = {
    **ELEMENT_ACCEPTS,
    # required; generated strings are no CIDR. An address with host bits set names the
    # network it sits in (docs/inventory.md), so 127.0.0.1/30 is this /30 too.
    "subnet": lambda v: v in ("127.0.0.0/30", "127.0.0.1/30", "127.0.0.2/30", "127.0.0.3/30"),
    "exclude": _none_or(lambda v: v == [] or v == ["127.0.0.3"]),
    "max_hosts": _none_or(lambda v: _int(v) and v >= 2),  # the entry has 2 addresses
    "name_format": _none_or(lambda v: isinstance(v, str) and "{" not in v),
}
PORTSCAN_ACCEPTS: dict[str, Callable[[Any], bool]] = {
    "ports": _none_or(_port_spec), "targets": _targets(False), "exclude": _targets(True),
    "timeout": _none_or(lambda v: _seconds(v) and v > 0),  # seconds: a number, finite
    "recheck": _none_or(_seconds),  # seconds, 0 (none) or more
    "worker_rate": _none_or(_seconds),  # probes per second, 0 (no cap) or more, finite
    "retries": _none_or(lambda v: _int(v) and v >= 0),
    "seed": _none_or(lambda v: _int(v) and v >= 0),  # a whole number, 0 or more
    "discovery": _none_or(lambda v: isinstance(v, bool)),
    "banners": _none_or(lambda v: isinstance(v, bool)),
    "expect": _none_or(_expect),
    "baseline": lambda v: v is None,  # every generated baseline is junk or a bad file
    "cluster": lambda v: v is None,   # likewise (a valid one would start Dask)
}
#: The nornir config: what nornir declares, narrowed where the run needs more.
CONFIG_ACCEPTS: dict[str, Callable[[Any], bool]] = {
    "inventory.plugin": lambda v: v == "PortscanInventory",
    "inventory.options": lambda v: isinstance(v, dict) and not v,
    "inventory.transform_function": lambda v: False,  # no junk names an installed one
    "inventory.transform_function_options": lambda v: v == {},  # nothing would use them
    "runner.plugin": lambda v: v in ("threaded", "serial"),
    "runner.options": lambda v: v == {},
    "logging.enabled": lambda v: isinstance(v, bool),
    "logging.level": lambda v: isinstance(v, str) and v.upper() in ("DEBUG", "INFO"),
    "logging.log_file": lambda v: isinstance(v, str),
    "logging.format": lambda v: isinstance(v, str),
    "logging.to_console": lambda v: isinstance(v, bool),
    "logging.loggers": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "ssh.config_file": lambda v: False,  # a path: generated ones do not exist
    "core.raise_on_error": lambda v: isinstance(v, bool),
}
PLUGIN_OPTION_ACCEPTS: dict[str, Callable[[Any], bool]] = {
    "host_file": lambda v: v is None, "group_file": lambda v: v is None,
    "defaults_file": lambda v: v is None, "subnet_file": lambda v: v is None,
    "encoding": lambda v: False,  # no junk names an encoding
    "max_hosts": lambda v: _int(v) and v >= 1}  # the entry sets its own
RUNNER_OPTION_ACCEPTS: dict[str, Callable[[Any], bool]] = {
    "num_workers": lambda v: _int(v) and v >= 1}
USER_DEFINED_ACCEPTS: dict[str, Callable[[Any], bool]] = {
    "allowed_networks": lambda v: v is None,  # no junk is a network
    "max_addresses": _none_or(lambda v: _int(v) and v >= 1)}

# ---- cases ----------------------------------------------------------------------------------

DELETE = object()


@dataclass
class Case:
    """One broken inventory: what to change, and what its error line must name."""

    id: str
    file: str                          # the file that is broken ("config" included)
    path: tuple[str, ...] = ()         # key path inside it; () for the whole document
    value: Any = DELETE                # new value (DELETE removes the key)
    raw: bytes | None = None           # the file's bytes instead of a document
    shape: str = ""                    # "missing", "directory", "link": not a file
    names: list[str] = field(default_factory=list)  # regexes the error line must match
    data: bool = False                 # bad `portscan` data: the run goes ahead
    named: str = ""                    # the file the line names, when not ``file``

    def __post_init__(self) -> None:
        self.named = self.named or self.file


def _misspelt(key: str) -> str:
    return key[:-1] if len(key) > 3 else key + "x"


def _wrong(where: str, accepts: Callable[[Any], bool], extra: tuple[Any, ...] = ()
           ) -> Iterator[tuple[str, Any, str]]:
    """Every junk value the key refuses: (label, value, marker)."""
    for label, (value, marker) in JUNK.items():
        if not accepts(value):
            yield label, value, marker
    for value in extra:
        if not accepts(value):
            shown = value[-1] if isinstance(value, list) and value else value
            yield f"bad-{value!r}"[:40], value, re.escape(str(shown))


def _entry_cases(file: str, entry: tuple[str, ...], label: str,
                 keys: dict[str, Callable[[Any], bool]], data: bool) -> Iterator[Case]:
    """Every key of one entry (and of its connection options, its portscan data and its
    expectations): each wrong type, and the key misspelt."""
    names = [re.escape(label)]
    for key, accepts in keys.items():
        extra: tuple[Any, ...] = {"groups": (["nope"], ["core", "core", 5]),
                                  "subnet": ("127.0.0.1/30", "10.0.0.0/8", "127.0.0.0/33",
                                             "127.0.0.0/30/1", "300.0.0.0/30"),
                                  "exclude": ("127.0.0.300", ["::g"]),
                                  "name_format": ("{nope}", "{entry", "x-{index:d}-{address:d}"),
                                  "max_hosts": (0, 1)}.get(key, ())
        for label_, value, marker in _wrong(key, accepts, extra):
            yield Case(f"{file}-{key}-{label_}", file, (*entry, key), value,
                       names=[*names, re.escape(key), marker])
        yield Case(f"{file}-{key}-misspelt", file, (*entry, _misspelt(key)), "junk-text",
                   names=[*names, re.escape(_misspelt(key)), "junk-text"])
    if "subnet" in keys:
        yield Case(f"{file}-subnet-missing", file, (*entry, "subnet"), DELETE,
                   names=[*names, "subnet: required"])
    conn = (*entry, "connection_options", "ssh")
    for label_, value, marker in _wrong("ssh", _connection_options_entry, ()):
        yield Case(f"{file}-connection-ssh-{label_}", file, conn, value,
                   names=[*names, "connection_options 'ssh'", marker])
    for key in sorted(subnets.CONNECTION_KEYS):
        for label_, value, marker in _wrong(key, CONNECTION_ACCEPTS[key], (70000,)):
            yield Case(f"{file}-connection-{key}-{label_}", file, (*conn, key), value,
                       names=[*names, "connection_options 'ssh'", re.escape(key), marker])
    yield Case(f"{file}-connection-misspelt", file, (*conn, "usernam"), "junk-text",
               names=[*names, "'usernam'"])
    scan = (*entry, "data", "portscan")
    for label_, value, marker in _wrong("portscan", _portscan):
        yield Case(f"{file}-portscan-{label_}", file, scan, value, data=data,
                   names=[*names, "portscan", marker])
    for key in options.KEYS:
        if key not in PORTSCAN_ACCEPTS:
            continue  # a new key: test_broken_inventories asks for its documented values
        extra = {"targets": (list(BAD_TARGETS), "127.0.0.0/33", []),
                 "exclude": ("300.1.1.1",), "ports": (0, "22-", [22, 70000], {"22": 1}),
                 "timeout": (0, float("inf"), float("nan")), "cluster": ("local:0", "tcp://"),
                 "recheck": (-1, float("inf"), float("nan")),
                 "worker_rate": (-1, float("inf"), float("nan")),
                 "seed": (-1, 1.0, "12x"),
                 "baseline": ("baseline-missing.json", "baseline-not-json.json",
                              "baseline-wrong-shape.json", {"hosts": 5})}.get(key, ())
        for label_, value, marker in _wrong(key, PORTSCAN_ACCEPTS[key], extra):
            yield Case(f"{file}-portscan-{key}-{label_}", file, (*scan, key), value,
                       data=data, names=[*names, re.escape(f"portscan.{key}"), marker])
        yield Case(f"{file}-portscan-{key}-misspelt", file, (*scan, _misspelt(key)),
                   "junk-text", data=data,
                   names=[*names, re.escape(f"portscan.{_misspelt(key)}"), "unknown key"])
    for key in options.EXPECT_KEYS:
        for label_, value, marker in _wrong(key, _port_spec, ({"22": 1}, [0], "ssh-nope")):
            yield Case(f"{file}-expect-{key}-{label_}", file, (*scan, "expect", key), value,
                       data=data, names=[*names, re.escape(f"portscan.expect.{key}"), marker])
    yield Case(f"{file}-expect-misspelt", file, (*scan, "expect", "opened"), [22], data=data,
               names=[*names, re.escape("portscan.expect.opened"), "unknown expectation"])


def _connection_options_entry(v: Any) -> bool:
    return _connection_options({"ssh": v})


def _document_cases(file: str) -> Iterator[Case]:
    """The whole file: every wrong type, empty, malformed, not UTF-8, not a file.

    An empty hosts, defaults or subnets file is valid (the other files still define
    hosts); an empty groups file leaves web's group undefined, which hosts.yaml names.
    """
    def empty_is_valid(v: Any) -> bool:
        return v is None and file in ("hosts", "defaults", "subnets")

    for label, value, marker in _wrong(file, empty_is_valid):
        if value is None and file == "groups":
            yield Case(f"{file}-document-empty", file, (), value, named="hosts",
                       names=["host 'web'", "unknown group 'core'"])
        elif value is None:
            yield Case(f"{file}-document-empty", file, (), value, names=["empty"])
        else:
            yield Case(f"{file}-document-{label}", file, (), value, names=[marker])
    yield Case(f"{file}-malformed", file, raw=b"a: [unclosed\nb: 1\n",
               names=["line \\d+", "malformed YAML"])
    yield Case(f"{file}-duplicate-key", file, raw=b"a: {}\na: {}\n",
               names=["line \\d+", "malformed YAML", "duplicate key"])
    yield Case(f"{file}-python-tag", file, raw=b"a: !!python/object:os.system {}\n",
               names=["line \\d+", "malformed YAML"])
    yield Case(f"{file}-tab-indent", file, raw=b"a:\n\tb: 1\n", names=["line \\d+"])
    yield Case(f"{file}-not-utf8", file, raw=b"a: {b: \"\xff\xfe\"}\n", names=["utf-8"])
    yield Case(f"{file}-two-documents", file, raw=b"a: {}\n---\nb: {}\n",
               names=["line 2", "single document"])
    for shape, said in (("missing", "does not exist|not found"), ("directory", "directory"),
                        ("link", "link to .*nowhere.yaml, which does not exist|not found")):
        option = "config" if file == "config" else OPTION[file]
        yield Case(f"{file}-{shape}", file, shape=shape, names=[re.escape(option), said])


def _config_cases() -> Iterator[Case]:
    sections = config_sections()
    for section, keys in sections.items():
        yield Case(f"config-{section}-misspelt", "config", (_misspelt(section),), {},
                   names=[re.escape(f"'{_misspelt(section)}'"), "unknown key"])
        for label, value, marker in _wrong(section, lambda v: False):
            if isinstance(value, dict):
                continue  # a mapping of unknown keys: below
            yield Case(f"config-{section}-{label}", "config", (section,), value,
                       names=[re.escape(section), marker])
        for key in keys:
            dotted = f"{section}.{key}"
            accepts = CONFIG_ACCEPTS[dotted]
            extra = {"logging.level": ("LOUD",), "inventory.plugin": ("threaded", "Nope"),
                     "runner.plugin": ("PortscanInventory", "Nope")}.get(dotted, ())
            for label, value, marker in _wrong(dotted, accepts, extra):
                yield Case(f"config-{dotted}-{label}", "config", (section, key), value,
                           names=[re.escape(dotted if not isinstance(value, dict)
                                            else section), marker])
            yield Case(f"config-{dotted}-misspelt", "config", (section, _misspelt(key)), "x",
                       names=[re.escape(section), re.escape(f"'{_misspelt(key)}'")])
    for label, value, marker in _wrong("user_defined", lambda v: isinstance(v, dict)):
        yield Case(f"config-user_defined-{label}", "config", ("user_defined",), value,
                   names=["user_defined", marker])
    for label, value, marker in _wrong("portscan", lambda v: v is None):
        yield Case(f"config-user_defined.portscan-{label}", "config",
                   ("user_defined", "portscan"), value, names=["user_defined.portscan", marker])
    for key in options.CONFIG_KEYS:
        for label, value, marker in _wrong(key, USER_DEFINED_ACCEPTS[key],
                                           ("127.0.0.0/33", ["127.0.0.0/33"], 0)):
            yield Case(f"config-user_defined.portscan.{key}-{label}", "config",
                       ("user_defined", "portscan", key), value,
                       names=[re.escape(f"user_defined.portscan.{key}"), marker])
    yield Case("config-user_defined.portscan-unknown", "config",
               ("user_defined", "portscan", "allowed_network"), ["127.0.0.0/8"],
               names=["user_defined.portscan.allowed_network", "unknown key"])
    plugin_options = ("inventory", "options")
    for key, accepts in PLUGIN_OPTION_ACCEPTS.items():
        for label, value, marker in _wrong(key, accepts, ("nope-codec", 0, 1)):
            yield Case(f"config-inventory.options.{key}-{label}", "config",
                       (*plugin_options, key), value,
                       names=[re.escape(f"inventory.options.{key}"), marker])
        typo = key.replace("_", "s_", 1) if "_" in key else _misspelt(key)  # hosts_file
        yield Case(f"config-inventory.options.{key}-misspelt", "config",
                   (*plugin_options, typo), "x",
                   names=["inventory.options", re.escape(f"unknown option '{typo}'"),
                          "allowed: host_file"])
    for key, accepts in RUNNER_OPTION_ACCEPTS.items():
        for label, value, marker in _wrong(key, accepts, (0,)):
            yield Case(f"config-runner.options.{key}-{label}", "config",
                       ("runner", "options", key), value,
                       names=[re.escape(f"runner.options.{key}"), marker])
    yield Case("config-runner.options-unknown", "config", ("runner", "options", "workers"), 4,
               names=["runner.options", "'workers'", "threaded"])


def generate() -> list[Case]:
    cases: list[Case] = []
    for file in FILES:
        cases += _document_cases(file)
    cases += _config_cases()
    for file, (name, label) in ENTRIES.items():
        keys = SUBNET_ACCEPTS if file == "subnets" else ELEMENT_ACCEPTS
        for label_, value, marker in _wrong(name, keys["subnet"] if file == "subnets"
                                            else _none_or(lambda v: isinstance(v, dict))):
            if file == "subnets" and isinstance(value, dict):
                continue  # a mapping of unknown keys: among the keys' cases
            yield_name = [re.escape(label), marker]
            cases.append(Case(f"{file}-entry-{label_}", file, (name,), value,
                              names=yield_name))
        cases += _entry_cases(file, (name,), label, keys, data=True)
    cases += _entry_cases("defaults", (), "defaults",
                          {k: v for k, v in ELEMENT_ACCEPTS.items() if k != "groups"}, True)
    cases += [
        Case("groups-cycle", "groups", ("base", "groups"), ["core"],
             names=["group '(core|base)'", "cycle"]),
        Case("subnets-name-taken", "subnets", ("lab", "name_format"), "solo",
             names=["subnet entry 'lab'", "'solo'", "already taken"]),
        # bad data no host runs into: a group without hosts, a subnet value web overrides
        Case("groups-unused-portscan", "groups", ("unused",),
             {"data": {"portscan": {"ports": "junk-text"}}}, data=True,
             names=["group 'unused'", re.escape("portscan.ports"), "junk-text"]),
        Case("subnets-shadowed-portscan", "subnets", ("shadow",),
             {"subnet": "127.0.0.1/32", "data": {"portscan": {"ports": "junk-text"}}},
             data=True, names=["subnet entry 'shadow'", re.escape("portscan.ports"),
                               "junk-text"]),
    ]
    seen: set[str] = set()
    for case in cases:  # ids must be unique for pytest; junk labels can collide
        while case.id in seen:
            case.id += "'"
        seen.add(case.id)
    return cases


CASES = generate()


# ---- writing a case ----------------------------------------------------------------------------


def set_path(doc: Any, path: tuple[str, ...], value: Any) -> Any:
    if not path:
        return value
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    if value is DELETE:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return doc


def write_case(d: Path, case: Case | None, port: int, closed: int, full: bool = False) -> Path:
    """The inventory with the case's one thing broken; returns the config file."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "ssh_config").write_text("", encoding="utf-8")
    (d / "baseline-not-json.json").write_text("{not json", encoding="utf-8")
    (d / "baseline-wrong-shape.json").write_text('{"hosts": [1]}', encoding="utf-8")
    docs = (full_files if full else base_files)(d, port, closed)
    if case is not None and case.raw is None and not case.shape:
        docs[case.file] = set_path(docs[case.file], case.path, case.value)
    for name, doc in docs.items():
        target = d / f"{name}.yaml"
        if case is not None and case.file == name and case.raw is not None:
            target.write_bytes(case.raw)
        elif case is not None and case.file == name and case.shape == "directory":
            target.mkdir()
        elif case is not None and case.file == name and case.shape == "missing":
            pass
        elif case is not None and case.file == name and case.shape == "link":
            target.symlink_to(d / "nowhere.yaml")  # a link to nothing
        elif doc is None:
            target.write_text("# nothing here\n", encoding="utf-8")
        else:
            # JSON is YAML (1.2, as nornir reads it): exactly the document meant, with
            # YAML's own words for the floats JSON has none for
            text = json.dumps(doc).replace("Infinity", ".inf").replace("NaN", ".nan")
            target.write_text(text, encoding="utf-8")
    return d / "config.yaml"
