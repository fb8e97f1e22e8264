"""What a scan is made of: jobs, hosts and probes, and the order ports are tried in.

Plain data with the few rules that belong to it (which ports tell up from down, the
keyed port order). The scheduler decides what happens to these objects; keeping them
apart keeps each module short enough to read in one go.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ...inputs.scope import Network
from ...inputs.targets import Target

#: Ports tried first on each host of a multi-host scan: any answer (even RST) means "up".
DISCOVERY_PORTS: tuple[int, ...] = (80, 443, 22, 445, 3389, 23, 21, 8080)
def discovery_ports(ports: tuple[int, ...], wanted: frozenset[int]) -> tuple[int, ...]:
    """Ports to tell up from down with; () when discovery would not save probes.

    Requested ports come first, so on an up host no discovery probe is wasted;
    for long port lists the remaining places go to the well-known ports that
    answer most often.
    """
    if len(ports) <= len(DISCOVERY_PORTS):
        return ()
    # short port lists on many hosts: every discovery probe to a dead host costs as much
    # as a port probe, so fewer of them; long lists can afford all eight
    n = len(DISCOVERY_PORTS) if len(ports) >= 64 else 4
    chosen = [p for p in DISCOVERY_PORTS if p in wanted]
    pool = DISCOVERY_PORTS if len(ports) >= 8 * n else ports
    for p in pool:
        if len(chosen) >= n:
            break
        if p not in chosen:
            chosen.append(p)
    return tuple(chosen)


#: The seed of ``address_salt``: part of the port order's definition, so a scan given the
#: same job key probes each host's ports in the same order in every process and every run.
#: Changing it changes every order; it is written down here, not drawn.
PORT_ORDER_SEED = 0x6E6F726E  # "norn"


def address_salt(addr: str) -> int:
    """A host's share of its port order's key: CRC-32 of the address text, seeded with
    ``PORT_ORDER_SEED``. Not ``hash(addr)``: Python salts string hashes per process
    (PYTHONHASHSEED), which made the same scan probe in another order in each run."""
    return zlib.crc32(addr.encode(), PORT_ORDER_SEED)


def affine_map(key: int, n: int) -> tuple[int, int]:
    """(stride, offset) of the keyed permutation i -> (offset + i * stride) mod n of
    range(n): gcd(stride, n) == 1 makes it one."""
    stride = (key % n) | 1
    while math.gcd(stride, n) != 1:
        stride += 2
    return stride, (key >> 16) % n


def permuted(items: tuple[int, ...], key: int) -> Iterator[int]:
    """Every item once, in a keyed pseudo-random order, without building a shuffled copy.

    An affine map i -> (offset + i * stride) mod n with gcd(stride, n) == 1 is a
    permutation; as masscan and ZMap do, this spreads a host's probes over its
    port range so a rate-limiting firewall or a lossy link does not eat a block.
    """
    n = len(items)
    if n < 3:
        yield from items
        return
    stride, offset = affine_map(key, n)
    for i in range(n):
        yield items[(offset + i * stride) % n]


class IcmpEvidence:
    """What a scan has learnt of networks' ICMP rejects: which networks sent any, and
    which left some out (a rate limit at work). Shards of one scan share theirs
    (``shards/workers.SharedIcmpEvidence``): the limiter may give all its errors to one shard."""

    def __init__(self) -> None:
        self._rejects: set[str] = set()
        self._limited: set[str] = set()

    def saw_reject(self, network: str) -> None:
        self._rejects.add(network)

    def has_rejects(self, network: str) -> bool:
        return network in self._rejects

    def saw_limit(self, network: str) -> None:
        self._limited.add(network)

    def is_limited(self, network: str) -> bool:
        return network in self._limited


@dataclass(frozen=True)
class JobOptions:
    """Per-request options; the concurrency, rate and RTT estimate are the engine's."""

    timeout: float | None = None  # fixed per-try timeout; None adapts to measured RTT
    retries: int | None = None  # None: retry only as deep as loss has been seen
    discovery: bool = True
    banners: bool = False
    banner_wait: float = 1.0
    allowed: tuple[Network, ...] = ()  # ip networks a resolved name may point into; () = any
    shuffle: bool = True  # probe each host's ports in a keyed random order (Job's key)
    # extra seconds at most to re-probe silent hosts of networks whose ICMP errors are
    # rate-limited (recheck.py); None: a share of the scan's time, 0: no re-probes
    recheck: float | None = None
    # (index, count): this scan is one of count shards drawing on the same ICMP limiter,
    # and sends its re-probes only in its own time slots (recheck.py)
    limiter_slot: tuple[int, int] = (0, 1)
    # the cluster worker running this scan (its Dask name), stamped on every outcome so an
    # audit from several vantage points tells them apart; None on a local scan
    worker: str | None = None


class Job:
    """One scan request: a lazy stream of targets crossed with a port list.

    ``key`` keys each host's port order (``permuted``). It follows from the scan's seed
    (``core/seed.port_order_key``; the I/O side draws a seed when none is given) and is
    passed in: decision code draws no randomness, so the same key gives the same order
    every time. 0, or
    ``options.shuffle`` False, keeps the ports in the order given."""

    __slots__ = (
        "active",
        "addresses",
        "disc_ports",
        "done",
        "emitted",
        "exhausted",
        "fed",
        "key",
        "nondisc_ports",
        "options",
        "ports",
        "ports_set",
        "recheck_deadline",
        "resolving",
        "started",
        "targets",
    )

    def __init__(self, targets: Iterable[Target], ports: Iterable[int],
                 options: JobOptions | None = None, key: int = 0) -> None:
        self.targets: Iterator[Target] = iter(targets)
        self.ports: tuple[int, ...] = tuple(ports)
        self.ports_set = frozenset(self.ports)
        self.options = options or JobOptions()
        self.disc_ports: tuple[int, ...] = (
            discovery_ports(self.ports, self.ports_set) if self.options.discovery else ())
        disc = set(self.disc_ports)
        self.nondisc_ports = tuple(p for p in self.ports if p not in disc) if disc else self.ports
        self.active = 0
        self.exhausted = False
        self.fed = False  # every target admitted or resolved
        self.key = key if self.options.shuffle else 0
        self.resolving = 0  # its lookups under way (intake.py)
        self.done = False
        self.addresses = 0  # hosts admitted (for the H x P invariant)
        self.emitted = 0
        self.started = -1.0  # when its first probe went out, as its first verdict tells
        self.recheck_deadline = -1.0  # set when its held hosts' re-probes begin


    def port_order(self, addr: str) -> Iterator[int]:
        """The non-discovery ports of one host, in this job's keyed order: a function of
        the job's key and the address alone (``address_salt``)."""
        if not self.key:
            return iter(self.nondisc_ports)
        return permuted(self.nondisc_ports, self.key ^ address_salt(addr))


class Host:
    __slots__ = (
        "addr",
        "cursor",
        "deferred",
        "disc_left",
        "disc_rejects",
        "disc_silent",
        "disc_unreach",
        "family",
        "in_discovery",
        "job",
        "name",
        "pending",
        "queued",
        "rechecking",
        "sockaddr",
        "up",
    )

    def __init__(self, job: Job, addr: str, version: int, name: str | None) -> None:
        self.job = job
        self.addr = addr
        self.family = 10 if version == 6 else 2  # AF_INET6 / AF_INET, without importing socket
        self.sockaddr: tuple[str, int] | tuple[str, int, int, int] = (
            (addr, 0, 0, 0) if version == 6 else (addr, 0))
        self.name = name
        self.up = False
        self.pending = len(job.ports)
        self.disc_left = len(job.disc_ports)
        self.disc_unreach: str | None = None
        self.disc_silent = 0  # discovery tries that timed out (retried or not)
        self.disc_rejects = 0  # discovery tries answered with an ICMP error
        self.in_discovery = bool(job.disc_ports)
        self.queued = True  # in the scheduler's ready deque
        self.rechecking = False  # a re-probe after an ICMP rate limit is out (recheck.py)
        # silent discovery ports wait for the host's verdict: on an unreachable host a
        # lost ICMP error is no evidence that this port differs from the others
        self.deferred: list[tuple[int, int]] = []
        self.cursor: Iterator[int] = (iter(job.disc_ports) if job.disc_ports
                                      else job.port_order(addr))


class Probe:
    """One try at one (host, port). The loop keeps its socket in a map of its own."""

    __slots__ = ("attempt", "discovery", "done", "host", "live", "next", "port", "prev", "rtt",
                 "self_connects", "sent", "start", "young")

    def __init__(self, host: Host, port: int, attempt: int, discovery: bool) -> None:
        self.host = host
        self.port = port
        self.attempt = attempt
        self.discovery = discovery
        self.sent = 0.0  # when its connect() started: ``FlightControl.stamp``, from the loop
        self.done = False
        self.rtt: float | None = None
        self.young = False  # counted in the congestion window
        self.self_connects = 0
        # With a fixed timeout, the tries of one port overlap (verdicts.py): ``start``
        # is the first try's send time, ``prev``/``next`` link the tries still alive.
        self.start = -1.0  # unset until the first try is sent
        self.live = False  # handed to the loop and not yet settled
        self.prev: Probe | None = None
        self.next: Probe | None = None

    def retry_of(self, attempt: int) -> Probe:
        """The next try of this (host, port), linked for the overlapping-tries scheme."""
        retry = Probe(self.host, self.port, attempt, self.discovery)
        retry.start = self.start
        retry.self_connects = self.self_connects
        return retry

    def self_connect_retry(self) -> Probe:
        """The same try again with a fresh socket, after it connected to itself."""
        again = self.replacement()
        again.self_connects = self.self_connects + 1
        return again

    def overlapping_try(self) -> Probe:
        """The next of a fixed timeout's overlapping tries, linked after this one."""
        retry = self.retry_of(self.attempt + 1)
        retry.prev, self.next = self, retry
        return retry

    def replacement(self) -> Probe:
        """The same try again (it never reached the network, so it was no try), taking
        this probe's place among its port's tries: an answer to any of them settles all."""
        again = self.retry_of(self.attempt)
        again.prev, again.next = self.prev, self.next
        if self.prev is not None:
            self.prev.next = again
        if self.next is not None:
            self.next.prev = again
        return again

    def others(self) -> list[Probe]:
        """The other tries of this port that are not over yet."""
        out: list[Probe] = []
        p = self.prev
        while p is not None:
            if not p.done:
                out.append(p)
            p = p.prev
        n = self.next
        while n is not None:
            if not n.done:
                out.append(n)
            n = n.next
        return out
