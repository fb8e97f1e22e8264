"""Scope guards: what a scan may touch, checked before the first packet.

A scanner run unattended must not wander: an allow-list bounds every target,
a size limit stops a mistyped prefix (/8 for /28) from becoming a huge scan.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ScopeError, SpecError
from .settings import DEFAULT_MAX_ADDRESSES
from .targets import TargetSpec, parse_target, split_targets

__all__ = ["DEFAULT_MAX_ADDRESSES", "Scope", "in_networks", "parse_networks",
           "read_target_file"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str], what: str = "allowed network") -> list[Network]:
    nets: list[Network] = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise SpecError(f"{what} {value!r} is not a valid address or network") from None
    return nets


def read_target_file(path: str) -> list[str]:
    """Targets from a file (``-``: standard input), as the command line takes them: one or
    more a line, ``#`` starts a comment. A bad entry names the file and its line."""
    where = "standard input" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{where}: not a text file (UTF-8): {exc.reason} at byte "
                        f"{exc.start}") from None
    out: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            tokens = split_targets(line)
            for token in tokens:
                parse_target(token)
        except SpecError as exc:
            raise SpecError(f"{where}:{lineno}: {exc}") from None
        out.extend(tokens)
    return out


def in_networks(address: str, networks: Iterable[Network]) -> bool:
    """Whether an address lies in any of the networks (of its own IP version)."""
    ip = ipaddress.ip_address(address)
    return any(ip.version == n.version and ip in n for n in networks)


@dataclass
class Scope:
    """The allow-list (empty: anything named) and the size limit."""

    allowed: list[Network] = field(default_factory=list)
    max_addresses: int = DEFAULT_MAX_ADDRESSES

    def allows(self, address: str) -> bool:
        return not self.allowed or in_networks(address, self.allowed)

    def check(self, spec: TargetSpec) -> None:
        """Refuse the whole scan, naming the target, before anything is sent."""
        total = spec.count()
        if total > self.max_addresses:
            raise ScopeError(
                f"the targets cover {total} addresses, over the limit of {self.max_addresses}: "
                f"check the prefix, or raise the limit (--max-hosts {total})")
        if not self.allowed:
            return
        for item in spec.items:
            if item.kind == "name":
                continue  # checked once resolved, before any probe to it
            for lo, hi in item.intervals():
                if not any(n.version == item.version and int(n.network_address) <= lo
                           and hi <= int(n.broadcast_address) for n in self.allowed):
                    allowed = ", ".join(str(n) for n in self.allowed)
                    raise ScopeError(f"target {item.text!r} is outside the allowed networks "
                                     f"({allowed})")
