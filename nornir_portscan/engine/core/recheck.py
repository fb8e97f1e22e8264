"""Re-probes of silent hosts that an ICMP rate limit may have silenced.

Routers and Linux hosts send ICMP errors to one peer only so fast (Linux: a burst of 6,
then one a second), so in a sweep of a network that rejects hosts with host-unreachable
only the first few rejects arrive and the other unreachable hosts fall silent, like dead
ones. ``verdicts.py`` holds such hosts instead of calling them down; they wait here
until the rest of the scan is done, so the re-probes do not compete with the scan's own
probes for the limiter's few errors. Held hosts of a network that never showed a rate
limit are down after all, with no further probe; the others are re-probed (one
discovery port each) inside a bounded extra time.

The re-probes go out in groups, one group at a time, each only a pace after the last
ICMP error seen: as long as the limiter has one error to give, a group that draws no
error at all shows that none of its hosts is unreachable, so they are down (and the
next group is twice as big); a group that draws some errors gives those hosts' verdicts
and puts the rest back (and the next group is half as big). A scan split over shards
shares the limiter among them, so each shard sends its groups only in time slots of its
own. What the time does not cover is reported as ``filtered`` with the reason
``rate-limited?``: silent, in a network known to rate-limit its rejects, and so neither
known down nor known unreachable.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

from .outcome import PortState
from .verdicts import HOST_SAME, HOST_UP, HostVerdict, Unreachable
from .work import Host, JobOptions, Probe

_OPEN, _CLOSED, _UNREACHABLE = PortState.OPEN, PortState.CLOSED, PortState.UNREACHABLE

#: The reason of a silent host that a network's ICMP rate limit leaves undecided.
RATE_LIMITED = "rate-limited?"
#: Wait after an ICMP error before a re-probe counts on the limiter having another one:
#: Linux's default (net.ipv4.icmp_ratelimit, 1000 ms); Cisco IOS allows one per 500 ms.
ICMP_PACE = 1.0
#: Re-probing may add this share of the scan's time so far, and at least RECHECK_FLOOR.
RECHECK_SHARE = 0.1
RECHECK_FLOOR = 2.0
#: Re-probes in the first group of a recheck.
RECHECK_GROUP = 4
#: Re-probes in a group at most; a group is halved when it draws errors, doubled when
#: it draws none.
RECHECK_GROUP_MAX = 64
#: Each shard's turn on a shared limiter: groups start only in the first
#: RECHECK_WINDOW of its slot, so the next shard's slot starts over a pace later.
RECHECK_WINDOW = 0.25 * ICMP_PACE
RECHECK_SLOT = RECHECK_WINDOW + 1.05 * ICMP_PACE


def slot_wait(limiter_slot: tuple[int, int], now: float) -> float:
    """0 when a group may go out now, else how long until it may.

    Shards of one scan share the limiter (it counts errors per peer: this machine), so
    shard ``index`` of ``count`` sends groups only at the start of its own slot
    (RECHECK_WINDOW of RECHECK_SLOT seconds), one shard after the other (CLOCK_MONOTONIC
    is the same clock in every process). Any other shard's last error is then at least
    ICMP_PACE old when a group starts, and a group's silence proves as much as it does
    for a scan alone."""
    index, count = limiter_slot
    if count <= 1:
        return 0.0
    start, phase = index * RECHECK_SLOT, now % (count * RECHECK_SLOT)
    if start <= phase < start + RECHECK_WINDOW:
        return 0.0
    return (start - phase) % (count * RECHECK_SLOT)


def recheck_budget(options: JobOptions, elapsed: float) -> float:
    """Seconds a job's re-probes may take at most, ``elapsed`` into the job: the budget
    asked for, else a share of the scan so far with a floor, and for a shard on a shared
    limiter at least a whole cycle of slots (it may wait that long for its own)."""
    if options.recheck is not None:
        return options.recheck
    count = options.limiter_slot[1]
    cycle = count * RECHECK_SLOT if count > 1 else 0.0
    return max(RECHECK_SHARE * elapsed, RECHECK_FLOOR, cycle + RECHECK_WINDOW)


class Recheck:
    """Held hosts, the current group of re-probes, and the pace and size of the next."""

    def __init__(self) -> None:
        self.held_new: deque[Host] = deque()  # silent hosts set aside, not yet sorted
        self.held: deque[Host] = deque()  # ... of networks that rate-limit: to re-probe
        self.left = 0  # re-probes of the current group not yet decided
        self.errors = 0  # ICMP errors the current group drew
        self.silent: list[Host] = []  # the current group's silent hosts
        self.group = RECHECK_GROUP  # re-probes in the next group
        self.after = 0.0  # no group before this: the limiter needs time
        self.sent = 0
        self.recovered = 0  # held hosts a re-probe found unreachable or up

    def hold(self, host: Host) -> None:
        """A silent host, perhaps unreachable with its reject suppressed: to be sorted."""
        self.held_new.append(host)

    def saw_error(self, when: float) -> None:
        """An ICMP error arrived at ``when``: the limiter gave one, and may give the next
        only a pace later."""
        self.after = max(self.after, when + ICMP_PACE)

    def due(self, active_hosts: int, feeding: int) -> bool:
        """Held hosts wait for everything else (no host active, none left to admit)."""
        return bool(self.held or self.held_new) and active_hosts == 0 and not feeding

    @staticmethod
    def deadline(host: Host, now: float) -> float:
        """When the re-probes of the host's job end, fixed when they begin."""
        job = host.job
        if job.recheck_deadline < 0:
            elapsed = now - job.started if job.started >= 0 else 0.0
            job.recheck_deadline = now + recheck_budget(job.options, elapsed)
        return job.recheck_deadline

    def sort_new(self, rate_limited: Callable[[Host], bool]) -> Iterator[Host]:
        """Sort the hosts held since the last group, now that the scan has shown which
        networks rate-limit: those of such networks stay held; the others are yielded,
        down (every reject of their network arrived: no limiter hid one).

        One at a time, taken off the queue as they go: the caller decides each before the
        next, so a sweep's thousands of held hosts are not all kept alive beside all their
        outcomes (a list of them cost a /16 x 10 scan 3.5 MiB of peak memory a process)."""
        new, held = self.held_new, self.held
        while new:
            host = new.popleft()
            if rate_limited(host):
                held.append(host)
            else:
                yield host

    def give_up(self, now: float) -> Iterator[Host]:
        """Held hosts whose job's time for re-probes is over: ``rate-limited?``; one at a
        time, as ``sort_new``."""
        held = self.held
        while held and now >= self.deadline(held[0], now):
            yield held.popleft()

    def next_group(self, now: float, limit: int) -> list[Probe]:
        """The next group's re-probes (at most ``limit``), once the limiter has had time to
        recover and in the scan's own slot; [] until then."""
        held = self.held
        if not held or now < self.after or slot_wait(held[0].job.options.limiter_slot, now):
            return []
        self.errors = 0
        out: list[Probe] = []
        while held and len(out) < min(limit, self.group):
            host = held.popleft()
            host.rechecking = True
            out.append(Probe(host, host.job.disc_ports[0], 1, True))
        self.left = len(out)
        self.sent += len(out)
        return out

    def wait(self, now: float) -> float | None:
        """How long until ``next_group`` (or ``sort_new``, ``give_up``) has something to
        do; None when nothing is held."""
        if self.held_new:
            return 0.0
        if not self.held:
            return None
        host = self.held[0]
        after = max(self.after, now)
        until = min(after + slot_wait(host.job.options.limiter_slot, after),
                    self.deadline(host, now))
        return max(0.0, until - now)

    def answered(self, host: Host, state: PortState, reason: str
                 ) -> tuple[HostVerdict, list[Host], bool]:
        """A re-probe's verdict (``reason``: its answer's): (what the host gets:
        ``Unreachable``, HOST_UP or, silent, HOST_SAME; the group's silent hosts once the
        whole group is decided; whether those are down, else they are held again)."""
        host.rechecking = False
        self.left -= 1
        host_do: HostVerdict = HOST_SAME
        if state is _UNREACHABLE:
            self.errors += 1
            self.recovered += 1
            host_do = Unreachable(reason)
        elif state is _OPEN or state is _CLOSED:
            # up after all (its discovery answers were lost): scanned like any up host
            self.recovered += 1
            host_do = HOST_UP
        else:
            self.silent.append(host)
        if self.left:
            return host_do, [], False
        silent, self.silent = self.silent, []
        if self.errors == 0:
            # the limiter had an error to give and gave none: no host of the group rejects
            self.group = min(RECHECK_GROUP_MAX, self.group * 2)
            return host_do, silent, True
        # an error may have used the limiter up: the group's silence proves nothing
        self.group = max(1, self.group // 2)
        self.held.extend(silent)
        return host_do, silent, False
