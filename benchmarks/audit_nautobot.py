"""Where an audit's time goes: reading Nautobot, scanning, writing back, for 1,000 IP
addresses and 1,000 services.

Starts the tests' Nautobot (tests/nautobot_server.py: PostgreSQL, Redis and runserver in a
fresh namespace), creates in bulk 100 devices with an interface each, 1,000 IP addresses in
127.90.0.0/22 (ten on each interface, so each has an owner) and 1,000 services (one per
address, on 8 ports); half the services' ports listen. Then runs ``nornir-portscan audit
--format json`` twice (a dry run, then ``--apply``) inside the namespace and prints the
report's ``summary.seconds`` (read, scan, write) and counts as JSON.

    python3 benchmarks/audit_nautobot.py            # about 3 minutes on 2 loaded cores
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the namespace and server helpers

import nautobot_server  # noqa: E402
from netns import PYTHON, NetNS  # noqa: E402

NETWORK = "127.90.0.0/22"
PORTS = (10001, 10002, 10003, 10004, 10005, 10006, 10007, 10008)

MAKE = textwrap.dedent("""
    import ipaddress, json, os, sys, time
    import pynautobot
    n = int(sys.argv[1]); ports = json.loads(sys.argv[2])
    nb = pynautobot.api(os.environ["NAUTOBOT_URL"], token=os.environ["NAUTOBOT_TOKEN"],
                        exclude_m2m=False)
    t0 = time.monotonic()
    active = nb.extras.statuses.get(name="Active").id
    lt = nb.dcim.location_types.create(name="Site", content_types=["dcim.device"]).id
    site = nb.dcim.locations.create(name="bench", location_type=lt, status=active).id
    maker = nb.dcim.manufacturers.create(name="Acme").id
    model = nb.dcim.device_types.create(manufacturer=maker, model="Box").id
    role = nb.extras.roles.create(name="server", content_types=["dcim.device"]).id
    nb.ipam.prefixes.create(prefix=sys.argv[3], status=active, type="network")
    devices = nb.dcim.devices.create([{"name": f"d{i}", "device_type": model, "role": role,
                                       "location": site, "status": active}
                                      for i in range(n // 10)])
    ifaces = nb.dcim.interfaces.create([{"device": d.id, "name": "e0", "type": "virtual",
                                         "status": active} for d in devices])
    net = ipaddress.ip_network(sys.argv[3])
    hosts = list(net.hosts())[:n]
    ips = nb.ipam.ip_addresses.create([{"address": f"{h}/{net.prefixlen}", "status": active,
                                        "namespace": {"name": "Global"}} for h in hosts])
    nb.ipam.ip_address_to_interface.create([{"ip_address": ip.id,
                                             "interface": ifaces[i // 10].id}
                                            for i, ip in enumerate(ips)])
    nb.ipam.services.create([{"name": f"s{i}", "protocol": "tcp",
                              "ports": [ports[i % len(ports)]],
                              "device": devices[i // 10].id, "ip_addresses": [ips[i].id]}
                             for i in range(n)])
    print(json.dumps({"create_s": round(time.monotonic() - t0, 1),
                      "listen": [[str(h), ports[i % len(ports)]] for i, h in enumerate(hosts)
                                 if i % 2 == 0]}))
""")


def audit(server: nautobot_server.NautobotServer, *args: str) -> dict[str, Any]:
    done = server.ns.run(PYTHON, "-m", "nornir_portscan", "audit", "--nautobot", server.url,
                         "--prefix", NETWORK, "--format", "json", "--max-hosts", "4096",
                         *args, env=server.python_env(), timeout=1800)
    if done.returncode not in (0, 1):
        raise SystemExit(f"audit failed ({done.returncode}): {done.stderr[-2000:]}")
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="IP addresses and services")
    args = parser.parse_args()
    reason = nautobot_server.why_unavailable()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    t0 = time.monotonic()
    server = nautobot_server.start(NetNS("nbbench"))
    try:
        started = time.monotonic() - t0
        made = server.ns.run(PYTHON, "-c", MAKE, str(args.count), json.dumps(PORTS), NETWORK,
                             env=server.python_env(), timeout=3600)
        if made.returncode != 0:
            raise SystemExit(f"creating the records failed: {made.stderr[-3000:]}")
        info = json.loads(made.stdout)
        server.ns.listen([(a, p, None) for a, p in info["listen"]])
        out: dict[str, Any] = {"server_start_s": round(started, 1),
                               "database": server.database, "create_s": info["create_s"]}
        for name, extra in (("dry_run", ()), ("apply", ("--apply",)),
                            ("apply_again", ("--apply",))):
            doc = audit(server, *extra)
            s = doc["summary"]
            out[name] = {"seconds": s["seconds"], "addresses": s["addresses"],
                         "services": s["services"], "probes": s["probes"],
                         "findings": s["by_kind"], "applied": doc["applied"]}
        print(json.dumps(out, indent=2))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
