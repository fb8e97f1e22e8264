"""Vantage points as separate machines: namespaces joined by veth links to a router.

    scheduler ns --veth--+
    worker ns 1  --veth--+-- router ns --veth-- hosts ns (the targets: a local route)
    worker ns 2  --veth--+

Each worker has its own network stack (conntrack, ephemeral ports, descriptors) and its
own source address; the hosts' namespace answers for a whole prefix (``ip route add
local PREFIX dev lo``, as netlab's WAN labs do), with nftables playing dead, filtered and
unreachable hosts. Nothing is connected to the machine's own namespace: every packet
stays among namespaces built here. Used by the tests and by benchmarks/cluster.py.

Addresses: link k (k = 0 for the hosts, 1 for the scheduler, 1 + i for worker i) is
10.99.k.0/30, the router .1, the other end .2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netns import NetNS


def link_address(k: int) -> str:
    """The far end's address on link ``k`` (the router is .1)."""
    return f"10.99.{k}.2"


@dataclass
class Sites:
    router: NetNS
    hosts: NetNS
    scheduler: NetNS
    workers: list[NetNS] = field(default_factory=list)

    @property
    def scheduler_address(self) -> str:
        return link_address(1)

    def worker_address(self, i: int) -> str:
        return link_address(2 + i)

    def all(self) -> list[NetNS]:
        return [self.router, self.hosts, self.scheduler, *self.workers]

    def destroy(self) -> None:
        for ns in self.all():
            ns.destroy()


def _link(router: NetNS, other: NetNS, k: int) -> None:
    """A veth pair between the router and ``other`` (made inside the router's namespace
    and its far end moved: the machine's own namespace is never touched)."""
    near, far = f"l{k}", "eth0"
    router.check("ip", "link", "add", near, "type", "veth", "peer", "name", far,
                 "netns", other.name)
    router.check("ip", "addr", "add", f"10.99.{k}.1/30", "dev", near)
    router.check("ip", "link", "set", near, "up")
    other.check("ip", "addr", "add", f"{link_address(k)}/30", "dev", far)
    other.check("ip", "link", "set", far, "up")
    other.check("ip", "route", "add", "default", "via", f"10.99.{k}.1")


def build_sites(workers: int, prefix: str) -> Sites:
    """Router, hosts (answering for ``prefix``), scheduler and ``workers`` worker
    namespaces, linked and routed."""
    made: list[NetNS] = []
    try:
        router = NetNS("rt")
        made.append(router)
        hosts = NetNS("hs")
        made.append(hosts)
        scheduler = NetNS("sc")
        made.append(scheduler)
        sites = Sites(router, hosts, scheduler)
        for _ in range(workers):
            sites.workers.append(NetNS("wk"))
            made.append(sites.workers[-1])
        router.sysctl("net.ipv4.ip_forward", "1")
        _link(router, hosts, 0)
        _link(router, scheduler, 1)
        for i, ns in enumerate(sites.workers):
            _link(router, ns, 2 + i)
        hosts.check("ip", "route", "add", "local", prefix, "dev", "lo")
        router.check("ip", "route", "add", prefix, "via", link_address(0))
        # the hosts' ICMP errors are the truth: no rate limit on them, per destination
        # (netlab does the same) nor for the whole namespace (1000/s, burst 50: off
        # loopback an unthrottled scan of rejecting hosts goes past it)
        hosts.sysctl("net.ipv4.icmp_ratelimit", "0")
        hosts.sysctl("net.ipv4.icmp_ratemask", "0")
        return sites
    except BaseException:
        for ns in made:
            ns.destroy()
        raise
