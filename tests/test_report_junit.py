"""junit: one test case per nornir host, valid against the JUnit schema CI systems read."""

from __future__ import annotations

import io
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from netns import LAB_CLOSED_PORT, LAB_FILTERED_PORT, LAB_UP, PYTHON, NetNS
from report_docs import anomaly_document, hand_document, scanned_document, write, xmllint

from nornir_portscan.report import DOCUMENT_RENDERERS, junit, render_document
from nornir_portscan.report.document import RunDocument

SCHEMA = Path(__file__).parent / "data" / "junit.xsd"


def _render(doc: RunDocument) -> str:
    out = io.StringIO()
    junit.render(doc, out)
    return out.getvalue()


def _validate(tmp_path: Path, text: str) -> tuple[int, str]:
    if shutil.which("xmllint") is None:
        pytest.skip("xmllint missing: apt-get install libxml2-utils")
    path = write(tmp_path, "junit.xml", text)
    proc = xmllint("--noout", "--schema", str(SCHEMA), str(path))
    return proc.returncode, proc.stderr


def _cases(text: str) -> dict[str, ET.Element]:
    return {c.get("name", ""): c for c in ET.fromstring(text).iter("testcase")}


@pytest.fixture(scope="module")
def scanned() -> tuple[RunDocument, int, int]:
    return scanned_document()


def test_real_scan_is_schema_valid_and_passes(tmp_path: Path,
                                              scanned: tuple[RunDocument, int, int]) -> None:
    doc, open_port, _ = scanned
    text = _render(doc)
    assert _validate(tmp_path, text) == (0, f"{tmp_path / 'junit.xml'} validates\n")
    root = ET.fromstring(text)
    suite = root.find("testsuite")
    assert suite is not None
    assert {k: suite.get(k) for k in ("name", "tests", "failures", "errors", "skipped")} == {
        "name": "nornir-portscan", "tests": "1", "failures": "0", "errors": "0", "skipped": "0"}
    assert suite.get("timestamp") == "2024-05-06T07:08:09"
    case = _cases(text)["lo"]
    assert case.get("classname") == "portscan.lo"
    assert list(case) == [case.find("system-out")]  # passed: only the summary
    out = case.findtext("system-out", "")
    assert f"{open_port}/tcp open (syn-ack)" in out
    assert "127.0.0.1: up [1 open, 1 closed]" in out
    assert "<script>" in out  # the banner, as text: it was escaped on the way out


def test_violations_errors_and_skips(tmp_path: Path) -> None:
    text = _render(hand_document())
    code, err = _validate(tmp_path, text)
    assert code == 0, err
    suite = ET.fromstring(text).find("testsuite")
    assert suite is not None
    assert [suite.get(k) for k in ("tests", "failures", "errors", "skipped")] == [
        "4", "1", "2", "1"]

    cases = _cases(text)
    failure = cases["core-sw1"].find("failure")
    assert failure is not None
    assert failure.get("message") == "2 expectations violated"
    assert failure.get("type") == "ExpectationViolated"
    assert (failure.text or "").splitlines() == [
        "127.0.0.2:23 expected open, got closed (conn-refused)",
        "127.0.0.2:80 expected not open (only_open: 22), got open (syn-ack)"]
    assert cases["core-sw1"].find("error") is None

    error = cases['we"ird <name>'].find("error")
    assert error is not None and error.get("type") == "ScanError"
    assert (error.get("message") or "").startswith('Traceback: boom <b>& "x"')
    assert cases['we"ird <name>'].get("classname") == 'portscan.we"ird <name>'

    assert cases["not-reached"].find("skipped") is not None
    # probes that could not be made are the scan's failure, not a port verdict
    edge = cases["edge-fw"]
    assert edge.find("failure") is None
    probe_error = edge.find("error")
    assert probe_error is not None and (probe_error.text or "").splitlines() == [
        "127.0.0.4: 1 port(s) could not be probed (EINVAL)",
        "no-such-host.invalid: name could not be resolved"]
    out = edge.findtext("system-out", "")
    assert "127.0.0.3: unreachable [2 unreachable]" in out
    assert "::1 (ipv6-loopback): up [1 open, 30 closed]" in out


def test_violations_and_errors_together(tmp_path: Path) -> None:
    doc = hand_document()
    result = doc["hosts"]["core-sw1"]["result"]
    assert result is not None
    result["errors"] = ["127.0.0.2: 1 port(s) could not be probed (EINVAL)"]
    text = _render(doc)
    assert _validate(tmp_path, text)[0] == 0  # error before failure, as the schema orders
    case = _cases(text)["core-sw1"]
    assert [c.tag for c in case] == ["error", "failure", "system-out"]


def test_hostile_text_is_well_formed() -> None:
    """Control characters cannot be written in XML at all: they are made visible."""
    text = _render(hand_document())
    out = _cases(text)["core-sw1"].findtext("system-out", "")
    assert "banner: <script>alert(1)</script>\\x00\\x07\\x1b[31m" in out


def test_schema_check_is_real(tmp_path: Path,
                              scanned: tuple[RunDocument, int, int]) -> None:
    """The schema rejects what CI parsers reject: a test case without a classname."""
    text = _render(scanned[0]).replace('classname="portscan.lo" ', "")
    code, err = _validate(tmp_path, text)
    assert code != 0 and "classname" in err


def test_interrupted_run_says_so(tmp_path: Path) -> None:
    doc = hand_document()
    doc["interrupted"] = True
    text = _render(doc)
    assert _validate(tmp_path, text)[0] == 0
    suite = ET.fromstring(text).find("testsuite")
    assert suite is not None and "interrupted" in suite.findtext("system-err", "")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["interrupted"] == "true" and props["started"] == "2024-05-06T07:08:09+00:00"


def test_registered_as_document_renderer(scanned: tuple[RunDocument, int, int]) -> None:
    assert DOCUMENT_RENDERERS["junit"] == "junit"
    out = io.StringIO()
    render_document("junit", scanned[0], out)
    assert out.getvalue() == _render(scanned[0])


def test_json_document_renderer_round_trips(scanned: tuple[RunDocument, int, int]) -> None:
    import json

    out = io.StringIO()
    render_document("json", scanned[0], out)
    back = json.loads(out.getvalue())
    # the task's summary shape: every state, zero where none
    assert back["hosts"]["lo"]["result"]["summary"] == {
        "open": 1, "closed": 1, "filtered": 0, "unreachable": 0, "error": 0}
    assert back["started"] == "2024-05-06T07:08:09+00:00"


def test_each_testcase_has_its_hosts_scan_time(tmp_path: Path, lab: NetNS) -> None:
    """A real run in the lab: a host whose one port is dropped, at a fixed 1 s timeout,
    cannot be decided in under 1 s; a host whose port refuses is decided at once.
    Each testcase's time is its own host's scan (CI pages sort by it), not 0.000."""
    inv = tmp_path / "inv"
    inv.mkdir()
    hosts = {"fast": {"hostname": LAB_UP, "data": {"portscan": {"ports": [LAB_CLOSED_PORT]}}},
             "slow": {"hostname": LAB_UP, "data": {"portscan": {
                 "ports": [LAB_FILTERED_PORT], "timeout": 1.0, "retries": 0}}}}
    (inv / "hosts.yaml").write_text(yaml.safe_dump(hosts), encoding="utf-8")
    done = lab.run(PYTHON, "-m", "nornir_portscan", "run", "-i", str(inv), "--format", "junit",
                   timeout=120)
    assert done.returncode == 0, done.stderr
    assert _validate(tmp_path, done.stdout)[0] == 0
    times = {name: float(case.get("time", "")) for name, case in _cases(done.stdout).items()}
    assert times["slow"] >= 0.95  # its timeout (a lower bound: no wall-clock limit)
    assert times["fast"] < times["slow"]
    suite = ET.fromstring(done.stdout).find("testsuite")
    assert suite is not None
    assert float(suite.get("time", "")) >= times["slow"]


def test_anomalies_are_a_system_out_line(tmp_path: Path) -> None:
    """Issue 25: the host's verdict as one system-out line; an all-open host's ports are not
    listed one by one, a SYN proxy's real open ports are."""
    text = _render(anomaly_document())
    assert _validate(tmp_path, text) == (0, f"{tmp_path / 'junit.xml'} validates\n")
    cases = _cases(text)
    dnat = cases["dnat"].findtext("system-out", "").splitlines()
    assert dnat == ["198.18.30.2: up [100 open]",
                    "  all-open: every one of 100 probed ports accepts"]
    proxy = cases["proxy"].findtext("system-out", "").splitlines()
    assert proxy[1] == ("  syn-proxy: 97 of 100 probed ports reset right after the handshake: "
                        "closed behind a SYN proxy, 3 open")
    assert [line.split()[0] for line in proxy[2:]] == ["22/tcp", "80/tcp", "99/tcp"]


def test_junit2html_reads_the_anomalies(tmp_path: Path) -> None:
    exe = shutil.which("junit2html")
    if exe is None:
        pytest.skip("junit2html missing: pip install junit2html")
    path = write(tmp_path, "junit.xml", _render(anomaly_document()))
    html = tmp_path / "junit.html"
    done = subprocess.run([exe, str(path), str(html)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "all-open: every one of 100 probed ports accepts" in html.read_text(encoding="utf-8")
