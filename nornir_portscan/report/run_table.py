"""The human view of a nornir run: per host its open ports, then violations, then a summary."""

from __future__ import annotations

from typing import IO, Any

from .document import STATES


def _c(text: str, code: str, color: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if color else text


def render(doc: dict[str, Any], stream: IO[str], color: bool = False) -> None:
    out = stream
    for name, entry in sorted(doc["hosts"].items()):
        result = entry.get("result") if isinstance(entry.get("result"), dict) else None
        if entry.get("failed") and result is None:
            out.write(_c(f"{name}: FAILED", "1;31", color) + f"  {entry.get('error') or ''}\n")
            continue
        if result is None:
            # the run stopped before this host: say so rather than drop it
            out.write(f"{_c(name, '1', color)}  {_c('not scanned', '33', color)}\n")
            continue
        violations = result.get("violations", [])
        mark = _c("VIOLATED", "1;31", color) if violations else _c("ok", "32", color)
        out.write(f"{_c(name, '1', color)}  {mark}\n")
        for address, target in result.get("targets", {}).items():
            label = f"{target.get('name')} ({address})" if target.get("name") else address
            opened = [(int(p), v) for p, v in target["ports"].items() if v["state"] == "open"]
            counts: dict[str, int] = {}
            for v in target["ports"].values():
                counts[v["state"]] = counts.get(v["state"], 0) + 1
            rest = ", ".join(f"{counts[s]} {s}" for s in STATES if s != "open" and counts.get(s))
            out.write(f"  {label}  {target.get('status', '?')}"
                      f"{'  [' + rest + ']' if rest else ''}\n")
            for port, v in sorted(opened):
                rtt = "-" if v.get("rtt_ms") is None else f"{v['rtt_ms']:.2f}ms"
                banner = v.get("banner") or ""
                out.write(f"    {port:<7}{_c('open', '32', color)}  {v['reason']:<9}"
                          f"{rtt:>10}  {banner}".rstrip() + "\n")
        for line in violations:
            out.write("  " + _c(f"! {line}", "31", color) + "\n")
        for line in result.get("errors", []):
            out.write("  " + _c(f"! {line}", "31", color) + "\n")
        diff = entry.get("diff") or ""
        if diff:
            for line in str(diff).splitlines():
                out.write(f"  ~ {line}\n")
    s = doc.get("summary", {})
    counts = s.get("counts", {})
    parts = ", ".join(f"{counts[k]} {k}" for k in STATES if counts.get(k))
    status = " (interrupted: partial results)" if doc.get("interrupted") else ""
    viol = s.get("violations", 0)
    changed = sum(1 for e in doc["hosts"].values() if e.get("changed"))
    out.write(f"{s.get('hosts', 0)} hosts, {s.get('probes', 0)} probes in "
              f"{doc.get('elapsed_s', 0):.2f} s: {parts or 'nothing scanned'}; "
              + (_c(f"{viol} violation(s)", "1;31", color) if viol else "no violations")
              + (f", {s.get('failed')} host(s) failed" if s.get("failed") else "")
              + (f", {changed} host(s) changed since the baseline" if changed else "")
              + f"{status}\n")
    out.flush()
