"""What a name lookup's answer means for a scan, and how long a scan waits for one.

The resolver (``engine/io/resolve.py``) only carries questions to DNS; what its answer
means is decided here, so it reads the same in a test without a resolver: which reason a
name's ports get, how many lookups may be under way at once, how long each may take, and
the one line that tells a silent resolver apart from names that do not exist.
"""

from __future__ import annotations

from collections import Counter
from enum import Enum
from typing import NamedTuple


class LookupStatus(str, Enum):
    """How a lookup ended, as far as the scan cares."""

    ANSWERED = "answered"  # one address or more
    NO_SUCH_NAME = "no-such-name"  # NXDOMAIN: the name does not exist
    NO_ADDRESS = "no-address"  # the name exists, with no A or AAAA record
    TIMEOUT = "timeout"  # the resolver did not answer in time
    FAILED = "failed"  # anything else: the resolver refused or failed (SERVFAIL), a bad name


class Lookup(NamedTuple):
    """One name's answer: its (ip version, address) pairs, how it ended, who was asked."""

    addresses: list[tuple[int, str]]
    status: LookupStatus = LookupStatus.ANSWERED
    resolver: str = ""  # the resolver(s) asked, as the warning names them


#: A name's ports' reason, by how its lookup ended. ``unresolved`` stays for a lookup that
#: failed otherwise (and for reports and journals written before the reasons were told apart).
REASON_OF: dict[LookupStatus, str] = {
    LookupStatus.NO_SUCH_NAME: "no-such-name",
    LookupStatus.NO_ADDRESS: "no-address",
    LookupStatus.TIMEOUT: "resolver-timeout",
    LookupStatus.FAILED: "unresolved",
}
#: Every reason an (address, port) gets because its name gave no address, with its words.
NAME_REASONS: dict[str, str] = {
    "no-such-name": "no such name",
    "no-address": "name has no address",
    "resolver-timeout": "resolver did not answer",
    "unresolved": "name did not resolve",
}

#: Lookups under way at once, at most. Enough that a resolver tens of milliseconds away
#: keeps up with the scan (2,000 names are four rounds), few enough that a list of a
#: million names is not a million questions at once.
MAX_LOOKUPS = 512
#: Lookups under way at first: each lookup that ends (answered or not) allows one more,
#: so the number doubles each round trip, as TCP's slow start does. A burst of 1,024
#: queries (an A and an AAAA each) lost some to a full queue on the way in the lab; a
#: forwarding resolver has a limit of its own too (dnsmasq forwards 150 at once).
FIRST_LOOKUPS = 64
#: Lookups under way, at least, after losses cut them.
MIN_LOOKUPS = 16
#: Times a name is asked (each ask is c-ares's tries) when the resolver answers others.
ASKS = 2


class LookupWindow:
    """How many lookups may be under way, and whether a name that timed out is asked again.

    A resolver that answers nothing is silent: its names time out once (no second ask, no
    cut), so 2,000 of them cost a few rounds of timeouts. A resolver that answers others
    but lets some time out between its answers is losing questions (a full queue on the
    way, a busy server): those names are asked once more, and the lookups under way are
    halved, at most once per window of lookups ended, as TCP does on a loss. A whole
    window of timeouts in a row (a resolver that stopped answering) is silence again.
    Each lookup ended otherwise allows one more, up to ``MAX_LOOKUPS``.
    """

    def __init__(self) -> None:
        self.limit = FIRST_LOOKUPS
        self.answered = 0  # lookups the resolver answered (an address, NXDOMAIN, no data)
        self.silence = 0  # timeouts since its last answer
        self.ended = 0  # lookups ended since the last cut
        self.cuts = 0

    def end(self, lookup: Lookup, asks: int) -> bool:
        """A lookup ended; True when its name is to be asked again."""
        self.ended += 1
        status = lookup.status
        if status is LookupStatus.TIMEOUT:
            self.silence += 1
            if self.answered and self.silence < self.limit and asks < ASKS:
                if self.ended >= self.limit:
                    self.limit = max(MIN_LOOKUPS, self.limit // 2)
                    self.ended = 0
                    self.cuts += 1
                return True
        elif status is not LookupStatus.FAILED:
            self.answered += 1
            self.silence = 0
        if self.limit < MAX_LOOKUPS:
            self.limit += 1
        return False


#: How long the resolver waits for an answer to a query, and how many times it asks each
#: server: c-ares doubles the wait on each retry, so a silent resolver costs a name about
#: 1 + 2 = 3 s per search domain tried, and 2,000 names (four rounds of 512) well under a
#: minute. glibc's default is 5 s x 2 tries, per name, on a few threads.
TRY_TIMEOUT = 1.0
TRIES = 2


def reason_for(lookup: Lookup) -> str:
    """The reason a name's ports get when its lookup gave no address."""
    if lookup.status is LookupStatus.ANSWERED:  # answered, yet nothing usable in it
        return REASON_OF[LookupStatus.NO_ADDRESS]
    return REASON_OF[lookup.status]


class ResolverTally:
    """Names each resolver did not answer for, for one line at the end of a scan."""

    def __init__(self) -> None:
        self.timeouts: Counter[str] = Counter()

    def add(self, lookup: Lookup) -> None:
        if lookup.status is LookupStatus.TIMEOUT:
            self.timeouts[lookup.resolver or "the system resolver"] += 1

    def merge(self, other: Counter[str]) -> None:
        self.timeouts.update(other)

    def warning(self) -> str | None:
        """``warning: resolver 10.0.0.53:53 did not answer: 2000 names not scanned
        (resolver-timeout)``, or None when every resolver answered."""
        if not self.timeouts:
            return None
        parts = [f"resolver {server} did not answer: {n} name{'s' if n != 1 else ''}"
                 for server, n in sorted(self.timeouts.items())]
        return f"warning: {'; '.join(parts)} not scanned (resolver-timeout)"
