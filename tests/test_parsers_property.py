"""Property tests of the two parsers: any input parses or raises SpecError, and parsed
results match a simple model of the spec."""

from __future__ import annotations

import ipaddress
import itertools

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nornir_portscan.errors import SpecError
from nornir_portscan.inputs import parse_ports, parse_targets

# no example database: the suite leaves nothing behind in the working tree
SETTINGS = settings(max_examples=300, deadline=None, database=None)

PORTISH = st.text(alphabet="0123456789-, abcdefghijklmnopqrstuvwxyzABC_/.:", max_size=30)


def check_ports(result: tuple[int, ...]) -> None:
    assert isinstance(result, tuple) and result
    assert all(type(p) is int and 1 <= p <= 65535 for p in result)
    assert list(result) == sorted(set(result))  # sorted, unique


# ---- ports ------------------------------------------------------------------------------------


@SETTINGS
@given(PORTISH)
@example("-")
@example("1-")
@example(",")
@example("0-0")
@example("65535-65536")
def test_port_text_parses_or_raises_spec_error(text: str) -> None:
    try:
        result = parse_ports(text)
    except SpecError as exc:
        assert str(exc)  # a message, always
        return
    check_ports(result)


@SETTINGS
@given(st.lists(st.one_of(st.integers(-5, 70000), PORTISH, st.booleans(), st.none(),
                          st.floats(allow_nan=False)), max_size=5))
def test_inventory_port_lists_parse_or_raise_spec_error(items: list[object]) -> None:
    try:
        result = parse_ports(items)  # type: ignore[arg-type]
    except SpecError:
        return
    check_ports(result)


PORT_ITEM = st.one_of(
    st.integers(1, 65535).map(lambda p: (p, p)),
    st.tuples(st.integers(1, 65535), st.integers(0, 300)).map(
        lambda t: (t[0], min(65535, t[0] + t[1]))),
)


@SETTINGS
@given(st.lists(PORT_ITEM, min_size=1, max_size=8), st.booleans())
def test_valid_port_specs_match_the_model(items: list[tuple[int, int]], spaces: bool) -> None:
    text = (", " if spaces else ",").join(
        str(a) if a == b else f"{a}-{b}" for a, b in items)
    expected = sorted({p for a, b in items for p in range(a, b + 1)})
    assert list(parse_ports(text)) == expected
    # the inventory list form says the same
    assert list(parse_ports([a if a == b else f"{a}-{b}" for a, b in items])) == expected


@SETTINGS
@given(st.integers(min_value=-(10**6), max_value=10**6))
def test_integers_outside_the_port_range_are_spec_errors(n: int) -> None:
    if 1 <= n <= 65535:
        assert parse_ports(n) == (n,)
        assert parse_ports(str(n)) == (n,)
    else:
        with pytest.raises(SpecError):
            parse_ports(n)


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(max_size=12))
@example("²")
def test_any_text_parses_or_raises_spec_error(text: str) -> None:
    try:
        result = parse_ports(text)
    except SpecError:
        return
    check_ports(result)


@pytest.mark.parametrize("text", ["\x00", "ssh\x00", "\ud800", "a\x00b,22"])
def test_nul_and_surrogates_are_spec_errors(text: str) -> None:
    """Regression: these raised ValueError / UnicodeEncodeError from getservbyname."""
    with pytest.raises(SpecError):
        parse_ports(text)


@pytest.mark.parametrize("text", ["²", "1-²", "²²", "22,³", "٢٢"])
def test_superscript_and_non_ascii_digits_are_spec_errors(text: str) -> None:
    with pytest.raises(SpecError):
        parse_ports(text)


# ---- targets ----------------------------------------------------------------------------------


TARGETISH = st.text(alphabet="0123456789.-/,:*[] abcfx%", max_size=30)


def check_targets(text: object) -> None:
    try:
        spec = parse_targets(text)  # type: ignore[arg-type]
    except SpecError as exc:
        assert str(exc)
        return
    assert spec.count() >= 1
    for target in itertools.islice(spec, 5):
        if target.address is None:
            assert target.name and target.version == 0
        else:
            assert ipaddress.ip_address(target.address).version == target.version


@SETTINGS
@given(st.one_of(st.text(max_size=30), TARGETISH))
@example("10.0.0-3.1")
@example("1.2.3.4-")
@example("::/0")
@example("[::1")
def test_target_text_parses_or_raises_spec_error(text: str) -> None:
    check_targets(text)


@SETTINGS
@given(st.lists(st.one_of(st.text(max_size=12), TARGETISH), max_size=4))
def test_target_lists_parse_or_raise_spec_error(items: list[str]) -> None:
    check_targets(items)


def hostish(value: int) -> bool:
    ip = ipaddress.IPv4Address(value)
    return not (ip.is_multicast or ip.is_unspecified or value == 0xFFFFFFFF)


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.integers(0, 600))
@example(0xDFFFFFF0, 40)  # across the start of multicast
@example(0xFFFFFFF0, 15)  # up to the broadcast address
@example(0, 3)
def test_ipv4_ranges_match_the_model(start: int, span: int) -> None:
    end = min(start + span, 2**32 - 1)
    text = f"{ipaddress.IPv4Address(start)}-{ipaddress.IPv4Address(end)}"
    spec = parse_targets(text)
    assert spec.count() == end - start + 1
    got = [t.address for t in spec]
    assert got == [str(ipaddress.IPv4Address(v)) for v in range(start, end + 1) if hostish(v)]


@settings(max_examples=150, deadline=None, database=None)
@given(st.integers(0, 2**32 - 1), st.integers(22, 32))
def test_ipv4_networks_match_the_model(address: int, prefix: int) -> None:
    net = ipaddress.IPv4Network((address, prefix), strict=False)
    hosts = list(net) if prefix >= 31 else list(net)[1:-1]  # /31, /32 keep every address
    want = [str(h) for h in hosts if hostish(int(h))]
    assert [t.address for t in parse_targets(str(net))] == want


@SETTINGS
@given(st.lists(st.integers(0, 255), min_size=1, max_size=6),
       st.lists(st.tuples(st.integers(0, 255), st.integers(0, 10)), max_size=3),
       st.lists(st.tuples(st.integers(0, 255), st.integers(25, 32)), max_size=2))
def test_excludes_match_the_model(singles: list[int], ranges: list[tuple[int, int]],
                                  nets: list[tuple[int, int]]) -> None:
    base = int(ipaddress.IPv4Address("10.20.30.0"))
    excluded: set[int] = set(singles)
    parts = [f"10.20.30.{s}" for s in singles]
    for lo, span in ranges:
        hi = min(255, lo + span)
        excluded.update(range(lo, hi + 1))
        parts.append(f"10.20.30.{lo}-10.20.30.{hi}")
    for host, prefix in nets:  # an excluded network goes whole, network and broadcast too
        net = ipaddress.IPv4Network((base + host, prefix), strict=False)
        excluded.update(int(a) - base for a in net)
        parts.append(str(net))
    got = [t.address for t in parse_targets("10.20.30.0/24", exclude=parts)]
    assert got == [str(ipaddress.IPv4Address(base + i)) for i in range(1, 255)
                   if i not in excluded]


OCTET = st.lists(st.tuples(st.integers(0, 255), st.integers(0, 3)), min_size=1, max_size=3)


@SETTINGS
@given(st.tuples(st.just([(10, 0)]), OCTET, OCTET, OCTET))
def test_octet_specs_match_the_model(octets: tuple[list[tuple[int, int]], ...]) -> None:
    parts, values = [], []
    for pieces in octets:
        pieces_text: list[str] = []
        vals: set[int] = set()
        for lo, span in pieces:
            hi = min(255, lo + span)
            pieces_text.append(str(lo) if lo == hi else f"{lo}-{hi}")
            vals.update(range(lo, hi + 1))
        parts.append(",".join(pieces_text))
        values.append(sorted(vals))
    text = ".".join(parts)
    spec = parse_targets(text)
    want = [".".join(map(str, combo)) for combo in itertools.product(*values)]
    assert spec.count() == len(want)
    assert [t.address for t in spec] == want
