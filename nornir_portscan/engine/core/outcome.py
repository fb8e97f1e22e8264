"""Outcome types and the mapping from a connect's errno to a port state.

The mapping lives here, apart from the I/O loop, because it is the one place
where "what the kernel said" becomes "what we report", and it must treat an
immediate ``connect()`` failure and a deferred ``SO_ERROR`` the same way.
"""

from __future__ import annotations

import errno
import functools
from enum import Enum
from typing import NamedTuple


class PortState(str, Enum):
    """What a probed (address, port) turned out to be."""

    OPEN = "open"
    CLOSED = "closed"
    FILTERED = "filtered"
    UNREACHABLE = "unreachable"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value

    # Enum hashes by member name in Python; hashing as the str it equals is consistent
    # with ``PortState.OPEN == "open"`` and runs in C (writers look states up per row).
    __hash__ = str.__hash__


#: The states in the order every report lists them.
STATE_ORDER: tuple[str, ...] = tuple(state.value for state in PortState)
#: Each state's text: ``.value`` on an Enum is a Python-level descriptor, too slow per row.
STATE_TEXT: dict[PortState, str] = {state: state.value for state in PortState}


class ProbeOutcome(NamedTuple):
    """The one outcome of one (address, port): the engine's only output."""

    host: str
    port: int
    state: PortState
    reason: str
    rtt_ms: float | None = None
    attempts: int = 1
    name: str | None = None
    banner: str | None = None
    # the cluster worker (vantage point) that probed it, by its Dask name; None: a local scan
    worker: str | None = None

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "host": self.host, "port": self.port, "state": self.state.value,
            "reason": self.reason,
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 3),
            "attempts": self.attempts,
        }
        if self.name is not None:
            d["name"] = self.name
        if self.banner is not None:
            d["banner"] = self.banner
        if self.worker is not None:
            d["worker"] = self.worker
        return d


_new_outcome = tuple.__new__  # skips the named tuple's Python-level constructor
#: A tuple of ProbeOutcome's fields (in order, as a worker pickled it) back as a ProbeOutcome,
#: in C: how outcomes come home from shard processes and cluster workers.
outcome_from_fields = functools.partial(tuple.__new__, ProbeOutcome)


class PortRun(NamedTuple):
    """Outcomes of one address that differ only in their port.

    Host discovery decides a down or unreachable host's remaining ports at once.
    Kept whole until a consumer wants single outcomes: a worker process sends a
    dead host's thousand ports as one record instead of a thousand."""

    host: str
    name: str | None
    ports: tuple[int, ...]
    state: PortState
    reason: str
    worker: str | None = None  # as ProbeOutcome.worker

    def outcomes(self) -> list[ProbeOutcome]:
        host, name, state, reason = self.host, self.name, self.state, self.reason
        worker = self.worker
        return [_new_outcome(ProbeOutcome, (host, port, state, reason, None, 0, name, None,
                                            worker))
                for port in self.ports]


class OutcomeBatch(NamedTuple):
    """What the engine hands out at a time: single outcomes, and down hosts' port runs
    (only for consumers that asked for runs; otherwise ``runs`` is empty)."""

    outcomes: list[ProbeOutcome]
    runs: list[PortRun]

    def expanded(self) -> list[ProbeOutcome]:
        """Every outcome single, runs included."""
        if not self.runs:
            return self.outcomes
        out = list(self.outcomes)
        for run in self.runs:
            out.extend(run.outcomes())
        return out


#: errno values that say "this machine is short of something", never a port state:
#: the probe is put back and the engine slows down.
LOCAL_RETRY_ERRNOS = frozenset({
    errno.EMFILE, errno.ENFILE, errno.EADDRNOTAVAIL, errno.ENOBUFS, errno.ENOMEM,
    errno.EAGAIN, errno.EADDRINUSE, errno.EINTR,
})

_UNREACHABLE = {
    errno.EHOSTUNREACH: "host-unreach",
    errno.ENETUNREACH: "net-unreach",
    errno.EACCES: "admin-prohibited",
    errno.EPERM: "admin-prohibited",
    errno.EHOSTDOWN: "host-unreach",
    errno.ENONET: "net-unreach",
    errno.EPROTO: "proto-unreach",
}

def classify(err: int) -> tuple[PortState, str] | None:
    """Map an errno from ``connect()`` or ``SO_ERROR`` to (state, reason); None means retry."""
    if err == 0:
        return PortState.OPEN, "syn-ack"
    if err == errno.ECONNREFUSED:
        return PortState.CLOSED, "conn-refused"
    if err in LOCAL_RETRY_ERRNOS:
        return None  # a shortage of this machine: the probe is tried again
    if err == errno.ETIMEDOUT:
        return PortState.FILTERED, "no-response"
    unreach = _UNREACHABLE.get(err)
    if unreach is not None:
        return PortState.UNREACHABLE, unreach
    if err == errno.ECONNRESET:
        # a refused SYN reads ECONNREFUSED; a reset right after the handshake is what a SYN
        # proxy answers for a port with nothing behind it (see hold.py): closed
        return PortState.CLOSED, "reset-after-syn-ack"
    return PortState.ERROR, errno.errorcode.get(err, f"errno-{err}")
