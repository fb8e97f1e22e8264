"""How long a just-opened connection is kept to see whether the peer resets it.

A SYN proxy (netfilter's ``synproxy``, SYN-cookie middleboxes, some load balancers)
answers every SYN itself and opens the connection to the real server only once our
ACK arrives. Behind it, a port with nothing listening answers the proxy's SYN with an
RST, and the proxy resets our connection: one round trip after our handshake
completed (our ACK out, the proxy's RST back) plus the server's answer to the proxy,
which is local to it. A port that stays up that long is open.

So the wait is counted in round trips, from the engine's own estimate (``RttEstimator``)
and the handshake's own sample, never a fixed constant: a fixed wait is either too
short across a WAN or a needless cost on a LAN. Nothing here reads the clock; the loop
passes the numbers in and does the waiting.
"""

from __future__ import annotations

import errno

from .timing import RttEstimator

#: Round trips waited: one for the reset to come back, one as margin for jitter and for
#: the time the loop takes to notice an answer (measured RTTs include it).
HOLD_RTTS = 2.0
#: The least wait: a reset on loopback or a LAN comes in microseconds, but the loop must
#: get round to polling once more before the hold ends.
MIN_HOLD = 0.002
#: The most: past this, a "reset" is a service's own decision, not a proxy's answer.
MAX_HOLD = 3.0

#: The reason a port carries when its connection was reset right after the handshake.
RESET_AFTER_SYN_ACK = "reset-after-syn-ack"


def hold_time(rtt: RttEstimator, sample: float | None) -> float:
    """Seconds to keep a connection that just completed its handshake.

    ``sample`` is this handshake's own RTT (SYN out, SYN-ACK in): a host further away
    than the scan's average sets its own, longer wait. Four mean deviations cover jitter,
    as the retransmission timeout of RFC 6298 does."""
    rounds = sample if sample is not None and sample > 0 else 0.0
    if rtt.srtt is not None and rtt.srtt > rounds:
        rounds = rtt.srtt
    elif rtt.srtt is None and rounds == 0.0:
        rounds = rtt.timeout  # nothing measured yet: the initial timeout stands for it
    wait = HOLD_RTTS * rounds + 4 * rtt.rttvar
    return min(max(wait, MIN_HOLD), MAX_HOLD)


def hold_deadline(rtt: RttEstimator, sent: float, sample: float | None,
                  banner_wait: float = 0.0) -> float:
    """When the hold of a connection sent at ``sent`` (its handshake took ``sample``) ends:
    ``hold_time`` after the handshake, or the banner wait when that is longer.

    The loop asks again when the deadline comes: the estimate may have grown meanwhile
    (a queue filling on the path delays the reset as much as later handshakes), and then
    the hold runs on to the new deadline."""
    wait = hold_time(rtt, sample)
    if banner_wait > wait:
        wait = banner_wait
    return sent + (sample or 0.0) + wait


def reset_seen(err: int) -> bool:
    """Whether what the held socket reported (``SO_ERROR`` or a read's errno) is the
    peer's reset. Data or an orderly close (FIN) mean a service is there: open, and so
    does a reset after a FIN (EPIPE): a service that closed, then dropped what we had
    not read."""
    return err == errno.ECONNRESET
