"""The run document as one self-contained HTML page, for an ops team to attach to a ticket.

The page fetches nothing (inline CSS, no script, a Content-Security-Policy that
forbids loading anything), so it reads the same offline, in a mail client or
in a ticket system's preview. Every value from the document goes through
``html.escape``: banners and names are whatever a device chose to send.

Layout, top to bottom: the run's counts, violated expectations in red (the
thing someone opened the ticket for), what changed since the baseline, then
one table per nornir host with its open ports, reasons, RTTs and banners.
Addresses that answered nothing are folded into one row per host so a sweep
of a /24 stays readable.
"""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Iterable, Mapping
from importlib import resources
from string import Template
from typing import IO, Any

from ..engine.core.anomaly import ALL_OPEN, describe
from ..engine.core.hold import RESET_AFTER_SYN_ACK
from ..engine.core.outcome import STATE_ORDER
from ..plugins.common.ports import ports_in_state
from ..plugins.common.shapes import PortEntry, TargetEntry
from ._common import (
    address_key,
    clean_text,
    elapsed_of,
    errors_of,
    host_result,
    one_line,
    service_name,
    sorted_ports,
    started_at,
    targets_of,
    violations_of,
)
from .document import HostEntry, RunDocument

#: Quiet addresses (nothing open, no answer) listed one per row up to this many per host.
QUIET_ROWS = 8

#: Banner characters shown in the table; the full banner is in the cell's tooltip.
BANNER_CHARS = 300


def _e(value: object) -> str:
    """Escape for HTML text and attribute values alike, control characters made visible."""
    return html.escape(clean_text(value), quote=True)


def _template() -> Template:
    page = resources.files("nornir_portscan.report") / "templates" / "report.html"
    text = page.read_text("utf-8")
    return Template(text)


def _badge(state: str, count: int | None = None, label: str | None = None) -> str:
    k = "" if count is None else f'<span class="k">{count}</span>'
    return f'<span class="badge s-{_e(state)}">{_e(label or state)}{k}</span>'


def _card(n: object, label: str, tone: str = "") -> str:
    cls = f"card {tone}".strip()
    return f'<div class="{cls}"><div class="n">{_e(n)}</div><div class="l">{_e(label)}</div></div>'


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _addresses(doc: RunDocument) -> dict[str, str]:
    """Every scanned address with its best status across nornir hosts."""
    rank = {"up": 0, "unreachable": 1, "down": 2}
    seen: dict[str, str] = {}
    for entry in (doc.get("hosts") or {}).values():
        for address, target in targets_of(entry).items():
            status = str(target.get("status") or "down")
            if address not in seen or rank.get(status, 3) < rank.get(seen[address], 3):
                seen[address] = status
    return seen


def _summary(doc: RunDocument) -> tuple[str, str]:
    summary = doc.get("summary") or {}
    counts = summary.get("counts") or {}
    addresses = _addresses(doc)
    up = sum(1 for s in addresses.values() if s == "up")
    violations = _int(summary.get("violations"))
    failed = _int(summary.get("failed"))
    cards = [
        _card(_int(summary.get("hosts", len(doc.get("hosts") or {}))), "nornir hosts"),
        _card(f"{up} / {len(addresses)}", "addresses up"),
        _card(_int(summary.get("probes")), "ports probed"),
        _card(_int(counts.get("open")), "open ports", "good" if counts.get("open") else ""),
        _card(violations, "violations", "bad" if violations else "good"),
    ]
    if failed:
        cards.append(_card(failed, "hosts failed", "bad"))
    badges = [_badge(s, _int(counts.get(s))) for s in STATE_ORDER if counts.get(s)]
    extra = sorted(set(counts) - set(STATE_ORDER))
    badges += [_badge("error", _int(counts[s]), str(s)) for s in extra]
    return "".join(cards), "".join(badges) or '<span class="badge s-closed">nothing scanned</span>'


def _violations(doc: RunDocument) -> str:
    items: list[str] = []
    for host_name, entry in (doc.get("hosts") or {}).items():
        for line in violations_of(entry):
            items.append(f'<li><span class="host-tag">{_e(host_name)}</span>'
                         f'<code>{_e(line)}</code></li>')
    if not items:
        return ('<section class="ok"><h2>All expectations hold</h2></section>'
                if doc.get("hosts") else "")
    return (f'<section class="violations"><h2>Violations<span class="count">{len(items)}'
            f'</span></h2><ul class="lines">{"".join(items)}</ul></section>')


def _ports_text(ports: Iterable[object]) -> str:
    return ", ".join(_e(p) for p in ports)


def _changes(doc: RunDocument) -> str:
    """What moved since the baseline; nothing at all when no host carries a diff."""
    rows: list[str] = []
    any_diff = False
    for host_name, entry in (doc.get("hosts") or {}).items():
        d = host_result(entry).get("diff")
        if not isinstance(d, Mapping):
            continue
        any_diff = True
        tag = f'<span class="host-tag">{_e(host_name)}</span>'
        for address in d.get("appeared") or []:
            rows.append(f'<li>{tag}<span class="plus">+</span> host <code>{_e(address)}</code>'
                        " appeared</li>")
        for address in d.get("vanished") or []:
            rows.append(f'<li>{tag}<span class="minus">&minus;</span> host '
                        f"<code>{_e(address)}</code> vanished</li>")
        for address, ports in (d.get("opened") or {}).items():
            rows.append(f'<li>{tag}<span class="plus">+</span> <code>{_e(address)}</code> '
                        f"opened {_ports_text(ports)}</li>")
        for address, ports in (d.get("closed") or {}).items():
            rows.append(f'<li>{tag}<span class="minus">&minus;</span> <code>{_e(address)}</code>'
                        f" no longer open: {_ports_text(ports)}</li>")
    if not any_diff:
        return ""
    body = (f'<ul class="lines">{"".join(rows)}</ul>' if rows
            else '<p class="quiet">Nothing changed since the baseline.</p>')
    return (f'<section class="changes"><h2>Changes since baseline<span class="count">'
            f"{len(rows)}</span></h2>{body}</section>")


def _rtt(value: Any) -> str:
    try:
        return f"{float(value):.2f}"
    except (TypeError, ValueError):
        return "&ndash;"


def _banner(value: object) -> str:
    if not value:
        return ""
    full = clean_text(value)
    shown = full if len(full) <= BANNER_CHARS else full[: BANNER_CHARS - 1] + "\u2026"
    title = one_line(full, 2000)
    return f'<code class="banner" title="{_e(title)}">{_e(shown.strip())}</code>'


def _tally(ports: list[tuple[int, PortEntry]], skip_open: bool = True) -> str:
    counts: dict[str, int] = {}
    for _, p in ports:
        counts[str(p.get("state"))] = counts.get(str(p.get("state")), 0) + 1
    parts = [f"{counts[s]} {s}" for s in STATE_ORDER if counts.get(s) and not (skip_open
                                                                          and s == "open")]
    return ", ".join(parts)


def _address_rows(address: str, target: TargetEntry) -> list[str]:
    ports = sorted_ports(target)
    status = str(target.get("status") or "down")
    name = target.get("name")
    label = _e(address) + (f'<span class="name">{_e(name)}</span>'
                           if name and name != address else "")
    opened = [(p, v) for p, v in ports if v.get("state") == "open"]
    tally = _tally(ports)
    status_cell = (f'{_badge(status)}<div class="quiet" style="font-size:12px">'
                   f"{_e(tally)}</div>" if tally else _badge(status))
    anomaly = target.get("anomaly")
    if anomaly:  # engine/core/anomaly.py: one line for all-open, a note beside a proxy's ports
        resets = sum(1 for _, p in ports if p.get("reason") == RESET_AFTER_SYN_ACK)
        note = _e(describe(str(anomaly), len(ports), len(opened), resets))
        if anomaly == ALL_OPEN:
            return [f'<tr class="group"><td class="addr">{label}</td><td>{status_cell}</td>'
                    f'<td colspan="5">{note}</td></tr>']
        status_cell += f'<div style="font-size:12px">{note}</div>'
    if not opened:
        return [f'<tr class="group"><td class="addr">{label}</td><td>{status_cell}</td>'
                f'<td class="quiet" colspan="5">no open port</td></tr>']
    rows: list[str] = []
    span = len(opened)
    for i, (port, p) in enumerate(opened):
        lead = (f'<td class="addr" rowspan="{span}">{label}</td>'
                f'<td rowspan="{span}">{status_cell}</td>' if i == 0 else "")
        rows.append(f'<tr{" class=group" if i == 0 else ""}>{lead}'
                    f'<td class="num mono">{port}</td><td>{_e(service_name(port) or "")}</td>'
                    f'<td class="mono">{_e(p.get("reason") or "")}</td>'
                    f'<td class="num mono">{_rtt(p.get("rtt_ms"))}</td>'
                    f"<td>{_banner(p.get('banner'))}</td></tr>")
    return rows


def _host(host_name: str, entry: HostEntry) -> str:
    violations = violations_of(entry)
    result = host_result(entry)
    error = "\n".join(errors_of(entry))
    if error or entry.get("failed"):
        verdict = ('<span class="verdict v-fail">failed</span>' if not violations
                   else '<span class="verdict v-fail">violated</span>')
    elif not result:
        verdict = '<span class="verdict v-skip">not scanned</span>'
    else:
        verdict = '<span class="verdict v-pass">pass</span>'
    counts = result.get("summary") or {}
    badges = "".join(_badge(s, _int(counts.get(s))) for s in STATE_ORDER if counts.get(s))
    parts = [f'<section class="host"><div class="host-head"><h2>{_e(host_name)}</h2>{verdict}'
             f'<div class="badges">{badges}</div></div>']
    if error:
        parts.append(f'<div class="host-error mono">{_e(error)}</div>')
    if violations:
        lines = "".join(f"<li><code>{_e(v)}</code></li>" for v in violations)
        parts.append(f'<div class="host-violations"><strong>{len(violations)} expectation'
                     f'{"" if len(violations) == 1 else "s"} violated</strong>'
                     f"<ul>{lines}</ul></div>")
    targets = targets_of(entry)
    if targets:
        rows: list[str] = []
        quiet: dict[str, list[str]] = {}
        ordered = sorted(targets, key=address_key)
        for address in ordered:
            status = str(targets[address].get("status") or "down")
            if status != "up" and not ports_in_state(targets[address], "open"):
                quiet.setdefault(status, []).append(address)
        # a status with few silent addresses stays in address order; many fold into one row
        folded = {s: a for s, a in quiet.items() if len(a) > QUIET_ROWS}
        hidden = {a for addresses in folded.values() for a in addresses}
        for address in ordered:
            if address not in hidden:
                rows += _address_rows(address, targets[address])
        for status, addresses in sorted(folded.items()):
            shown = ", ".join(_e(a) for a in addresses[:QUIET_ROWS])
            rows.append(f'<tr class="group"><td class="addr">{len(addresses)} addresses</td>'
                        f"<td>{_badge(status)}</td><td class=\"quiet\" colspan=\"5\">"
                        f"nothing open: {shown}, &hellip; and {len(addresses) - QUIET_ROWS} "
                        "more</td></tr>")
        parts.append('<table class="ports"><colgroup><col class="c-addr"><col class="c-status">'
                     '<col class="c-port"><col class="c-svc"><col class="c-reason">'
                     '<col class="c-rtt"><col></colgroup>'
                     '<thead><tr><th>Address</th><th>Status</th>'
                     '<th class="num">Port</th><th>Service</th><th>Reason</th>'
                     '<th class="num">RTT ms</th><th>Banner</th></tr></thead>'
                     f'<tbody>{"".join(rows)}</tbody></table>')
    elif not error:
        parts.append('<p class="quiet">No address was scanned for this host.</p>')
    parts.append("</section>")
    return "".join(parts)


def render(doc: RunDocument, stream: IO[str], *,
           generated: _dt.datetime | None = None) -> None:
    """Write ``doc`` as a self-contained HTML page to ``stream``.

    ``generated`` pins the "generated" time (tests); it defaults to now.
    """
    generated = generated or _dt.datetime.now(_dt.timezone.utc)
    started = started_at(doc).astimezone(_dt.timezone.utc)
    version = str(doc.get("version") or "")
    meta = [f"started {started:%Y-%m-%d %H:%M:%S} UTC",
            f"took {elapsed_of(doc):.2f} s",
            f"generated {generated.astimezone(_dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC",
            f"{doc.get('tool') or 'nornir-portscan'} {version}".strip()]
    alerts = ""
    if doc.get("interrupted"):
        alerts = ('<div class="alert warn"><strong>Interrupted:</strong> the run was stopped '
                  "before it finished; these are partial results.</div>")
    cards, state_badges = _summary(doc)
    hosts = "\n".join(_host(str(name), entry if isinstance(entry, Mapping) else {})
                      for name, entry in (doc.get("hosts") or {}).items())
    options = doc.get("options") or {}
    footer = ""
    if isinstance(options, Mapping) and options:
        footer = "Options: " + "; ".join(
            f"{_e(k)}={_e(one_line(v, 200))}" for k, v in options.items() if v is not None)
    page = _template().substitute(
        title="Port scan report", version=_e(version),
        meta="".join(f"<span>{_e(m)}</span>" for m in meta),
        alerts=alerts, cards=cards, state_badges=state_badges,
        violations=_violations(doc), changes=_changes(doc),
        hosts=hosts or '<section><p class="quiet">No hosts in this run.</p></section>',
        footer=footer)
    stream.write(page)
    stream.flush()
