"""The kinds of verdict ``verdicts.py`` hands the scheduler: three enums and one record,
distinct types so mypy --strict rejects one taken for another (they were ints whose values
collided: ``RETRY == PORT_RETRY == HOST_UNREACHABLE == 2``). Their own module: the
scheduler's parts are plain classes (tests/test_layers.py), these are value types."""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple


class Due(Enum):
    """What ``on_due`` decides for a probe whose deadline came."""

    #: Not yet: its real deadline is later (the returned time).
    REARM = "rearm"
    #: Not yet, but the next of its overlapping tries goes out now (fixed timeout).
    NEXT_TRY = "next-try"
    #: Its time is up: try again.
    RETRY = "retry"
    #: Its time is up and it was the port's last try: filtered.
    SILENT_LAST = "silent-last"
    #: Its time is up; another try of the port is still out and decides.
    SILENT_OTHERS_OUT = "silent-others-out"


class PortDo(Enum):
    """What ``discovery`` decides for the probed port."""

    NONE = "none"  # nothing (not asked for, decided already, or set aside for the host)
    EMIT = "emit"  # its own answer
    RETRY = "retry"  # silent on an up host: one more try, as a port probe


class HostDo(Enum):
    """What ``discovery`` (or a re-probe, ``Recheck.answered``) decides for the host, but
    for unreachable, which carries its reason (``Unreachable``)."""

    SAME = "same"
    UP = "up"
    DOWN = "down"
    HOLD = "hold"  # silent in a network that may rate-limit its rejects: recheck.py
    RECHECKED = "rechecked"  # a re-probe's answer: recheck.py decides


class Unreachable(NamedTuple):
    """The host is unreachable, with the reason of the ICMP error it drew."""

    reason: str


#: A host's verdict: distinct types, so a port's verdict, a due probe's or a host's cannot
#: be taken for one another (they were ints whose values collided) and an unreachable
#: host's reason travels with its verdict.
HostVerdict = HostDo | Unreachable

# Module-level names for the hot paths (a global, not an enum class attribute, per use).
REARM, NEXT_TRY, RETRY = Due.REARM, Due.NEXT_TRY, Due.RETRY
SILENT_LAST, SILENT_OTHERS_OUT = Due.SILENT_LAST, Due.SILENT_OTHERS_OUT
PORT_NONE, PORT_EMIT, PORT_RETRY = PortDo.NONE, PortDo.EMIT, PortDo.RETRY
HOST_SAME, HOST_UP, HOST_DOWN = HostDo.SAME, HostDo.UP, HostDo.DOWN
HOST_HOLD, HOST_RECHECKED = HostDo.HOLD, HostDo.RECHECKED
