"""A scan's identity: what must be the same for a journal's outcomes to belong to a scan.

A resumed scan reports what an earlier run decided beside what it decides itself, so both
must be the same scan: the same targets in the same order (a journal keys outcomes by a
target's position in the list), the same ports, excludes and every setting that can change
an outcome. Pacing (rate, concurrency, shards, where the shards run) and the size guard
decide no outcome and may change between runs: a scan resumed at a gentler rate is still
the same scan. Which settings count is said once, by ``Setting.decides`` in
inputs/settings.py; compare two identities with ``differences``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ...inputs.settings import scan_identity as settings_identity
from ...inputs.targets import TargetSpec
from .plan import ScanPlan

Identity = dict[str, str]


def port_ranges(ports: Sequence[int]) -> str:
    """``1-1024,8080``: a port tuple short enough to show in one line."""
    if ports and list(ports) == sorted(ports) and ports[-1] - ports[0] + 1 == len(ports):
        return f"{ports[0]}-{ports[-1]}" if len(ports) > 1 else str(ports[0])  # one range
    out: list[str] = []
    first = last = -2
    for port in ports:
        if port == last + 1:
            last = port
            continue
        if last >= 0:
            out.append(str(first) if first == last else f"{first}-{last}")
        first = last = port
    if last >= 0:
        out.append(str(first) if first == last else f"{first}-{last}")
    return ",".join(out)


def scan_identity(plan: ScanPlan) -> Identity:
    """The plan's identity, one text per item, in the order a mismatch names them: the
    targets, excludes and ports, then each setting that can change an outcome
    (``inputs/settings.IDENTITY``, so a new setting counts without an edit here)."""
    spec = plan.spec
    if not isinstance(spec, TargetSpec):
        raise TypeError("only a scan of a target list has an identity (a shard has none)")
    identity = {
        "targets": " ".join(item.text.strip() for item in spec.items),
        "excludes": " ".join(sorted(ex.text.strip() for ex in spec.excludes)),
        "ports": port_ranges(plan.ports),
    }
    for name, value in settings_identity(plan.settings).items():
        identity[name] = " ".join(map(str, value)) if isinstance(value, list) else repr(value)
    return identity


def differences(recorded: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """The items that differ, in ``now``'s order (items only one side has count too)."""
    keys = [*now, *(k for k in recorded if k not in now)]
    return [k for k in keys if recorded.get(k) != now.get(k)]


def describe(recorded: Mapping[str, str], now: Mapping[str, str], items: list[str],
             width: int = 40) -> str:
    """``ports (journal: 1-100; now: 1-200)`` for each differing item, shortened to a line."""
    def short(text: str | None) -> str:
        if text is None:
            return "none"
        if text == "":
            return "none"
        return text if len(text) <= width else text[:width - 3] + "..."

    return ", ".join(f"{k} (journal: {short(recorded.get(k))}; now: {short(now.get(k))})"
                     for k in items)
