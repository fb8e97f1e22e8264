"""What answers and silence mean: when a silent port is filtered, and when a host is up,
down or unreachable.

A silent port. A try that gets no answer is tried again until the port has had all its
tries: ``retries + 1`` when retries are given, else one more than the deepest try that
has ever drawn an answer in this scan (two while no loss is seen), up to 11, as nmap
adapts it. With the adaptive timeout the tries are sequential, one RTO each; with a
fixed timeout T the user asked to wait T for the port, so its N tries overlap (the n-th
starts at (n-1)T/N after the first, all end at T): the port costs T, not N x T, and a
lost SYN is still sent again. A port silent after its last try is ``filtered`` /
``no-response`` (``on_due``); an answer to any of its tries settles all of them.

A host (discovery). A multi-host scan first sends a few discovery ports to each host.
Any answer, even a reset, means up: its other ports are probed (``host_up``). A host
whose discovery ports all stayed silent is down: ``filtered`` / ``host-down`` for every
port, without a probe each. One ICMP error among them makes it unreachable, with that
error's reason. A silent discovery port that was also asked for waits for its host's
verdict (``host.deferred``): on a host found up it is retried like any port; on a down
one it says ``no-response`` (it was probed); on an unreachable one it takes the host's
reason, since a lost ICMP error is no evidence that this port differs.

ICMP rate limits. Routers and Linux hosts send ICMP errors to one peer only so fast, so
in a sweep of a network that rejects hosts only the first rejects arrive and the other
unreachable hosts fall silent, like dead ones. A silent host of a network that has
answered with a reject (or one decided in a scan's first seconds, before a spent
limiter's first errors) is therefore not called down but held for re-probes
(``recheck.py``). A network rate-limits when an unreachable host of it had as many
silent tries as rejects: more than loss explains (a lost try is retried, and its retry
draws the reject).
"""

from __future__ import annotations

import ipaddress
import itertools

from .outcome import PortState
from .verdict_kinds import (
    HOST_DOWN,
    HOST_HOLD,
    HOST_RECHECKED,
    HOST_SAME,
    HOST_UP,
    NEXT_TRY,
    PORT_EMIT,
    PORT_NONE,
    PORT_RETRY,
    REARM,
    RETRY,
    SILENT_LAST,
    SILENT_OTHERS_OUT,
    Due,
    HostDo,
    HostVerdict,
    PortDo,
    Unreachable,
)
from .work import Host, IcmpEvidence, Job, Probe

__all__ = ["HOST_DOWN", "HOST_HOLD", "HOST_RECHECKED", "HOST_SAME", "HOST_UP", "NEXT_TRY",
           "PORT_EMIT", "PORT_NONE", "PORT_RETRY", "REARM", "RETRY", "SILENT_LAST",
           "SILENT_OTHERS_OUT", "Due", "HostDo", "HostVerdict", "PortDo", "Unreachable",
           "Verdicts", "network_of"]

_OPEN, _CLOSED, _FILTERED = PortState.OPEN, PortState.CLOSED, PortState.FILTERED
_UNREACHABLE = PortState.UNREACHABLE

#: nmap's cap on retransmissions when it adapts the retry depth.
MAX_ADAPTIVE_ATTEMPTS = 11
#: Self-connects to one port before it is taken as closed (nothing listens there).
MAX_SELF_CONNECTS = 8
#: Silent hosts decided this soon after a job's start wait for the end of the scan even
#: before any reject was seen: a limiter spent by an earlier scan gives its first
#: errors late (one a pace), after the first dead hosts have timed out.
QUIET_WINDOW = 5.0
#: The reason of a silent port after its last try, and of a host nothing answered.
NO_RESPONSE = "no-response"
DOWN_REASON = "host-down"

def network_of(addr: str) -> str:
    """The network an ICMP error vouches for: the address's /24 (IPv4) or /64 (IPv6)."""
    if ":" not in addr:
        return addr.rpartition(".")[0]
    return str(ipaddress.IPv6Network((addr, 64), strict=False))


class Verdicts:
    """Retry depth, what a due or answered try means, and what discovery says of a host.

    Holds what the scan has learnt: the deepest try that drew an answer, and which
    networks sent ICMP rejects and which rate-limit them (``IcmpEvidence``, shared
    with other shards of the scan)."""

    def __init__(self, icmp: IcmpEvidence) -> None:
        self.icmp = icmp
        self.max_success_attempt = 1

    # ---- a port's tries -----------------------------------------------------------------

    def allowed_attempts(self, job: Job) -> int:
        if job.options.retries is not None:
            return job.options.retries + 1
        return min(self.max_success_attempt + 1, MAX_ADAPTIVE_ATTEMPTS)

    def attempts_for(self, probe: Probe) -> int:
        """Tries for this probe. Discovery probes go out several at once to each host, so
        they are their own redundancy: one try each until loss has been seen. A silent
        discovery port of a host that turns out up gets its retry as a port probe."""
        if probe.discovery and self.max_success_attempt == 1 and (
                probe.host.job.options.retries is None):
            return 1
        return self.allowed_attempts(probe.host.job)

    def deadline(self, probe: Probe, now: float, timeout: float) -> float:
        """When a try just sent is due: one RTO (``timeout``) after it, or with a fixed
        timeout, its overlapping next try's start (the port's end for the last try)."""
        fixed = probe.host.job.options.timeout
        if fixed is None:
            return now + timeout
        if probe.start < 0:
            probe.start = now
        end = probe.start + fixed
        attempts = self.attempts_for(probe)
        if probe.attempt < attempts:
            return min(end, probe.start + probe.attempt * fixed / attempts)
        return end

    def on_due(self, probe: Probe, now: float, timeout: float) -> tuple[Due, float]:
        """A try's deadline came (``timeout``: the adaptive one now): REARM or NEXT_TRY
        with its new deadline, else RETRY, SILENT_LAST or SILENT_OTHERS_OUT."""
        host = probe.host
        fixed = host.job.options.timeout
        if fixed is None:
            real = probe.sent + timeout
            if real > now:  # the estimate grew since it was sent
                return REARM, real
            if probe.discovery:
                host.disc_silent += 1  # a reject that never came, if it is unreachable
            if probe.attempt < self.attempts_for(probe):
                return RETRY, 0.0
            return SILENT_LAST, 0.0
        end = probe.start + fixed
        if now < end:
            if probe.next is None and probe.attempt < self.attempts_for(probe):
                return NEXT_TRY, end
            return REARM, end
        if probe.discovery:
            host.disc_silent += 1
        return (SILENT_OTHERS_OUT if probe.others() else SILENT_LAST), 0.0

    def shows_loss(self, probe: Probe, rtt: float) -> bool:
        """An answer to a later try means an earlier one was lost (and retries go as deep
        as this one), unless the tries overlap and the earlier one simply had not had
        this long yet."""
        if probe.attempt > 1 and (probe.host.job.options.timeout is None
                                  or rtt < probe.sent - probe.start):
            if probe.attempt > self.max_success_attempt:
                self.max_success_attempt = probe.attempt
            return True
        return False

    @staticmethod
    def self_connect_closes(probe: Probe) -> bool:
        """The socket connected to itself (source port == target port): not an open port.
        The kernel can only pick the target port as source while nothing listens there,
        so after ``MAX_SELF_CONNECTS`` of them the port is closed, not retried forever."""
        return probe.self_connects + 1 >= MAX_SELF_CONNECTS

    # ---- a host -------------------------------------------------------------------------

    def discovery(self, probe: Probe, state: PortState, reason: str
                  ) -> tuple[PortDo, HostVerdict]:
        """A discovery probe's last word (an answer, or silence after its last try):
        (what its port gets, what its host gets)."""
        host = probe.host
        host.disc_left -= 1
        job = host.job
        if job.started < 0:
            job.started = probe.sent
        if host.rechecking:
            return PORT_NONE, HOST_RECHECKED
        up = host.up
        host_do: HostVerdict = HOST_SAME
        if state is _OPEN or state is _CLOSED:
            if not up:
                host_do, up = HOST_UP, True
        elif state is _UNREACHABLE:
            host.disc_rejects += 1
            if host.disc_unreach is None:
                host.disc_unreach = reason
                self.icmp.saw_reject(network_of(host.addr))
        port_do = PORT_NONE
        pending = host.pending
        if probe.port in job.ports_set and pending > 0:
            if state is _FILTERED and not up:
                host.deferred.append((probe.port, probe.attempt))
            elif state is _FILTERED and probe.attempt < self.allowed_attempts(job):
                port_do = PORT_RETRY
            else:
                port_do = PORT_EMIT
                pending -= 1
        if host.disc_left == 0 and not up and pending > 0:
            # discovery is over and nothing answered: the host is down or unreachable
            if host.disc_unreach is not None:
                if host.disc_silent >= host.disc_rejects:
                    # as many of its rejects never came as came: more than loss explains
                    self.icmp.saw_limit(network_of(host.addr))
                host_do = Unreachable(host.disc_unreach)
            elif job.options.recheck != 0 and (
                    self.icmp.has_rejects(network_of(host.addr))
                    or probe.sent - job.started < QUIET_WINDOW):
                # perhaps down, perhaps unreachable with its reject suppressed; early on even
                # before any reject was seen: a limiter spent by an earlier scan gives its
                # first errors late, after the first silent hosts time out
                host_do = HOST_HOLD
            else:
                host_do = HOST_DOWN
        return port_do, host_do

    def host_up(self, host: Host) -> tuple[list[Probe], list[tuple[int, int]]]:
        """First answer from a host: its discovery ports not yet sent become plain probes
        (before the rest, in the job's keyed order), and its silent discovery ports are
        decided: (retries to send, (port, attempts) that had all their tries: filtered)."""
        job = host.job
        host.up = True
        host.in_discovery = False
        unsent = list(host.cursor)
        host.disc_left -= len(unsent)
        unsent = [p for p in unsent if p in job.ports_set]
        rest = job.port_order(host.addr)
        host.cursor = itertools.chain(unsent, rest) if unsent else rest
        deferred, host.deferred = host.deferred, []
        allowed = self.allowed_attempts(job)
        retries = [Probe(host, port, attempts + 1, False)
                   for port, attempts in deferred if attempts < allowed]
        filtered = [(port, attempts) for port, attempts in deferred if attempts >= allowed]
        return retries, filtered

    @staticmethod
    def reprobing(host: Host) -> None:
        """A held host gets one more discovery probe (recheck.py)."""
        host.disc_left += 1

    @staticmethod
    def take_deferred(host: Host) -> list[tuple[int, int]]:
        """The host's silent discovery ports that wait for its verdict, handed over once."""
        deferred, host.deferred = host.deferred, []
        return deferred

    @staticmethod
    def probed_reason(reason: str) -> str:
        """The reason a host's probed, silent ports get with its verdict: ``no-response``
        on a down host, the host's own on an unreachable one."""
        return NO_RESPONSE if reason == DOWN_REASON else reason

    def rate_limited(self, host: Host) -> bool:
        """Whether the host's network is known to rate-limit its ICMP rejects."""
        return self.icmp.is_limited(network_of(host.addr))

