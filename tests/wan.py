"""A WAN between two throw-away namespaces: the scanner's and the hosts', joined by a
userspace relay that delays every packet (with jitter) in both directions.

    client ns (the scanner)  --wan0 (tun)--  relay process  --wan0 (tun)--  server ns
    198.19.255.1, route PREFIX via wan0                        198.19.255.2, local PREFIX

The hosts' namespace answers for a whole prefix of 198.18.0.0/15 (the range set aside for
benchmarks) on its loopback (``ip route add local PREFIX dev lo``), so nftables there can
play SYN proxies and DNATs in front of listeners. Nothing touches the machine's own
namespace: the relay moves itself into each namespace in turn only to open its tun device.
This kernel has no netem here, hence a relay (as ``netlab.py`` does for its WAN labs).

The tun queues are made long: a packet dropped there is loss, and the relay is about
delay and jitter. (Loss behind a SYN proxy is its own story: docs/engine.md.)
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass

from netns import NetNS

CLIENT_ADDR, SERVER_ADDR = "198.19.255.1", "198.19.255.2"

RELAY_CODE = textwrap.dedent("""
    import ctypes, fcntl, heapq, os, random, select, signal, struct, sys, time
    client_ns, server_ns = sys.argv[1], sys.argv[2]
    delay, jitter = float(sys.argv[3]), float(sys.argv[4])
    libc = ctypes.CDLL(None, use_errno=True)
    def setns(name):
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            if libc.setns(fd, 0x40000000) != 0:
                raise OSError(ctypes.get_errno(), f"setns {name}")
        finally:
            os.close(fd)
    def tun():
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", b"wan0", 0x0001 | 0x1000))  # TUN|NO_PI
        os.set_blocking(fd, False)
        return fd
    setns(client_ns); c = tun()
    setns(server_ns); s = tun()
    other = {c: s, s: c}
    rnd = random.Random(25)
    queue, seq = [], 0
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print("ready", flush=True)
    while True:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, fd, pkt = heapq.heappop(queue)
            try:
                os.write(fd, pkt)
            except OSError:
                pass
        wait = max(0.0, queue[0][0] - now) if queue else 1.0
        for fd in select.select([c, s], [], [], wait)[0]:
            for _ in range(256):
                try:
                    pkt = os.read(fd, 65536)
                except BlockingIOError:
                    break
                d = delay + (rnd.uniform(-jitter, jitter) if jitter else 0.0)
                seq += 1
                heapq.heappush(queue, (time.monotonic() + max(0.0, d), seq, other[fd], pkt))
""")


@dataclass
class Wan:
    client: NetNS
    server: NetNS
    relay: subprocess.Popen[str]
    prefix: str

    def destroy(self) -> None:
        if self.relay.poll() is None:
            self.relay.kill()
        self.relay.communicate(timeout=5)
        self.client.destroy()
        self.server.destroy()


def build_wan(prefix: str, delay_ms: float, jitter_ms: float) -> Wan:
    """Client and server namespaces, the relay between them, routes for ``prefix``."""
    client = NetNS("wc")
    try:
        server = NetNS("ws")
    except BaseException:
        client.destroy()
        raise
    relay: subprocess.Popen[str] | None = None
    try:
        relay = subprocess.Popen([sys.executable, "-c", RELAY_CODE, client.name, server.name,
                                  str(delay_ms / 1000), str(jitter_ms / 1000)],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        assert relay.stdout is not None
        if relay.stdout.readline().strip() != "ready":
            relay.kill()
            raise RuntimeError(f"the WAN relay did not start: {relay.communicate()[1].strip()}")
        for ns, addr, peer in ((client, CLIENT_ADDR, prefix),
                               (server, SERVER_ADDR, f"{CLIENT_ADDR}/32")):
            ns.check("ip", "addr", "add", addr, "dev", "wan0")
            ns.check("ip", "link", "set", "wan0", "txqueuelen", "20000")
            ns.check("ip", "link", "set", "wan0", "up")
            ns.check("ip", "route", "add", peer, "dev", "wan0")
        server.check("ip", "route", "add", "local", prefix, "dev", "lo")
        return Wan(client, server, relay, prefix)
    except BaseException:
        if relay is not None and relay.poll() is None:
            relay.kill()
        client.destroy()
        server.destroy()
        raise
