"""The monitor daemon: rounds of ``run`` on the shared engine, metrics served over HTTP or
written to a textfile (the command line's side, options and defaults, is ``monitor.py``)."""

from __future__ import annotations

import argparse
import os
import random
import select
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ..engine.shards.forkserver import serving
from ..errors import PortscanError
from .common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VIOLATION,
    Interrupted,
    collector_paused_for,
    configure_engine,
    fail,
    given_settings,
    host_settings,
    interrupts_let_go,
    run_settings_into,
)
from .inventory import DEFAULT_CONFIG
from .monitor import (
    DEFAULT_HOST,
    DEFAULT_INTERVAL,
    DEFAULT_PORT,
    JITTER,
    NAMED_FAILURES,
    STOP_GRACE,
)
from .run import _check_ports, _error_line, _nornir, _one_line


def _log(message: str) -> None:
    print(f"nornir-portscan monitor: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Inventory:
    """A loaded inventory and each host's expected ports (which get series even when
    closed); replaced whole by a reload."""

    nr: Any
    expected: dict[str, frozenset[int]]


@dataclass(frozen=True)
class RoundResult:
    """What one round decided, and the exit status ``run`` would give it (for --once)."""

    status: int
    problems: tuple[str, ...]


class _QuietHandler(WSGIRequestHandler):
    """No access log: a scrape every few seconds would bury the monitor's own lines."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve_http(listen: tuple[str, int], registry: Any) -> WSGIServer:
    """/metrics from ``registry`` on a thread; anything else 404, so a typo is noticed."""
    from prometheus_client import make_wsgi_app
    from prometheus_client.exposition import ThreadingWSGIServer

    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/metrics":
            result: Iterable[bytes] = metrics(environ, start_response)
            return result
        if environ.get("PATH_INFO") == "/":
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"nornir-portscan monitor: metrics are at /metrics\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: metrics are at /metrics\n"]

    host, port = listen
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
    except socket.gaierror as exc:
        fail(f"--listen {host}:{port}: {exc.strerror}")

    class Server(ThreadingWSGIServer):
        address_family = family

        def handle_error(self, request: Any, client_address: Any) -> None:
            # socketserver prints a traceback; a client that went away is not news
            exc = sys.exc_info()[1]
            if not isinstance(exc, (ConnectionError, TimeoutError)):
                _log(f"metrics request from {client_address[0]} failed: "
                     f"{type(exc).__name__}: {_one_line(exc) if exc else ''}")

    try:
        server = make_server(host, port, app, server_class=Server, handler_class=_QuietHandler)
    except OSError as exc:
        fail(f"cannot listen on {_endpoint(host, port)}: {exc.strerror or exc}")
    threading.Thread(target=server.serve_forever, name="portscan-metrics", daemon=True).start()
    return server


def _endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Monitor:
    """Owns the inventory, the rounds, the published snapshot and the stop/reload flags."""

    def __init__(self, args: argparse.Namespace) -> None:
        from prometheus_client import CollectorRegistry

        from ..plugins.tasks import portscan  # noqa: F401  (imported once, not in round 1)
        from ..report.metrics import SnapshotCollector

        self.args = args
        self.where = str(args.inventory or args.config or DEFAULT_CONFIG)
        self.interval = args.interval or DEFAULT_INTERVAL
        self.collector = SnapshotCollector()
        #: portscan_* only: what --textfile and --once write (node_exporter has process_*)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.settings = given_settings(args)
        self.task_args = host_settings(self.settings)
        if args.ports is not None:
            self.task_args["ports"] = args.ports
        self.inventory = self.load()
        self._resolver_seen: Counter[str] = Counter()  # names silent resolvers cost, so far
        self.stopping = False
        self.reloading = False
        self.rounds = 0
        self.write_lock = threading.Lock()
        self._rfd, self._wfd = os.pipe()
        os.set_blocking(self._rfd, False)
        os.set_blocking(self._wfd, False)

    # ---- the inventory ------------------------------------------------------------------

    def load(self) -> Inventory:
        """The inventory as ``run`` reads it; PortscanError (one line) when it cannot be."""
        from ..plugins.tasks.options import run_settings
        from ..plugins.tasks.run_options import Addressed, RunOptions
        from ..report.metrics import expected_ports

        nr = _nornir(self.args)
        run_settings_into(nr.config.user_defined, self.settings)
        # equal inventory data resolved once, as a round's batch does (a /18: seconds)
        resolver = RunOptions(self.task_args, run_settings(nr.config), with_baseline=False)
        expected: dict[str, frozenset[int]] = {}
        for name, host in nr.inventory.hosts.items():
            try:
                resolved = resolver.resolve_lean(host)
            except PortscanError:
                continue  # the host's own task fails with the message, every round
            options = resolved.options if isinstance(resolved, Addressed) else resolved
            expected[name] = expected_ports(options.expect)
        return Inventory(nr, expected)

    def reload(self) -> None:
        self.reloading = False
        try:
            inventory = self.load()
        except PortscanError as exc:
            _log(f"reload failed, still monitoring the inventory loaded before: {exc}")
            return
        self.inventory = inventory
        hosts = inventory.nr.inventory.hosts
        self.collector.publish(self.collector.snapshot.only(hosts))
        _log(f"reloaded the inventory from {self.where}: {len(hosts)} host(s)")

    # ---- one round ----------------------------------------------------------------------

    def run_round(self) -> RoundResult:
        """Scan every host once and publish; never raises (a failure is counted, logged)."""
        from ..plugins.tasks import portscan
        from ..report.metrics import HostValues, host_values

        self.rounds += 1
        inventory = self.inventory
        nr = inventory.nr
        started, wall = time.monotonic(), time.time()
        try:
            # nornir skips hosts a run marked failed (a violated expectation): not here
            nr.data.reset_failed_hosts()
            with collector_paused_for(self.args.cluster):  # while the Results are built
                ran = nr.run(task=portscan, raise_on_error=False, on_failed=True,
                             **self.task_args)
        except (KeyboardInterrupt, Interrupted):
            raise
        except Exception as exc:  # the runner itself: the round produced nothing
            self.collector.publish(self.collector.snapshot.failed_round())
            problem = (f"cannot run the inventory from {self.where}: "
                       f"{type(exc).__name__}: {_one_line(exc)}")
            _log(f"round {self.rounds} failed, every host keeps its last values: {problem}")
            return RoundResult(EXIT_FAILED, (problem,))
        self._log_silent_resolvers()
        fresh: dict[str, HostValues] = {}
        problems: list[str] = []
        usage = violated = False
        for name in nr.inventory.hosts:
            multi = ran.get(name)
            r = multi[0] if multi else None
            if r is None:
                problems.append(f"host {name!r}: not scanned")
                continue
            if not isinstance(r.result, dict):
                problems.append(_error_line(name, r))
                usage = usage or isinstance(r.exception, PortscanError) or r.exception is None
                continue
            fresh[name] = host_values(name, r.result, inventory.expected.get(name, frozenset()))
            violated = violated or bool(r.failed)
        duration = time.monotonic() - started
        snap = self.collector.snapshot.after_round(fresh, bool(problems), wall + duration,
                                                   duration)
        self.collector.publish(snap)
        if problems:
            named = "; ".join(problems[:NAMED_FAILURES])
            more = len(problems) - NAMED_FAILURES
            _log(f"round {self.rounds} failed: {len(problems)} host(s) could not be scanned "
                 f"and keep their last values: {named}"
                 + (f"; and {more} more" if more > 0 else ""))
        status = (EXIT_USAGE if usage else EXIT_FAILED if problems
                  else EXIT_VIOLATION if violated else EXIT_OK)
        self.write_textfile()
        return RoundResult(status, tuple(problems))

    def _log_silent_resolvers(self) -> None:
        """One line per round naming each resolver that did not answer this round, and
        the names it cost (the hosts' Results say which names): the engine counts over
        its life, so a round's are what it counted since the last round."""
        from ..engine.core.stats import ScanStats
        from ..engine.io.service import shared_engine

        seen = shared_engine().resolver_timeouts()
        line = ScanStats(resolver_timeouts=seen - self._resolver_seen).resolver_warning()
        self._resolver_seen = seen
        if line:
            _log(f"round {self.rounds}: {line}")

    def write_textfile(self) -> None:
        path = self.args.textfile
        if not path:
            return
        from prometheus_client import write_to_textfile

        with self.write_lock:
            try:
                write_to_textfile(path, self.registry)  # a temp file beside it, renamed
            except OSError as exc:
                _log(f"cannot write {path}: {exc.strerror or exc}")

    # ---- the daemon ---------------------------------------------------------------------

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.reloading = True
        else:
            self.stopping = True
        try:
            os.write(self._wfd, b"x")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    def _wait(self, timeout: float | None) -> None:
        """Sleep until ``timeout`` passes, a signal arrives or the round thread ends."""
        ready, _, _ = select.select([self._rfd], [], [], timeout)
        if ready:
            try:
                while os.read(self._rfd, 512):
                    pass
            except BlockingIOError:
                pass

    def _round_thread(self, done: threading.Event) -> None:
        try:
            self.run_round()
        except BaseException as exc:  # never lose the daemon to a bug in one round
            self.collector.publish(self.collector.snapshot.failed_round())
            _log(f"round {self.rounds} failed: {type(exc).__name__}: {_one_line(exc)}")
        finally:
            done.set()  # before the wake-up: the main thread checks it after each wake
            try:
                os.write(self._wfd, b"x")
            except BlockingIOError:
                pass

    def serve(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._signal)
        next_start = time.monotonic()
        while not self.stopping:
            if self.reloading:
                self.reload()
            delay = next_start - time.monotonic()
            if delay > 0:
                self._wait(delay)
                continue
            started = time.monotonic()
            done = threading.Event()
            worker = threading.Thread(target=self._round_thread, args=(done,),
                                      name="portscan-round", daemon=True)
            worker.start()
            while not done.is_set() and not self.stopping:
                self._wait(None)
            if not done.wait(STOP_GRACE if self.stopping else None):
                self._abandon()
            worker.join()
            if self.stopping:
                break
            took = time.monotonic() - started
            period = self.interval * random.uniform(1 - JITTER, 1 + JITTER)
            next_start = started + period
            if took > period:
                _log(f"round {self.rounds} took {took:.1f} s, longer than --interval "
                     f"{self.interval:g}: the next round starts now")
                next_start = time.monotonic()
        _log("stopped")
        return EXIT_OK

    def _abandon(self) -> None:
        """Exit with the round still running: its threads would hold interpreter exit."""
        _log(f"stopped; round {self.rounds} was abandoned")
        self.write_lock.acquire(timeout=STOP_GRACE)  # never leave a temp file behind
        sys.stdout.flush()
        os._exit(EXIT_OK)


def run_monitor(args: argparse.Namespace) -> int:
    import logging

    logging.getLogger("nornir").addHandler(logging.NullHandler())
    if args.once and args.listen is not None:
        raise PortscanError("--listen serves the daemon's /metrics; --once writes to "
                            "--textfile or stdout")
    if args.once and args.interval is not None:
        raise PortscanError("--interval is for the daemon; --once runs one round")
    _check_ports(args.ports)
    if args.cluster is not None:
        from .cluster import cluster_client

        cluster_client(args.cluster)
    if args.textfile:
        directory = os.path.dirname(os.path.abspath(args.textfile))
        if not os.path.isdir(directory):
            raise PortscanError(f"--textfile {args.textfile}: directory {directory} "
                                f"does not exist")
    configure_engine(given_settings(args))
    try:
        with serving():  # before the inventory is read: see forkserver.py
            monitor = Monitor(args)
            if args.once:
                return _once(monitor)
            return _daemon(monitor)
    finally:
        if args.cluster is not None:
            from .cluster import close_clients

            close_clients()


def _once(monitor: Monitor) -> int:
    try:
        with interrupts_let_go():  # nornir joins its threads before an interrupt unwinds
            result = monitor.run_round()
    except (KeyboardInterrupt, Interrupted):
        sys.stdout.flush()
        os._exit(EXIT_INTERRUPTED)  # nornir's worker threads may still be waiting
    if not monitor.args.textfile:
        from prometheus_client import generate_latest

        sys.stdout.write(generate_latest(monitor.registry).decode())
    return result.status


def _daemon(monitor: Monitor) -> int:
    from prometheus_client import CollectorRegistry
    from prometheus_client.process_collector import ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(monitor.collector)
    ProcessCollector(registry=registry)  # process_resident_memory_bytes and friends
    server = _serve_http(monitor.args.listen or (DEFAULT_HOST, DEFAULT_PORT), registry)
    host, port = server.server_address[:2]
    hosts = len(monitor.inventory.nr.inventory.hosts)
    _log(f"serving http://{_endpoint(str(host), int(port))}/metrics; scanning {hosts} "
         f"host(s) from {monitor.where} every {monitor.interval:g} s")
    try:
        return monitor.serve()
    finally:
        server.shutdown()
        server.server_close()
