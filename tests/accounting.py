"""The accounting invariant, asserted the same way wherever real scans run."""

from __future__ import annotations

from collections.abc import Iterable

from nornir_portscan.engine.core.outcome import ProbeOutcome


def exactly_once(outcomes: list[ProbeOutcome], hosts: Iterable[str],
                 ports: Iterable[int]) -> dict[tuple[str, int], ProbeOutcome]:
    """Every (host, port) exactly once, nothing else; returns them keyed."""
    got: dict[tuple[str, int], ProbeOutcome] = {}
    for o in outcomes:
        assert (o.host, o.port) not in got, f"outcome twice: {got[(o.host, o.port)]} and {o}"
        got[(o.host, o.port)] = o
    want = {(h, p) for h in hosts for p in ports}
    assert set(got) == want, (f"missing {sorted(want - set(got))[:5]}, "
                              f"extra {sorted(set(got) - want)[:5]}")
    return got
