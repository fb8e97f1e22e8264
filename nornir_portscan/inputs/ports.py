"""Port specifications: ``22``, ``22,80,443``, ``8000-8100``, ``-``/``all``, ``ssh``, ``top100``.

Parsing is strict on purpose: a typo such as ``1-`` or ``65536`` must stop the
scan with a message naming the value, not silently scan something else.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable, Sequence

from ..errors import SpecError
from .services import SERVICES, TOP100, TOP1000

_SERVICE_NAME = re.compile(r"[a-z0-9][a-z0-9_.+-]{0,62}")
MIN_PORT = 1
MAX_PORT = 65535
_ALL_PORTS = range(MIN_PORT, MAX_PORT + 1)  # a range, not a tuple: nothing built at import
_NAMED_SETS: dict[str, Sequence[int]] = {
    "top100": TOP100,
    "top1000": TOP1000,
    "all": _ALL_PORTS,
    "-": _ALL_PORTS,
}


def _port_number(text: str, whole: str) -> int:
    """One port given as digits or a service name."""
    if text.isascii() and text.isdigit():
        value = int(text)
        if not MIN_PORT <= value <= MAX_PORT:
            raise SpecError(f"port {text!r} in {whole!r} is out of range: ports are 1-65535")
        return value
    name = text.lower()
    if name in SERVICES:
        return SERVICES[name]
    if _SERVICE_NAME.fullmatch(name):
        try:
            # The local services database (/etc/services); never a network lookup.
            return socket.getservbyname(name, "tcp")
        except (OSError, ValueError, UnicodeError):
            pass
    raise SpecError(f"unknown port or service name {text!r} in {whole!r}")


def _parse_item(item: str, whole: str) -> Iterable[int]:
    item = item.strip()
    if not item:
        raise SpecError(f"empty entry in port list {whole!r}")
    named = _NAMED_SETS.get(item.lower())
    if named is not None:
        return named
    if "-" in item and not item[0].isalpha():
        low, _, high = item.partition("-")
        low, high = low.strip(), high.strip()
        if not low or not high:
            raise SpecError(f"port range {item!r} in {whole!r} needs both ends, e.g. 1-1024")
        if not (low.isascii() and low.isdigit() and high.isascii() and high.isdigit()):
            raise SpecError(f"port range {item!r} in {whole!r} must be numeric")
        a, b = _port_number(low, whole), _port_number(high, whole)
        if a > b:
            raise SpecError(f"port range {item!r} in {whole!r} runs backwards")
        return range(a, b + 1)
    return (_port_number(item, whole),)


def parse_ports(spec: str | int | Iterable[str | int]) -> tuple[int, ...]:
    """Parse a port spec into a sorted tuple of unique ports.

    Accepts the command-line string form and the inventory form (a YAML list
    of numbers, ranges and names), so both places share one set of rules.
    """
    if isinstance(spec, bool):
        raise SpecError(f"port list must be numbers or names, not {spec!r}")
    if isinstance(spec, int):
        items: list[str] = [str(spec)]
        whole = str(spec)
    elif isinstance(spec, str):
        items = spec.split(",")
        whole = spec
    else:
        try:
            raw = list(spec)
        except TypeError:
            raise SpecError(f"port list must be a string or a list, not {spec!r}") from None
        items = []
        for x in raw:
            if isinstance(x, bool) or not isinstance(x, (int, str)):
                raise SpecError(f"port entry {x!r} must be a number or a name")
            items.append(str(x))
        whole = ",".join(items)
        if not items:
            raise SpecError("empty port list")
    if not whole.strip():
        raise SpecError("empty port list")
    ports: set[int] = set()
    for item in items:
        ports.update(_parse_item(item, whole))
    return tuple(sorted(ports))
