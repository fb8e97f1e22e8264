"""Bad input to the inventory loader (issue 6): whatever the YAML files hold, InitNornir
with PortscanInventory either loads an inventory that nornir can use, or fails with the
project's own error naming the file (and, for a bad entry, the entry and key). Never
another exception.

The parsers' own properties (any text -> targets/ports or SpecError) are in
test_parsers_property.py. Nothing here touches the network.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from _nornir_support import init_nornir, write_yaml_files
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nornir.core import Nornir
from ruamel.yaml import YAML

from nornir_portscan.errors import InventoryError, PortscanError

SETTINGS = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

FILES = ("hosts", "groups", "defaults", "subnets")


def root_cause(exc: BaseException) -> BaseException:
    """nornir may wrap a plugin's exception: follow the chain to where it started."""
    seen = {id(exc)}
    while True:
        nxt = exc.__cause__ or exc.__context__
        if nxt is None or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt


def load(directory: Path) -> Nornir | PortscanError:
    """The inventory, or the project's error; anything else fails the test."""
    try:
        nr = init_nornir(directory)
    except Exception as exc:
        cause = root_cause(exc)
        if isinstance(exc, PortscanError):
            return exc
        if isinstance(cause, PortscanError):
            return cause
        raise AssertionError(f"{type(exc).__name__} escaped the loader: {exc}") from exc
    # usable: nornir resolves attributes and data through groups without trouble
    for host in nr.inventory.hosts.values():
        host.extended_groups()
        host.extended_data()
        _ = host.hostname, host.port, host.platform
    return nr


def names_a_file(error: PortscanError, directory: Path) -> bool:
    return any(str(directory / f"{name}.yaml") in str(error) for name in FILES)


# ---- generated documents ----------------------------------------------------------------------

ELEMENT_KEYS = ["hostname", "port", "username", "password", "platform", "data",
                "connection_options", "groups"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10, 70000),
                    st.floats(allow_nan=False, width=32), st.text(max_size=12),
                    st.sampled_from(["127.0.0.1", "lab", "22", "ssh", "linux"]))
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(ELEMENT_KEYS), st.text(max_size=6)),
                        children, max_size=3)),
    max_leaves=8)
GROUP_NAMES = st.sampled_from(["lab", "core", "edge"])


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a value the loader takes, sometimes anything: so that generated files get
    past their first check often enough to reach the later ones."""
    return st.integers(0, 19).flatmap(lambda i: VALUES if i == 19 else valid)


TEXT = mostly(st.sampled_from(["127.0.0.1", "linux", "admin"]))
PORT = mostly(st.integers(1, 65535))
DATA = mostly(st.dictionaries(st.sampled_from(["site", "role", "portscan"]), VALUES, max_size=2))
GROUP_LIST = mostly(st.lists(GROUP_NAMES, max_size=2))
SUBNET = mostly(st.sampled_from(["127.0.0.0/30", "127.0.0.4/31", "127.0.0.8/29", "::1/128",
                                 "fe80::/126", "127.0.0.0/33", "127.0.0.1/28", "127.0.0.0/24",
                                 "0.0.0.0/0", "::/0", " 127.0.0.0/30 "]))
NAME_FORMAT = mostly(st.one_of(
    st.sampled_from(["{entry}-{index}", "{entry}/{address}", "{address}", "{index:03d}",
                     "{host}", "{entry.upper}", "{entry.foo}", "{index[0]}", "{address[0]}",
                     "{address.version}", "{index:c}", "{address:d}", "{}", "{0}", "{entry!z}",
                     "{entry", "x", "{entry:>{index}}"]),
    st.lists(st.sampled_from([*"{}[]:.!0123dcxs_", "entry", "index", "address"]),
             max_size=8).map("".join)))
CONNECTION = mostly(st.dictionaries(
    st.sampled_from(["ssh", "netconf"]),
    mostly(st.fixed_dictionaries({}, optional={"hostname": TEXT, "port": PORT,
                                               "username": TEXT, "extras": DATA})),
    max_size=2))
COMMON = {"hostname": TEXT, "port": PORT, "username": TEXT, "password": TEXT,
          "platform": TEXT, "data": DATA, "connection_options": CONNECTION}
ELEMENT = st.fixed_dictionaries({}, optional={**COMMON, "groups": GROUP_LIST})
SUBNET_ENTRY = st.fixed_dictionaries(
    {"subnet": SUBNET},
    optional={**COMMON, "groups": GROUP_LIST, "name_format": NAME_FORMAT,
              "exclude": mostly(st.lists(st.sampled_from(["127.0.0.1", "127.0.0.0/31", "::1",
                                                          "127.0.0.300"]), max_size=2)),
              "max_hosts": mostly(st.integers(1, 300))})


def entries(shape: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """An entry of the right shape, one with an unknown key, or anything at all."""
    return st.integers(0, 19).flatmap(
        lambda i: VALUES if i == 19 else shape.map(lambda d: {**d, "colour": "blue"}) if i == 18
        else shape)


HOSTS_DOC = st.dictionaries(st.one_of(st.sampled_from(["r1", "r2", "127.0.0.1"]),
                                      st.text(max_size=6)),
                            entries(ELEMENT.map(lambda d: {"hostname": "127.0.0.1", **d})),
                            max_size=3)
GROUPS_DOC = st.dictionaries(GROUP_NAMES, entries(ELEMENT), max_size=3)
DEFAULTS_DOC = entries(ELEMENT.map(lambda d: {k: v for k, v in d.items() if k != "groups"}))
SUBNETS_DOC = st.dictionaries(st.sampled_from(["loop", "mgmt", "v6"]), entries(SUBNET_ENTRY),
                              max_size=3)
#: A whole document: usually a mapping, sometimes a list or scalar at the top.
ANY_DOC = st.one_of(VALUES, st.lists(VALUES, max_size=3))


def dump(doc: Any) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


def write(directory: Path, docs: dict[str, Any]) -> None:
    for name in FILES:
        (directory / f"{name}.yaml").unlink(missing_ok=True)
    for name, doc in docs.items():
        text = doc if isinstance(doc, str) else dump(doc)
        (directory / f"{name}.yaml").write_text(text, encoding="utf-8")


def check(directory: Path) -> None:
    outcome = load(directory)
    if isinstance(outcome, PortscanError):
        assert str(outcome)
        assert names_a_file(outcome, directory), f"no file named in: {outcome}"
        assert "\n" not in str(outcome), "one line, please"
        return
    # every host a subnet entry expanded is a real address (hosts.yaml may name a host with
    # a "/" itself, with any hostname: that one is the user's)
    written = directory / "hosts.yaml"
    # read as the plugin reads it (ruamel's safe loader takes texts PyYAML refuses: ":")
    doc = YAML(typ="safe").load(written.read_text(encoding="utf-8")) if written.exists() else None
    named = {str(k) for k in doc} if isinstance(doc, dict) else set()
    for host in outcome.inventory.hosts.values():
        if "/" in host.name and host.name not in named and host.hostname is not None:
            ipaddress.ip_address(host.hostname)


@SETTINGS
@given(hosts=HOSTS_DOC, groups=GROUPS_DOC, defaults=DEFAULTS_DOC, subnets=SUBNETS_DOC)
def test_generated_inventories_load_or_fail_cleanly(tmp_path: Path, hosts: Any, groups: Any,
                                                    defaults: Any, subnets: Any) -> None:
    write(tmp_path, {"hosts": hosts, "groups": groups, "defaults": defaults,
                     "subnets": subnets})
    check(tmp_path)


@SETTINGS
@given(subnets=SUBNETS_DOC)
def test_generated_subnet_files(tmp_path: Path, subnets: Any) -> None:
    """Only the subnet file varies, so its later checks (name_format, limits) are reached."""
    write(tmp_path, {"hosts": {"r1": {"hostname": "127.0.0.1"}},
                     "groups": {"lab": {}, "core": {}, "edge": {}}, "subnets": subnets})
    check(tmp_path)


@SETTINGS
@given(parents=st.fixed_dictionaries({g: st.lists(GROUP_NAMES, max_size=2)
                                      for g in ("lab", "core", "edge")}))
def test_generated_group_graphs(tmp_path: Path, parents: dict[str, list[str]]) -> None:
    """Any parent-group graph, cycles included, loads into groups nornir can walk, or fails."""
    write(tmp_path, {"hosts": {f"r-{g}": {"hostname": "127.0.0.1", "groups": [g]}
                               for g in parents},
                     "groups": {g: {"groups": p, "data": {g: 1}} for g, p in parents.items()}})
    check(tmp_path)


@SETTINGS
@given(which=st.sampled_from(FILES), doc=ANY_DOC)
def test_any_document_in_any_file(tmp_path: Path, which: str, doc: Any) -> None:
    docs: dict[str, Any] = {"hosts": {"r1": {"hostname": "127.0.0.1"}}}
    docs[which] = doc
    write(tmp_path, docs)
    check(tmp_path)


YAMLISH = st.text(alphabet=st.sampled_from(list("ab1:-[]{}&*!|>'\"#%@` \n\t,?.")), max_size=40)


@SETTINGS
@given(which=st.sampled_from(FILES), text=st.one_of(YAMLISH, st.text(max_size=40)))
def test_any_text_in_any_file(tmp_path: Path, which: str, text: str) -> None:
    docs: dict[str, Any] = {"hosts": {"r1": {"hostname": "127.0.0.1"}}}
    docs[which] = text
    write(tmp_path, docs)
    check(tmp_path)


@settings(max_examples=50, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(FILES), data=st.binary(max_size=40))
def test_any_bytes_in_any_file(tmp_path: Path, which: str, data: bytes) -> None:
    write(tmp_path, {"hosts": {"r1": {"hostname": "127.0.0.1"}}})
    (tmp_path / f"{which}.yaml").write_bytes(data)
    check(tmp_path)


# ---- explicit cases: one clear error naming file, entry and key -------------------------------


def fails(tmp_path: Path, **files: str) -> str:
    base = {"hosts": "r0: {hostname: 127.0.0.1}\n", "groups": "lab: {}\n"}
    write_yaml_files(tmp_path, **{**base, **files})
    with pytest.raises(InventoryError) as info:
        init_nornir(tmp_path)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("name", "text", "where", "key"), [
    # malformed YAML: file, line and column
    ("subnets", "lab:\n  subnet: [127.0.0.0/28\n", "line 3, column 1", "malformed YAML"),
    ("hosts", "r1: {hostname: 127.0.0.1\n", "line 2, column 1", "malformed YAML"),
    ("groups", "lab:\n  data: {a: 1}\n   x: 2\n", "line 3", "malformed YAML"),
    ("defaults", "data: [1,\n", "line 2", "malformed YAML"),
    ("hosts", "r1: !!python/object:os.system {}\n", "line 1", "malformed YAML"),
    # wrong types
    ("subnets", "lab: {subnet: 5}\n", "subnet entry 'lab'", "subnet: required"),
    ("subnets", "lab: {subnet: 127.0.0.0/30, groups: x}\n", "subnet entry 'lab'", "groups:"),
    ("subnets", "lab: {subnet: 127.0.0.0/30, groups: lab}\n", "subnet entry 'lab'", "groups:"),
    ("subnets", "lab: {subnet: 127.0.0.0/30, exclude: 5}\n", "subnet entry 'lab'", "exclude:"),
    ("subnets", "lab: {subnet: 127.0.0.0/30, max_hosts: many}\n", "subnet entry 'lab'",
     "max_hosts:"),
    ("subnets", "lab: {subnet: 127.0.0.0/30, data: [1]}\n", "subnet entry 'lab'", "data:"),
    ("subnets", "lab: {subnet: 127.0.0.0/30, name_format: 5}\n", "subnet entry 'lab'",
     "name_format:"),
    ("subnets", "lab: 5\n", "subnet entry 'lab'", "expected a mapping"),
    ("hosts", "r1: {hostname: 127.0.0.1, groups: lab}\n", "host 'r1'", "groups:"),
    ("hosts", "r1: {hostname: 5}\n", "host 'r1'", "hostname:"),
    ("hosts", "r1: {hostname: 127.0.0.1, port: '22'}\n", "host 'r1'", "port:"),
    ("hosts", "r1: {hostname: 127.0.0.1, port: 70000}\n", "host 'r1'", "port:"),
    ("hosts", "r1: {hostname: 127.0.0.1, data: [a]}\n", "host 'r1'", "data:"),
    ("hosts", "r1: {hostname: 127.0.0.1, connection_options: [ssh]}\n", "host 'r1'",
     "connection_options:"),
    ("groups", "lab: {groups: edge}\nedge: {}\n", "group 'lab'", "groups:"),
    ("groups", "lab: {platform: [linux]}\n", "group 'lab'", "platform:"),
    ("defaults", "port: yes\n", "defaults", "port:"),
    ("hosts", "- r1\n", "", "expected a mapping of names to entries"),
    # unknown keys
    ("subnets", "lab: {subnet: 127.0.0.0/30, colour: blue}\n", "subnet entry 'lab'",
     "unknown key 'colour'"),
    ("hosts", "r1: {hostname: 127.0.0.1, group: [lab]}\n", "host 'r1'", "unknown key 'group'"),
    ("groups", "lab: {hostnme: x}\n", "group 'lab'", "unknown key 'hostnme'"),
    ("defaults", "colour: blue\n", "defaults", "unknown key 'colour'"),
    ("hosts", "r1: {hostname: 127.0.0.1, connection_options: {ssh: {colour: 1}}}\n",
     "host 'r1': connection_options 'ssh'", "unknown key 'colour'"),
])
def test_bad_files_name_file_entry_and_key(tmp_path: Path, name: str, text: str, where: str,
                                           key: str) -> None:
    message = fails(tmp_path, **{name: text})
    assert message.startswith(f"{tmp_path / name}.yaml: "), message
    assert where in message and key in message, message


@pytest.mark.parametrize("fmt", ["{entry.foo}", "{index[0]}", "{address[0]}", "{entry!z}",
                                 "{address:d}", "{0}", "{}", "{host}", "{entry"])
def test_unusable_name_format_is_an_inventory_error(tmp_path: Path, fmt: str) -> None:
    message = fails(tmp_path, subnets=f"lab: {{subnet: 127.0.0.0/30, name_format: '{fmt}'}}\n")
    assert re.search(r"subnets\.yaml: subnet entry 'lab': name_format: .* is not usable",
                     message), message


@pytest.mark.parametrize("groups", ["lab: {groups: [lab]}\n",
                                    "lab: {groups: [edge]}\nedge: {groups: [lab]}\n",
                                    "lab: {groups: [edge]}\nedge: {groups: [core]}\n"
                                    "core: {groups: [lab]}\n"])
def test_group_cycle_is_an_inventory_error(tmp_path: Path, groups: str) -> None:
    message = fails(tmp_path, hosts="r1: {hostname: 127.0.0.1, groups: [lab]}\n", groups=groups)
    assert message.startswith(f"{tmp_path / 'groups.yaml'}: group '")
    assert "cycle" in message and "'lab'" in message


def test_file_that_is_not_utf8_is_an_inventory_error(tmp_path: Path) -> None:
    write_yaml_files(tmp_path, hosts="r0: {hostname: 127.0.0.1}\n")
    (tmp_path / "subnets.yaml").write_bytes(b"lab: {subnet: 127.0.0.0/30, data: {x: \xff}}\n")
    with pytest.raises(InventoryError, match=r"subnets\.yaml: .*(utf-8|UTF-8|decode)"):
        init_nornir(tmp_path)


def test_good_files_still_load(tmp_path: Path) -> None:
    """The guards above refuse nothing that is right."""
    write_yaml_files(
        tmp_path,
        hosts="r1: {hostname: 127.0.0.1, port: 22, groups: [lab]}\n",
        groups="lab: {groups: [base]}\nbase: {data: {site: x}}\n",
        defaults="data: {a: 1}\n",
        subnets="loop: {subnet: 127.0.0.4/30, groups: [lab], name_format: '{entry}-{index:02d}',"
                " exclude: 127.0.0.6}\n")
    nr = load(tmp_path)
    assert isinstance(nr, Nornir)
    assert sorted(nr.inventory.hosts) == ["loop-00", "r1"]
    assert nr.inventory.hosts["loop-00"]["site"] == "x"
