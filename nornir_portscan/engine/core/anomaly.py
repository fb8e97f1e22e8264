"""A host-level verdict, ``anomaly``: hosts whose ports cannot be read one by one.

Ports keep their own states (a SYN proxy's closed port is ``closed``, an all-open host's
port 23 does accept); the anomaly tells a reader why the host looks the way it does.

The rule, from a host's finished ports (counts, so it costs nothing per port). Both
anomalies are hosts where *every* probed port completed a handshake: a single port that
refused, stayed silent or was unreachable shows the host's own stack answering, and the
host is ordinary (its ports are listed as usual, each with its own state).

- ``all-open``: at least ``ALL_OPEN_MIN_PORTS`` ports probed and every one of them open.
  Fewer ports say nothing: a host may well serve 22, 80 and 443.
- ``syn-proxy``: at least ``SYN_PROXY_MIN_RESETS`` ports reset right after the handshake
  (``reset-after-syn-ack``), at least half of the ports probed. One service that accepts
  and drops connections is not a proxy; a host that completes every handshake and resets
  most of them is answering SYNs it has no service for.
"""

from __future__ import annotations

from collections.abc import Sequence

from .hold import RESET_AFTER_SYN_ACK

SYN_PROXY = "syn-proxy"
ALL_OPEN = "all-open"
ANOMALIES = (SYN_PROXY, ALL_OPEN)

#: Ports a host must have been probed on before "every port accepts" means anything.
ALL_OPEN_MIN_PORTS = 64
#: Resets after the handshake before a host is called a SYN proxy.
SYN_PROXY_MIN_RESETS = 8


def judge(probed: int, opened: int, resets: int) -> str | None:
    """The anomaly of a host with ``probed`` ports, ``opened`` of them open and ``resets``
    closed by a reset right after the handshake; None for an ordinary host."""
    if opened + resets != probed or probed == 0:
        return None
    if resets == 0:
        return ALL_OPEN if probed >= ALL_OPEN_MIN_PORTS else None
    if resets >= SYN_PROXY_MIN_RESETS and 2 * resets >= probed:
        return SYN_PROXY
    return None


def judge_ports(states_reasons: Sequence[tuple[str, str | None]]) -> str | None:
    """``judge`` over (state, reason) pairs, one per probed port."""
    opened = resets = 0
    for state, reason in states_reasons:
        if state == "open":
            opened += 1
        elif reason == RESET_AFTER_SYN_ACK:
            resets += 1
    return judge(len(states_reasons), opened, resets)


def describe(anomaly: str, probed: int, opened: int, resets: int) -> str:
    """The one line a person reads: the table's, an expectation's, junit's."""
    if anomaly == ALL_OPEN:
        return f"all-open: every one of {probed} probed ports accepts"
    if anomaly == SYN_PROXY:
        return (f"syn-proxy: {resets} of {probed} probed ports reset right after the "
                f"handshake: closed behind a SYN proxy, {opened} open")
    return anomaly


def could_be(state_open: bool, reason: str) -> bool:
    """Whether a port's outcome leaves its host a candidate for an anomaly: only open
    ports and resets after the handshake do; any other answer (or silence) rules the host
    out for good (``judge`` needs every port open or reset after its handshake)."""
    return state_open or reason == RESET_AFTER_SYN_ACK
