"""``nornir-portscan audit`` against a real Nautobot (PostgreSQL, Redis and runserver in a
test namespace: tests/nautobot_server.py), real listeners in the same namespace, and the
records of tests/nautobot_data.py. Skipped where Nautobot's venv is not installed
(.ci/run installs it)."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nautobot_server
import pytest
from dask_procs import DaskProcesses
from netns import PYTHON, NetNS, why_unavailable

pytestmark = [pytest.mark.server, pytest.mark.netns]

HERE = Path(__file__).resolve().parent
#: Who answers in 127.80.0.0/16; every other address of it drops everything (a dead host).
ALIVE = ("127.80.0.10", "127.80.0.20", "127.80.0.30", "127.80.2.2", "127.80.2.5")
LISTEN = (("127.80.0.10", 2222), ("127.80.0.10", 9000), ("127.80.0.10", 5555),
          ("127.80.0.20", 15432), ("127.80.0.20", 5556), ("127.80.0.30", 5555),
          ("127.80.2.2", 8000), ("127.80.2.2", 8001), ("127.80.2.5", 8001))
RULES = f"""
table inet nbaudit {{
  chain input {{
    type filter hook input priority 0; policy accept;
    ip daddr 127.80.0.0/16 ip daddr != {{ {", ".join(ALIVE)} }} drop
  }}
}}
"""
EXTRA = "5555,5556,8001"
AREA_A, AREA_B = "127.80.0.0/27", "127.80.2.0/28"


@dataclass
class Lab:
    server: nautobot_server.NautobotServer
    ids: dict[str, str]

    @property
    def ns(self) -> NetNS:
        return self.server.ns

    def audit(self, *args: str, token: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full = {**self.server.python_env(), **(env or {})}
        if token is not None:
            full["NAUTOBOT_TOKEN"] = token
        return self.ns.run(PYTHON, "-m", "nornir_portscan", "audit", *args, env=full,
                           timeout=300)

    def page(self, kind: str, key: str) -> str:
        return f"{self.server.url}/{kind}/{self.ids[key]}/"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    reason = why_unavailable() or nautobot_server.why_unavailable()
    if reason:
        pytest.skip(f"no Nautobot here: {reason}")
    server = nautobot_server.start(NetNS("nb"))
    try:
        made = server.ns.run(PYTHON, str(HERE / "nautobot_data.py"), env=server.python_env(),
                             timeout=300)
        assert made.returncode == 0, made.stderr[-3000:]
        server.ns.nft(RULES)
        server.ns.listen([(a, p, None) for a, p in LISTEN])
        yield Lab(server, json.loads(made.stdout))
    finally:
        server.stop()


def audit_json(lab: Lab, *args: str) -> tuple[int, dict[str, Any], str]:
    done = lab.audit("--nautobot", lab.server.url, "-p", EXTRA, "--format", "json", *args)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def test_every_finding_kind_names_its_object(lab: Lab) -> None:
    code, doc, stderr = audit_json(lab, "--prefix", AREA_A)
    assert code == 1
    got = [(f["kind"], f["address"], f.get("port"), f["state"]) for f in doc["findings"]]
    assert got == [
        ("silent-address", "127.80.0.29", None, None),
        ("missing-service", "127.80.0.10", 8080, "closed"),
        ("missing-service", "127.80.0.29", 22, "filtered"),
        ("undocumented-service", "127.80.0.10", 5555, "open"),
        ("undocumented-service", "127.80.0.20", 5556, "open"),
        ("unknown-host", "127.80.0.30", None, "up"),
    ]
    by = {(f["kind"], f["address"]): f for f in doc["findings"]}
    silent = by[("silent-address", "127.80.0.29")]
    assert silent["object"]["type"] == "ipam.ipaddress"
    assert silent["object"]["url"] == lab.page("ipam/ip-addresses", "ip 127.80.0.29/27")
    http = by[("missing-service", "127.80.0.10")]
    assert (http["reason"], http["object"]["url"]) == (
        "conn-refused", lab.page("ipam/services", "service http"))
    vm = by[("undocumented-service", "127.80.0.20")]
    assert vm["object"]["type"] == "virtualization.virtualmachine"
    assert vm["object"]["url"] == lab.page("virtualization/virtual-machines", "vm vm1")
    unknown = by[("unknown-host", "127.80.0.30")]
    assert unknown["open_ports"] == [5555]
    assert unknown["object"]["url"] == lab.page("ipam/prefixes", f"prefix {AREA_A}")
    # the service bound to no address (api 9000) is on web1's primary, and listens there
    assert not any(f.get("port") in (2222, 9000, 15432) for f in doc["findings"])
    summary = doc["summary"]
    assert summary["addresses"] == 3 and summary["services"] == 5
    # every host address of the /27 (30) on the extra ports and the 5 documented ones
    assert summary["probes"] == 30 * (3 + 5)
    assert set(summary["seconds"]) == {"read", "scan"}
    assert "dry run: --apply would write" in stderr
    assert lab.server.token not in stderr and lab.server.token not in json.dumps(doc)


def test_scope_by_tag_and_by_location_is_the_same_as_by_prefix(lab: Lab) -> None:
    _, by_prefix, _ = audit_json(lab, "--prefix", AREA_A)
    _, by_tag, _ = audit_json(lab, "--tag", "audit-a")
    assert by_tag["findings"] == by_prefix["findings"]
    assert by_tag["summary"]["networks"] == [AREA_A]
    _, by_location, _ = audit_json(lab, "--location", "lab")
    assert by_location["summary"]["networks"] == [AREA_A, AREA_B]


def test_every_format(lab: Lab) -> None:
    base = ("--nautobot", lab.server.url, "-p", EXTRA, "--prefix", AREA_A)
    _, doc, _ = audit_json(lab, "--prefix", AREA_A)
    findings = doc["findings"]
    out = {fmt: lab.audit(*base, "--format", fmt) for fmt in
           ("table", "jsonl", "csv", "junit", "html", "nmap-xml")}
    assert {fmt: done.returncode for fmt, done in out.items()} == dict.fromkeys(out, 1)
    assert [json.loads(line) for line in out["jsonl"].stdout.splitlines()] == findings
    rows = list(csv.DictReader(io.StringIO(out["csv"].stdout)))
    assert [(r["kind"], r["address"], r["object_url"]) for r in rows] == [
        (f["kind"], f["address"], f["object"]["url"]) for f in findings]
    table = out["table"].stdout
    assert table.index("web1 (dcim.device)") < table.index("127.80.0.10:5555")
    assert table.index("vm1 (virtualization.virtualmachine)") < table.index("127.80.0.20:5556")
    assert "no device or virtual machine" in table and "6 findings" in table
    cases = ET.fromstring(out["junit"].stdout).iter("testcase")
    failed = {c.get("name"): len(c.findall("failure")) for c in cases}
    # one case per address that has a record or answered; the clean ones pass
    assert failed == {"web1 127.80.0.10": 1, "vm1 127.80.0.20": 1, "127.80.0.30": 1,
                      "dead1 127.80.0.29": 1}
    junit = out["junit"].stdout
    assert junit.count("missing-service") == 2 and "undocumented-service" in junit
    html = out["html"].stdout
    assert html.startswith("<!DOCTYPE html>") and "silent-address" in html
    hosts = ET.fromstring(out["nmap-xml"].stdout).findall("host")
    assert {h.find("address").get("addr") for h in hosts  # type: ignore[union-attr]
            } >= {"127.80.0.10", "127.80.0.20", "127.80.0.30"}


def test_a_clean_scope_exits_0(lab: Lab) -> None:
    # vm1's documented port listens, and only -p 15432 is probed besides: nothing to say
    done = lab.audit("--nautobot", lab.server.url, "-p", "15432", "--prefix", "127.80.0.20/32")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no findings" in done.stdout
    # an area with no record where nothing answers
    done = lab.audit("--nautobot", lab.server.url, "-p", "2222", "--prefix", "127.80.1.0/30")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no findings" in done.stdout


def test_refused_token_and_unreachable_server_exit_3(lab: Lab) -> None:
    refused = lab.audit("--nautobot", lab.server.url, "--prefix", AREA_A,
                        token="0" * 40)
    assert refused.returncode == 3
    assert refused.stderr.strip().splitlines() == [
        f"nornir-portscan: error: {lab.server.url}: cannot read the scope: "
        f"the token was refused (HTTP 403)"]
    gone = lab.audit("--nautobot", "http://127.0.0.1:9", "--prefix", AREA_A)
    assert gone.returncode == 3
    lines = gone.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "nornir-portscan: error: http://127.0.0.1:9: cannot read the scope: ")
    assert "Traceback" not in refused.stderr + gone.stderr


def test_bad_input_exits_2(lab: Lab) -> None:
    url = lab.server.url
    cases = {
        "no scope": lab.audit("--nautobot", url),
        "no token": lab.audit("--nautobot", url, "--prefix", AREA_A, token=""),
        "bad network": lab.audit("--nautobot", url, "--prefix", "127.80.0.0/33"),
        "unknown tag": lab.audit("--nautobot", url, "--tag", "no-such-tag"),
        "other token variable": lab.audit("--nautobot", url, "--prefix", AREA_A,
                                          "--token-env", "MY_TOKEN"),
    }
    for why, done in cases.items():
        assert done.returncode == 2, (why, done.stderr)
        assert len(done.stderr.strip().splitlines()) <= 2 and "Traceback" not in done.stderr
    assert "MY_TOKEN" in cases["other token variable"].stderr
    ok = lab.audit("--nautobot", url, "--prefix", AREA_B, "-p", "8000", "--token-env",
                   "MY_TOKEN", env={"MY_TOKEN": lab.server.token, "NAUTOBOT_TOKEN": ""})
    assert ok.returncode in (0, 1), ok.stderr


def object_changes(lab: Lab) -> int:
    code = ("import os, pynautobot\n"
            "nb = pynautobot.api(os.environ['NAUTOBOT_URL'], token=os.environ['NAUTOBOT_TOKEN'])\n"
            "print(nb.extras.object_changes.count())\n")
    done = lab.server.python(code)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_apply_writes_once_and_a_second_apply_changes_nothing(lab: Lab) -> None:
    before = object_changes(lab)
    code, first, stderr = audit_json(lab, "--prefix", AREA_B, "--apply", "services")
    assert code == 1 and "applied:" in stderr
    assert first["applied"] == {"last_seen": 1, "addresses": 1, "services": 1}
    assert [(f["kind"], f["address"], f.get("port")) for f in first["findings"]] == [
        ("undocumented-service", "127.80.2.2", 8001), ("unknown-host", "127.80.2.5", None)]
    after_first = object_changes(lab)
    assert after_first > before
    # what it made: the unknown host is a record now, app1 documents 8001
    code, second, _ = audit_json(lab, "--prefix", AREA_B, "--apply", "services")
    assert second["applied"] == {"last_seen": 0, "addresses": 0, "services": 0}
    assert object_changes(lab) == after_first
    # 127.80.2.5 belongs to no device: its open port stays a finding no apply can fix
    assert [(f["kind"], f["address"], f.get("port")) for f in second["findings"]] == [
        ("undocumented-service", "127.80.2.5", 8001)]
    assert second["changes"]["skipped"] == [
        "127.80.2.5 port 8001: the address belongs to no device or virtual machine; "
        "no service recorded"]
    check = ("import os, json, pynautobot\n"
             "nb = pynautobot.api(os.environ['NAUTOBOT_URL'], token=os.environ['NAUTOBOT_TOKEN'],"
             " exclude_m2m=False)\n"
             "ip = nb.ipam.ip_addresses.get(address='127.80.2.5')\n"
             "app = nb.ipam.ip_addresses.get(address='127.80.2.2')\n"
             "svc = nb.ipam.services.get(device='app1', ports=8001)\n"
             "print(json.dumps({'tags': [t.name for t in ip.tags], 'status': ip.status.name,"
             " 'seen': ip.custom_fields['portscan_last_seen'],"
             " 'app_seen': app.custom_fields['portscan_last_seen'],"
             " 'svc': [svc.name, svc.protocol.value, [t.name for t in svc.tags]]}))\n")
    done = lab.server.python(check)
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    today = first["changes"]["last_seen"]["date"]
    assert made == {"tags": ["portscan-discovered"], "status": "Active", "seen": today,
                    "app_seen": today, "svc": ["tcp-8001", "tcp", ["portscan-discovered"]]}


#: A Python that has nornir-nautobot beside this project's packages (.ci/run makes it).
NORNIR_NAUTOBOT = "/opt/nornir-nautobot-venv/bin/python3"
#: nornir over the lab's Nautobot with the transform function: NautobotInventory itself
#: where nornir-nautobot is installed (NORNIR_NAUTOBOT, or PORTSCAN_NORNIR_NAUTOBOT_PYTHON
#: names a Python that has it), else hosts made as NautobotInventory makes them
#: (data["pynautobot_object"], the primary IP as hostname) from the same server's records.
TRANSFORM = '''
import ipaddress, json, os, sys
from nornir import InitNornir
from nornir.core.inventory import Defaults, Groups, Host, Hosts, Inventory
from nornir.core.plugins.inventory import (InventoryPluginRegister,
                                           TransformFunctionRegister)
from nornir_portscan.plugins.inventory.nautobot_services import portscan_services
from nornir_portscan.plugins.tasks import portscan

TransformFunctionRegister.register("portscan_services", portscan_services)
try:
    import nornir_nautobot  # noqa: F401
    plugin = "NautobotInventory"
except ImportError:
    import pynautobot

    class NautobotShaped:
        """What NautobotInventory.load() makes of each device (nornir-nautobot 5.0)."""

        def __init__(self, nautobot_url, nautobot_token, filter_parameters):
            self.nb = pynautobot.api(nautobot_url, token=nautobot_token)
            self.filter = filter_parameters

        def load(self):
            hosts = Hosts()
            for d in self.nb.dcim.devices.filter(**self.filter):
                data = {"pynautobot_object": d, "pynautobot_dictionary": dict(d)}
                ip = str(ipaddress.ip_interface(d.primary_ip4.address).ip)
                hosts[d.name] = Host(name=d.name, hostname=ip, data=data,
                                     defaults=Defaults())
            return Inventory(hosts=hosts, groups=Groups(), defaults=Defaults())

    InventoryPluginRegister.register("NautobotShaped", NautobotShaped)
    plugin = "NautobotShaped"
nr = InitNornir(inventory={
    "plugin": plugin,
    "options": {"nautobot_url": os.environ["NAUTOBOT_URL"],
                "nautobot_token": os.environ["NAUTOBOT_TOKEN"],
                "filter_parameters": {"name": ["web1", "dead1"]}},
    "transform_function": "portscan_services",
    "transform_function_options": {"ports": "5555"}},
    runner={"plugin": "serial"}, logging={"enabled": False})
result = nr.run(task=portscan, timeout=1.0)
print(json.dumps({"plugin": plugin,
                  "data": {h.name: h.data["portscan"] for h in nr.inventory.hosts.values()},
                  "violations": {h: sorted(r[0].violations) for h, r in result.items()},
                  "failed": sorted(result.failed_hosts)}))
'''


def test_transform_function_gates_nornir_on_the_documented_services(lab: Lab) -> None:
    python = os.environ.get("PORTSCAN_NORNIR_NAUTOBOT_PYTHON", NORNIR_NAUTOBOT)
    if not os.path.exists(python):
        python = PYTHON
    done = lab.ns.run(python, "-c", TRANSFORM, env=lab.server.python_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)
    if python != PYTHON:
        assert got["plugin"] == "NautobotInventory"
    assert got["data"] == {
        "web1": {"ports": "5555", "expect": {"open": [2222, 8080, 9000],
                                             "only_open": [2222, 8080, 9000]}},
        "dead1": {"ports": "5555", "expect": {"open": [22], "only_open": [22]}}}
    assert got["failed"] == ["dead1", "web1"]
    assert got["violations"]["web1"] == [
        "127.80.0.10:5555 expected not open (only_open: 2222, 8080, 9000), got open (syn-ack)",
        "127.80.0.10:8080 expected open, got closed (conn-refused)"]
    assert got["violations"]["dead1"] == ["127.80.0.29:22 expected open, got filtered "
                                          "(no-response)"]


def test_the_transform_function_is_registered_by_entry_point() -> None:
    """nornir finds it by name (``transform_function: portscan_services``) once installed."""
    text = (HERE.parent / "pyproject.toml").read_text(encoding="utf-8")
    section = text.split('[project.entry-points."nornir.plugins.transform_function"]\n')[1]
    first = section.split("\n")[0]
    assert first == ('portscan_services = '
                     '"nornir_portscan.plugins.inventory.nautobot_services:portscan_services"')
    module, _, name = first.split('"')[1].partition(":")
    import importlib

    assert callable(getattr(importlib.import_module(module), name))


def test_an_audit_on_a_cluster_finds_what_a_local_one_finds(lab: Lab) -> None:
    """``--cluster``: the scan runs on Dask workers (in the server's namespace), the
    findings and the probe count are the local audit's."""
    pytest.importorskip("distributed")
    procs = DaskProcesses(lab.ns)
    try:
        procs.add_worker("w1")
        procs.add_worker("w2")
        procs.wait_for_workers(2)
        status, remote, _ = audit_json(lab, "--prefix", AREA_A, "--cluster", procs.address)
    finally:
        procs.close()
    local_status, local, _ = audit_json(lab, "--prefix", AREA_A)
    assert (status, remote["findings"]) == (local_status, local["findings"])
    assert remote["summary"]["probes"] == local["summary"]["probes"] > 0
    assert remote["options"]["cluster"] == procs.address


def test_an_interrupted_audit_resumes_to_the_findings_of_a_whole_one(lab: Lab,
                                                                      tmp_path: Path) -> None:
    """``--resume``: an audit stopped mid-scan keeps its journal beside ``-o``; the same
    command again probes the rest and reports what one uninterrupted audit reports."""
    out = tmp_path / "audit.json"
    # the dead hosts of the area make every probe of theirs wait its 3 s timeout
    args = ("--nautobot", lab.server.url, "-p", EXTRA, "--prefix", AREA_A, "--format",
            "json", "--timeout", "3", "--retries", "0")
    whole_status, whole, _ = audit_json(lab, "--prefix", AREA_A, "--timeout", "3",
                                        "--retries", "0")
    proc = lab.ns.popen(PYTHON, "-m", "nornir_portscan", "audit", *args, "-o", str(out),
                        "--resume", env=lab.server.python_env())
    try:
        lab.ns.wait_for_syn_sent()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    journal = Path(f"{out}.journal")
    assert journal.exists() and json.loads(out.read_text())["summary"]["interrupted"]
    done = lab.audit(*args, "-o", str(out), "--resume")
    assert done.returncode == whole_status, done.stderr
    resumed = json.loads(out.read_text())
    assert resumed["findings"] == whole["findings"]
    assert resumed["summary"]["probes"] == whole["summary"]["probes"]
    assert not resumed["summary"]["interrupted"] and not journal.exists()
