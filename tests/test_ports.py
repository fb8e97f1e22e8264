"""Port specifications: every accepted form, and every mistake stopped with the value named."""

from __future__ import annotations

import pytest

from nornir_portscan.errors import PortscanError, SpecError
from nornir_portscan.inputs import parse_ports
from nornir_portscan.inputs.services import TOP100, TOP1000


def test_single_port() -> None:
    assert parse_ports("22") == (22,)
    assert parse_ports(22) == (22,)


def test_bounds_are_inclusive() -> None:
    assert parse_ports("1") == (1,)
    assert parse_ports("65535") == (65535,)
    assert parse_ports("1-1") == (1,)


def test_list_is_sorted_and_unique() -> None:
    assert parse_ports("443,22,80,22") == (22, 80, 443)


def test_spaces_around_entries_are_ignored() -> None:
    assert parse_ports(" 22 , 80 ") == (22, 80)


def test_range() -> None:
    assert parse_ports("8000-8100") == tuple(range(8000, 8101))


def test_overlapping_ranges_merge() -> None:
    assert parse_ports("10-20,15-25,22") == tuple(range(10, 26))


@pytest.mark.parametrize("spec", ["-", "all", "ALL", "1-65535"])
def test_every_port(spec: str) -> None:
    ports = parse_ports(spec)
    assert len(ports) == 65535
    assert ports[0] == 1 and ports[-1] == 65535
    assert ports == tuple(range(1, 65536))


@pytest.mark.parametrize(("name", "port"), [
    ("ssh", 22), ("https", 443), ("netconf", 830), ("http", 80), ("SSH", 22), ("bgp", 179),
    ("http-alt", 8080), ("netconf-ssh", 830), ("HTTP-ALT", 8080),
])
def test_service_names(name: str, port: int) -> None:
    assert parse_ports(name) == (port,)


def test_service_names_mix_with_numbers_and_ranges() -> None:
    assert parse_ports("ssh,https,8000-8002,23") == (22, 23, 443, 8000, 8001, 8002)


def test_top100_has_100_distinct_ports() -> None:
    ports = parse_ports("top100")
    assert len(ports) == 100
    assert set(ports) == set(TOP100)
    assert {22, 80, 443, 830} <= set(ports)


def test_top1000_has_1000_distinct_ports_including_top100() -> None:
    ports = parse_ports("top1000")
    assert len(ports) == 1000
    assert set(TOP100) <= set(ports)
    assert set(ports) == set(TOP1000)
    assert all(1 <= p <= 65535 for p in ports)


def test_named_sets_are_case_insensitive() -> None:
    assert parse_ports("Top100") == parse_ports("top100")


def test_inventory_list_form() -> None:
    assert parse_ports([22, "80-81", "ssh"]) == (22, 80, 81)


def test_inventory_list_of_names_and_numbers_as_strings() -> None:
    assert parse_ports(["443", "https", 8443]) == (443, 8443)


# ---- errors: SpecError, naming the value -------------------------------------------------


@pytest.mark.parametrize(("spec", "named"), [
    ("0", "'0'"),
    ("65536", "'65536'"),
    ("1-", "'1-'"),
    ("-5", "'-5'"),
    ("100-1", "'100-1'"),
    ("70000-70001", "'70000'"),
    ("nosuchservice", "'nosuchservice'"),
    ("22,nosuchservice", "'nosuchservice'"),
    ("22,,80", "'22,,80'"),
    ("22,0", "'0'"),
    ("1-2-3", "'1-2-3'"),
])
def test_bad_port_specs_name_the_value(spec: str, named: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_ports(spec)
    assert named in str(info.value)


def test_backwards_range_says_so() -> None:
    with pytest.raises(SpecError, match="backwards"):
        parse_ports("443-22")


def test_out_of_range_says_what_the_range_is() -> None:
    with pytest.raises(SpecError, match="1-65535"):
        parse_ports("65536")


@pytest.mark.parametrize("spec", ["", " ", [], ","])
def test_empty_port_lists_are_errors(spec: object) -> None:
    with pytest.raises(SpecError):
        parse_ports(spec)  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", [True, [True], [22, None], [1.5], 0, -1, 65536, [0]])
def test_bad_inventory_values(spec: object) -> None:
    with pytest.raises(SpecError):
        parse_ports(spec)  # type: ignore[arg-type]


def test_spec_error_is_a_user_error() -> None:
    """The CLI turns PortscanError into exit 2; SpecError must be one (and a ValueError)."""
    with pytest.raises(SpecError) as info:
        parse_ports("0")
    assert isinstance(info.value, PortscanError)
    assert isinstance(info.value, ValueError)
