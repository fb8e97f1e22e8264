"""The run document as nmap XML (``-oX``), so tools that import nmap results import ours.

The output validates against nmap's own DTD (``nmap.dtd``, xmloutputversion
1.05) and follows the layout nmap writes, element for element:

* ``nmaprun scanner="nmap"``: the DTD fixes that value, so it cannot name us;
  ``args`` starts with ``nornir-portscan`` and ``version`` is ours, and a
  comment at the top says who wrote the file.
* one ``host`` per scanned address. An address that several nornir hosts
  scanned is written once, its ports merged, the nornir names in ``comment``.
* port states are nmap's: ``open``, ``closed`` and ``filtered`` as they are;
  ``unreachable`` (an ICMP error) becomes ``filtered`` with our reason, which
  is already nmap's own word for it (``host-unreach``, ``net-unreach``,
  ``admin-prohibited``, ``proto-unreach``), exactly as nmap reports such a
  port; ``error`` (the probe could not be made, so nothing is known about the
  port) becomes nmap's ``unknown`` state, not ``filtered``: ``filtered`` would
  claim the network was silent, which nobody observed.
* host status: ``up`` stays ``up``; ``down`` and ``unreachable`` are ``down``
  (nmap has no unreachable host), with the ICMP reason kept.
* a target that never became an address (a name that did not resolve) is a
  ``<target status="skipped" reason="invalid"/>``, as nmap writes it.
* like nmap, a non-open state with more than ``EXTRA_THRESHOLD`` ports on one
  host is folded into ``extraports`` with its reasons; open ports are always
  listed one by one.
* an interrupted run finishes with ``exit="error"``, as nmap does when stopped.
"""

from __future__ import annotations

import datetime as _dt
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO

from ..engine.core.anomaly import describe
from ..engine.core.hold import RESET_AFTER_SYN_ACK
from ..plugins.common.shapes import PortEntry
from ._common import (
    address_key,
    elapsed_of,
    ip_version,
    one_line,
    port_ranges,
    service_name,
    sorted_ports,
    started_at,
    targets_of,
    xml_attr,
    xml_comment,
    xml_text,
)
from .document import RunDocument

#: nmap's XML format version that the output follows.
XML_OUTPUT_VERSION = "1.05"

#: A non-open state with more ports than this on one host goes into ``extraports``
#: (nmap's own default, so imported reports look like nmap's).
EXTRA_THRESHOLD = 25

#: our port state -> nmap's port state
PORT_STATES: dict[str, str] = {"open": "open", "closed": "closed", "filtered": "filtered",
                               "unreachable": "filtered", "error": "unknown"}

#: our host status -> nmap's host state
HOST_STATES: dict[str, str] = {"up": "up", "down": "down", "unreachable": "down"}

_STATUS_RANK = {"up": 0, "unreachable": 1, "down": 2}


@dataclass
class _Address:
    """One address as nmap sees it: every nornir host that scanned it, merged."""

    address: str
    status: str = "down"
    name: str | None = None
    nornir_hosts: list[str] = field(default_factory=list)
    ports: dict[int, PortEntry] = field(default_factory=dict)
    anomaly: str | None = None  # engine/core/anomaly.py: all-open, syn-proxy


def _collect(doc: RunDocument) -> tuple[list[_Address], list[str], list[str]]:
    """Addresses (merged, sorted), targets that never resolved, and failure notes."""
    merged: dict[str, _Address] = {}
    notes: list[str] = []
    for host_name, entry in (doc.get("hosts") or {}).items():
        targets = targets_of(entry)
        if entry.get("failed") and entry.get("error") and not targets:
            notes.append(f"nornir host {host_name} failed: {one_line(entry['error'], 500)}")
        for address, target in targets.items():
            item = merged.setdefault(address, _Address(address))
            if host_name not in item.nornir_hosts:
                item.nornir_hosts.append(str(host_name))
            if target.get("name") and not item.name:
                item.name = str(target["name"])
            if target.get("anomaly"):
                item.anomaly = str(target["anomaly"])
            status = str(target.get("status") or "down")
            if _STATUS_RANK.get(status, 3) < _STATUS_RANK.get(item.status, 3):
                item.status = status
            for port, pentry in sorted_ports(target):
                item.ports.setdefault(port, pentry)
    ordered = sorted(merged.values(), key=lambda a: address_key(a.address))
    hosts = [a for a in ordered if ip_version(a.address) is not None]
    unresolved = [a.address for a in ordered if ip_version(a.address) is None]
    for a in ordered:  # nmap's DTD allows only reason="invalid": why is a comment
        reasons = {str(p.get("reason")) for p in a.ports.values()}
        if ip_version(a.address) is None and reasons:
            notes.append(f"{a.address}: name not resolved ({', '.join(sorted(reasons))})")
    return hosts, unresolved, notes


def _status_reason(item: _Address) -> str:
    """Why the host is up or down, in nmap's words: the first port that told us."""
    if item.status == "up":
        wanted: tuple[str, ...] = ("open", "closed")
    elif item.status == "unreachable":
        wanted = ("unreachable",)
    else:
        wanted = ("filtered", "error")
    for state in wanted:  # an open port's syn-ack before a closed port's refusal
        for pentry in item.ports.values():
            if pentry.get("state") == state and pentry.get("reason"):
                return str(pentry["reason"])
    return "no-response"


def _times(item: _Address) -> str:
    """``<times>`` in microseconds from the answered probes' RTTs; empty without any."""
    samples = [float(rtt) * 1000.0 for p in item.ports.values()
               if (rtt := p.get("rtt_ms")) is not None and p.get("state") in ("open", "closed")]
    if not samples:
        return ""
    srtt = statistics.fmean(samples)
    rttvar = statistics.fmean(abs(s - srtt) for s in samples)
    # nmap's timeout is srtt + 4 * rttvar, never below its 100 ms floor
    timeout = max(srtt + 4 * rttvar, 100_000.0)
    return (f'<times srtt="{round(srtt)}" rttvar="{round(rttvar)}" '
            f'to="{round(timeout)}"/>\n')


def _port(port: int, pentry: PortEntry) -> str:
    state = str(pentry.get("state") or "error")
    reason = str(pentry.get("reason") or "unknown")
    lines = [f'<port protocol="tcp" portid="{port}">'
             f'<state state={xml_attr(PORT_STATES.get(state, "unknown"))} '
             f'reason={xml_attr(reason)} reason_ttl="0"/>']
    name = service_name(port)
    banner = pentry.get("banner")
    if name is not None or banner:
        extra = f" extrainfo={xml_attr(one_line(banner, 200))}" if banner else ""
        lines.append(f"<service name={xml_attr(name or 'unknown')}{extra} "
                     f'method="table" conf="3"/>')
    lines.append("</port>\n")
    return "".join(lines)


def _ports(item: _Address) -> str:
    by_state: dict[str, list[int]] = defaultdict(list)
    for port, pentry in item.ports.items():
        by_state[PORT_STATES.get(str(pentry.get("state")), "unknown")].append(port)
    folded = {s for s, ports in by_state.items()
              if s != "open" and len(ports) > EXTRA_THRESHOLD}
    out = ["<ports>"]
    for state in sorted(folded):
        ports = by_state[state]
        reasons: dict[str, list[int]] = defaultdict(list)
        for port in ports:
            reasons[str(item.ports[port].get("reason") or "unknown")].append(port)
        out.append(f'<extraports state={xml_attr(state)} count="{len(ports)}">\n')
        for reason, rports in sorted(reasons.items(), key=lambda kv: -len(kv[1])):
            out.append(f'<extrareasons reason={xml_attr(reason)} count="{len(rports)}" '
                       f'proto="tcp" ports="{port_ranges(rports)}"/>\n')
        out.append("</extraports>\n")
    for port, pentry in item.ports.items():
        if PORT_STATES.get(str(pentry.get("state")), "unknown") not in folded:
            out.append(_port(port, pentry))
    out.append("</ports>\n")
    return "".join(out)


def _host(item: _Address, start: int, end: int) -> str:
    family = "ipv6" if ip_version(item.address) == 6 else "ipv4"
    comment = "nornir: " + ", ".join(item.nornir_hosts)
    hostnames = (f"<hostnames>\n<hostname name={xml_attr(item.name)} type=\"user\"/>\n"
                 "</hostnames>\n" if item.name else "<hostnames>\n</hostnames>\n")
    return (f'<host starttime="{start}" endtime="{end}" comment={xml_attr(comment)}>'
            f"<status state={xml_attr(HOST_STATES.get(item.status, 'down'))} "
            f'reason={xml_attr(_status_reason(item))} reason_ttl="0"/>\n'
            f"<address addr={xml_attr(item.address)} addrtype=\"{family}\"/>\n"
            f"{hostnames}{_ports(item)}{_hostscript(item)}{_times(item)}</host>\n")


def _hostscript(item: _Address) -> str:
    """An anomalous host's verdict as host script output, where nmap's format has room for
    a host-level finding (nmap.xsl shows it, ndiff compares it, libnmap reads it); the
    ports stay listed as they are, each with its own state."""
    if item.anomaly is None:
        return ""
    ports = item.ports.values()
    opened = sum(1 for p in ports if p.get("state") == "open")
    resets = sum(1 for p in ports if p.get("reason") == RESET_AFTER_SYN_ACK)
    text = describe(item.anomaly, len(item.ports), opened, resets)
    return (f'<hostscript><script id="nornir-anomaly" output={xml_attr(text)}>'
            f'<elem key="anomaly">{xml_text(item.anomaly)}</elem></script></hostscript>\n')


def _args(doc: RunDocument) -> str:
    """The command line if the document kept one, else the options as ``key=value``."""
    options = doc.get("options") or {}
    argv = options.get("argv") if isinstance(options, Mapping) else None
    if isinstance(argv, (list, tuple)):
        return " ".join(str(a) for a in argv)
    parts = ["nornir-portscan", "run"]
    if isinstance(options, Mapping):
        parts += [f"{k}={v}" for k, v in options.items()
                  if v not in (None, "", [], {}) and not isinstance(v, Mapping)]
    return " ".join(parts)


def _ctime(when: _dt.datetime) -> str:
    # nmap's startstr/timestr are ctime() strings
    return when.ctime()


def render(doc: RunDocument, stream: IO[str]) -> None:
    """Write ``doc`` as an nmap XML report to ``stream``."""
    started = started_at(doc)
    elapsed = elapsed_of(doc)
    finished = started + _dt.timedelta(seconds=elapsed)
    start, end = int(started.timestamp()), int(finished.timestamp())
    hosts, unresolved, notes = _collect(doc)
    scanned = sorted({p for h in hosts for p in h.ports})
    version = str(doc.get("version") or "0")
    w = stream.write
    w('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE nmaprun>\n')
    w(f"<!-- written by nornir-portscan {xml_comment(version)} "
      "(TCP connect scan), not by nmap -->\n")
    w(f'<nmaprun scanner="nmap" args={xml_attr(_args(doc))} start="{start}" '
      f'startstr={xml_attr(_ctime(started))} version={xml_attr(version)} '
      f'xmloutputversion="{XML_OUTPUT_VERSION}">\n')
    w(f'<scaninfo type="connect" protocol="tcp" numservices="{len(scanned)}" '
      f'services="{port_ranges(scanned)}"/>\n')
    w('<verbose level="0"/>\n<debugging level="0"/>\n')
    for note in notes:
        w(f"<!-- {xml_comment(note)} -->\n")
    for name in unresolved:
        w(f'<target specification={xml_attr(name)} status="skipped" reason="invalid"/>\n')
    states: Counter[str] = Counter()
    for item in hosts:
        states[HOST_STATES.get(item.status, "down")] += 1
        w(_host(item, start, end))
    up, total = states["up"], len(hosts)
    interrupted = bool(doc.get("interrupted"))
    summary = (f"nornir-portscan done at {_ctime(finished)}; {total} IP address"
               f"{'' if total == 1 else 'es'} ({up} host{'' if up == 1 else 's'} up) "
               f"scanned in {elapsed:.2f} seconds")
    exit_attrs = ('exit="error" errormsg="interrupted: partial results"' if interrupted
                  else 'exit="success"')
    w(f'<runstats><finished time="{end}" timestr={xml_attr(_ctime(finished))} '
      f'elapsed="{elapsed:.2f}" summary={xml_attr(summary)} {exit_attrs}/>'
      f'<hosts up="{up}" down="{total - up}" total="{total}"/>\n'
      "</runstats>\n</nmaprun>\n")
    stream.flush()
