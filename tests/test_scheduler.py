"""The sans-I/O scheduler driven by hand: fake clock, no sockets.

``Sim`` plays the readiness loop's part: it asks for probes, "sends" them, and
later tells the scheduler what the kernel said, using a responder that maps a
probe to an errno (or to silence). Everything else is the real scheduler.
"""

from __future__ import annotations

import errno
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from itertools import pairwise

import pytest

from nornir_portscan.engine.core.names import FIRST_LOOKUPS, MAX_LOOKUPS, Lookup, LookupStatus
from nornir_portscan.engine.core.outcome import PortRun, PortState, ProbeOutcome
from nornir_portscan.engine.core.scheduler import Scheduler
from nornir_portscan.engine.core.work import DISCOVERY_PORTS, Job, JobOptions, Probe
from nornir_portscan.inputs import Target

SILENT = None  # the responder's "no answer ever"
SELF = "self-connect"  # the responder's "the socket connected to itself"
IMMEDIATE = "immediate"  # wrap: the answer comes straight from connect()
LATE = "late"  # wrap: (LATE, seconds, errno), an answer after a given delay

Response = int | str | tuple[str, int] | tuple[str, float, int] | None
Responder = Callable[[Probe], Response]


def next_probe(sched: Scheduler, now: float) -> Probe | None:
    """One probe to start now, or None: the loop's ``next_probes`` asked for one, stamped
    as the loop stamps a probe it starts."""
    probes = sched.next_probes(now, 1)
    if not probes:
        return None
    sched.flight.stamp(probes[0], now)
    return probes[0]


def drained(sched: Scheduler) -> list[tuple[Job, ProbeOutcome | None]]:
    """Every outcome decided so far, single, in order; (job, None) marks a job's end."""
    out: list[tuple[Job, ProbeOutcome | None]] = []
    while sched.outcomes:
        for job, item in sched.drain_some(1 << 16):
            assert not isinstance(item, PortRun)  # without runs=True every item is single
            out.append((job, item))
    return out


def v4(*addrs: str) -> list[Target]:
    return [Target(a, None, 4) for a in addrs]


def refuse_all(probe: Probe) -> Response:
    return errno.ECONNREFUSED


@pytest.fixture(autouse=True, params=["one-by-one", "bursts"])
def launch_mode(request: pytest.FixtureRequest) -> None:
    """Every simulated test runs twice: probes asked for one at a time (``next_probes(now,
    1)``, ``on_answer``), and in bursts as the readiness loop does (``next_probes``,
    ``on_failed_connects``). The two must reach the same outcomes."""
    Sim.burst = 1 if request.param == "one-by-one" else 16


class Sim:
    """Drives a Scheduler like the readiness loop does, with a clock that only moves on demand."""

    burst = 1  # probes asked for at once; above 1, immediate failures are reported together

    def __init__(self, sched: Scheduler, respond: Responder, *, rtt: float = 0.001,
                 step: float = 0.01) -> None:
        self.sched = sched
        self.respond = respond
        self.rtt = rtt
        self.step = step
        self.now = 0.0
        self.holding: set[int] = set()  # probes holding a "socket", by id
        self.max_holding = 0
        self.answers: list[tuple[float, Probe, int]] = []
        self.banners: list[Probe] = []
        self.cancelled = 0
        self.sent: list[Probe] = []
        self.outcomes: list[ProbeOutcome] = []
        self.by_job: dict[int, list[ProbeOutcome]] = {}
        self.jobs_ended: list[Job] = []

    def _hold(self, probe: Probe) -> None:
        self.holding.add(id(probe))
        self.max_holding = max(self.max_holding, len(self.holding))
        # a probe holds a socket: never more of them than the concurrency limit
        assert len(self.holding) <= self.sched.cwnd.limit

    def _release(self, probe: Probe) -> None:
        self.holding.discard(id(probe))

    def _check(self) -> None:
        # the scheduler's own count of sockets in use matches what was really handed out
        assert self.sched.inflight == len(self.holding)

    def _close_cancelled(self) -> None:
        """Like the loop: close tries made pointless by an answer to another try."""
        cancelled = getattr(self.sched, "cancelled", [])
        for probe in cancelled:
            self._release(probe)
            self.cancelled += 1
            # a closed socket never reports anything again
            self.answers = [a for a in self.answers if a[1] is not probe]
        cancelled.clear()

    def send(self) -> None:
        if self.burst > 1:
            self.send_bursts()
            return
        sched = self.sched
        while True:
            probe = next_probe(sched, self.now)
            if probe is None:
                self._check()
                return
            self.sent.append(probe)
            self._hold(probe)
            reply = self.respond(probe)
            if isinstance(reply, tuple) and reply[0] == IMMEDIATE:
                self._release(probe)
                # no on_sent: like an error straight from connect()
                self._deliver(probe, reply[1])  # type: ignore[arg-type]
                self._close_cancelled()
                continue
            self._start(probe, reply)
            self._close_cancelled()

    def _start(self, probe: Probe, reply: Response) -> None:
        """The connect is under way: its answer (if any) arrives after an RTT or the delay asked."""
        self.sched.on_sent(probe, self.now)
        if isinstance(reply, tuple) and reply[0] == LATE:
            self.answers.append((self.now + reply[1], probe, reply[2]))  # type: ignore[misc]
        if reply == SELF or isinstance(reply, int):
            self.answers.append((self.now + self.rtt, probe, reply))  # type: ignore[arg-type]

    def send_bursts(self) -> None:
        """Like the readiness loop: a burst of probes, then their immediate failures at once."""
        sched = self.sched
        while True:
            probes = sched.next_probes(self.now, self.burst)
            if not probes:
                self._check()
                return
            assert len(probes) <= self.burst
            failed: list[tuple[Probe, int, float]] = []
            for i, probe in enumerate(probes):
                self.sent.append(probe)
                self._hold(probe)
                reply = self.respond(probe)
                if reply in ((IMMEDIATE, errno.EMFILE), (IMMEDIATE, errno.ENFILE)):
                    # socket() failed: the loop hands the rest of the burst back at once
                    self._release(probe)
                    sched.unsend(probes[i + 1:])
                    sched.on_local_error(probe, reply[1], self.now)
                    break
                sched.flight.stamp(probe, self.now)  # as the loop does before connect()
                if isinstance(reply, tuple) and reply[0] == IMMEDIATE:
                    self._release(probe)
                    if reply[1] == 0:
                        self._deliver(probe, 0)  # connected: the loop handles it alone
                    else:
                        failed.append((probe, reply[1], self.now))  # type: ignore[arg-type]
                    continue
                self._start(probe, reply)
            if failed:
                sched.on_failed_connects(failed)
            self._close_cancelled()

    def _deliver(self, probe: Probe, err: int) -> None:
        if self.sched.on_answer(probe, err, self.now):
            self._hold(probe)  # the socket stays open while the banner is read
            self.banners.append(probe)

    def tick(self) -> None:
        self.now += self.step
        # banners read during the previous step arrive now: a banner read spans a step
        banners, self.banners = self.banners, []
        for probe in banners:
            self._release(probe)
            self.sched.on_banner(probe, "SSH-2.0-sim")
        due = [a for a in self.answers if a[0] <= self.now]
        self.answers = [a for a in self.answers if a[0] > self.now]
        for _, probe, reply in due:
            self._release(probe)
            if isinstance(reply, str):  # SELF
                self.sched.on_self_connect(probe, self.now)
            else:
                self._deliver(probe, reply)
        self._close_cancelled()
        for probe in self.sched.expire(self.now):
            self._release(probe)
        self._close_cancelled()
        self._check()
        self.drain()

    def drain(self) -> None:
        for job, outcome in drained(self.sched):
            if outcome is None:
                self.jobs_ended.append(job)
            else:
                self.outcomes.append(outcome)
                self.by_job.setdefault(id(job), []).append(outcome)

    def run(self, limit: float = 120.0) -> list[ProbeOutcome]:
        while not self.sched.done:
            self.send()
            self.tick()
            assert self.now < limit, "scheduler never finished"
        self.drain()
        return self.outcomes

    def probes_to(self, addr: str, port: int | None = None) -> list[Probe]:
        return [p for p in self.sent if p.host.addr == addr and (port is None or p.port == port)]


def by_key(outcomes: Iterable[ProbeOutcome]) -> dict[tuple[str, int], ProbeOutcome]:
    out: dict[tuple[str, int], ProbeOutcome] = {}
    for o in outcomes:
        assert (o.host, o.port) not in out, f"emitted twice: {o}"
        out[(o.host, o.port)] = o
    return out


def assert_exactly_once(outcomes: list[ProbeOutcome], hosts: Iterable[str],
                        ports: Iterable[int]) -> dict[tuple[str, int], ProbeOutcome]:
    got = by_key(outcomes)
    want = {(h, p) for h in hosts for p in ports}
    assert set(got) == want
    assert len(outcomes) == len(want)
    return got


def one_job(sched: Scheduler, targets: list[Target], ports: Iterable[int],
            **options: object) -> Job:
    return sched.add_job(Job(targets, ports, JobOptions(**options)))  # type: ignore[arg-type]


# ---- accounting -------------------------------------------------------------------------------


def test_every_host_port_pair_exactly_once() -> None:
    hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    ports = range(1000, 1020)
    sched = Scheduler(concurrency=16)
    job = one_job(sched, v4(*hosts), ports, timeout=1.0, discovery=False)
    open_ports = {("127.0.0.2", 1005)}

    def respond(p: Probe) -> Response:
        return 0 if (p.host.addr, p.port) in open_ports else errno.ECONNREFUSED

    sim = Sim(sched, respond)
    got = assert_exactly_once(sim.run(), hosts, ports)
    assert got[("127.0.0.2", 1005)].state is PortState.OPEN
    assert got[("127.0.0.2", 1005)].reason == "syn-ack"
    assert {o.state for k, o in got.items() if k not in open_ports} == {PortState.CLOSED}
    assert {o.reason for k, o in got.items() if k not in open_ports} == {"conn-refused"}
    assert sim.jobs_ended == [job]
    assert job.emitted == job.addresses * len(ports) == 60
    assert len(sim.sent) == 60  # nothing probed twice


def test_outcome_carries_rtt_in_ms_and_attempts() -> None:
    sched = Scheduler(concurrency=4)
    one_job(sched, v4("127.0.0.1"), [22], timeout=1.0)
    sim = Sim(sched, refuse_all, rtt=0.02, step=0.025)
    [o] = sim.run()
    assert o.attempts == 1
    assert o.rtt_ms == pytest.approx(25.0)  # answered on the first tick after sending


def test_job_with_no_targets_or_no_ports_ends() -> None:
    sched = Scheduler(concurrency=4)
    job = one_job(sched, [], [22, 80])
    sim = Sim(sched, refuse_all)
    assert sim.run() == []
    assert sim.jobs_ended == [job]
    sched = Scheduler(concurrency=4)
    job = one_job(sched, v4("127.0.0.1"), [])
    sim = Sim(sched, refuse_all)
    assert sim.run() == []
    assert sched.done


def test_two_jobs_are_kept_apart() -> None:
    sched = Scheduler(concurrency=8)
    a = one_job(sched, v4("127.0.0.1"), [1, 2, 3], timeout=1.0)
    b = one_job(sched, v4("127.0.0.1", "127.0.0.2"), [3, 4], timeout=1.0)
    sim = Sim(sched, refuse_all)
    sim.run()
    assert set(sim.jobs_ended) == {a, b}
    assert_exactly_once(sim.by_job[id(a)], ["127.0.0.1"], [1, 2, 3])
    assert_exactly_once(sim.by_job[id(b)], ["127.0.0.1", "127.0.0.2"], [3, 4])


# ---- retries and timeouts ---------------------------------------------------------------------


def test_silent_port_is_retried_then_filtered() -> None:
    sched = Scheduler(concurrency=8)
    one_job(sched, v4("127.0.0.1"), [22, 23], timeout=0.6, retries=2, discovery=False)

    def respond(p: Probe) -> Response:
        return SILENT if p.port == 22 else errno.ECONNREFUSED

    sim = Sim(sched, respond)
    got = assert_exactly_once(sim.run(), ["127.0.0.1"], [22, 23])
    assert got[("127.0.0.1", 22)].state is PortState.FILTERED
    assert got[("127.0.0.1", 22)].reason == "no-response"
    assert got[("127.0.0.1", 22)].attempts == 3
    assert got[("127.0.0.1", 22)].rtt_ms is None
    tries = sim.probes_to("127.0.0.1", 22)
    assert [p.attempt for p in tries] == [1, 2, 3]
    assert got[("127.0.0.1", 23)].attempts == 1
    # a fixed timeout is the time the port gets: the tries overlap, spread over it
    assert [round(p.sent, 1) for p in tries] == [0.0, 0.2, 0.4]
    assert 0.6 <= sim.now < 0.65


def test_adaptive_timeout_tries_are_sequential() -> None:
    sched = Scheduler(concurrency=8)
    one_job(sched, v4("127.0.0.1"), [22], retries=2, discovery=False)
    sim = Sim(sched, lambda p: SILENT)
    [o] = sim.run()
    assert (o.state, o.reason, o.attempts) == (PortState.FILTERED, "no-response", 3)
    assert [round(p.sent, 1) for p in sim.probes_to("127.0.0.1", 22)] == [0.0, 1.0, 2.0]


def test_no_retries_means_one_try() -> None:
    sched = Scheduler(concurrency=8)
    one_job(sched, v4("127.0.0.1"), [22], timeout=0.3, retries=0, discovery=False)
    sim = Sim(sched, lambda p: SILENT)
    [o] = sim.run()
    assert (o.state, o.reason, o.attempts) == (PortState.FILTERED, "no-response", 1)
    assert len(sim.sent) == 1


def test_probe_is_not_expired_before_its_timeout() -> None:
    sched = Scheduler(concurrency=8)
    one_job(sched, v4("127.0.0.1"), [22], timeout=0.5, retries=0, discovery=False)
    probe = next_probe(sched, 0.0)
    assert probe is not None
    sched.on_sent(probe, 0.0)
    assert sched.expire(0.49) == []
    assert sched.expire(0.5) == [probe]


def test_adaptive_timeout_starts_at_one_second() -> None:
    sched = Scheduler(concurrency=8)
    one_job(sched, v4("127.0.0.1"), [22], retries=0, discovery=False)
    probe = next_probe(sched, 0.0)
    assert probe is not None
    sched.on_sent(probe, 0.0)
    assert sched.expire(0.9) == []
    assert sched.expire(1.01) == [probe]


@pytest.mark.parametrize("timeout", [0.5, None], ids=["fixed", "adaptive"])
def test_answer_to_a_retry_counts_attempts_and_is_taken_as_loss(timeout: float | None) -> None:
    sched = Scheduler(concurrency=8)
    one_job(sched, v4("127.0.0.1"), [22], timeout=timeout, retries=3, discovery=False)

    def respond(p: Probe) -> Response:
        return SILENT if p.attempt == 1 else errno.ECONNREFUSED

    sim = Sim(sched, respond)
    [o] = sim.run()
    assert (o.state, o.reason, o.attempts) == (PortState.CLOSED, "conn-refused", 2)
    assert sched.cwnd.losses == 1
    assert len(sim.sent) == 2  # the answer ends the port: no third try
    assert sched.inflight == 0  # the silent first try was closed (cancelled or expired)


def test_late_answer_to_the_first_try_cancels_the_others() -> None:
    sched = Scheduler(concurrency=8)
    one_job(sched, v4("127.0.0.1"), [22], timeout=0.6, retries=2, discovery=False)

    def respond(p: Probe) -> Response:
        return (LATE, 0.3, errno.ECONNREFUSED) if p.attempt == 1 else SILENT

    sim = Sim(sched, respond)
    [o] = sim.run()
    assert (o.state, o.reason, o.attempts) == (PortState.CLOSED, "conn-refused", 1)
    assert o.rtt_ms == pytest.approx(300, abs=15)
    assert [p.attempt for p in sim.sent] == [1, 2]  # the third try was never sent
    assert sim.cancelled == 1  # the second, in flight, was handed back to be closed
    assert sched.cwnd.losses == 0  # a slow answer to the first try is not a loss
    assert sim.now < 0.4  # decided by the answer, not by the timeout


def test_adaptive_retries_go_as_deep_as_loss_was_seen() -> None:
    """retries=None: one retry while no loss is known; deeper once a retry got an answer."""
    sched = Scheduler(concurrency=8)
    one_job(sched, v4("127.0.0.1"), [22], discovery=False)
    sim = Sim(sched, lambda p: SILENT)
    [o] = sim.run()
    assert o.attempts == 2

    sched = Scheduler(concurrency=1)
    one_job(sched, v4("127.0.0.1"), [21, 22], discovery=False)

    def respond(p: Probe) -> Response:
        if p.port == 21:  # lost once, then answered: loss seen at attempt 2
            return SILENT if p.attempt == 1 else errno.ECONNREFUSED
        return SILENT

    sim = Sim(sched, respond)
    got = by_key(sim.run())
    assert got[("127.0.0.1", 21)].attempts == 2
    assert got[("127.0.0.1", 22)].attempts == 3
    assert got[("127.0.0.1", 22)].state is PortState.FILTERED


def test_late_answer_after_expiry_is_not_a_second_outcome() -> None:
    sched = Scheduler(concurrency=8)
    one_job(sched, v4("127.0.0.1"), [22], timeout=0.5, retries=0, discovery=False)
    probe = next_probe(sched, 0.0)
    assert probe is not None
    sched.on_sent(probe, 0.0)
    assert sched.expire(0.6) == [probe]
    assert sched.on_answer(probe, errno.ECONNREFUSED, 0.7) is False
    outcomes = [o for _, o in drained(sched) if o is not None]
    assert [(o.state, o.reason) for o in outcomes] == [(PortState.FILTERED, "no-response")]
    assert sched.inflight == 0


# ---- local shortages and self-connects ------------------------------------------------------


@pytest.mark.parametrize("err", [errno.EMFILE, errno.EADDRNOTAVAIL, errno.ENOBUFS,
                                 errno.EAGAIN])
def test_local_errors_requeue_and_never_become_a_state(err: int) -> None:
    sched = Scheduler(concurrency=8)
    one_job(sched, v4("127.0.0.1"), [22, 23, 24], timeout=1.0, retries=0, discovery=False)
    failures: Counter[int] = Counter()

    def respond(p: Probe) -> Response:
        if failures[p.port] < 3:  # every port fails locally three times first
            failures[p.port] += 1
            return err
        return errno.ECONNREFUSED

    sim = Sim(sched, respond)
    got = assert_exactly_once(sim.run(), ["127.0.0.1"], [22, 23, 24])
    assert {(o.state, o.reason) for o in got.values()} == {(PortState.CLOSED, "conn-refused")}
    assert {o.attempts for o in got.values()} == {1}  # a local failure is not a try
    assert len(sim.sent) == 12


def test_local_error_straight_from_connect_requeues() -> None:
    sched = Scheduler(concurrency=8)
    one_job(sched, v4("127.0.0.1"), [22], timeout=1.0, retries=0, discovery=False)
    tries = Counter[str]()

    def respond(p: Probe) -> Response:
        tries["n"] += 1
        return (IMMEDIATE, errno.EADDRNOTAVAIL) if tries["n"] == 1 else errno.ECONNREFUSED

    [o] = Sim(sched, respond).run()
    assert (o.state, o.attempts) == (PortState.CLOSED, 1)
    assert tries["n"] == 2


def test_socket_creation_failure_requeues() -> None:
    """The loop calls on_local_error itself when socket() fails (EMFILE)."""
    sched = Scheduler(concurrency=8)
    one_job(sched, v4("127.0.0.1"), [22], timeout=1.0, retries=0, discovery=False)
    probe = next_probe(sched, 0.0)
    assert probe is not None
    sched.on_local_error(probe, errno.EMFILE, 0.0)
    assert sched.inflight == 0
    assert list(drained(sched)) == []
    again = next_probe(sched, 0.5)  # later (a short back-off may apply)
    assert again is not None and again.port == 22 and again.attempt == 1


def test_local_shortage_shrinks_the_concurrency_limit() -> None:
    sched = Scheduler(concurrency=100)
    one_job(sched, v4("127.0.0.1"), range(1, 201), timeout=1.0, discovery=False)
    sent = 0

    def respond(p: Probe) -> Response:
        nonlocal sent
        sent += 1
        if sent == 30:
            return (IMMEDIATE, errno.EMFILE)
        return SILENT if sent < 30 else errno.ECONNREFUSED

    sim = Sim(sched, respond)
    assert_exactly_once(sim.run(), ["127.0.0.1"], range(1, 201))
    assert sched.cwnd.limit == 29  # what was in flight when the machine ran short


def test_self_connect_requeues_and_is_never_open() -> None:
    sched = Scheduler(concurrency=8)
    one_job(sched, v4("127.0.0.1"), [40000, 40001], timeout=1.0, retries=0, discovery=False)
    selfs: Counter[int] = Counter()

    def respond(p: Probe) -> Response:
        if p.port == 40000 and selfs[p.port] < 2:
            selfs[p.port] += 1
            return SELF
        return errno.ECONNREFUSED

    sim = Sim(sched, respond)
    got = assert_exactly_once(sim.run(), ["127.0.0.1"], [40000, 40001])
    assert got[("127.0.0.1", 40000)].state is PortState.CLOSED
    assert got[("127.0.0.1", 40000)].attempts == 1
    assert len(sim.probes_to("127.0.0.1", 40000)) == 3


def test_port_that_always_self_connects_ends_and_is_not_open() -> None:
    sched = Scheduler(concurrency=8)
    one_job(sched, v4("127.0.0.1"), [40000, 40001], timeout=1.0, retries=0, discovery=False)

    def respond(p: Probe) -> Response:
        return SELF if p.port == 40000 else errno.ECONNREFUSED

    sim = Sim(sched, respond)
    got = assert_exactly_once(sim.run(limit=10.0), ["127.0.0.1"], [40000, 40001])
    assert got[("127.0.0.1", 40000)].state is PortState.CLOSED  # nothing listens there
    assert len(sim.probes_to("127.0.0.1", 40000)) > 1  # retried before giving up


# ---- discovery --------------------------------------------------------------------------------


def test_dead_host_gets_host_down_for_every_port_and_only_discovery_probes() -> None:
    ports = range(1000, 1100)  # no discovery port among them: discovery uses its own
    sched = Scheduler(concurrency=64)
    job = one_job(sched, v4("127.0.0.1", "127.0.0.2"), ports, timeout=0.5, retries=0)
    assert job.disc_ports and not set(job.disc_ports) & set(ports)

    def respond(p: Probe) -> Response:
        return SILENT if p.host.addr == "127.0.0.2" else errno.ECONNREFUSED

    sim = Sim(sched, respond)
    got = assert_exactly_once(sim.run(), ["127.0.0.1", "127.0.0.2"], ports)
    dead = [o for o in got.values() if o.host == "127.0.0.2"]
    assert {(o.state, o.reason) for o in dead} == {(PortState.FILTERED, "host-down")}
    assert {o.attempts for o in dead} == {0} and {o.rtt_ms for o in dead} == {None}
    to_dead = sim.probes_to("127.0.0.2")
    assert sorted(p.port for p in to_dead) == sorted(job.disc_ports)
    assert all(p.discovery for p in to_dead)
    # the live host answered discovery with RST: it is up and every port was probed
    up = [o for o in got.values() if o.host == "127.0.0.1"]
    assert {(o.state, o.reason) for o in up} == {(PortState.CLOSED, "conn-refused")}
    assert {p.port for p in sim.probes_to("127.0.0.1")} >= set(ports)


def test_dead_host_requested_discovery_ports_say_no_response() -> None:
    """Ports that were really probed during discovery report what happened to them."""
    ports = list(range(1000, 1012))
    sched = Scheduler(concurrency=64)
    job = one_job(sched, v4("127.0.0.1", "127.0.0.2"), ports, timeout=0.5, retries=0)
    probed = set(job.disc_ports) & set(ports)
    assert probed and len(job.disc_ports) <= len(DISCOVERY_PORTS)

    def respond(p: Probe) -> Response:
        return SILENT if p.host.addr == "127.0.0.2" else errno.ECONNREFUSED

    sim = Sim(sched, respond)
    got = assert_exactly_once(sim.run(), ["127.0.0.1", "127.0.0.2"], ports)
    for port in ports:
        o = got[("127.0.0.2", port)]
        assert o.state is PortState.FILTERED
        assert o.reason == ("no-response" if port in probed else "host-down")
    assert {p.port for p in sim.probes_to("127.0.0.2")} == set(job.disc_ports)


def test_host_answering_refused_is_up_and_its_ports_probed() -> None:
    ports = range(2000, 2030)
    sched = Scheduler(concurrency=64)
    one_job(sched, v4("127.0.0.1", "127.0.0.2"), ports, timeout=0.5, retries=0)
    listening = {("127.0.0.2", 2017)}

    def respond(p: Probe) -> Response:
        return 0 if (p.host.addr, p.port) in listening else errno.ECONNREFUSED

    sim = Sim(sched, respond)
    got = assert_exactly_once(sim.run(), ["127.0.0.1", "127.0.0.2"], ports)
    assert got[("127.0.0.2", 2017)].state is PortState.OPEN
    # each requested port was probed exactly once per host (discovery probes are not wasted)
    for host in ("127.0.0.1", "127.0.0.2"):
        probed = Counter(p.port for p in sim.probes_to(host) if p.port in ports)
        assert set(probed) == set(ports) and set(probed.values()) == {1}


def test_host_up_late_in_discovery_still_gets_every_port() -> None:
    ports = range(3000, 3100)
    sched = Scheduler(concurrency=64)
    job = one_job(sched, v4("127.0.0.1", "127.0.0.2"), ports, timeout=0.5, retries=0)
    last_disc = job.disc_ports[-1]

    def respond(p: Probe) -> Response:
        if p.host.addr == "127.0.0.2" and p.discovery and p.port != last_disc:
            return SILENT  # only the last discovery port answers
        return errno.ECONNREFUSED

    sim = Sim(sched, respond)
    got = assert_exactly_once(sim.run(), ["127.0.0.1", "127.0.0.2"], ports)
    assert {o.state for o in got.values()} == {PortState.CLOSED}


def test_unreachable_on_discovery_marks_every_port_unreachable() -> None:
    ports = [*range(1000, 1012), 4000, 4001]
    sched = Scheduler(concurrency=64)
    one_job(sched, v4("127.0.0.1", "127.0.0.2"), ports, timeout=0.5, retries=0)

    def respond(p: Probe) -> Response:
        return errno.EHOSTUNREACH if p.host.addr == "127.0.0.2" else errno.ECONNREFUSED

    sim = Sim(sched, respond)
    got = assert_exactly_once(sim.run(), ["127.0.0.1", "127.0.0.2"], ports)
    dead = {(o.state, o.reason) for o in got.values() if o.host == "127.0.0.2"}
    assert dead == {(PortState.UNREACHABLE, "host-unreach")}
    assert all(p.discovery for p in sim.probes_to("127.0.0.2"))


def test_one_icmp_error_among_silent_discovery_probes_makes_the_host_unreachable() -> None:
    ports = list(range(1000, 1012))
    sched = Scheduler(concurrency=64)
    job = one_job(sched, v4("127.0.0.1", "127.0.0.2"), ports, timeout=0.5, retries=0)
    first = job.disc_ports[0]

    def respond(p: Probe) -> Response:
        if p.host.addr == "127.0.0.2":
            return errno.EHOSTUNREACH if p.port == first else SILENT
        return errno.ECONNREFUSED

    sim = Sim(sched, respond)
    got = assert_exactly_once(sim.run(), ["127.0.0.1", "127.0.0.2"], ports)
    dead = {(o.state, o.reason) for o in got.values() if o.host == "127.0.0.2"}
    assert dead == {(PortState.UNREACHABLE, "host-unreach")}


def test_few_ports_skip_discovery() -> None:
    sched = Scheduler(concurrency=64)
    job = one_job(sched, v4("127.0.0.1", "127.0.0.2"), [1, 2, 3], timeout=0.3, retries=0)
    assert job.disc_ports == ()
    sim = Sim(sched, lambda p: SILENT)
    got = assert_exactly_once(sim.run(), ["127.0.0.1", "127.0.0.2"], [1, 2, 3])
    assert {o.reason for o in got.values()} == {"no-response"}
    assert len(sim.sent) == 6


def test_no_discovery_probes_every_port_of_a_dead_host() -> None:
    ports = range(1000, 1050)
    sched = Scheduler(concurrency=64)
    one_job(sched, v4("127.0.0.1", "127.0.0.2"), ports, timeout=0.3, retries=0,
            discovery=False)
    sim = Sim(sched, lambda p: SILENT)
    got = assert_exactly_once(sim.run(), ["127.0.0.1", "127.0.0.2"], ports)
    assert {(o.state, o.reason, o.attempts) for o in got.values()} == {
        (PortState.FILTERED, "no-response", 1)}
    assert len(sim.sent) == 100


# ---- concurrency and rate ---------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 3, 7])
def test_concurrency_cap_is_never_exceeded(concurrency: int) -> None:
    hosts = ["127.0.0.1", "127.0.0.2"]
    ports = range(1, 41)
    sched = Scheduler(concurrency=concurrency)
    one_job(sched, v4(*hosts), ports, timeout=0.2, retries=1)

    def respond(p: Probe) -> Response:
        # a mix of silence (holds a socket until it expires), refusals and opens
        return SILENT if p.port % 3 == 0 else 0 if p.port % 7 == 0 else errno.ECONNREFUSED

    sim = Sim(sched, respond, rtt=0.03)
    assert_exactly_once(sim.run(), hosts, ports)
    assert sim.max_holding == concurrency  # reached, never passed (checked at every step)


def test_banner_reads_hold_a_slot() -> None:
    sched = Scheduler(concurrency=2)
    one_job(sched, v4("127.0.0.1"), range(1, 11), timeout=0.2, banners=True, discovery=False)
    sim = Sim(sched, lambda p: 0)
    got = assert_exactly_once(sim.run(), ["127.0.0.1"], range(1, 11))
    assert {o.banner for o in got.values()} == {"SSH-2.0-sim"}
    assert sim.max_holding == 2


def test_rate_cap_with_fake_clock() -> None:
    sched = Scheduler(concurrency=1000, rate=100.0)
    one_job(sched, v4("127.0.0.1"), range(1, 1001), timeout=1.0, discovery=False)
    first = next_probe(sched, 0.0)
    assert first is not None
    sched.on_sent(first, 0.0)
    assert next_probe(sched, 0.0) is None  # burst of one at 100/s
    assert sched.poll_timeout(0.0) == pytest.approx(0.01)
    sent = 1
    now = 0.0
    while now < 1.0:
        now += 0.001
        while (p := next_probe(sched, now)) is not None:
            sched.on_sent(p, now)
            sent += 1
    assert 99 <= sent <= 102


# ---- banners ----------------------------------------------------------------------------------


def test_open_port_with_banners_waits_for_the_banner() -> None:
    sched = Scheduler(concurrency=8)
    one_job(sched, v4("127.0.0.1"), [22, 23], timeout=1.0, banners=True, discovery=False)
    got = assert_exactly_once(Sim(sched, lambda p: 0 if p.port == 22 else 111).run(),
                              ["127.0.0.1"], [22, 23])
    assert got[("127.0.0.1", 22)].banner == "SSH-2.0-sim"
    assert got[("127.0.0.1", 22)].state is PortState.OPEN
    assert got[("127.0.0.1", 23)].banner is None


def test_without_banners_open_port_is_held_and_reports_no_banner() -> None:
    """Every completed handshake is held to see a reset (issue 25); without banners what
    the service sent is only evidence, never reported."""
    sched = Scheduler(concurrency=8)
    one_job(sched, v4("127.0.0.1"), [22], timeout=1.0, discovery=False)
    probe = next_probe(sched, 0.0)
    assert probe is not None
    sched.on_sent(probe, 0.0)
    assert sched.on_answer(probe, 0, 0.001) is True
    assert not [o for _, o in drained(sched) if o is not None]  # nothing final while held
    sched.on_banner(probe, "SSH-2.0-sim")
    [o] = [o for _, o in drained(sched) if o is not None]
    assert o.banner is None and o.state is PortState.OPEN and o.reason == "syn-ack"
    assert sched.inflight == 0


def test_reset_during_the_hold_is_a_closed_port() -> None:
    sched = Scheduler(concurrency=8)
    one_job(sched, v4("127.0.0.1"), [22], timeout=1.0, discovery=False)
    probe = next_probe(sched, 0.0)
    assert probe is not None
    sched.on_sent(probe, 0.0)
    assert sched.on_answer(probe, 0, 0.004) is True
    sched.on_reset(probe)
    [o] = [o for _, o in drained(sched) if o is not None]
    assert (o.state, o.reason) == (PortState.CLOSED, "reset-after-syn-ack")
    assert o.rtt_ms is not None and abs(o.rtt_ms - 4.0) < 1e-6  # the handshake's RTT
    assert sched.inflight == 0


def test_banner_is_read_on_a_port_that_served_as_discovery_probe() -> None:
    """Regression: an open port answered by a discovery probe was final at once, so with
    banners=True its banner was never read."""
    ports = list(range(1000, 1012))
    sched = Scheduler(concurrency=64)
    job = one_job(sched, v4("127.0.0.1", "127.0.0.2"), ports, timeout=0.5, retries=0,
                  banners=True)
    banner_port = job.disc_ports[0]
    assert banner_port in ports

    def respond(p: Probe) -> Response:
        return 0 if p.port == banner_port else errno.ECONNREFUSED

    got = by_key(Sim(sched, respond).run())
    assert got[("127.0.0.1", banner_port)].banner == "SSH-2.0-sim"


# ---- names ------------------------------------------------------------------------------------


def done_future(value: Lookup | BaseException) -> Future[Lookup]:
    fut: Future[Lookup] = Future()
    if isinstance(value, BaseException):
        fut.set_exception(value)
    else:
        fut.set_result(value)
    return fut


@pytest.mark.parametrize(("status", "reason"), [
    (LookupStatus.NO_SUCH_NAME, "no-such-name"), (LookupStatus.NO_ADDRESS, "no-address"),
    (LookupStatus.TIMEOUT, "resolver-timeout"), (LookupStatus.FAILED, "unresolved"),
    (LookupStatus.ANSWERED, "no-address")])  # an answer with nothing usable in it
def test_a_name_without_address_gives_its_reason_for_every_port(status: LookupStatus,
                                                                 reason: str) -> None:
    sched = Scheduler(concurrency=8,
                      resolver=lambda name: done_future(Lookup([], status, "127.0.0.53:53")))
    targets = [Target(None, "nohost.invalid", 0), *v4("127.0.0.1")]
    job = one_job(sched, targets, [22, 80, 443], timeout=1.0)
    sim = Sim(sched, refuse_all)
    got = assert_exactly_once(sim.run(), ["nohost.invalid", "127.0.0.1"], [22, 80, 443])
    bad = [o for o in got.values() if o.host == "nohost.invalid"]
    assert {(o.state, o.reason, o.name) for o in bad} == {
        (PortState.ERROR, reason, "nohost.invalid")}
    assert {o.state for o in got.values() if o.host == "127.0.0.1"} == {PortState.CLOSED}
    assert not sim.probes_to("nohost.invalid")
    assert job.emitted == job.addresses * 3 == 6
    timeouts = sched.intake.resolvers.timeouts
    assert timeouts == ({"127.0.0.53:53": 1} if status is LookupStatus.TIMEOUT else {})


def test_failed_lookup_counts_as_unresolved() -> None:
    sched = Scheduler(concurrency=8, resolver=lambda name: done_future(OSError("boom")))
    one_job(sched, [Target(None, "x.invalid", 0)], [22], timeout=1.0)
    [o] = Sim(sched, refuse_all).run()
    assert (o.state, o.reason) == (PortState.ERROR, "unresolved")


def test_name_resolving_to_two_addresses_scans_both_with_the_name() -> None:
    sched = Scheduler(concurrency=8, resolver=lambda name: done_future(
        Lookup([(4, "127.0.0.1"), (6, "::1")])))
    job = one_job(sched, [Target(None, "dual.test", 0)], [22, 23], timeout=1.0)
    sim = Sim(sched, refuse_all)
    got = assert_exactly_once(sim.run(), ["127.0.0.1", "::1"], [22, 23])
    assert {o.name for o in got.values()} == {"dual.test"}
    assert job.addresses == 2
    assert {p.host.family for p in sim.sent} == {2, 10}


def test_pending_lookup_is_waited_for() -> None:
    fut: Future[Lookup] = Future()
    sched = Scheduler(concurrency=8, resolver=lambda name: fut)
    one_job(sched, [Target(None, "slow.test", 0)], [22], timeout=1.0)
    assert next_probe(sched, 0.0) is None
    assert not sched.done
    assert sched.poll_timeout(0.0) is not None  # the loop keeps polling the lookup
    fut.set_result(Lookup([(4, "127.0.0.1")]))
    [o] = Sim(sched, refuse_all).run()
    assert (o.host, o.name, o.state) == ("127.0.0.1", "slow.test", PortState.CLOSED)


def test_lookups_under_way_start_few_grow_to_a_cap_and_answers_come_in_any_order() -> None:
    """FIRST_LOOKUPS questions at first; each lookup that ends allows one more (the number
    doubles per round trip), never over MAX_LOOKUPS; a slow first name holds back none of
    the names answered after it."""
    asked: dict[str, Future[Lookup]] = {}

    def resolver(name: str) -> Future[Lookup]:
        asked[name] = Future()
        return asked[name]

    def under_way() -> int:
        return sum(not f.done() for f in asked.values())

    n = 2000
    sched = Scheduler(concurrency=64, resolver=resolver)
    job = one_job(sched, [Target(None, f"h{i}.test", 0) for i in range(n)], [22], timeout=1.0)
    assert next_probe(sched, 0.0) is None
    assert len(asked) == FIRST_LOOKUPS
    assert sched.poll_timeout(0.0) == pytest.approx(0.01)  # no busy loop while they run
    for i in range(1, 11):  # the first name stays unanswered
        asked[f"h{i}.test"].set_result(Lookup([], LookupStatus.NO_SUCH_NAME))
    assert next_probe(sched, 0.0) is None
    assert len(asked) == FIRST_LOOKUPS + 20 and under_way() == FIRST_LOOKUPS + 10
    assert job.emitted == 10
    rounds, most = 0, 0
    while len(asked) < n:  # a silent resolver: every lookup under way times out at once
        for fut in asked.values():
            if not fut.done():
                fut.set_result(Lookup([], LookupStatus.TIMEOUT, "127.0.0.54:53"))
        assert next_probe(sched, 0.0) is None
        most = max(most, under_way())
        rounds += 1
    assert most == MAX_LOOKUPS
    # every name asked after 7 rounds of timeouts, not 27: the first (after 10 answers) is
    # taken for losses (asked again, the window halved), then silence is silence
    assert rounds == 7
    for fut in asked.values():
        if not fut.done():
            fut.set_result(Lookup([], LookupStatus.TIMEOUT, "127.0.0.54:53"))
    Sim(sched, refuse_all).run()
    assert job.emitted == n and sched.done
    assert sched.intake.resolvers.timeouts == {"127.0.0.54:53": n - 10}
    assert sched.intake.resolvers.warning() == (
        f"warning: resolver 127.0.0.54:53 did not answer: {n - 10} names not scanned "
        f"(resolver-timeout)")


def test_names_a_live_resolver_lost_are_asked_again_with_fewer_under_way() -> None:
    """A resolver that answers some names and lets others time out is losing questions:
    each of those is asked once more and the lookups under way are halved; a name lost
    twice is resolver-timeout. (A silent resolver's names are asked once: the test above.)"""
    asked: Counter[str] = Counter()
    lost_once = {f"h{i}.test" for i in range(0, 200, 2)}  # every other name: lost, then found
    lost_twice = {f"h{i}.test" for i in range(1, 20, 2)}  # ten names: lost both times
    pending: list[tuple[str, Future[Lookup]]] = []

    def resolver(name: str) -> Future[Lookup]:
        asked[name] += 1
        fut: Future[Lookup] = Future()
        pending.append((name, fut))
        return fut

    sched = Scheduler(concurrency=64, resolver=resolver)
    job = one_job(sched, [Target(None, f"h{i}.test", 0) for i in range(200)], [22],
                  timeout=1.0)
    limits = []
    assert next_probe(sched, 0.0) is None  # the first lookups go out
    while pending:  # answer every lookup under way, then let the intake take the answers
        batch = list(pending)
        pending.clear()
        lost = [(n, f) for n, f in batch
                if n in lost_twice or (n in lost_once and asked[n] == 1)]
        for name, fut in batch:  # answers come in a round trip, timeouts seconds later
            if (name, fut) not in lost:
                fut.set_result(Lookup([], LookupStatus.NO_SUCH_NAME, "127.0.0.53:53"))
        for _, fut in lost:
            fut.set_result(Lookup([], LookupStatus.TIMEOUT, "127.0.0.53:53"))
        assert next_probe(sched, 0.0) is None
        limits.append(sched.intake.window.limit)
    got = Sim(sched, refuse_all).run()
    assert job.emitted == 200 and sched.done
    assert {n: c for n, c in asked.items() if c != 1} == {
        n: 2 for n in lost_once | lost_twice}
    reasons = Counter(o.reason for o in got)
    assert reasons == {"no-such-name": 190, "resolver-timeout": 10}
    assert sched.intake.window.cuts >= 1
    assert any(b < a for a, b in pairwise(limits))  # the cut shows
    assert sched.intake.resolvers.timeouts == {"127.0.0.53:53": 10}


def test_name_without_resolver_is_unresolved() -> None:
    sched = Scheduler(concurrency=8)
    one_job(sched, [Target(None, "x.invalid", 0)], [22, 23], timeout=1.0)
    got = Sim(sched, refuse_all).run()
    assert {(o.state, o.reason) for o in got} == {(PortState.ERROR, "unresolved")}
    assert len(got) == 2


# ---- bursts: what the readiness loop does on loopback -------------------------------------------


@pytest.mark.parametrize("timeout", [None, 0.5])
def test_immediate_refusals_in_bursts_account_for_every_port(timeout: float | None) -> None:
    """On loopback most refusals come straight from connect(); in bursts they take the
    scheduler's shortcut, and mixed with open, silent, lossy and dead hosts every
    (host, port) is still decided exactly once, with the right state."""
    hosts = [f"127.0.0.{i}" for i in range(1, 9)]
    ports = range(3000, 3080)
    sched = Scheduler(concurrency=48)
    one_job(sched, v4(*hosts), ports, timeout=timeout)
    dead = {"127.0.0.3", "127.0.0.7"}
    tries: Counter[tuple[str, int]] = Counter()

    def respond(p: Probe) -> Response:
        key = (p.host.addr, p.port)
        tries[key] += 1
        if p.host.addr in dead or p.port % 10 == 7:
            return SILENT
        if p.port % 10 == 3:
            return 0  # open, answered through the loop's slow path
        if p.port % 10 == 5 and tries[key] == 1:
            return SILENT  # the first SYN is lost: the retry's refusal must still count
        return (IMMEDIATE, errno.ECONNREFUSED)

    got = assert_exactly_once(Sim(sched, respond).run(), hosts, ports)
    for (host, port), o in got.items():
        if host in dead or port % 10 == 7:
            assert o.state is PortState.FILTERED
        elif port % 10 == 3:
            assert o.state is PortState.OPEN
        else:
            assert (o.state, o.reason) == (PortState.CLOSED, "conn-refused")
            assert o.attempts == (2 if port % 10 == 5 else 1)
    assert sched.inflight == 0 and sched.young == 0


def test_unsent_probes_go_back_and_come_out_again() -> None:
    """The loop ran short of sockets part-way through a burst: the rest of the burst is
    handed back, costs nothing, and is sent later as the same first tries."""
    sched = Scheduler(concurrency=8)
    one_job(sched, v4("127.0.0.1"), [22, 23, 24], timeout=1.0, discovery=False, shuffle=False)
    burst = sched.next_probes(0.0, 8)
    assert [p.port for p in burst] == [22, 23, 24] and sched.inflight == 3
    sched.unsend(burst[1:])
    assert sched.inflight == 1 and sched.probes_sent == 1
    again = sched.next_probes(0.0, 8)
    assert [(p.port, p.attempt) for p in again] == [(23, 1), (24, 1)]
    assert sched.inflight == 3


def dead_host_decided(ports: range) -> tuple[Scheduler, Job]:
    """A scan of one silent host run to its end, every outcome still queued in the scheduler."""
    sched = Scheduler(concurrency=16)
    job = one_job(sched, v4("127.0.0.9"), ports, timeout=0.2, retries=0)
    sim = Sim(sched, lambda p: SILENT)
    while not sched.done:
        sim.send()
        sim.now += sim.step
        for probe in sched.expire(sim.now):
            sim._release(probe)
    return sched, job


def test_a_dead_hosts_bulk_of_outcomes_is_handed_out_in_slices() -> None:
    """drain_some never returns more than asked: a dead host's ports come out a slice at
    a time, each exactly once, and the job's end marker comes last."""
    ports = range(5000, 5300)
    sched, job = dead_host_decided(ports)
    slices = []
    while sched.outcomes:
        got = sched.drain_some(64)
        assert 0 < len(got) <= 64
        slices.append(got)
    items = [item for got in slices for item in got]
    assert items[-1] == (job, None)
    outcomes = [o for _, o in items[:-1]]
    assert all(o is not None for o in outcomes)
    got_ports = assert_exactly_once(outcomes, ["127.0.0.9"], ports)  # type: ignore[arg-type]
    # discovery (on ports not asked for) found nothing: every asked port is one bulk
    assert {o.reason for o in got_ports.values()} == {"host-down"}
    assert len(slices) >= len(ports) // 64


def test_a_dead_hosts_ports_can_stay_one_run() -> None:
    """With runs=True (how shard workers drain), a down host's ports come as one PortRun
    whose outcomes are exactly those the sliced drain hands out one by one."""
    def dead_host_outcomes(runs: bool) -> list[object]:
        sched, _ = dead_host_decided(range(5000, 5300))
        items: list[object] = []
        while sched.outcomes:
            items.extend(item for _, item in sched.drain_some(64, runs=runs))
        return items

    whole = dead_host_outcomes(True)
    [run] = [item for item in whole if isinstance(item, PortRun)]
    assert len(run.ports) == 300 and (run.state, run.reason) == (PortState.FILTERED, "host-down")
    sliced = [item for item in dead_host_outcomes(False) if item is not None]
    assert all(isinstance(item, ProbeOutcome) for item in sliced)
    assert sorted(run.outcomes()) == sorted(sliced)  # type: ignore[type-var]


# ---- ICMP rate limits: held silent hosts, re-probed in paced groups -------------------------


class IcmpLimiter:
    """Linux's per-peer ICMP error limiter (a burst of 6, then one a second), played by the
    responder: a probe to a rejecting host draws host-unreachable only while it has a token."""

    def __init__(self, sim_clock: Callable[[], float], burst: int = 6, pace: float = 1.0) -> None:
        self.clock, self.pace, self.burst = sim_clock, pace, burst
        self.tokens = float(burst)
        self.last = 0.0
        self.sent = 0

    def allow(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) / self.pace)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.sent += 1
            return True
        return False


def rate_limited_network(recheck: float | None, limit: bool = True) -> tuple[
        Sim, Job, set[str], set[str]]:
    up = "198.18.0.1"
    unreachable = {f"198.18.0.{i}" for i in range(10, 30)}
    dead = {f"198.18.0.{i}" for i in range(40, 60)}
    sched = Scheduler(concurrency=64)
    job = one_job(sched, v4(up, *sorted(unreachable), *sorted(dead)), range(1000, 1012),
                  recheck=recheck)
    clock: list[float] = [0.0]
    limiter = IcmpLimiter(lambda: clock[0])

    def respond(p: Probe) -> Response:
        clock[0] = sim.now
        if p.host.addr == up:
            return errno.ECONNREFUSED
        if p.host.addr in unreachable and (not limit or limiter.allow()):
            return errno.EHOSTUNREACH
        return SILENT

    sim = Sim(sched, respond)
    return sim, job, unreachable, dead


def host_verdicts(outcomes: list[ProbeOutcome]) -> dict[str, set[tuple[PortState, str]]]:
    out: dict[str, set[tuple[PortState, str]]] = {}
    for o in outcomes:
        out.setdefault(o.host, set()).add((o.state, o.reason))
    return out


def test_rate_limited_rejects_are_recovered_or_left_undecided_never_called_down() -> None:
    sim, _job, unreachable, dead = rate_limited_network(recheck=3.0)
    outcomes = sim.run()
    assert_exactly_once(outcomes, ["198.18.0.1", *unreachable, *dead], range(1000, 1012))
    verdicts = host_verdicts(outcomes)
    unr = (PortState.UNREACHABLE, "host-unreach")
    undecided = (PortState.FILTERED, "rate-limited?")
    recovered = {h for h in unreachable if verdicts[h] == {unr}}
    # no unreachable host is ever reported as a certain host-down
    for h in unreachable:
        assert verdicts[h] in ({unr}, {undecided}), (h, verdicts[h])
    for h in dead:
        assert verdicts[h] <= {(PortState.FILTERED, "host-down"),
                               (PortState.FILTERED, "no-response")} or verdicts[h] == {undecided}
    # the burst names six; the re-probes add more than the limiter's pace alone would allow
    # in the main scan, and the extra time stays inside the budget
    assert len(recovered) > 6
    assert sim.sched.rechecks_recovered > 0
    assert sim.sched.rechecks_sent < len(unreachable) + len(dead)
    assert any(verdicts[h] == {undecided} for h in unreachable)


def test_with_time_enough_every_held_host_is_decided_exactly() -> None:
    sim, _job, unreachable, dead = rate_limited_network(recheck=60.0)
    outcomes = sim.run(limit=200)
    verdicts = host_verdicts(outcomes)
    for h in unreachable:
        assert verdicts[h] == {(PortState.UNREACHABLE, "host-unreach")}, h
    for h in dead:
        assert (PortState.FILTERED, "rate-limited?") not in verdicts[h]
        assert (PortState.FILTERED, "host-down") in verdicts[h], h
    # a group that draws no reject decides all of its dead hosts at once
    assert sim.sched.rechecks_sent < 3 * (len(unreachable) + len(dead))


def test_without_a_limiter_no_host_is_re_probed() -> None:
    sim, _job, unreachable, dead = rate_limited_network(recheck=None, limit=False)
    outcomes = sim.run()
    verdicts = host_verdicts(outcomes)
    assert sim.sched.rechecks_sent == 0
    for h in unreachable:
        assert verdicts[h] == {(PortState.UNREACHABLE, "host-unreach")}
    for h in dead:
        assert (PortState.FILTERED, "host-down") in verdicts[h]


def test_recheck_zero_keeps_the_old_verdicts() -> None:
    sim, _job, unreachable, _dead = rate_limited_network(recheck=0.0)
    outcomes = sim.run()
    verdicts = host_verdicts(outcomes)
    assert sim.sched.rechecks_sent == 0
    assert not any((PortState.FILTERED, "rate-limited?") in v for v in verdicts.values())
    # what the limiter hid is (wrongly, but as before) a dead host
    assert any((PortState.FILTERED, "host-down") in verdicts[h] for h in unreachable)


def test_default_budget_is_a_share_of_the_scan_with_a_floor() -> None:
    sim, job, _unreachable, _dead = rate_limited_network(recheck=None)
    sim.run()
    from nornir_portscan.engine.core.recheck import RECHECK_FLOOR, RECHECK_SHARE

    assert job.recheck_deadline > 0
    main_scan = job.recheck_deadline - RECHECK_FLOOR  # the floor wins on a short scan
    assert sim.now <= job.recheck_deadline + 2.0  # the last group's timeout at most
    assert RECHECK_SHARE * (main_scan - max(job.started, 0.0)) <= RECHECK_FLOOR


def first_recheck_time(sim: Sim) -> list[float]:
    """Records when the scheduler first turns to the re-probes (the loop's next_probes
    calls ``next_rechecks`` once the scan's other work is done)."""
    seen: list[float] = []
    real = sim.sched.next_rechecks

    def recording(now: float, limit: int) -> list[Probe]:
        if not seen:
            seen.append(now)
        return real(now, limit)

    sim.sched.next_rechecks = recording  # type: ignore[method-assign]
    return seen


def test_default_budget_of_a_long_scan_is_its_share() -> None:
    """Past the floor, the re-probes' default time is a share of the scan so far (10 %).
    Here the one up host's 800 silent ports, four sockets at a time, keep the scan
    going about a minute before the held hosts are re-probed: they get about six
    seconds more, not the 2 s floor."""
    from nornir_portscan.engine.core.recheck import RECHECK_FLOOR

    up = "198.18.0.1"
    unreachable = {f"198.18.0.{i}" for i in range(10, 30)}
    dead = {f"198.18.0.{i}" for i in range(40, 60)}
    sched = Scheduler(concurrency=4)
    job = one_job(sched, v4(up, *sorted(unreachable), *sorted(dead)), range(1000, 1800))
    clock: list[float] = [0.0]
    limiter = IcmpLimiter(lambda: clock[0])

    def respond(p: Probe) -> Response:
        clock[0] = sim.now
        if p.host.addr == up:  # up (its discovery ports refuse), every port asked silent
            return SILENT if p.port >= 1000 else errno.ECONNREFUSED
        if p.host.addr in unreachable and limiter.allow():
            return errno.EHOSTUNREACH
        return SILENT

    sim = Sim(sched, respond)
    seen = first_recheck_time(sim)
    outcomes = sim.run(limit=400)
    assert_exactly_once(outcomes, [up, *unreachable, *dead], range(1000, 1800))
    [began] = seen
    main_scan = began - job.started
    assert main_scan > 50
    assert job.recheck_deadline == pytest.approx(began + 0.1 * main_scan)
    assert job.recheck_deadline - began > 2 * RECHECK_FLOOR
    assert sim.now <= job.recheck_deadline + 2.0  # the last group's timeout at most
    assert sched.rechecks_recovered > 0
    verdicts = host_verdicts(outcomes)
    for h in unreachable:
        assert verdicts[h] in ({(PortState.UNREACHABLE, "host-unreach")},
                               {(PortState.FILTERED, "rate-limited?")}), (h, verdicts[h])


def test_shards_sharing_a_limiter_send_re_probes_only_in_their_own_slots() -> None:
    from nornir_portscan.engine.core.recheck import RECHECK_SLOT, RECHECK_WINDOW

    sim, job, unreachable, _dead = rate_limited_network(recheck=12.0)
    object.__setattr__(job.options, "limiter_slot", (1, 2))
    groups: list[float] = []
    real = sim.sched.next_rechecks

    def recording(now: float, limit: int) -> list[Probe]:
        out = real(now, limit)
        if out:
            groups.append(now)
        return out

    sim.sched.next_rechecks = recording  # type: ignore[method-assign]
    verdicts = host_verdicts(sim.run())
    assert groups
    for t in groups:  # shard 1 of 2: the start of the second slot of each cycle
        phase = t % (2 * RECHECK_SLOT)
        assert RECHECK_SLOT <= phase < RECHECK_SLOT + RECHECK_WINDOW + 1e-9, (t, phase)
    for h in unreachable:
        assert verdicts[h] in ({(PortState.UNREACHABLE, "host-unreach")},
                               {(PortState.FILTERED, "rate-limited?")}), h
    assert sim.sched.rechecks_recovered > 0
