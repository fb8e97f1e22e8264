"""A real DNS server for the name tests: Debian's dnsmasq inside a test namespace.

``ip netns exec NAME`` bind-mounts /etc/netns/NAME/* over /etc, so a scan run there reads
the resolv.conf and hosts written here and asks the dnsmasq started here: no lookup of
these tests ever reaches the machine's own resolver. A *silent* resolver is an address
where nftables drops DNS (counted, so a test can tell how many questions it got).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from netns import NetNS, NetNSUnavailable

DNS = "127.0.0.53"  # the dnsmasq, on the namespace's loopback
SILENT = "127.0.0.54"  # a resolver that never answers: nftables drops what is sent to it
SEARCH = "corp.test"

SILENT_RULES = f"""
table inet silentdns {{
  chain input {{
    type filter hook input priority 0; policy accept;
    ip daddr {SILENT} udp dport 53 counter drop
    ip daddr {SILENT} tcp dport 53 counter drop
  }}
}}
"""


def why_no_dnsmasq() -> str | None:
    if shutil.which("dnsmasq") is None:
        return "dnsmasq is not installed (apt-get install dnsmasq-base)"
    return None


class DnsSetup:
    """The files under /etc/netns/NAME and the dnsmasq of one namespace."""

    def __init__(self, ns: NetNS, *, records: list[str], hosts: str = "",
                 nameserver: str = DNS, serve_in: NetNS | None = None,
                 listen: str = DNS) -> None:
        """``records`` are dnsmasq options (``--host-record=a.test,127.0.0.10``, ...);
        dnsmasq runs in ``serve_in`` (default: ``ns``) on ``listen``; ``ns``'s resolv.conf
        names ``nameserver`` (``SILENT`` for a resolver that never answers)."""
        self.ns = ns
        self.conf = Path("/etc/netns") / ns.name
        self.conf.mkdir(parents=True, exist_ok=True)
        self.conf.joinpath("resolv.conf").write_text(
            f"nameserver {nameserver}\nsearch {SEARCH}\n", encoding="ascii")
        self.conf.joinpath("hosts").write_text(hosts, encoding="ascii")
        server = serve_in or ns
        if nameserver == SILENT:
            ns.nft(SILENT_RULES)
        self.proc = server.popen(
            "dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
            f"--listen-address={listen}", "--bind-interfaces", "--user=root",
            "--local=/test/", "--log-facility=-", *records, stdout=subprocess.DEVNULL)
        assert self.proc.stderr is not None
        seen = []
        for line in self.proc.stderr:  # dnsmasq says "started" once it listens
            seen.append(line)
            if "started" in line:
                break
        else:
            raise NetNSUnavailable(f"dnsmasq did not start: {''.join(seen).strip()}")

    def dropped(self) -> int:
        """DNS packets the silent resolver's address dropped so far."""
        text = self.ns.check("nft", "list", "table", "inet", "silentdns")
        return sum(int(line.split("packets")[1].split()[0])
                   for line in text.splitlines() if "packets" in line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=5)
        shutil.rmtree(self.conf, ignore_errors=True)
