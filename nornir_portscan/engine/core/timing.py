"""Sans-I/O timing: round-trip estimation, congestion window and rate cap.

Kept apart from the scheduler so each rule can be tested with made-up clocks:
nothing here reads the time or touches a socket; callers pass ``now`` in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: nmap's defaults for its adaptive timeout: start at 1 s, never below 100 ms or above 10 s.
INITIAL_TIMEOUT = 1.0
MIN_TIMEOUT = 0.1
MAX_TIMEOUT = 10.0


@dataclass
class RttEstimator:
    """RFC 6298 smoothed RTT and variance; ``timeout`` = srtt + 4 x rttvar, clamped.

    Measured RTTs include the time the loop took to notice the answer, so a
    busy engine lengthens its own timeouts instead of calling live ports filtered.
    """

    initial: float = INITIAL_TIMEOUT
    minimum: float = MIN_TIMEOUT
    maximum: float = MAX_TIMEOUT
    srtt: float | None = None
    rttvar: float = 0.0
    samples: int = 0
    _timeout: float = field(init=False)

    def __post_init__(self) -> None:
        self._timeout = min(max(self.initial, self.minimum), self.maximum)

    @property
    def timeout(self) -> float:
        return self._timeout

    def observe(self, rtt: float) -> None:
        if rtt < 0:
            return
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.samples += 1
        self._timeout = min(max(self.srtt + 4 * self.rttvar, self.minimum), self.maximum)


@dataclass
class CongestionWindow:
    """How many young probes may be in flight: slow start, then cut on evidence of loss.

    Loss is only inferred from a retry that got an answer (the earlier try was
    lost); a port that never answers is filtered, not congestion. At most one
    cut per round trip, as TCP does, so a burst of losses counts once. The
    window counts only probes younger than a couple of round trips: an older
    silent probe is no longer in the network, it only holds a descriptor, and
    ``limit`` (the descriptor budget) bounds those.
    """

    limit: int
    size: float = 0.0
    minimum: int = 64
    ssthresh: float = float("inf")
    losses: int = 0
    last_cut: float = float("-inf")

    def __post_init__(self) -> None:
        if self.size <= 0:
            self.size = float(min(self.limit, 512))
        self.minimum = min(self.minimum, self.limit)

    def on_answer(self, count: int = 1) -> None:
        """``count`` answers: one more probe each in slow start, 1/size each after it."""
        if self.size < self.ssthresh:
            self.size = min(self.size + count, self.limit)
        else:
            self.size = min(self.size + count / max(self.size, 1.0), self.limit)

    def on_loss(self, now: float = 0.0, rtt: float = 0.0) -> None:
        self.losses += 1
        if now - self.last_cut < rtt:
            return
        self.last_cut = now
        self.ssthresh = max(self.size * 0.7, self.minimum)
        self.size = self.ssthresh

    def on_local_shortage(self, in_flight: int) -> None:
        """The machine ran short (fds, ports, buffers): do not go above what worked."""
        self.limit = max(1, min(self.limit, in_flight))
        self.minimum = min(self.minimum, self.limit)
        self.size = min(self.size, self.limit)


@dataclass
class RateLimiter:
    """A token bucket: at most ``rate`` probes a second, with a small burst."""

    rate: float | None
    burst: float = 0.0
    tokens: float = 0.0
    last: float | None = None

    def __post_init__(self) -> None:
        if self.rate is not None:
            if self.rate <= 0:
                raise ValueError("rate must be positive")
            self.burst = self.burst or max(1.0, self.rate / 100)
            self.tokens = self.burst

    def available(self, now: float) -> int:
        if self.rate is None:
            return 1 << 30
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        return int(self.tokens)

    def take(self, count: int = 1) -> None:
        if self.rate is not None:
            self.tokens -= count

    def wait_time(self) -> float:
        """Seconds until the next token, when none is left."""
        if self.rate is None or self.tokens >= 1:
            return 0.0
        return (1 - self.tokens) / self.rate
