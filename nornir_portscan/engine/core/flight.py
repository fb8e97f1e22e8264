"""Flight control: how many probes may be out, and when the next may go.

Two bounds hold probes back. Every probe holding a socket counts against the descriptor
budget (``inflight`` <= ``cwnd.limit``); only young probes, sent less than a couple of
round trips ago, count against the congestion window (``young`` <= ``cwnd.size``): an
older silent probe is no longer in the network, it only holds a descriptor. On top, the
rate cap, and a short pause after the machine ran short of descriptors or ports. The
rules of each bound (RTT estimate, window growth and cuts, token bucket) are in
``timing.py``; this part keeps the counts they apply to.
"""

from __future__ import annotations

import math
from collections import deque

from .errors import EngineError
from .timing import CongestionWindow, RateLimiter, RttEstimator
from .work import Probe

#: After this long without being able to open any socket, the scan fails instead of spinning.
LOCAL_STALL_LIMIT = 10.0
#: Pause after the machine ran short of descriptors, ports or buffers.
LOCAL_BACKOFF = 0.002


class FlightControl:
    """The window, the rate, the RTT estimate, and the probes they count."""

    def __init__(self, concurrency: int, rate: float | None, rtt: RttEstimator) -> None:
        self.cwnd = CongestionWindow(limit=max(1, concurrency))
        self.rate = RateLimiter(rate)
        self.rtt = rtt
        self.inflight = 0  # probes holding a socket: bounded by cwnd.limit (descriptors)
        self.young = 0  # probes sent less than a few RTTs ago: bounded by the window
        self.young_q: deque[Probe] = deque()
        self.young_q_cap = 4 * self.cwnd.limit + 1024
        self.probes_sent = 0  # connect() attempts handed to the loop (and started)
        self.local_errors = 0  # EMFILE, EADDRNOTAVAIL, ...: shortages met (and retried)
        self.backoff_until = 0.0  # after a local shortage, wait a moment before the next socket
        self.stalled_since: float | None = None  # nothing in flight and no socket to be had

    def set_rate(self, rate: float | None) -> None:
        """A new rate cap, with a fresh token bucket."""
        self.rate = RateLimiter(rate)

    def budget(self, now: float, limit: int) -> int:
        """How many of ``limit`` probes may start now: what the descriptors, the window
        and the rate allow (0 while a shortage's pause lasts)."""
        budget = min(limit, self.cwnd.limit - self.inflight)
        if budget <= 0 or now < self.backoff_until:
            return 0
        if self.young + budget > self.cwnd.size or len(self.young_q) > self.young_q_cap:
            self.age(now)
            budget = min(budget, math.ceil(self.cwnd.size - self.young))
            if budget <= 0:
                return 0
        rate = self.rate
        if rate.rate is not None:
            budget = min(budget, rate.available(now))
        return budget

    def launched(self, probes: list[Probe], now: float) -> None:
        """``probes`` go to the loop: each holds a socket until it is settled. Each is
        stamped (``stamp``) as the loop starts its connect, not here."""
        n = len(probes)
        self.rate.take(n)
        self.inflight += n
        self.probes_sent += n
        for probe in probes:
            probe.live = True

    @staticmethod
    def stamp(probe: Probe, when: float) -> None:
        """When the probe's connect() started, by the loop's clock just before the call:
        its RTT and deadlines count from here. The one writer of ``Probe.sent``: the loop
        (or a test standing in for it) hands its time in, for every probe it starts,
        before it reports anything of it."""
        probe.sent = when

    def may_send(self, now: float) -> bool:
        """Whether a probe could start now, if there were one."""
        return (self.inflight < self.cwnd.limit and self.young < self.cwnd.size
                and now >= self.backoff_until)

    def sent(self, probe: Probe) -> None:
        """The probe's connect is under way: it is in the network, young."""
        # answers straight from connect() never count against the window, and cost no
        # queue entry
        probe.young = True
        self.young += 1
        self.young_q.append(probe)

    def settle(self, probe: Probe) -> None:
        """A probe stopped holding its socket."""
        probe.done = True
        probe.live = False
        self.inflight -= 1
        if probe.young:
            probe.young = False
            self.young -= 1

    @staticmethod
    def void(probe: Probe) -> None:
        """A try still queued, made pointless by an answer to another try of its port:
        ``next_probes`` skips it."""
        probe.done = True

    def heard(self, probe: Probe) -> None:
        """The kernel answered a probe: it holds its socket no more, and sockets can be had."""
        self.settle(probe)
        self.stalled_since = None

    def unsent(self, probe: Probe) -> None:
        """A probe handed out but never started (the loop ran short first)."""
        self.settle(probe)
        self.probes_sent -= 1

    def answered(self, rtt: float) -> None:
        """An answer (not an error): an RTT sample, and the window grows."""
        self.rtt.observe(rtt)
        self.cwnd.on_answer()

    def refused_burst(self, refused: list[Probe], slowest: float) -> None:
        """A burst's first tries refused straight from connect(): settled, and one RTT
        sample (the slowest) and one window update, as TCP takes one sample per window."""
        young = 0
        for probe in refused:  # settle(), inlined: a burst is up to a hundred probes
            probe.done = True
            probe.live = False
            if probe.young:
                probe.young = False
                young += 1
        self.inflight -= len(refused)
        self.young -= young
        self.stalled_since = None
        self.rtt.observe(slowest)
        self.cwnd.on_answer(len(refused))

    def lost(self, now: float) -> None:
        """An earlier try was lost on the way (an answer to a retry shows it)."""
        self.cwnd.on_loss(now, self.rtt.srtt or 0.0)

    def shortage(self, err: int, now: float) -> None:
        """The machine ran short (EMFILE, EADDRNOTAVAIL, ...): never a port state. Hold no
        more sockets than worked and pause a moment; with nothing in flight for
        ``LOCAL_STALL_LIMIT`` the scan cannot go on (``EngineError``)."""
        self.local_errors += 1
        self.cwnd.on_local_shortage(self.inflight)
        self.backoff_until = now + LOCAL_BACKOFF
        if self.inflight == 0:
            if self.stalled_since is None:
                self.stalled_since = now
            elif now - self.stalled_since > LOCAL_STALL_LIMIT:
                raise EngineError(f"cannot open sockets for {LOCAL_STALL_LIMIT:.0f} s "
                                  f"(errno {err}): the machine is out of descriptors or ports")

    def banner_started(self) -> None:
        """An open port's socket stays open while the loop reads its banner."""
        self.inflight += 1

    def banner_done(self) -> None:
        self.inflight -= 1

    def young_limit(self) -> float:
        """How long a probe counts as young: two smoothed RTTs (one timeout before any)."""
        srtt = self.rtt.srtt
        return self.rtt.timeout if srtt is None else max(2 * srtt, 0.002)

    def age(self, now: float) -> None:
        """Stop counting probes that are done or silent for longer than a couple of RTTs."""
        q = self.young_q
        horizon = now - self.young_limit()
        while q and (q[0].done or q[0].sent <= horizon):
            probe = q.popleft()
            if probe.young:
                probe.young = False
                self.young -= 1

    def wait(self, now: float) -> float | None:
        """How long until the window or a shortage's pause may let a probe go; None when
        neither holds one back."""
        wait: float | None = None
        if self.young_q and self.young >= self.cwnd.size:
            wait = max(0.0, self.young_q[0].sent + self.young_limit() - now)
        if self.backoff_until > now:
            pause = self.backoff_until - now
            wait = pause if wait is None else min(wait, pause)
        return wait
