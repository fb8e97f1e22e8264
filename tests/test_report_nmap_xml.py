"""nmap-xml: valid against nmap's own DTD, and read right by a real consumer (python-libnmap)."""

from __future__ import annotations

import io
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from report_docs import (
    RAW_BANNER,
    anomaly_document,
    hand_document,
    scanned_document,
    write,
    xmllint,
)

from nornir_portscan.report import DOCUMENT_RENDERERS, nmap_xml, render_document
from nornir_portscan.report.document import RunDocument

NMAP_DTD = Path("/usr/share/nmap/nmap.dtd")


def _render(doc: RunDocument) -> str:
    out = io.StringIO()
    nmap_xml.render(doc, out)
    return out.getvalue()


def _assert_dtd_valid(tmp_path: Path, text: str) -> None:
    if shutil.which("xmllint") is None:
        pytest.skip("xmllint missing: apt-get install libxml2-utils")
    if not NMAP_DTD.exists():
        pytest.skip(f"{NMAP_DTD} missing: apt-get install nmap (it ships nmap's DTD)")
    path = write(tmp_path, "report.xml", text)
    proc = xmllint("--noout", "--dtdvalid", str(NMAP_DTD), str(path))
    assert proc.returncode == 0, proc.stderr


def _libnmap() -> Any:
    parser = pytest.importorskip("libnmap.parser",
                                 reason="python-libnmap missing: pip install python-libnmap")
    return parser.NmapParser


@pytest.fixture(scope="module")
def scanned() -> tuple[RunDocument, int, int]:
    return scanned_document()


def test_real_scan_validates_against_nmap_dtd(tmp_path: Path,
                                              scanned: tuple[RunDocument, int, int]) -> None:
    _assert_dtd_valid(tmp_path, _render(scanned[0]))


def test_dtd_check_is_real(tmp_path: Path, scanned: tuple[RunDocument, int, int]) -> None:
    """The validation above would catch a broken report: drop a required element."""
    text = _render(scanned[0]).replace('<verbose level="0"/>\n', "")
    with pytest.raises(AssertionError, match="verbose"):
        _assert_dtd_valid(tmp_path, text)


def test_real_scan_reads_back_through_libnmap(scanned: tuple[RunDocument, int, int]) -> None:
    doc, open_port, shut = scanned
    report = _libnmap().parse_fromstring(_render(doc))
    assert report.scan_type == "connect"
    assert report.numservices == 2
    assert (report.hosts_total, report.hosts_up, report.hosts_down) == (1, 1, 0)
    [host] = report.hosts
    assert host.address == host.ipv4 == "127.0.0.1"
    assert host.status == "up" and host.is_up()
    ports = {s.port: s for s in host.services}
    assert set(ports) == {open_port, shut}
    assert (ports[open_port].state, ports[open_port].reason) == ("open", "syn-ack")
    assert (ports[shut].state, ports[shut].reason) == ("closed", "conn-refused")
    assert ports[open_port].protocol == "tcp"
    assert host.get_open_ports() == [(open_port, "tcp")]
    # the banner travels in extrainfo, escaped on the way out and intact on the way in
    extrainfo = ports[open_port].service_dict.get("extrainfo", "")
    assert extrainfo.startswith("SSH-2.0-<script>") and "ünïcødé" in extrainfo


def test_real_scan_services_and_runstats(scanned: tuple[RunDocument, int, int]) -> None:
    doc, open_port, shut = scanned
    root = ET.fromstring(_render(doc))
    assert root.tag == "nmaprun" and root.get("scanner") == "nmap"
    assert root.get("xmloutputversion") == "1.05"
    assert root.get("args", "").startswith("nornir-portscan")
    info = root.find("scaninfo")
    assert info is not None
    lo, hi = sorted((open_port, shut))
    expected = f"{lo}-{hi}" if hi == lo + 1 else f"{lo},{hi}"
    assert (info.get("type"), info.get("protocol"), info.get("services")) == (
        "connect", "tcp", expected)
    finished = root.find("runstats/finished")
    assert finished is not None and finished.get("exit") == "success"
    assert int(finished.get("time", "0")) >= int(root.get("start", "0"))
    assert root.find("host/times") is not None  # answered probes give an RTT estimate


def test_hand_document_validates_against_nmap_dtd(tmp_path: Path) -> None:
    _assert_dtd_valid(tmp_path, _render(hand_document()))


def test_hand_document_states_through_libnmap() -> None:
    report = _libnmap().parse_fromstring(_render(hand_document()))
    hosts = {h.address: h for h in report.hosts}
    # the unresolved name is a skipped target, not a host
    assert set(hosts) == {"127.0.0.2", "127.0.0.3", "127.0.0.4", "::1"}
    assert (report.hosts_total, report.hosts_up, report.hosts_down) == (4, 2, 2)

    sw = hosts["127.0.0.2"]
    assert sw.is_up() and sw.hostnames == ["core-sw1.lab"]
    states = {s.port: (s.state, s.reason) for s in sw.services}
    assert states == {22: ("open", "syn-ack"), 23: ("closed", "conn-refused"),
                      80: ("open", "syn-ack"), 830: ("closed", "reset")}
    assert {s.port: s.service for s in sw.services}[22] == "ssh"

    # unreachable: the host is down and its ports filtered, with the ICMP reason kept
    fw = hosts["127.0.0.3"]
    assert fw.status == "down" and not fw.is_up()
    assert {s.port: (s.state, s.reason) for s in fw.services} == {
        22: ("filtered", "host-unreach"), 443: ("filtered", "admin-prohibited")}

    # error: nothing is known about the port, so nmap's "unknown" state, our reason kept
    down = hosts["127.0.0.4"]
    assert down.status == "down" and down.hostnames == ["edge-fw-b"]
    assert {s.port: (s.state, s.reason) for s in down.services} == {
        22: ("filtered", "no-response"), 443: ("unknown", "EINVAL")}

    # more than 25 closed ports fold into extraports; the open one is still listed
    v6 = hosts["::1"]
    assert v6.ipv6 == "::1" and v6.is_up()
    assert [(s.port, s.state) for s in v6.services] == [(1030, "open")]
    assert v6.extraports_state["state"] == {"state": "closed", "count": "30"}
    assert v6.extraports_reasons == [{"reason": "conn-refused", "count": "30", "proto": "tcp",
                                      "ports": "1000-1029"}]


def _status(host: ET.Element) -> tuple[str, tuple[str | None, str | None]]:
    address, status = host.find("address"), host.find("status")
    assert address is not None and status is not None
    return address.get("addr", ""), (status.get("state"), status.get("reason"))


def test_host_status_reasons() -> None:
    root = ET.fromstring(_render(hand_document()))
    reasons = dict(_status(h) for h in root.findall("host"))
    assert reasons == {"127.0.0.2": ("up", "syn-ack"), "127.0.0.3": ("down", "host-unreach"),
                       "127.0.0.4": ("down", "no-response"), "::1": ("up", "syn-ack")}


def test_unresolved_names_become_skipped_targets() -> None:
    root = ET.fromstring(_render(hand_document()))
    targets = root.findall("target")
    assert [(t.get("specification"), t.get("status"), t.get("reason")) for t in targets] == [
        ("no-such-host.invalid", "skipped", "invalid")]


def test_hostile_banner_stays_text() -> None:
    text = _render(hand_document())
    assert "<script>" not in text
    root = ET.fromstring(text)  # control characters would make this raise
    service = root.find("host/ports/port[@portid='80']/service")
    assert service is not None
    extrainfo = service.get("extrainfo", "")
    assert extrainfo.startswith("<script>alert(1)</script>")
    assert "\\x00" in extrainfo and '"quoted"' in extrainfo and "ünï" in extrainfo
    assert "line2" in extrainfo and "\n" not in extrainfo
    assert RAW_BANNER not in extrainfo  # cleaned, not copied


def test_failed_host_without_targets_is_a_comment_not_a_host() -> None:
    text = _render(hand_document())
    assert "<!-- nornir host we\"ird <name> failed: Traceback: boom" in text
    assert len(ET.fromstring(text).findall("host")) == 4


def test_address_scanned_by_two_nornir_hosts_is_one_host(
        tmp_path: Path, scanned: tuple[RunDocument, int, int]) -> None:
    doc = scanned[0]
    twice: RunDocument = {**doc, "hosts": {"a": doc["hosts"]["lo"], "b": doc["hosts"]["lo"]}}
    text = _render(twice)
    _assert_dtd_valid(tmp_path, text)
    hosts = ET.fromstring(text).findall("host")
    assert len(hosts) == 1 and hosts[0].get("comment") == "nornir: a, b"
    assert len(hosts[0].findall("ports/port")) == 2


def test_interrupted_run_finishes_with_error(tmp_path: Path) -> None:
    doc = hand_document()
    doc["interrupted"] = True
    text = _render(doc)
    _assert_dtd_valid(tmp_path, text)
    finished = ET.fromstring(text).find("runstats/finished")
    assert finished is not None
    assert finished.get("exit") == "error" and "interrupted" in finished.get("errormsg", "")


def test_empty_run_is_still_valid(tmp_path: Path) -> None:
    doc = hand_document()
    doc["hosts"] = {}
    text = _render(doc)
    _assert_dtd_valid(tmp_path, text)
    report = _libnmap().parse_fromstring(text)
    assert report.hosts == [] and report.hosts_total == 0


def test_registered_as_document_renderer(scanned: tuple[RunDocument, int, int]) -> None:
    assert DOCUMENT_RENDERERS["nmap-xml"] == "nmap_xml"
    out = io.StringIO()
    render_document("nmap-xml", scanned[0], out)
    assert out.getvalue() == _render(scanned[0])


# ---- host anomalies (issue 25): a host script, every port still listed ---------------------

ANOMALY_LINES = {"198.18.30.1": "syn-proxy: 97 of 100 probed ports reset right after the "
                                "handshake: closed behind a SYN proxy, 3 open",
                 "198.18.30.2": "all-open: every one of 100 probed ports accepts"}


def test_anomalies_are_host_scripts_valid_against_the_dtd(tmp_path: Path) -> None:
    text = _render(anomaly_document())
    _assert_dtd_valid(tmp_path, text)
    for host in ET.fromstring(text).iter("host"):
        address = host.find("address")
        assert address is not None
        script = host.find("hostscript/script")
        assert script is not None
        assert (script.get("id"), script.get("output")) == (
            "nornir-anomaly", ANOMALY_LINES[str(address.get("addr"))])
    assert "<hostscript>" not in _render(anomaly_document(anomalies=False))
    # the proxy's closed ports fold into extraports, by their reason
    assert ('<extrareasons reason="reset-after-syn-ack" count="97" proto="tcp" '
            'ports="1-21,23-79,81-98,100"/>') in text


def test_anomalies_read_back_through_libnmap_with_every_port() -> None:
    report = _libnmap().parse_fromstring(_render(anomaly_document()))
    hosts = {h.address: h for h in report.hosts}
    assert [s["output"] for s in hosts["198.18.30.2"].scripts_results] == [
        ANOMALY_LINES["198.18.30.2"]]
    assert len(hosts["198.18.30.2"].get_open_ports()) == 100  # they do accept
    assert sorted(p for p, _ in hosts["198.18.30.1"].get_open_ports()) == [22, 80, 99]
    assert [s["id"] for s in hosts["198.18.30.1"].scripts_results] == ["nornir-anomaly"]


def test_ndiff_reads_both_and_reports_the_anomaly_appearing(tmp_path: Path) -> None:
    if shutil.which("ndiff") is None:
        pytest.skip("ndiff missing: apt-get install ndiff")
    before = write(tmp_path, "before.xml", _render(anomaly_document(anomalies=False)))
    after = write(tmp_path, "after.xml", _render(anomaly_document()))
    done = subprocess.run(["ndiff", str(before), str(after)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1, done.stderr  # 1: differences found (2 would be an error)
    assert "nornir-anomaly" in done.stdout and ANOMALY_LINES["198.18.30.2"] in done.stdout


def test_nmap_xsl_shows_the_anomaly(tmp_path: Path) -> None:
    xsl = Path("/usr/share/nmap/nmap.xsl")
    if shutil.which("xsltproc") is None or not xsl.exists():
        pytest.skip("xsltproc or nmap.xsl missing: apt-get install xsltproc nmap")
    path = write(tmp_path, "report.xml", _render(anomaly_document()))
    done = subprocess.run(["xsltproc", str(xsl), str(path)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    for line in ANOMALY_LINES.values():
        assert line in done.stdout
