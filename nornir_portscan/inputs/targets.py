"""Target specifications: addresses, CIDR networks, ranges, nmap octet ranges, hostnames.

Targets expand lazily: a /16 is a few integers until the engine asks for the
next address, so memory does not grow with the size of the scan.
Expansions (CIDR, ranges) skip addresses that are never a host: a subnet's
network and broadcast addresses, multicast and unspecified addresses. An
address named singly is scanned as given: the user asked for exactly that.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import re
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from ..errors import SpecError

_HOSTNAME_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_OCTET_PART = re.compile(r"^(\*|\d{1,3}(-\d{1,3})?)(,(\d{1,3}(-\d{1,3})?))*$", re.ASCII)
_IPV4_BITS = 32
_IPV6_BITS = 128


class Target(NamedTuple):
    """One thing to scan: an address, or a name that still has to be resolved."""

    address: str | None
    name: str | None = None
    version: int = 4


class TargetSource(Protocol):
    """Anything the engine can pull targets from lazily and size up front."""

    def __iter__(self) -> Iterator[Target]: ...

    def count(self) -> int: ...


def _never_a_host(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return addr.is_multicast or addr.is_unspecified or (
        addr.version == 4 and int(addr) == 0xFFFFFFFF)


@dataclass(frozen=True)
class TargetItem:
    """One parsed entry of a target list, kept as integer intervals, not addresses."""

    text: str
    kind: str  # "address" | "network" | "range" | "octets" | "name"
    version: int = 4
    start: int = 0
    end: int = -1
    octets: tuple[tuple[int, ...], ...] = ()

    def count(self) -> int:
        """Addresses this entry stands for (a name counts as one)."""
        if self.kind == "name":
            return 1
        if self.kind == "octets":
            n = 1
            for o in self.octets:
                n *= len(o)
            return n
        return self.end - self.start + 1

    def intervals(self) -> Iterator[tuple[int, int]]:
        if self.kind == "octets":
            for combo in itertools.product(*self.octets[:3]):
                base = (combo[0] << 24) | (combo[1] << 16) | (combo[2] << 8)
                last = self.octets[3]
                # contiguous runs of the last octet become one interval
                run_start = prev = last[0]
                for o in last[1:]:
                    if o != prev + 1:
                        yield base + run_start, base + prev
                        run_start = o
                    prev = o
                yield base + run_start, base + prev
        elif self.kind != "name":
            yield self.start, self.end

    def contains(self, version: int, value: int) -> bool:
        """Whether iterating this entry yields the address (used to drop repeats)."""
        if self.kind == "name" or version != self.version:
            return False
        if self.kind == "octets":
            return all(((value >> shift) & 0xFF) in octets
                       for shift, octets in zip((24, 16, 8, 0), self.octets, strict=True))
        if not self.start <= value <= self.end:
            return False
        return self.kind == "address" or not _never_a_host(_to_address(version, value))

    def addresses(self) -> Iterator[int]:
        for lo, hi in self.intervals():
            yield from range(lo, hi + 1)

    def nth(self, k: int) -> int:
        """The ``k``-th of ``count()`` addresses (any fixed order; octets: lexicographic)."""
        if self.kind != "octets":
            return self.start + k
        value = 0
        for shift, octets in zip((0, 8, 16, 24), reversed(self.octets), strict=True):
            k, i = divmod(k, len(octets))
            value |= octets[i] << shift
        return value

    def index(self, value: int) -> int:
        """``nth``'s inverse: which ``k`` gives ``value`` (which this entry must contain)."""
        if self.kind != "octets":
            return value - self.start
        k = 0
        for shift, octets in zip((24, 16, 8, 0), self.octets, strict=True):
            k = k * len(octets) + bisect.bisect_left(octets, (value >> shift) & 0xFF)
        return k


def _parse_octet_part(part: str, whole: str) -> tuple[int, ...]:
    if part == "*":
        return tuple(range(256))
    values: set[int] = set()
    for piece in part.split(","):
        lo_s, _, hi_s = piece.partition("-")
        lo, hi = int(lo_s), int(hi_s or lo_s)
        if lo > 255 or hi > 255:
            raise SpecError(f"octet {piece!r} in {whole!r} is out of range 0-255")
        if lo > hi:
            raise SpecError(f"octet range {piece!r} in {whole!r} runs backwards")
        values.update(range(lo, hi + 1))
    return tuple(sorted(values))


def _parse_address(text: str, whole: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise SpecError(f"{text!r} in {whole!r} is not a valid IP address") from None


#: ``127.0.0.1:22``, ``[::1]:22``, ``host.example:443``: an address with a port, as other
#: tools write an endpoint. (A bare IPv6 address never matches: its left part has colons.)
_ENDPOINT = re.compile(r"\[(?P<v6>[0-9A-Fa-f:.]+)\]:(?P<p6>[0-9]{1,5})"
                       r"|(?P<host>[^:\[\]/]+):(?P<port>[0-9]{1,5})")


def _refuse_port_or_url(raw: str, text: str) -> None:
    """A target with a port or a scheme is what a user of curl or ssh would write: say
    where the port goes instead of calling it an invalid address."""
    if "://" in text:
        raise SpecError(f"{raw!r} is a URL, not a target: give the address or name alone "
                        f"(and its port with -p)")
    match = _ENDPOINT.fullmatch(text)
    if match:
        host = match["v6"] or match["host"]
        port = match["p6"] or match["port"]
        raise SpecError(f"{raw!r} is not a target: ports are given apart from addresses "
                        f"({host} with -p {port})")


def network_problem(text: str) -> str:
    """Why ``text`` (``ADDRESS/PREFIX``) is no network, in a few words that do not repeat
    it (the caller names the value): ``ipaddress`` says only that it "does not appear to
    be an IPv4 or IPv6 network", whichever half is wrong."""
    address, _, prefix = text.strip().partition("/")
    version = 6 if ":" in address else 4
    bits = _IPV4_BITS if version == 4 else _IPV6_BITS
    if "/" in prefix:
        return "one '/' at most"
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return f"{address!r} is not an IPv{version} address"
    if prefix.isdigit() and int(prefix) > bits:
        return f"the prefix length is 0-{bits} for IPv{version}, not {prefix}"
    masks = " or a netmask" if version == 4 else ""
    return f"the prefix {prefix!r} is not a length 0-{bits}{masks}"


def _looks_numeric(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9.*,\-]+", text))


def parse_target(text: str, whole_network: bool = False) -> TargetItem:
    """Parse one target entry, raising ``SpecError`` naming the value and the reason.

    ``whole_network`` keeps a CIDR's network and broadcast addresses: an exclude of
    127.1.0.0/24 must cover all of it, though a scan of it skips those two.
    """
    raw = text
    text = text.strip()
    if not text:
        raise SpecError("empty target")
    _refuse_port_or_url(raw, text)
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if "/" in text:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise SpecError(f"{raw!r} is not a valid network: {network_problem(text)}"
                            ) from None
        first, last = int(net.network_address), int(net.broadcast_address)
        bits = _IPV4_BITS if net.version == 4 else _IPV6_BITS
        if net.prefixlen < bits - 1 and not whole_network:
            # skip the network address (and, for IPv4, the broadcast address)
            first += 1
            if net.version == 4:
                last -= 1
        return TargetItem(raw, "network", net.version, first, last)
    try:
        addr = ipaddress.ip_address(text)
        return TargetItem(raw, "address", addr.version, int(addr), int(addr))
    except ValueError:
        pass
    if ":" in text and "-" in text:
        lo_s, _, hi_s = text.partition("-")
        lo, hi = _parse_address(lo_s, raw), _parse_address(hi_s, raw)
        return _range_item(raw, lo, hi)
    if _looks_numeric(text):
        parts = text.split(".")
        if len(parts) != 4:
            if text.count("-") == 1 and len(text.split("-")[1].split(".")) == 4:
                lo_s, _, hi_s = text.partition("-")
                return _range_item(raw, _parse_address(lo_s, raw), _parse_address(hi_s, raw))
            raise SpecError(f"{raw!r} is not a valid IPv4 address, range or network")
        if re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+-[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+", text):
            lo_s, _, hi_s = text.partition("-")
            return _range_item(raw, _parse_address(lo_s, raw), _parse_address(hi_s, raw))
        for p in parts:
            if not p or not _OCTET_PART.match(p):
                raise SpecError(f"{raw!r} is not a valid IPv4 address or octet range")
        octets = tuple(_parse_octet_part(p, raw) for p in parts)
        return TargetItem(raw, "octets", 4, octets=octets)
    labels = text.rstrip(".").split(".")
    if len(text) > 253 or not all(_HOSTNAME_LABEL.match(label) for label in labels):
        raise SpecError(f"{raw!r} is not a valid address, network, range or hostname")
    if labels[-1].isascii() and labels[-1].isdigit():
        raise SpecError(f"{raw!r} is not a valid IP address or hostname")
    return TargetItem(raw, "name", 0)


def _range_item(raw: str, lo: ipaddress.IPv4Address | ipaddress.IPv6Address,
                hi: ipaddress.IPv4Address | ipaddress.IPv6Address) -> TargetItem:
    if lo.version != hi.version:
        raise SpecError(f"range {raw!r} mixes IPv4 and IPv6")
    if int(lo) > int(hi):
        raise SpecError(f"range {raw!r} runs backwards")
    return TargetItem(raw, "range", lo.version, int(lo), int(hi))


def address_order(address: str) -> tuple[int, int, str]:
    """Sort key for reports: IPv4 by number, then IPv6, then names (unresolved targets)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return (9, 0, address)
    return (ip.version, int(ip), address)


def _to_address(version: int, value: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


def _host_text(version: int, value: int, single: bool) -> str | None:
    """An address's text as ipaddress writes it, or None where a network or range never
    yields it (``_never_a_host``; a single address is always a host). IPv4 in C: each
    shard of a /16 takes every one of its hosts from here, and the ipaddress objects cost
    4.3 us a host where this costs under 1."""
    if version == 4:
        if not single and (value >> 28 == 0xE or value == 0 or value == 0xFFFFFFFF):
            return None  # multicast (224/4), unspecified, limited broadcast
        return socket.inet_ntoa(value.to_bytes(4, "big"))
    addr = ipaddress.IPv6Address(value)
    return None if not single and _never_a_host(addr) else str(addr)


@dataclass
class TargetSpec:
    """A parsed target list with its excludes; iterating it yields ``Target``s lazily."""

    items: list[TargetItem]
    excludes: list[TargetItem] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ex: dict[int, tuple[list[int], list[int]]] = {}
        for version in (4, 6):
            spans = sorted(iv for ex in self.excludes if ex.version == version
                           for iv in ex.intervals())
            merged: list[list[int]] = []
            for lo, hi in spans:
                if merged and lo <= merged[-1][1] + 1:
                    merged[-1][1] = max(merged[-1][1], hi)
                else:
                    merged.append([lo, hi])
            self._ex[version] = ([m[0] for m in merged], [m[1] for m in merged])
        self._ex_names = {ex.text.strip().lower().rstrip(".")
                          for ex in self.excludes if ex.kind == "name"}

    def is_excluded(self, version: int, value: int) -> bool:
        starts, ends = self._ex[version]
        i = bisect.bisect_right(starts, value) - 1
        return i >= 0 and value <= ends[i]

    def is_excluded_name(self, name: str) -> bool:
        return name.lower().rstrip(".") in self._ex_names

    def loopback_only(self) -> bool:
        """True when nothing can leave the machine (127/8, ::1, localhost)."""
        for item in self.items:
            if item.kind == "name":
                if item.text.strip().lower().rstrip(".") not in ("localhost", "localhost6"):
                    return False
                continue
            for lo, hi in item.intervals():
                if item.version == 4 and not (lo >> 24 == 127 and hi >> 24 == 127):
                    return False
                if item.version == 6 and not (lo == hi == 1):
                    return False
        return True

    def count(self) -> int:
        """Upper bound of addresses to scan (excludes not subtracted); cheap for a /8."""
        return sum(item.count() for item in self.items)

    def at(self, position: int) -> Target | None:
        """The target at ``position`` (0 <= position < ``count()``) of the entries laid end
        to end, or None where iterating skips it (excluded, an earlier entry's, never a
        host). Over every position, each target iteration yields comes out exactly once:
        so a shard can take its positions without walking the whole list."""
        starts = self.__dict__.get("_starts")
        if starts is None:
            starts = list(itertools.accumulate((item.count() for item in self.items),
                                               initial=0))
            self.__dict__["_starts"] = starts
        i = bisect.bisect_right(starts, position) - 1
        item = self.items[i]
        if item.kind == "name":
            name = item.text.strip().rstrip(".")
            lower = name.lower()
            if self.is_excluded_name(name) or any(
                    e.kind == "name" and e.text.strip().rstrip(".").lower() == lower
                    for e in self.items[:i]):
                return None
            return Target(None, name, 0)
        value = item.nth(position - starts[i])
        if self.is_excluded(item.version, value) or any(
                e.kind != "name" and e.version == item.version
                and e.contains(item.version, value) for e in self.items[:i]):
            return None
        text = _host_text(item.version, value, item.kind == "address")
        return None if text is None else Target(text, None, item.version)

    def position_of(self, address: str) -> int | None:
        """``at``'s inverse for an address: the position iterating yields it at (its first
        entry's), or None when this list never yields it. A resumed scan keys what is
        decided by position, so a /8 is a bitmap of positions, not a set of strings."""
        try:
            addr = ipaddress.ip_address(address)
        except ValueError:
            return None
        version, value = addr.version, int(addr)
        if self.is_excluded(version, value):
            return None
        start = 0
        for item in self.items:
            if item.kind != "name" and item.contains(version, value):
                return start + item.index(value)
            start += item.count()
        return None

    def name_position(self, name: str) -> int | None:
        """The position of a name entry (its first, as iterating yields it), or None."""
        lower = name.strip().rstrip(".").lower()
        if lower in self._ex_names:
            return None
        start = 0
        for item in self.items:
            if item.kind == "name" and item.text.strip().rstrip(".").lower() == lower:
                return start
            start += item.count()
        return None

    def __iter__(self) -> Iterator[Target]:
        """Each address once, even when entries overlap (an address and its network)."""
        seen_names: set[str] = set()
        for i, item in enumerate(self.items):
            if item.kind == "name":
                name = item.text.strip().rstrip(".")
                if not self.is_excluded_name(name) and name.lower() not in seen_names:
                    seen_names.add(name.lower())
                    yield Target(None, name, 0)
                continue
            earlier = [e for e in self.items[:i] if e.kind != "name" and e.version == item.version]
            single = item.kind == "address"
            for value in item.addresses():
                if self.is_excluded(item.version, value):
                    continue
                if earlier and any(e.contains(item.version, value) for e in earlier):
                    continue
                text = _host_text(item.version, value, single)
                if text is not None:
                    yield Target(text, None, item.version)


def _split(spec: str | Iterable[str]) -> list[str]:
    if isinstance(spec, str):
        parts = spec.replace(",", " ").split() if not _has_octet_commas(spec) else spec.split()
        return parts
    out: list[str] = []
    for s in spec:
        if not isinstance(s, str):
            raise SpecError(f"target {s!r} must be a string")
        out.extend(_split(s) if s.strip() else [s])
    return out


def split_targets(spec: str | Iterable[str]) -> list[str]:
    """Entries as the command line splits them: on spaces and commas, except an nmap
    octet list's (``127.0.0.1,2,3`` is one entry)."""
    return _split(spec)


def _has_octet_commas(spec: str) -> bool:
    # "127.0.0.1,2,3" is an nmap octet list, not three targets
    return any(_looks_numeric(tok) and tok.count(".") == 3 and "," in tok for tok in spec.split())


def parse_targets(targets: str | Iterable[str], exclude: str | Iterable[str] = ()) -> TargetSpec:
    """Parse targets and excludes; an empty list is an error, never 'scan everything'."""
    entries = _split(targets)
    if not entries:
        raise SpecError("no targets given: name at least one address, network or hostname")
    items = [parse_target(e) for e in entries]
    excludes = [parse_target(e, whole_network=True) for e in _split(exclude)] if exclude else []
    return TargetSpec(items, excludes)


def literal_target(address: str) -> tuple[Target, bool] | None:
    """The target a literal address is scanned as (its text as iterating a target list
    gives it) and whether it is loopback; None for anything else. A dotted quad is read
    in C: a nornir run reads thousands, and ``ipaddress`` costs more than the rest of a
    host's options."""
    try:
        packed = socket.inet_pton(socket.AF_INET, address)
    except (OSError, ValueError, TypeError):
        pass
    else:
        if socket.inet_ntop(socket.AF_INET, packed) == address:
            return Target(address, None, 4), packed[0] == 127
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return Target(str(ip), None, ip.version), (ip.is_loopback if ip.version == 4
                                               else int(ip) == 1)


class AddressList:
    """Literal addresses, one target each: the target source of a nornir run's merged
    plan (plugins/tasks/merged.py), which the engine walks.

    It lives here, with the other target sources, because a plan is pickled to the fork
    server (engine/shards/forkserver.py): unpickling it there imports this module, and a
    class in the plugins would import nornir into the server.

    Kept as one string, not a Target per host: each shard worker walks the whole list to
    find its slice, and touching tens of thousands of objects forked from the parent
    (their reference counts) would copy every page they lie on into each worker. Targets
    are made as the walk goes, and dropped behind it."""

    def __init__(self, targets: list[Target]) -> None:
        self._text = "\n".join(t.address or "" for t in targets)
        self._versions = bytes(t.version for t in targets)

    def __iter__(self) -> Iterator[Target]:
        text, start = self._text, 0
        for version in self._versions:
            end = text.find("\n", start)
            if end < 0:
                end = len(text)
            yield Target(text[start:end], None, version)
            start = end + 1

    def count(self) -> int:
        return len(self._versions)
