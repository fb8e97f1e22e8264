"""Helpers the run-document renderers share: safe text, port lists, service names, order.

Banners and names are untrusted bytes from the network; every renderer goes
through these helpers so that one of them cannot forget to clean a value.
XML 1.0 cannot carry most control characters at all, not even as character
references, so they are made visible (``\\x07``) instead of dropped silently.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..inputs.services import SERVICES
from ..inputs.targets import address_order
from ..plugins.common.ports import each_port
from ..plugins.common.ports import port_ranges as port_ranges
from ..plugins.common.shapes import HostResult, PortEntry, TargetEntry

if TYPE_CHECKING:
    from .document import BaselineRef, HostEntry, RunDocument

# Characters XML 1.0 forbids outright, plus lone surrogates and U+FFFE/U+FFFF.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# C0/C1 controls a person should see as escapes rather than as layout or nothing.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean_text(value: object) -> str:
    """``str(value)`` with control characters (other than tab and newline) made visible."""
    return _CONTROL.sub(_visible, str(value))


def one_line(value: object, limit: int | None = None) -> str:
    """Cleaned text with whitespace runs collapsed, cut to ``limit`` characters."""
    text = " ".join(clean_text(value).split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return text


def xml_text(value: object) -> str:
    """Element content: legal XML characters only, markup characters escaped."""
    text = _XML_ILLEGAL.sub(_visible, str(value))
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def xml_attr(value: object) -> str:
    """A double-quoted attribute value, quotes included.

    Newlines and tabs become character references: a parser would otherwise
    normalise them to spaces, and a banner's line structure would be lost.
    """
    text = (xml_text(value).replace('"', "&quot;").replace("\n", "&#10;")
            .replace("\r", "&#13;").replace("\t", "&#9;"))
    return f'"{text}"'


def xml_comment(value: object) -> str:
    """A comment body: ``--`` may not appear inside one, nor a trailing ``-``."""
    text = _XML_ILLEGAL.sub(_visible, str(value))
    while "--" in text:
        text = text.replace("--", "- -")
    return text + " " if text.endswith("-") else text


address_key = address_order  # the spec layer's order, under the name reports use


def ip_version(address: str) -> int | None:
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        return None


def sorted_ports(target: TargetEntry) -> list[tuple[int, PortEntry]]:
    """An address's (port, entry) pairs in port order, those folded into ``extraports``
    included (plugins/common/ports.py); keys are ints in memory, strings after JSON."""
    return list(each_port(target))


def _service_names() -> dict[int, str]:
    # SERVICES maps typed names to ports, aliases included; the first name listed
    # for a port is the canonical one (``domain`` before ``dns``).
    names: dict[int, str] = {}
    for name, port in SERVICES.items():
        names.setdefault(port, name)
    return names


_NAMES = _service_names()


def service_name(port: int) -> str | None:
    return _NAMES.get(port)


def started_at(doc: RunDocument | BaselineRef) -> _dt.datetime:
    """The run's start as an aware datetime (UTC when the document has no zone)."""
    raw = doc.get("started")
    try:
        when = _dt.datetime.fromisoformat(str(raw))
    except ValueError:
        when = _dt.datetime.fromtimestamp(0, _dt.timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when


def elapsed_of(doc: RunDocument) -> float:
    try:
        return max(0.0, float(doc.get("elapsed_s") or 0.0))
    except (TypeError, ValueError):
        return 0.0


def host_result(entry: HostEntry) -> HostResult:
    """A nornir host's Result dict, ``{}`` when it failed before producing one."""
    result = entry.get("result")
    return {**result} if isinstance(result, Mapping) else {}


def targets_of(entry: HostEntry) -> dict[str, TargetEntry]:
    targets = host_result(entry).get("targets") or {}
    return {str(a): {**t} for a, t in targets.items() if isinstance(t, Mapping)}


def violations_of(entry: HostEntry) -> list[str]:
    return [str(v) for v in host_result(entry).get("violations") or []]


def errors_of(entry: HostEntry) -> list[str]:
    """Why a host's scan broke: the task's error, then probes that could not be made.

    ``result["errors"]`` (set by the portscan task next to ``violations``) lists
    addresses whose ports could not be probed at all, e.g. a name that did not resolve.
    """
    errors = [str(entry["error"])] if entry.get("error") else []
    errors += [str(e) for e in host_result(entry).get("errors") or []]
    return errors
