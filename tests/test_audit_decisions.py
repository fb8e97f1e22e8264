"""The audit's decisions (``sot/audit.py``) on hand-made snapshots and outcomes: no server,
no socket. The real Nautobot and real listeners are tests/test_audit_nautobot.py's."""

from __future__ import annotations

from nornir_portscan.engine.core.outcome import PortRun, PortState, ProbeOutcome
from nornir_portscan.sot.audit import (
    Sightings,
    audit_ports,
    changes,
    find,
    narrowest_prefix,
    service_name,
    watched,
)
from nornir_portscan.sot.model import Address, Finding, ObjectRef, Prefix, Service, Snapshot

WEB = ObjectRef("dcim.device", "d1", "http://sot/dcim/devices/d1/", "web1")
VM = ObjectRef("virtualization.virtualmachine", "v1", "http://sot/vm/v1/", "vm1")


def ref(type_: str, id_: str) -> ObjectRef:
    return ObjectRef(type_, id_, f"http://sot/{type_}/{id_}/", id_)


def snapshot() -> Snapshot:
    """web1 (10.0.0.10, primary) with ssh bound to it and an unbound api service; vm1
    (10.0.0.20) with a udp and a tcp service; 10.0.0.30 an Active record of nobody;
    10.0.0.31 Reserved."""
    addresses = {
        "10.0.0.10": Address(ref("ipam.ipaddress", "a10"), "10.0.0.10", "Active", WEB),
        "10.0.0.11": Address(ref("ipam.ipaddress", "a11"), "10.0.0.11", "Active", WEB),
        "10.0.0.20": Address(ref("ipam.ipaddress", "a20"), "10.0.0.20", "Active", VM,
                             last_seen="2026-01-01"),
        "10.0.0.30": Address(ref("ipam.ipaddress", "a30"), "10.0.0.30", "Active"),
        "10.0.0.31": Address(ref("ipam.ipaddress", "a31"), "10.0.0.31", "Reserved"),
    }
    services = (
        Service(ref("ipam.service", "ssh"), "ssh", "tcp", (22,), WEB, ("10.0.0.10",)),
        Service(ref("ipam.service", "api"), "api", "tcp", (9000,), WEB),  # primaries
        Service(ref("ipam.service", "dns"), "dns", "udp", (53,), VM),
        Service(ref("ipam.service", "db"), "db", "tcp", (5432, 5433), VM, ("10.0.0.20",)),
    )
    prefixes = (Prefix(ref("ipam.prefix", "p8"), "10.0.0.0/8", "Global"),
                Prefix(ref("ipam.prefix", "p24"), "10.0.0.0/24", "Global"))
    return Snapshot(("10.0.0.0/24", "192.0.2.0/28"), prefixes, addresses, services,
                    {"d1": ("10.0.0.10",), "v1": ("10.0.0.20",)})


def outcome(host: str, port: int, state: PortState, reason: str) -> ProbeOutcome:
    return ProbeOutcome(host, port, state, reason)


OPEN, CLOSED, FILTERED = PortState.OPEN, PortState.CLOSED, PortState.FILTERED


def seen_of(snap: Snapshot, outcomes: list[ProbeOutcome],
            runs: tuple[PortRun, ...] = ()) -> Sightings:
    seen = Sightings(watch=watched(snap))
    seen.add(outcomes, runs)
    return seen


def kinds(found: list[Finding]) -> list[tuple[str, str, int | None]]:
    return [(f.kind, f.address, f.port) for f in found]


def test_ports_are_the_extra_ones_and_every_documented_tcp_port() -> None:
    assert audit_ports(snapshot(), [80, 22]) == (22, 80, 5432, 5433, 9000)


def test_every_finding_kind_from_one_scan() -> None:
    snap = snapshot()
    seen = seen_of(snap, [
        outcome("10.0.0.10", 22, OPEN, "syn-ack"),
        outcome("10.0.0.10", 9000, CLOSED, "conn-refused"),  # unbound service: primary
        outcome("10.0.0.10", 8080, OPEN, "syn-ack"),  # not documented by web1
        outcome("10.0.0.11", 9000, CLOSED, "conn-refused"),  # not primary: no finding
        outcome("10.0.0.20", 5432, OPEN, "syn-ack"),
        outcome("10.0.0.20", 5433, FILTERED, "no-response"),
        outcome("10.0.0.99", 8443, OPEN, "syn-ack"),  # no record: unknown host
        outcome("10.0.0.98", 22, CLOSED, "conn-refused"),  # a reset is a sign of life
    ], (PortRun("10.0.0.30", None, (22, 80), FILTERED, "no-response"),
        PortRun("10.0.0.31", None, (22,), FILTERED, "no-response")))
    found = find(snap, seen)
    assert kinds(found) == [
        ("silent-address", "10.0.0.30", None),  # Reserved 10.0.0.31 is not Active
        ("missing-service", "10.0.0.10", 9000),
        ("missing-service", "10.0.0.20", 5433),
        ("undocumented-service", "10.0.0.10", 8080),
        ("unknown-host", "10.0.0.98", None),
        ("unknown-host", "10.0.0.99", None),
    ]
    missing = found[1]
    assert (missing.state, missing.reason, missing.object) == (
        "closed", "conn-refused", ref("ipam.service", "api"))
    assert found[2].object == ref("ipam.service", "db") and found[2].owner == VM
    assert found[3].object == WEB and found[3].owner == WEB  # where the service belongs
    unknown = found[5]
    assert unknown.open_ports == (8443,) and unknown.object == ref("ipam.prefix", "p24")
    assert found[4].open_ports == ()
    assert unknown.as_dict()["object"]["url"] == "http://sot/ipam.prefix/p24/"


def test_a_silent_owner_misses_every_service_it_documents() -> None:
    snap = snapshot()
    seen = seen_of(snap, [], (PortRun("10.0.0.20", None, (5432, 5433), FILTERED,
                                      "no-response"),))
    found = find(snap, seen)
    vm = [f for f in found if f.address == "10.0.0.20"]
    assert kinds(vm) == [("silent-address", "10.0.0.20", None),
                         ("missing-service", "10.0.0.20", 5432),
                         ("missing-service", "10.0.0.20", 5433)]
    assert vm[1].state == "filtered" and vm[1].reason == "no-response"


def test_a_port_the_scan_never_decided_is_missing_not_open() -> None:
    snap = snapshot()
    found = find(snap, seen_of(snap, [outcome("10.0.0.10", 22, OPEN, "syn-ack")]))
    api = [f for f in found if f.port == 9000]
    assert [(f.state, f.reason) for f in api] == [("unprobed", "no-outcome")]


def test_matching_records_and_scan_have_no_finding() -> None:
    snap = snapshot()
    seen = seen_of(snap, [outcome("10.0.0.10", 22, OPEN, "syn-ack"),
                          outcome("10.0.0.10", 9000, OPEN, "syn-ack"),
                          outcome("10.0.0.11", 22, CLOSED, "conn-refused"),
                          outcome("10.0.0.20", 5432, OPEN, "syn-ack"),
                          outcome("10.0.0.20", 5433, OPEN, "syn-ack"),
                          outcome("10.0.0.30", 22, CLOSED, "conn-refused")])
    assert find(snap, seen) == []


def test_changes_set_last_seen_once_a_day_and_record_unknown_hosts() -> None:
    snap = snapshot()
    seen = seen_of(snap, [outcome("10.0.0.10", 8080, OPEN, "syn-ack"),
                          outcome("10.0.0.20", 5432, OPEN, "syn-ack"),
                          outcome("10.0.0.30", 7, OPEN, "syn-ack"),
                          outcome("10.0.0.99", 80, OPEN, "syn-ack"),
                          outcome("192.0.2.9", 80, OPEN, "syn-ack")])
    found = find(snap, seen)
    todo = changes(snap, found, seen, "2026-01-01")
    # 10.0.0.20 was seen on that day already: nothing to write for it
    assert sorted(a.address for a in todo.seen) == ["10.0.0.10", "10.0.0.30"]
    assert [(n.address, n.prefix.network) for n in todo.new_addresses] == [
        ("10.0.0.99", "10.0.0.0/24")]
    assert todo.skipped == ["192.0.2.9: no prefix of the source of truth holds it; "
                            "not recorded"]
    assert todo.new_services == []
    with_services = changes(snap, found, seen, "2026-01-02", services=True)
    assert [(s.owner, s.address.address, s.port, s.name)
            for s in with_services.new_services] == [(WEB, "10.0.0.10", 8080, "http-alt-8080")]
    # 10.0.0.30 has no device or VM: no service can be made for its port 7
    assert any(line.startswith("10.0.0.30 port 7:") for line in with_services.skipped)
    assert len(with_services.seen) == 3


def test_nothing_to_change_is_false() -> None:
    snap = snapshot()
    assert not changes(snap, [], Sightings(), "2026-01-01")


def test_narrowest_prefix_and_names() -> None:
    prefixes = snapshot().prefixes
    assert narrowest_prefix(prefixes, "10.0.0.7") is prefixes[1]
    assert narrowest_prefix(prefixes, "10.1.0.7") is prefixes[0]
    assert narrowest_prefix(prefixes, "192.0.2.1") is None
    assert narrowest_prefix(prefixes, "::1") is None
    assert service_name(22) == "ssh-22" and service_name(40000) == "tcp-40000"


def test_transform_expectations_follow_the_address_a_host_is_scanned_at() -> None:
    from nornir_portscan.plugins.inventory.nautobot_services import expectations

    web = [s for s in snapshot().services if s.owner == WEB]
    # ssh is bound to .10, api to nothing (the primary, which is the host's address)
    assert expectations(web, "10.0.0.10") == {"open": [22, 9000], "only_open": [22, 9000]}
    assert expectations(web, "10.0.0.11") == {"open": [9000], "only_open": [22, 9000]}
    vm = [s for s in snapshot().services if s.owner == VM]
    assert expectations(vm, "10.0.0.20") == {"open": [5432, 5433],
                                             "only_open": [5432, 5433]}  # udp 53 left out
