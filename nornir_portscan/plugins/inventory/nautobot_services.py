"""``portscan_services``: a nornir transform function that turns Nautobot's services into
the ``portscan`` task's expectations, for inventories loaded by nornir-nautobot's
``NautobotInventory``.

Registered by entry point (``nornir.plugins.transform_function``), so a nornir config
names it and ``nornir-portscan run -c config.yaml`` or ``nr.run(task=portscan)`` gates on
the source of truth with no YAML of ours::

    inventory:
      plugin: NautobotInventory
      options: {nautobot_url: https://nautobot.example.net, nautobot_token: ...}
      transform_function: portscan_services
      transform_function_options: {ports: top100}

Each host gets ``data["portscan"] = {"ports": PORTS, "expect": {"open": [...],
"only_open": [...]}}``: ``open`` lists the TCP ports of the services that apply to the
host's address (bound to it, or bound to none: a service without an address is on the
primary one, which is the host's ``hostname``), ``only_open`` every TCP port any service of
the device documents; the scan then probes those and ``PORTS`` (audit ports, to catch what
is not documented). Existing ``portscan`` data of the host is kept, the expectations
replaced.

The services of every device are read once, in one GraphQL request, for all hosts (nornir
calls the function host by host): through the pynautobot object NautobotInventory puts in
``data["pynautobot_object"]``, or ``nautobot_url`` and the token in ``token_env``.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from nornir.core.inventory import Host

from ...errors import PortscanError
from ...inputs.ports import parse_ports
from ...sot.model import Service

#: (url, token) -> owner id -> services: one read per source for the whole inventory.
_CACHE: dict[tuple[str, str], dict[str, list[Service]]] = {}


def _connection(host: Host, nautobot_url: str | None, token_env: str) -> tuple[str, str]:
    record = host.data.get("pynautobot_object")
    api = getattr(record, "api", None)
    if nautobot_url is None and api is not None:
        return str(api.base_url).removesuffix("/api"), str(api.token)
    url = nautobot_url or os.environ.get("NAUTOBOT_URL")
    token = os.environ.get(token_env, "")
    if not url or not token:
        raise PortscanError(f"host {host.name!r}: portscan_services needs the host's "
                            f"pynautobot object (NautobotInventory), or nautobot_url and the "
                            f"token in ${token_env}")
    return url, token


def _services(url: str, token: str) -> dict[str, list[Service]]:
    key = (url, token)
    if key not in _CACHE:
        from ...sot.nautobot import NautobotSource, missing_extra

        why = missing_extra()
        if why:
            raise PortscanError(why)
        _CACHE[key] = NautobotSource(url, token).all_services()
    return _CACHE[key]


def _device_id(host: Host) -> str | None:
    record = host.data.get("pynautobot_object")
    if record is not None and getattr(record, "id", None):
        return str(record.id)
    as_dict = host.data.get("pynautobot_dictionary")
    if isinstance(as_dict, dict) and as_dict.get("id"):
        return str(as_dict["id"])
    return None


def _bare(address: str | None) -> str | None:
    try:
        return str(ipaddress.ip_interface(address).ip) if address else None
    except ValueError:
        return None  # a name, not an address: only services bound to no address apply


def expectations(services: list[Service], address: str | None) -> dict[str, list[int]]:
    """The ``expect`` of a host at ``address`` whose device has ``services``."""
    tcp = [s for s in services if s.protocol.lower() == "tcp"]
    here = sorted({p for s in tcp if not s.addresses or address in s.addresses
                   for p in s.ports})
    return {"open": here, "only_open": sorted({p for s in tcp for p in s.ports})}


def portscan_services(host: Host, ports: str | int | list[Any] | None = "top100",
                      nautobot_url: str | None = None, token_env: str = "NAUTOBOT_TOKEN",
                      **unknown: Any) -> None:
    """Put the host's documented services into ``data["portscan"]`` (see the module)."""
    if unknown:
        raise PortscanError(f"transform_function_options of portscan_services: unknown "
                            f"option(s) {', '.join(sorted(unknown))} (ports, nautobot_url, "
                            f"token_env)")
    device = _device_id(host)
    if device is None:
        raise PortscanError(f"host {host.name!r}: no Nautobot object in its data "
                            f"(portscan_services reads pynautobot_object, as "
                            f"NautobotInventory sets it)")
    url, token = _connection(host, nautobot_url, token_env)
    services = _services(url, token).get(device, [])
    section = dict(host.data.get("portscan") or {})
    if ports is not None:
        try:
            parse_ports(ports)  # checked here: the host's data is read much later
        except (PortscanError, ValueError) as exc:
            raise PortscanError(f"transform_function_options of portscan_services: ports "
                                f"{ports!r}: {exc}") from None
        section["ports"] = ports
    section["expect"] = expectations(services, _bare(host.hostname))
    host.data["portscan"] = section
