"""The records an audit reads from a source of truth, and those it reports or writes back.

Plain frozen records with no behaviour of a particular server: an adapter (Nautobot's, a
NetBox one later) fills a ``Snapshot`` in bulk; the decisions in ``audit`` read only these.
Addresses are bare (``192.0.2.10``, ``2001:db8::1``): the prefix length of an IP record
says nothing about which address answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["undocumented-service", "missing-service", "unknown-host", "silent-address"]
#: The findings' kinds, in the order reports list them.
KINDS: tuple[Kind, ...] = ("silent-address", "missing-service", "undocumented-service",
                           "unknown-host")


@dataclass(frozen=True)
class ObjectRef:
    """One object of the source of truth, as a person finds it: its type (``app.model``, as
    Nautobot and NetBox name them), id, the URL of its page, and a name to show."""

    type: str
    id: str
    url: str
    name: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"type": self.type, "id": self.id, "url": self.url, "name": self.name}


@dataclass(frozen=True)
class Prefix:
    ref: ObjectRef
    network: str
    #: The IP namespace (Nautobot) or VRF the prefix lives in: an address created in it
    #: goes there too.
    namespace: str = ""


@dataclass(frozen=True)
class Address:
    """An IP address record."""

    ref: ObjectRef
    address: str
    status: str
    #: The device or virtual machine one of whose interfaces has the address, if any.
    owner: ObjectRef | None = None
    #: The date (``YYYY-MM-DD``) the audit last saw it alive, as the record holds it.
    last_seen: str | None = None


@dataclass(frozen=True)
class Service:
    """A documented service: ports of one protocol on a device or virtual machine."""

    ref: ObjectRef
    name: str
    protocol: str
    ports: tuple[int, ...]
    owner: ObjectRef
    #: The addresses it is bound to; none means the owner's primary addresses.
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scope:
    """What the user named: networks, and the source's prefixes by location or tag. Nothing
    outside it is probed; an empty scope is refused before anything is read."""

    prefixes: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.prefixes or self.locations or self.tags)


@dataclass
class Snapshot:
    """What the source of truth says about a scope, read in bulk."""

    #: The networks to probe: the scope's prefixes and the source's prefixes it selected.
    networks: tuple[str, ...]
    #: The source's prefixes in or around the scope (where an unknown host belongs).
    prefixes: tuple[Prefix, ...] = ()
    #: IP address records inside ``networks``, by bare address.
    addresses: dict[str, Address] = field(default_factory=dict)
    #: Services of every device and virtual machine owning one of ``addresses``.
    services: tuple[Service, ...] = ()
    #: Owner id -> its primary addresses (where services bound to no address apply).
    primaries: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Records of the same address beyond the first (other namespaces or VRFs): counted.
    duplicates: int = 0


@dataclass(frozen=True)
class Finding:
    """One difference between the source of truth and what was seen."""

    kind: Kind
    address: str
    #: The object to fix: a service, an IP address, a device or VM, a prefix (None: the
    #: unknown host lies in a scoped network the source has no prefix for).
    object: ObjectRef | None
    port: int | None = None
    state: str | None = None
    reason: str | None = None
    open_ports: tuple[int, ...] = ()
    #: The device or virtual machine the address belongs to (reports group by it).
    owner: ObjectRef | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "address": self.address}
        if self.port is not None:
            out["port"] = self.port
        out["state"] = self.state
        out["reason"] = self.reason
        if self.kind == "unknown-host":
            out["open_ports"] = list(self.open_ports)
        out["object"] = None if self.object is None else self.object.as_dict()
        out["owner"] = None if self.owner is None else self.owner.as_dict()
        return out


@dataclass(frozen=True)
class NewAddress:
    """An unknown host to record, in the prefix (and namespace) it lies in."""

    address: str
    prefix: Prefix


@dataclass(frozen=True)
class NewService:
    """An undocumented open port to record as a service of ``owner`` bound to ``address``."""

    owner: ObjectRef
    address: Address
    port: int
    name: str


@dataclass
class Changes:
    """What ``--apply`` writes: never a deletion, never a field a person entered."""

    #: Addresses seen alive whose last-seen date is not ``today`` yet.
    seen: list[Address] = field(default_factory=list)
    today: str = ""
    new_addresses: list[NewAddress] = field(default_factory=list)
    new_services: list[NewService] = field(default_factory=list)
    #: What cannot be written, one line each (an unknown host in no prefix of the source).
    skipped: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.seen or self.new_addresses or self.new_services)

    def as_dict(self) -> dict[str, Any]:
        return {"last_seen": {"date": self.today, "addresses": [a.address for a in self.seen]},
                "new_addresses": [{"address": n.address, "prefix": n.prefix.network}
                                  for n in self.new_addresses],
                "new_services": [{"owner": s.owner.name, "address": s.address.address,
                                  "port": s.port, "name": s.name} for s in self.new_services],
                "skipped": list(self.skipped)}
