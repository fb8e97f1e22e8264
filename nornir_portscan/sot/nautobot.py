"""The Nautobot adapter (``pip install 'nornir-portscan[nautobot]'``, on pynautobot).

Reading is GraphQL, a fixed number of requests whatever the scope's size: the prefixes the
scope names (by location or tag), then the prefixes, IP address records and their owners in
the scope's networks, then the owners' primary IPs and services. The REST API cannot filter
services by IP address, and one request per object would make a scope of thousands of
addresses a matter of minutes; GraphQL does both in one round trip each.

Writing (``--apply``) is REST, in bulk (one PATCH or POST for many objects). It touches only
what it owns: the date custom field ``portscan_last_seen`` of IP addresses, and addresses
and services it creates, tagged ``portscan-discovered``. It never deletes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..errors import PortscanError
from .model import Address, Changes, ObjectRef, Prefix, Scope, Service, Snapshot
from .source import SotUnavailable

LAST_SEEN = "portscan_last_seen"
TAG = "portscan-discovered"
#: UI paths of the objects findings name (the page a person clicks through to).
PAGES = {"ipam.ipaddress": "ipam/ip-addresses", "ipam.service": "ipam/services",
         "ipam.prefix": "ipam/prefixes", "dcim.device": "dcim/devices",
         "virtualization.virtualmachine": "virtualization/virtual-machines"}
T = TypeVar("T")
#: Objects written per request.
BULK = 100


def missing_extra() -> str | None:
    """Why the adapter cannot load (one line for the command line), or None."""
    try:
        import pynautobot  # noqa: F401
    except ImportError:
        return ("auditing Nautobot needs pynautobot: pip install 'nornir-portscan[nautobot]'")
    return None


class NautobotSource:
    """A Nautobot server as the audit's source of truth."""

    def __init__(self, url: str, token: str, timeout: float = 60.0) -> None:
        import pynautobot
        import requests

        class _Session(requests.Session):
            """Every request with a timeout: a server that accepts and never answers must
            not hang the audit (pynautobot sets none)."""

            def request(self, *args: Any, **kwargs: Any) -> Any:
                kwargs.setdefault("timeout", timeout)
                return super().request(*args, **kwargs)

        self.url = url.rstrip("/")
        self.timeout = timeout
        self.api = pynautobot.api(self.url, token=token, exclude_m2m=False)
        self.api.http_session = _Session()

    # ---- errors: one line naming the URL and the status -------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        import pynautobot
        import requests

        try:
            return fn()
        except requests.exceptions.HTTPError as exc:
            raise self._refused(what, exc.response) from None
        except pynautobot.RequestError as exc:
            raise self._refused(what, exc.req) from None
        except requests.exceptions.Timeout:
            raise SotUnavailable(self.url, f"cannot {what}: no answer in "
                                 f"{self.timeout:g} s") from None
        except requests.exceptions.RequestException as exc:
            raise SotUnavailable(self.url, f"cannot {what}: {_cause(exc)}") from None
        except pynautobot.core.graphql.GraphQLException as exc:
            raise SotUnavailable(self.url, f"GraphQL refused the query to {what}: "
                                 f"{_short(exc)}", 400) from None
        except ValueError as exc:  # an answer that is not JSON: not a Nautobot API
            raise SotUnavailable(self.url, f"cannot {what}: the answer is not Nautobot's "
                                 f"({_short(exc)})") from None

    def _refused(self, what: str, response: Any) -> SotUnavailable:
        status = getattr(response, "status_code", None)
        if status in (401, 403):
            return SotUnavailable(self.url, f"cannot {what}: the token was refused", status)
        detail = ""
        try:
            detail = ": " + _short(response.json())
        except Exception:
            pass
        return SotUnavailable(self.url, f"cannot {what}{detail}", status)

    def graphql(self, what: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        record = self._call(what, lambda: self.api.graphql.query(query=query,
                                                                  variables=variables))
        body = record.json
        if not isinstance(body, dict) or body.get("errors") or "data" not in body:
            errors = body.get("errors") if isinstance(body, dict) else body
            raise SotUnavailable(self.url, f"GraphQL refused the query to {what}: "
                                 f"{_short(errors)}", record.status_code)
        data: dict[str, Any] = body["data"]
        return data

    def page(self, type_: str, id_: str) -> str:
        return f"{self.url}/{PAGES[type_]}/{id_}/"

    def ref(self, type_: str, obj: dict[str, Any], name: str = "") -> ObjectRef:
        return ObjectRef(type_, obj["id"], self.page(type_, obj["id"]),
                         name or str(obj.get("name") or obj.get("host") or obj.get("prefix")
                                     or ""))

    # ---- reading -----------------------------------------------------------------------------

    def read(self, scope: Scope) -> Snapshot:
        networks = list(scope.prefixes) + self._scope_prefixes(scope)
        if not networks:
            raise PortscanError(f"{self.url}: no prefix of Nautobot has "
                                f"{_named(scope)}: nothing to audit")
        nets = [str(n) for n in _collapse(networks)]
        data = self.graphql("read the scope", _ADDRESSES, {"nets": nets})
        seen = self._last_seen(nets) if self._has_custom_field() else {}
        prefixes: dict[str, Prefix] = {}
        for p in [*data["inside"], *data["around"]]:
            prefixes[p["id"]] = Prefix(self.ref("ipam.prefix", p), p["prefix"],
                                       ((p.get("namespace") or {}).get("name") or ""))
        addresses: dict[str, Address] = {}
        duplicates = 0
        for ip in data["ip_addresses"]:
            host = str(ipaddress.ip_address(ip["host"]))
            if host in addresses:
                duplicates += 1
                continue
            addresses[host] = Address(self.ref("ipam.ipaddress", ip, host), host,
                                      (ip.get("status") or {}).get("name") or "",
                                      self._owner(ip), seen.get(ip["id"]))
        services, primaries = self._services(addresses.values())
        return Snapshot(tuple(nets), tuple(prefixes.values()), addresses, services, primaries,
                        duplicates)

    def _scope_prefixes(self, scope: Scope) -> list[str]:
        """The networks of the prefixes the scope's locations and tags select (any)."""
        parts, args = [], []
        if scope.locations:
            parts.append("by_location: prefixes(locations: $locations) { prefix }")
            args.append("$locations: [String]")
        if scope.tags:
            parts.append("by_tag: prefixes(tags: $tags) { prefix }")
            args.append("$tags: [String]")
        if not parts:
            return []
        query = f"query ({', '.join(args)}) {{\n  " + "\n  ".join(parts) + "\n}"
        variables = {k: list(v) for k, v in (("locations", scope.locations),
                                               ("tags", scope.tags)) if v}
        try:
            data = self.graphql("read the scope", query, variables)
        except SotUnavailable as exc:
            if exc.status == 200 and "available choices" in exc.problem:
                # a name Nautobot does not know: the user's input, not the server's fault
                raise PortscanError(f"{self.url}: Nautobot has no {_named(scope)} (a "
                                    f"location or tag name, as Nautobot spells it)") from None
            raise
        return [p["prefix"] for key in ("by_location", "by_tag") for p in data.get(key) or []]

    def _last_seen(self, nets: list[str]) -> dict[str, str]:
        """IP address id -> its portscan_last_seen date, where set. REST in pages of
        1,000: GraphQL's schema learns of a custom field only when the server restarts."""
        ips = self.api.ipam.ip_addresses
        rows = self._call("read portscan_last_seen", lambda: list(
            ips.filter(prefix=nets, limit=1000, exclude_m2m=True)))
        out: dict[str, str] = {}
        for row in rows:
            value = (getattr(row, "custom_fields", None) or {}).get(LAST_SEEN)
            if value:
                out[str(row.id)] = str(value)
        return out

    def _owner(self, ip: dict[str, Any]) -> ObjectRef | None:
        for iface in ip.get("interfaces") or []:
            if iface.get("device"):
                return self.ref("dcim.device", iface["device"])
        for iface in ip.get("vm_interfaces") or []:
            if iface.get("virtual_machine"):
                return self.ref("virtualization.virtualmachine", iface["virtual_machine"])
        return None

    def _services(self, addresses: Iterable[Address]
                  ) -> tuple[tuple[Service, ...], dict[str, tuple[str, ...]]]:
        devices = sorted({a.owner.id for a in addresses
                          if a.owner is not None and a.owner.type == "dcim.device"})
        vms = sorted({a.owner.id for a in addresses if a.owner is not None
                      and a.owner.type == "virtualization.virtualmachine"})
        if not devices and not vms:
            return (), {}
        parts = []
        fields = "id name protocol ports ip_addresses { host }"
        primary = "id name primary_ip4 { host } primary_ip6 { host }"
        if devices:
            parts += [f"devices(id: $devices) {{ {primary} }}",
                      f"device_services: services(device: $devices) {{ {fields} "
                      f"device {{ id name }} }}"]
        if vms:
            parts += [f"virtual_machines(id: $vms) {{ {primary} }}",
                      f"vm_services: services(virtual_machine: $vms) {{ {fields} "
                      f"virtual_machine {{ id name }} }}"]
        args = ", ".join(a for a, used in (("$devices: [String]", devices),
                                           ("$vms: [String]", vms)) if used)
        query = f"query ({args}) {{\n  " + "\n  ".join(parts) + "\n}"
        variables = {k: v for k, v in (("devices", devices), ("vms", vms)) if v}
        data = self.graphql("read the services", query, variables)
        primaries: dict[str, tuple[str, ...]] = {}
        for owner in [*(data.get("devices") or []), *(data.get("virtual_machines") or [])]:
            primaries[owner["id"]] = tuple(
                str(ipaddress.ip_address(owner[k]["host"]))
                for k in ("primary_ip4", "primary_ip6") if owner.get(k))
        return tuple(self._service_records(data)), primaries

    def all_services(self) -> dict[str, list[Service]]:
        """Every service of every device and virtual machine, by owner id, in one request
        (the transform function learns its hosts one at a time: one read serves them all)."""
        query = ("query {\n  services { id name protocol ports ip_addresses { host } "
                 "device { id name } virtual_machine { id name } }\n}")
        data = self.graphql("read the services", query, {})
        every = data.get("services") or []
        split = {"device_services": [s for s in every if s.get("device")],
                 "vm_services": [s for s in every if s.get("virtual_machine")]}
        out: dict[str, list[Service]] = {}
        for service in self._service_records(split):
            out.setdefault(service.owner.id, []).append(service)
        return out

    def _service_records(self, data: dict[str, Any]) -> list[Service]:
        services: list[Service] = []
        for key, owner_key, type_ in (("device_services", "device", "dcim.device"),
                                      ("vm_services", "virtual_machine",
                                       "virtualization.virtualmachine")):
            for s in data.get(key) or []:
                services.append(Service(
                    self.ref("ipam.service", s), s["name"], str(s["protocol"]).lower(),
                    tuple(int(p) for p in s["ports"] or ()),
                    self.ref(type_, s[owner_key]),
                    tuple(str(ipaddress.ip_address(ip["host"]))
                          for ip in s.get("ip_addresses") or ())))
        return services

    # ---- writing -----------------------------------------------------------------------------

    def apply(self, changes: Changes, status: str) -> dict[str, int]:
        written = {"last_seen": 0, "addresses": 0, "services": 0}
        if not changes:
            return written
        if changes.seen:
            self._ensure_custom_field()
            seen = [{"id": a.ref.id, "custom_fields": {LAST_SEEN: changes.today}}
                    for a in changes.seen]
            self._bulk("set portscan_last_seen", self.api.ipam.ip_addresses.update, seen)
            written["last_seen"] = len(seen)
        tag = self._ensure_tag() if changes.new_addresses or changes.new_services else ""

        if changes.new_addresses:
            status_id = self._status(status)
            self._ensure_custom_field()  # a created address was seen today too
            rows: list[dict[str, Any]] = [{"address": f"{n.address}/{_host_bits(n.address)}",
                     "namespace": {"name": n.prefix.namespace} if n.prefix.namespace else None,
                     "status": status_id, "type": "host", "tags": [tag],
                     "description": "found answering by nornir-portscan audit",
                     "custom_fields": {LAST_SEEN: changes.today}}
                    for n in changes.new_addresses]
            for row in rows:
                if row["namespace"] is None:
                    del row["namespace"]
            self._bulk("create IP addresses", self.api.ipam.ip_addresses.create, rows)
            written["addresses"] = len(rows)
        if changes.new_services:
            services: list[dict[str, Any]] = [{"name": s.name, "protocol": "tcp", "ports": [s.port],
                     ("device" if s.owner.type == "dcim.device" else "virtual_machine"):
                         s.owner.id,
                     "ip_addresses": [s.address.ref.id], "tags": [tag],
                     "description": "found open by nornir-portscan audit"}
                    for s in changes.new_services]
            self._bulk("create services", self.api.ipam.services.create, services)
            written["services"] = len(services)
        return written

    def _bulk(self, what: str, send: Callable[[list[dict[str, Any]]], Any],
              rows: list[dict[str, Any]]) -> None:
        """``rows`` in requests of ``BULK`` objects: Nautobot writes a change log entry per
        object, and a thousand in one request outlasted a minute on a loaded server."""
        for start in range(0, len(rows), BULK):
            chunk = rows[start:start + BULK]
            self._call(what, lambda: send(chunk))  # noqa: B023 (called at once)

    def _has_custom_field(self) -> bool:
        """Whether IP addresses have the custom field (the API filters custom fields by
        model, not by key)."""
        cfs = self.api.extras.custom_fields
        found = self._call("read custom fields",
                           lambda: list(cfs.filter(content_types="ipam.ipaddress")))
        return any(getattr(cf, "key", None) == LAST_SEEN for cf in found)

    def _ensure_custom_field(self) -> None:
        if not self._has_custom_field():
            cfs = self.api.extras.custom_fields
            self._call("create the custom field portscan_last_seen", lambda: cfs.create(
                key=LAST_SEEN, label="Last seen by portscan", type="date",
                content_types=["ipam.ipaddress"],
                description="The last day nornir-portscan audit saw this address alive"))

    def _ensure_tag(self) -> str:
        tags = self.api.extras.tags
        tag = self._call("read tags", lambda: tags.get(name=TAG))
        if tag is None:
            tag = self._call("create the tag portscan-discovered", lambda: tags.create(
                name=TAG, content_types=["ipam.ipaddress", "ipam.service"],
                description="Created by nornir-portscan audit: found on the network"))
        return str(tag.id)

    def _status(self, name: str) -> str:
        found = self._call("read statuses",
                           lambda: self.api.extras.statuses.get(name=name,
                                                                content_types="ipam.ipaddress"))
        if found is None:
            raise PortscanError(f"{self.url}: no status {name!r} for IP addresses "
                                f"(--discovered-status)")
        return str(found.id)


#: The scope's prefixes (inside it, and around it: where an unknown host would go) and
#: its IP address records with their owners, in one request.
_ADDRESSES = """query ($nets: [String]) {
  inside: prefixes(within_include: $nets) { id prefix namespace { name } }
  around: prefixes(contains: $nets) { id prefix namespace { name } }
  ip_addresses(prefix: $nets) { id host status { name }
    interfaces { device { id name } }
    vm_interfaces { virtual_machine { id name } } }
}"""


def _collapse(networks: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = [ipaddress.ip_network(n, strict=False) for n in networks]
    v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def _host_bits(address: str) -> int:
    return 32 if ipaddress.ip_address(address).version == 4 else 128


def _named(scope: Scope) -> str:
    parts = [f"location {n!r}" for n in scope.locations] + [f"tag {t!r}" for t in scope.tags]
    return " or ".join(parts)


def _cause(exc: BaseException) -> str:
    """What the system said under requests' and urllib3's wrappers (``Connection
    refused``, ``Name or service not known``), else the exception's own text."""
    stack: list[object] = [exc]
    seen: set[int] = set()
    while stack:
        e = stack.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.strerror:
            return str(e.strerror)
        stack += [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
    return _short(exc)


def _short(value: object, limit: int = 200) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
