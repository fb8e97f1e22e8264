"""The tests' Nautobot records, made through the REST API with pynautobot.

Run inside the server's namespace (only it reaches the server): ``python3 nautobot_data.py``
with NAUTOBOT_URL and NAUTOBOT_TOKEN set; prints what it made as JSON. Each object costs
about 35 ms, so the data is small: two areas of 127.80.0.0/16, one for the read-only audits
and one the ``--apply`` test may change.

Area A, 127.80.0.0/27 (tag ``audit-a``):
- device web1, primary 127.80.0.10: ssh 2222 and http 8080 bound to it, api 9000 bound
  to nothing (so on the primary);
- virtual machine vm1, primary 127.80.0.20: db 15432;
- device dead1, 127.80.0.29: ssh 22 (the address gives no sign of life).
Area B, 127.80.2.0/28 (tag ``audit-b``): device app1, primary 127.80.2.2: web 8000.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pynautobot


def main() -> int:
    nb = pynautobot.api(os.environ["NAUTOBOT_URL"], token=os.environ["NAUTOBOT_TOKEN"],
                        exclude_m2m=False)
    active = nb.extras.statuses.get(name="Active").id
    made: dict[str, Any] = {}
    for name in ("audit-a", "audit-b"):
        made[f"tag {name}"] = nb.extras.tags.create(
            name=name, content_types=["ipam.prefix"]).id
    site_type = nb.dcim.location_types.create(
        name="Site", content_types=["dcim.device", "ipam.prefix", "virtualization.cluster"]).id
    site = nb.dcim.locations.create(name="lab", location_type=site_type, status=active).id
    maker = nb.dcim.manufacturers.create(name="Acme").id
    model = nb.dcim.device_types.create(manufacturer=maker, model="Box").id
    role = nb.extras.roles.create(name="server", content_types=[
        "dcim.device", "virtualization.virtualmachine"]).id
    for net, tag in (("127.80.0.0/27", "audit-a"), ("127.80.2.0/28", "audit-b")):
        made[f"prefix {net}"] = nb.ipam.prefixes.create(
            prefix=net, status=active, type="network", tags=[made[f"tag {tag}"]]).id
        # a prefix's locations are assignments of their own (the field is read-only)
        nb.ipam.prefix_location_assignments.create(prefix=made[f"prefix {net}"],
                                                   location=site)

    def ip(address: str) -> str:
        ident = str(nb.ipam.ip_addresses.create(address=address, status=active,
                                                namespace={"name": "Global"}).id)
        made[f"ip {address}"] = ident
        return ident

    def device(name: str, address: str) -> str:
        dev = nb.dcim.devices.create(name=name, device_type=model, role=role, location=site,
                                     status=active).id
        iface = nb.dcim.interfaces.create(device=dev, name="eth0", type="virtual",
                                          status=active).id
        ident = ip(address)
        nb.ipam.ip_address_to_interface.create(ip_address=ident, interface=iface)
        nb.dcim.devices.update([{"id": dev, "primary_ip4": ident}])
        made[f"device {name}"] = dev
        return str(dev)

    def service(name: str, owner: dict[str, str], port: int,
                bound: list[str] | None = None) -> None:
        made[f"service {name}"] = nb.ipam.services.create(
            name=name, protocol="tcp", ports=[port], ip_addresses=bound or [], **owner).id

    web1 = device("web1", "127.80.0.10/27")
    service("ssh", {"device": web1}, 2222, [made["ip 127.80.0.10/27"]])
    service("http", {"device": web1}, 8080, [made["ip 127.80.0.10/27"]])
    service("api", {"device": web1}, 9000)
    dead1 = device("dead1", "127.80.0.29/27")
    service("ssh-dead1", {"device": dead1}, 22, [made["ip 127.80.0.29/27"]])
    app1 = device("app1", "127.80.2.2/28")
    service("web", {"device": app1}, 8000)

    cluster_type = nb.virtualization.cluster_types.create(name="kvm").id
    cluster = nb.virtualization.clusters.create(name="c1", cluster_type=cluster_type,
                                                location=site).id
    vm1 = nb.virtualization.virtual_machines.create(name="vm1", cluster=cluster,
                                                    status=active, role=role).id
    viface = nb.virtualization.interfaces.create(virtual_machine=vm1, name="eth0",
                                                 status=active).id
    vm_ip = ip("127.80.0.20/27")
    nb.ipam.ip_address_to_interface.create(ip_address=vm_ip, vm_interface=viface)
    nb.virtualization.virtual_machines.update([{"id": vm1, "primary_ip4": vm_ip}])
    made["vm vm1"] = vm1
    service("db", {"virtual_machine": str(vm1)}, 15432, [vm_ip])
    json.dump({k: str(v) for k, v in made.items()}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
