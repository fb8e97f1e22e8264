"""``nornir-portscan monitor``: ``run`` in rounds, as Prometheus metrics.

Each round is one ``nr.run(task=portscan)`` over the loaded inventory, so the rounds
feed the process's one shared engine exactly as ``run`` does, and the expectations and
Result dicts are ``run``'s own. What a scrape sees is the last good values
(report/metrics.py); a round that fails changes only its counters.

Rounds run one at a time on a worker thread while the main thread owns the signals:
SIGHUP reloads the inventory between rounds, SIGTERM (or Ctrl-C) stops within a few
seconds. Signal handlers only set a flag and write a byte to a pipe the main thread
selects on; they never take a lock the interrupted code might hold.
"""

from __future__ import annotations

import argparse
from typing import Any

from .common import (
    EXIT_STATUS_COMMON,
    PORTS_FORMS,
    _positive_float,
    add_setting_options,
    add_subcommand,
)
from .run import (
    RUN_EXITS,
    add_inventory_options,
)

#: Loopback only, unless the user names an address (GUIDE: anything that listens).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9634
DEFAULT_INTERVAL = 60.0
#: Each wait between rounds is the interval times a factor within 1 +/- JITTER, so the
#: rounds of monitors started together (a fleet, a reboot) drift apart.
JITTER = 0.1
#: How long SIGTERM waits for the round in progress before abandoning it.
STOP_GRACE = 1.5
#: Failed hosts named in a round's one log line; the rest are counted.
NAMED_FAILURES = 3


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT or a bare PORT (on 127.0.0.1); ':PORT' names no address, and
    binding every interface must be asked for by name (0.0.0.0 or ::)."""
    host, port_text = DEFAULT_HOST, text
    if text.startswith("["):
        inside, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise argparse.ArgumentTypeError(f"{text!r}: write an IPv6 address as [::1]:PORT")
        host, port_text = inside, rest[1:]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
        if ":" in host:
            raise argparse.ArgumentTypeError(f"{text!r}: write an IPv6 address as [{host}]:PORT")
        if not host:
            raise argparse.ArgumentTypeError(
                f"{text!r} names no address: 127.0.0.1{text} for this machine only, "
                f"0.0.0.0{text} for every interface")
    try:
        port = int(port_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: port {port_text!r} is not a number") \
            from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: port {port} is out of range 0-65535")
    return host, port


#: ``--once`` ends as ``run`` does; a daemon ends with 0 on SIGTERM (as systemd expects).
MONITOR_EXITS = (
    (RUN_EXITS[0][0], "SIGTERM or Ctrl-C stopped the daemon; with --once: every expectation "
                      "holds"),
    (RUN_EXITS[1][0], "with --once: an expectation was violated or a host's probes could not "
                      "all be made"),
)


def add_monitor_parser(sub: Any) -> None:
    m = add_subcommand(
        sub, "monitor",
        summary="scan an inventory every --interval seconds and serve Prometheus metrics",
        description="Scan a nornir inventory in rounds, check each host's expectations and "
                    "serve the results as Prometheus metrics on /metrics (loopback unless "
                    "--listen names an address). SIGHUP reloads the inventory, SIGTERM stops "
                    "it (status 0). See docs/monitor.md.",
        examples=(("nornir-portscan monitor", "the shipped inventory, metrics on "
                   f"{DEFAULT_HOST}:{DEFAULT_PORT}"),
                  ("nornir-portscan monitor -i inventory --interval 30 --listen "
                   "127.0.0.1:9700", "every 30 s, on another port"),
                  ("nornir-portscan monitor --once --textfile /var/lib/node_exporter/"
                   "portscan.prom", "one round from cron, for node_exporter")),
        exits=MONITOR_EXITS,
        common=(*EXIT_STATUS_COMMON[:2],
                (EXIT_STATUS_COMMON[2][0], "with --once: interrupted before the round ended")))
    add_inventory_options(m, "monitor")
    m.add_argument("-p", "--ports",
                   help=f"ports for every host, overriding inventory data: {PORTS_FORMS}")
    add_setting_options(m, "monitor", lambda s: s.config is None)
    m.add_argument("--interval", type=_positive_float, metavar="S",
                   help=f"seconds from the start of one round to the next, jittered by "
                        f"+/-{JITTER * 100:.0f}%% (default {DEFAULT_INTERVAL:g}); a longer round "
                        f"delays the next, rounds never overlap")
    m.add_argument("--listen", type=parse_listen, metavar="HOST:PORT",
                   help=f"serve /metrics here (default {DEFAULT_HOST}:{DEFAULT_PORT}; "
                        f"0.0.0.0:{DEFAULT_PORT} for every interface; port 0 picks one)")
    m.add_argument("--textfile", metavar="PATH",
                   help="also write the metrics to PATH after every round, by rename "
                        "(node_exporter's textfile collector: name it *.prom)")
    m.add_argument("--once", action="store_true",
                   help="one round, metrics to --textfile or stdout, then exit with run's "
                        "status (1 when an expectation is violated); no HTTP")

