"""Target specifications: parsing and lazy expansion. Nothing here sends a packet."""

from __future__ import annotations

import ipaddress
import itertools
import sys
from collections.abc import Callable, Sequence

import pytest

from nornir_portscan.errors import SpecError
from nornir_portscan.inputs import Target, parse_target, parse_targets


def addresses(spec: str | list[str], exclude: str | Sequence[str] = ()) -> list[str]:
    return [t.address or "" for t in parse_targets(spec, exclude)]


# ---- single addresses and names --------------------------------------------------------------


def test_single_ipv4() -> None:
    assert list(parse_targets("192.0.2.7")) == [Target("192.0.2.7", None, 4)]


def test_single_ipv6_and_bracketed() -> None:
    assert list(parse_targets("2001:db8::1")) == [Target("2001:db8::1", None, 6)]
    assert list(parse_targets("[::1]")) == [Target("::1", None, 6)]


def test_single_address_is_scanned_as_given_even_if_network_or_broadcast() -> None:
    assert addresses("10.0.0.0 10.0.0.255") == ["10.0.0.0", "10.0.0.255"]


def test_repeated_single_address_is_scanned_once() -> None:
    assert addresses("10.0.0.1 10.0.0.1") == ["10.0.0.1"]


def test_hostnames_stay_names_until_resolved() -> None:
    targets = list(parse_targets(["router1.example.net", "localhost", "sw_2.lab."]))
    assert targets == [Target(None, "router1.example.net", 0), Target(None, "localhost", 0),
                       Target(None, "sw_2.lab", 0)]


def test_string_with_commas_and_spaces_splits_into_targets() -> None:
    assert addresses("10.0.0.1,10.0.0.2 10.0.0.3") == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


# ---- CIDR -------------------------------------------------------------------------------------


def test_slash24_skips_network_and_broadcast() -> None:
    got = addresses("192.168.7.0/24")
    assert len(got) == 254
    assert got[0] == "192.168.7.1" and got[-1] == "192.168.7.254"
    assert "192.168.7.0" not in got and "192.168.7.255" not in got


def test_cidr_with_host_bits_set_is_the_whole_network() -> None:
    assert addresses("192.168.7.77/30") == ["192.168.7.77", "192.168.7.78"]


def test_slash31_and_slash32_keep_every_address() -> None:
    assert addresses("10.1.1.0/31") == ["10.1.1.0", "10.1.1.1"]
    assert addresses("10.1.1.9/32") == ["10.1.1.9"]


def test_ipv6_cidr() -> None:
    got = addresses("2001:db8::/125")
    # the subnet-router anycast (network) address is skipped; IPv6 has no broadcast
    assert got == [f"2001:db8::{i}" for i in range(1, 8)]
    assert addresses("2001:db8::/127") == ["2001:db8::", "2001:db8::1"]
    assert addresses("2001:db8::5/128") == ["2001:db8::5"]


def test_multicast_is_skipped_in_expansions() -> None:
    assert addresses("224.0.0.0/29") == []
    assert addresses("223.255.255.254-224.0.0.3") == ["223.255.255.254", "223.255.255.255"]
    assert addresses("ff02::1-ff02::3") == []


def test_multicast_named_singly_is_kept() -> None:
    assert addresses("224.0.0.1") == ["224.0.0.1"]


@pytest.mark.parametrize("text", [
    "0.0.0.0/30", "0.0.0.0", "223.255.255.252-224.0.0.2", "239.255.255.254-240.0.0.1",
    "255.255.255.252/30", "255.255.255.255", "10.1.2.3", "1.0.0.0/28", "224.0.0.5",
    "0-1.0.0.0-1", "::/126", "::1", "fe80::1-fe80::3",
])
def test_addresses_are_written_and_left_out_as_ipaddress_says(text: str) -> None:
    """IPv4 hosts are written in C (inet_ntoa), not by ipaddress objects: the same text, and
    the same addresses left out of a network or range (multicast, 0.0.0.0, 255.255.255.255),
    by iteration and by ``at`` (a shard's way in) alike."""
    spec = parse_targets(text)
    item = spec.items[0]
    single = item.kind == "address"
    want = []
    for value in item.addresses():
        addr = ipaddress.ip_address(value) if item.version == 4 else ipaddress.IPv6Address(value)
        if single or not (addr.is_multicast or addr.is_unspecified
                          or (addr.version == 4 and int(addr) == 0xFFFFFFFF)):
            want.append(str(addr))
    assert [t.address for t in spec] == want
    assert [t.address for t in map(spec.at, range(spec.count())) if t is not None] == want


# ---- ranges -----------------------------------------------------------------------------------


def test_full_ipv4_range() -> None:
    got = addresses("10.0.0.10-10.0.0.40")
    assert len(got) == 31
    assert got[0] == "10.0.0.10" and got[-1] == "10.0.0.40"


def test_range_across_octets() -> None:
    assert addresses("10.0.0.254-10.0.1.1") == ["10.0.0.254", "10.0.0.255", "10.0.1.0",
                                                "10.0.1.1"]


def test_last_octet_range() -> None:
    got = addresses("127.40.0.1-62")
    assert got == [f"127.40.0.{i}" for i in range(1, 63)]


def test_ipv6_range() -> None:
    assert addresses("2001:db8::1-2001:db8::4") == [f"2001:db8::{i}" for i in range(1, 5)]


def test_nmap_octet_ranges() -> None:
    spec = parse_targets("10.0.0-3.1-254")
    assert spec.count() == 4 * 254
    got = [t.address for t in spec]
    assert len(got) == 4 * 254 == len(set(got))
    assert got[0] == "10.0.0.1" and got[253] == "10.0.0.254" and got[254] == "10.0.1.1"
    assert got[-1] == "10.0.3.254"


def test_octet_comma_lists() -> None:
    assert addresses("10.0.0.1,3,5") == ["10.0.0.1", "10.0.0.3", "10.0.0.5"]
    assert addresses("10.0.0.1,3-5") == ["10.0.0.1", "10.0.0.3", "10.0.0.4", "10.0.0.5"]
    assert addresses("10.0.1,2.9") == ["10.0.1.9", "10.0.2.9"]


def test_octet_wildcard() -> None:
    assert parse_targets("10.0.0.*").count() == 256


def test_nmap_range_in_a_middle_octet_only() -> None:
    """Regression: with one dash, in a middle octet, this was taken for an address range."""
    assert addresses("10.0.0-3.1") == ["10.0.0.1", "10.0.1.1", "10.0.2.1", "10.0.3.1"]
    assert addresses("10.0-1.0.1") == ["10.0.0.1", "10.1.0.1"]


# ---- excludes ---------------------------------------------------------------------------------


def test_exclude_addresses_and_networks() -> None:
    got = addresses("10.0.0.0/24", exclude=["10.0.0.5", "10.0.0.64/26"])
    assert "10.0.0.5" not in got and "10.0.0.4" in got and "10.0.0.6" in got
    assert not any(f"10.0.0.{i}" in got for i in range(65, 127))
    assert "10.0.0.63" in got and "10.0.0.128" in got


def test_exclude_network_removes_its_network_and_broadcast_addresses_too() -> None:
    """Regression: an excluded CIDR was parsed like a target, so its network address (and
    IPv4 broadcast) were left out of the exclude and still scanned."""
    got = addresses("10.0.0.0/24", exclude="10.0.0.128/25")
    assert got == [f"10.0.0.{i}" for i in range(1, 128)]
    got = addresses("10.0.0.0/16", exclude="10.0.1.0/24")
    assert "10.0.1.0" not in got and "10.0.1.255" not in got
    assert "10.0.0.255" in got and "10.0.2.0" in got


def test_exclude_ipv6_network_removes_its_first_address_too() -> None:
    assert addresses("2001:db8::/125", exclude="2001:db8::4/126") == [
        "2001:db8::1", "2001:db8::2", "2001:db8::3"]


def test_exclude_a_slash8_network_while_lazy() -> None:
    spec = parse_targets("10.0.0.0/8", exclude="10.0.0.0/16")
    assert next(iter(spec)).address == "10.1.0.0"


def test_exclude_as_string_and_range() -> None:
    got = addresses("10.0.0.1-10", exclude="10.0.0.2,10.0.0.4-10.0.0.6")
    assert got == ["10.0.0.1", "10.0.0.3", "10.0.0.7", "10.0.0.8", "10.0.0.9", "10.0.0.10"]


def test_exclude_hostname() -> None:
    targets = list(parse_targets(["a.example", "b.example"], exclude=["A.example."]))
    assert targets == [Target(None, "b.example", 0)]


def test_exclude_ipv6_range() -> None:
    assert addresses("2001:db8::/125", exclude="2001:db8::4-2001:db8::7") == [
        "2001:db8::1", "2001:db8::2", "2001:db8::3"]


def test_bad_exclude_is_an_error() -> None:
    with pytest.raises(SpecError, match=r"10\.0\.0\.0/40"):
        parse_targets("10.0.0.1", exclude="10.0.0.0/40")


# ---- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "named"), [
    ("300.1.1.1", "300"),
    ("10.0.0.0/33", "10.0.0.0/33"),
    ("10.0.0.40-10.0.0.10", "10.0.0.40-10.0.0.10"),
    ("10.0.0.5-1", "5-1"),
    ("2001:db8::9-2001:db8::1", "2001:db8::9-2001:db8::1"),
    ("10.0.0.1-2001:db8::1", "10.0.0.1-2001:db8::1"),
    ("10.0.0", "10.0.0"),
    ("10.0.0.1.2", "10.0.0.1.2"),
    ("host..example", "host..example"),
    ("-bad.example", "-bad.example"),
    ("2001:db8::/129", "2001:db8::/129"),
])
def test_bad_targets_name_the_value(text: str, named: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_targets(text)
    assert named in str(info.value)


def test_backwards_range_says_so() -> None:
    with pytest.raises(SpecError, match="backwards"):
        parse_targets("10.0.0.40-10.0.0.10")


@pytest.mark.parametrize("spec", ["", "   ", [], ",", [""]])
def test_empty_target_list_is_an_error_never_everything(spec: object) -> None:
    with pytest.raises(SpecError):
        parse_targets(spec)  # type: ignore[arg-type]


def test_non_string_target_is_an_error() -> None:
    with pytest.raises(SpecError):
        parse_targets(["10.0.0.1", 7])  # type: ignore[list-item]


# ---- laziness ---------------------------------------------------------------------------------


def work(fn: Callable[[], object]) -> int:
    """Function calls (Python and C) made by ``fn()``: a measure of work that, unlike a
    stopwatch, does not change with the machine's load."""
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1
    sys.setprofile(count)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls


def test_first_addresses_of_a_slash8_are_instant() -> None:
    first = [t.address for t in itertools.islice(parse_targets("10.0.0.0/8"), 5)]
    assert first == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]
    # as little work as for a /28: the /8's 16.7 million addresses are never walked
    big = work(lambda: list(itertools.islice(parse_targets("10.0.0.0/8"), 5)))
    small = work(lambda: list(itertools.islice(parse_targets("10.0.0.0/28"), 5)))
    assert big <= 4 * small, (big, small)


@pytest.mark.parametrize(("huge", "small"), [
    ("10.0.0.0/8", "10.0.0.0/28"), ("2001:db8::/64", "2001:db8::/124"),
    ("10.0-255.0-255.1-254", "10.0-1.0-1.1-254")])
def test_count_of_huge_specs_without_iterating(huge: str, small: str) -> None:
    assert parse_targets("10.0.0.0/8").count() == 2**24 - 2
    assert parse_targets("2001:db8::/64").count() == 2**64 - 1
    assert parse_targets("10.0-255.0-255.1-254").count() == 256 * 256 * 254
    # counted by arithmetic: the work grows with the number of ranges, not of addresses
    assert work(lambda: parse_targets(huge).count()) <= 16 * work(
        lambda: parse_targets(small).count())


def test_excludes_on_a_slash8_stay_lazy() -> None:
    spec = parse_targets("10.0.0.0/8", exclude="10.0.0.0-10.0.255.255")
    first = next(iter(spec))
    assert first.address == "10.1.0.0"
    # it steps over the 65,536 excluded addresses (a few calls each), never over the /8
    calls = work(lambda: next(iter(parse_targets("10.0.0.0/8",
                                                 exclude="10.0.0.0-10.0.255.255"))))
    assert calls < 2**24 // 8, calls


def test_parse_target_kinds() -> None:
    assert parse_target("10.0.0.1").kind == "address"
    assert parse_target("10.0.0.0/24").kind == "network"
    assert parse_target("10.0.0.1-10.0.0.9").kind == "range"
    assert parse_target("10.0.0.1-9").kind == "octets"
    assert parse_target("example.net").kind == "name"


def test_every_expanded_address_is_valid_and_in_its_network() -> None:
    net = ipaddress.ip_network("172.16.4.0/22")
    got = addresses(str(net))
    assert len(got) == net.num_addresses - 2
    assert all(ipaddress.ip_address(a) in net for a in got)
