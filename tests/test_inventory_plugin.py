"""PortscanInventory: subnet expansion, inheritance, known-host merge, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from _nornir_support import init_nornir, render_inventory, write_yaml_files
from nornir import InitNornir
from nornir.core.filter import F

from nornir_portscan.errors import InventoryError, OptionError
from nornir_portscan.plugins.inventory import PortscanInventory

REPO = Path(__file__).resolve().parent.parent
OPEN, CLOSED = 40001, 40002  # only written into YAML here; nothing is scanned


@pytest.fixture
def inventory_dir(tmp_path: Path) -> Path:
    return render_inventory(tmp_path / "inv", open_port=OPEN, closed_port=CLOSED)


def test_entry_point_is_registered() -> None:
    eps = {ep.name: ep.value for ep in entry_points(group="nornir.plugins.inventory")}
    assert eps["PortscanInventory"] == \
        "nornir_portscan.plugins.inventory.subnets:PortscanInventory"


def test_config_file_loads_the_fixture_inventory(inventory_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(inventory_dir)
    nr = InitNornir(config_file="config.yaml")
    assert len(nr.inventory.hosts) == 12


def test_subnet_expands_to_one_host_per_address(inventory_dir: Path) -> None:
    nr = init_nornir(inventory_dir)
    expanded = [n for n in nr.inventory.hosts if n.startswith("loop-mgmt/")]
    # /28: 14 addresses; excluded .1 and .12-.14; .2 is the known host core1
    assert expanded == [f"loop-mgmt/127.0.0.{i}" for i in range(3, 12)]  # in address order
    for name in expanded:
        host = nr.inventory.hosts[name]
        assert host.hostname == name.split("/")[1]
    assert set(nr.inventory.hosts) == {"web1", "web2", "core1", *expanded}


def test_expanded_hosts_inherit_groups_and_data(inventory_dir: Path) -> None:
    nr = init_nornir(inventory_dir)
    mgmt = nr.filter(F(groups__contains="mgmt"))
    assert sorted(mgmt.inventory.hosts) == sorted(
        ["core1", *(f"loop-mgmt/127.0.0.{i}" for i in range(3, 12))])
    host = nr.inventory.hosts["loop-mgmt/127.0.0.5"]
    assert host["zone"] == "mgmt"                      # subnet data
    assert host["role"] == "mgmt"                      # group mgmt
    assert host["site"] == "lab"                       # defaults
    assert host.has_parent_group("lab")                # mgmt's parent group
    assert host["portscan"] == {"ports": [CLOSED]}     # the most specific layer, as nornir reads
    # hosts do not share mutable data: changing one leaves the others alone
    host.data["zone"] = "changed"
    assert nr.inventory.hosts["loop-mgmt/127.0.0.6"]["zone"] == "mgmt"


def test_known_host_keeps_its_name_and_gains_groups_and_data(inventory_dir: Path) -> None:
    nr = init_nornir(inventory_dir)
    core = nr.inventory.hosts["core1"]
    assert core.hostname == "127.0.0.2"
    assert [g.name for g in core.groups] == ["mgmt"]
    assert core["role"] == "core"                       # its own data wins over group mgmt's
    assert core["zone"] == "mgmt"                       # subnet data filled in
    assert core.data["portscan"] == {"expect": {"closed": [CLOSED]}, "ports": [CLOSED]}
    assert "loop-mgmt/127.0.0.2" not in nr.inventory.hosts


def test_name_format_and_plugin_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_yaml_files(tmp_path, subnets="""
lab:
  subnet: 127.0.5.0/30
  name_format: "{entry}-{index}"
  platform: linux
""")
    monkeypatch.chdir(tmp_path)
    # no options at all: hosts.yaml / subnets.yaml are used when present
    nr = InitNornir(inventory={"plugin": "PortscanInventory"}, logging={"enabled": False})
    assert {n: h.hostname for n, h in nr.inventory.hosts.items()} == {
        "lab-0": "127.0.5.1", "lab-1": "127.0.5.2"}
    assert nr.inventory.hosts["lab-0"].platform == "linux"


def test_limit_can_be_raised_per_entry_and_per_plugin(tmp_path: Path) -> None:
    write_yaml_files(tmp_path, subnets="""
big:
  subnet: 127.1.0.0/19
  max_hosts: 8190
""")
    assert len(init_nornir(tmp_path).inventory.hosts) == 8190
    write_yaml_files(tmp_path, subnets="big: {subnet: 127.1.0.0/27}\n")
    with pytest.raises(InventoryError, match="over the limit of 16"):
        init_nornir(tmp_path, max_hosts=16)
    assert len(init_nornir(tmp_path, max_hosts=30).inventory.hosts) == 30


BAD_SUBNETS = [
    ("lab: {subnet: 127.0.0.0/28, colour: blue}", r"subnet entry 'lab': unknown key 'colour'"
                                                 r" \(value 'blue'\)"),
    ("lab: {subnet: 127.0.0.0/33}", r"subnet entry 'lab': subnet: '127.0.0.0/33' is not a "
                                    r"valid CIDR: the prefix length is 0-32 for IPv4, not 33$"),
    ("lab: {subnet: '127.0.0.300/28'}", r"subnet entry 'lab': subnet: '127.0.0.300/28' is not"
                                        r" a valid CIDR: '127.0.0.300' is not an IPv4 address$"),
    ("lab: {subnet: 127.0.0.0/16}", r"subnet entry 'lab': subnet '127.0.0.0/16' expands to "
                                    r"65534 addresses, over the limit of 4096; set max_hosts"),
    ("lab: {exclude: [127.0.0.1]}", r"subnet entry 'lab': subnet: required"),
    ("lab: {subnet: 127.0.0.0/28, exclude: [127.0.0.300]}",
     r"subnet entry 'lab': exclude: '127.0.0.300' is not an address or CIDR"),
    ("lab: {subnet: 127.0.0.0/28, groups: [nope]}", r"subnet entry 'lab': groups: unknown "
                                                    r"group 'nope'"),
    # YAML 1.2, as nornir reads its own files: `yes` is a string, `true` the boolean
    ("lab: {subnet: 127.0.0.0/28, max_hosts: yes}", r"subnet entry 'lab': max_hosts: expected"
                                                    r" a whole number, got 'yes'"),
    ("lab: {subnet: 127.0.0.0/28, max_hosts: true}", r"subnet entry 'lab': max_hosts: expected"
                                                     r" a whole number, got True"),
    ("lab: {subnet: 127.0.0.0/28, name_format: '{host}'}", r"name_format: '\{host\}' is not "
                                                            r"usable"),
    ("lab: {subnet: 127.0.0.0/28, data: [1]}", r"subnet entry 'lab': data: expected a mapping"),
    ("lab: [127.0.0.0/28]", r"subnet entry 'lab': expected a mapping"),
    ("lab:\n  subnet: [127.0.0.0/28\n", r"subnets.yaml: line \d+, column \d+: malformed YAML"),
    ("- 127.0.0.0/28\n", r"subnets.yaml: expected a mapping of names to entries"),
]


@pytest.mark.parametrize(("text", "message"), BAD_SUBNETS)
def test_bad_subnet_files_name_file_entry_and_value(tmp_path: Path, text: str,
                                                    message: str) -> None:
    write_yaml_files(tmp_path, subnets=text)
    with pytest.raises(InventoryError, match=message) as info:
        init_nornir(tmp_path)
    assert str(tmp_path / "subnets.yaml") in str(info.value)


@pytest.mark.parametrize(("name", "text", "message"), [
    ("hosts", "r1: {hostname: 127.0.0.1, group: [lab]}", r"host 'r1': unknown key 'group'"),
    ("hosts", "r1: {hostname: 127.0.0.1, groups: [nope]}", r"host 'r1': groups: unknown group"),
    ("hosts", "r1: {hostname: 127.0.0.1, port: '22'}", r"host 'r1': port: expected a port"),
    ("hosts", "r1: {hostname: 127.0.0.1, connection_options: {ssh: {colour: 1}}}",
     r"host 'r1': connection_options 'ssh': unknown key 'colour'"),
    ("groups", "lab: {groups: [missing]}", r"group 'lab': groups: unknown group 'missing'"),
    ("defaults", "data: {a: 1}\nhostnme: x\n", r"defaults: unknown key 'hostnme'"),
    ("hosts", "r1: {hostname: 127.0.0.1\n", r"hosts.yaml: line \d+, column \d+: malformed YAML"),
])
def test_bad_simple_files_name_file_entry_and_key(tmp_path: Path, name: str, text: str,
                                                  message: str) -> None:
    files = {"hosts": "r0: {hostname: 127.0.0.1}\n", "groups": "lab: {}\n", "defaults": "{}\n"}
    files[name] = text
    write_yaml_files(tmp_path, **files)
    with pytest.raises(InventoryError, match=message) as info:
        init_nornir(tmp_path)
    assert f"{name}.yaml" in str(info.value)


def test_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InventoryError, match=r"option host_file: .*nope.yaml does not exist"):
        PortscanInventory(host_file=str(tmp_path / "nope.yaml")).load()
    with pytest.raises(InventoryError, match=r"neither hosts.yaml nor subnets.yaml exists"):
        PortscanInventory().load()
    with pytest.raises(InventoryError, match="option max_hosts: must be"):
        PortscanInventory(max_hosts=0)


@pytest.mark.parametrize("option", ["host_file", "group_file", "defaults_file", "subnet_file"])
def test_a_named_file_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 option: str) -> None:
    """Issue 14: a `defaults_file: defaults.yml` beside a defaults.yaml was skipped, and the
    expectations it held were never checked."""
    write_yaml_files(tmp_path, hosts="r0: {hostname: 127.0.0.1}\n", groups="{}\n",
                     defaults="{}\n", subnets="{}\n")
    monkeypatch.chdir(tmp_path)
    options: dict[str, Any] = {option: "typo.yml"}
    with pytest.raises(OptionError) as info:
        PortscanInventory(**options)
    assert info.value.option == option
    assert str(info.value) == (f"PortscanInventory option {option}: typo.yml does not exist "
                               f"(relative to the working directory {tmp_path})")
    (tmp_path / "sub").mkdir()
    options[option] = "sub"
    with pytest.raises(OptionError, match=rf"option {option}: sub is a directory, not a file"):
        PortscanInventory(**options)


def test_entry_point_module_imports_no_scanner_code() -> None:
    code = ("import sys\n"
            "import nornir_portscan.plugins.inventory.subnets\n"
            "mods = sorted(m for m in sys.modules if m.startswith('nornir_portscan')\n"
            "              or m == 'rich' or m.startswith('rich.'))\n"
            "print(' '.join(mods))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.split()
    assert out == ["nornir_portscan", "nornir_portscan.errors", "nornir_portscan.plugins",
                   "nornir_portscan.plugins.common",
                   "nornir_portscan.plugins.common.collector",  # the standard library's gc
                   "nornir_portscan.plugins.common.provenance",
                   "nornir_portscan.plugins.inventory",
                   "nornir_portscan.plugins.inventory.subnets"]


def test_entry_point_module_needs_only_the_standard_library_and_nornir() -> None:
    """Beyond the stdlib, only nornir and what nornir itself brings (ruamel.yaml) load."""
    code = ("import sys\n"
            "before = set(sys.modules)\n"
            "import nornir_portscan.plugins.inventory.subnets\n"
            "roots = {m.split('.')[0] for m in set(sys.modules) - before}\n"
            "print(' '.join(sorted(r for r in roots if r not in sys.stdlib_module_names)))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.split()
    assert "yaml" not in out  # PyYAML is ours, not nornir's: the entry point does without it
    assert set(out) <= {"nornir", "nornir_portscan", "ruamel", "typing_extensions",
                        "mypy_extensions", "importlib_metadata", "zipp", "_ruamel_yaml"}, out


def test_shipped_inventory_is_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import ipaddress

    monkeypatch.chdir(REPO)
    nr = InitNornir(config_file="inventory/config.yaml")
    assert nr.inventory.hosts
    for host in nr.inventory.hosts.values():
        assert host.hostname is not None and ipaddress.ip_address(host.hostname).is_loopback, (
            host.name)
    assert "localhost-v4" in nr.inventory.hosts            # 127.0.0.1 stays the known host
    assert nr.inventory.hosts["localhost-v4"].hostname == "127.0.0.1"


def test_host_bits_name_the_same_network_in_a_subnet_entry_and_a_scan(tmp_path: Path) -> None:
    """One rule for a prefix written on an address (127.0.0.5/29, as ``ip addr`` shows an
    interface): the network it sits in, 127.0.0.0/29, for ``scan`` and for a subnet entry
    alike. Both are run as a user would, and scan the same six addresses."""
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "subnets.yaml").write_text(
        f"lab: {{subnet: 127.0.0.5/29, data: {{portscan: {{ports: [{CLOSED}]}}}}}}\n",
        encoding="utf-8")
    cli = [sys.executable, "-m", "nornir_portscan"]
    run = subprocess.run([*cli, "run", "-i", str(inv), "--format", "jsonl"],
                         capture_output=True, text=True, timeout=120)
    scan = subprocess.run([*cli, "scan", "127.0.0.5/29", "-p", str(CLOSED), "--format", "jsonl"],
                          capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert scan.returncode == 0, scan.stderr
    want = [f"127.0.0.{i}" for i in range(1, 7)]
    assert [json.loads(line)["host"] for line in scan.stdout.splitlines()] == want
    assert sorted(json.loads(line)["host"] for line in run.stdout.splitlines()) == want
