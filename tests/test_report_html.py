"""html: one self-contained page; escaped, balanced, and seen rendered in headless Chromium."""

from __future__ import annotations

import datetime as _dt
import io
import os
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_docs import anomaly_document, hand_document, scanned_document, write

from nornir_portscan.report import DOCUMENT_RENDERERS, html, render_document
from nornir_portscan.report.document import RunDocument

GENERATED = _dt.datetime(2024, 5, 6, 8, 0, 0, tzinfo=_dt.timezone.utc)

VOID = {"meta", "br", "col", "hr", "img", "input", "link"}


def _render(doc: RunDocument) -> str:
    out = io.StringIO()
    html.render(doc, out, generated=GENERATED)
    return out.getvalue()


class _Balance(HTMLParser):
    """Checks every element we open is closed in order: f-string markup breaks easily."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Balance:
    parser = _Balance()
    parser.feed(page)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def combined() -> RunDocument:
    """The real loopback scan plus every hand-built case, in one run document."""
    doc, _, _ = scanned_document()
    hand = hand_document()
    doc["hosts"].update(hand["hosts"])
    from nornir_portscan.report.document import finish_document

    finish_document(doc, 3.5)
    return doc


def test_banners_and_names_are_escaped(combined: RunDocument) -> None:
    page = _render(combined)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&quot;pwn&quot;)&lt;/script&gt;" in page  # the live banner
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the hand-built one
    assert "we&quot;ird &lt;name&gt;" in page
    assert "ünïcødé ✓" in page  # non-ASCII kept as is (the page is UTF-8)
    assert "\x00" not in page and "\x1b" not in page and "\\x1b[31m" in page
    text = "".join(_parse(page).text)
    assert '<script>alert("pwn")</script>' in text  # what a reader sees: the text itself


def test_markup_is_balanced(combined: RunDocument) -> None:
    parser = _parse(_render(combined))
    assert parser.errors == [] and parser.stack == []


def test_self_contained(combined: RunDocument) -> None:
    page = _render(combined)
    for needle in ("http://", "https://", "<link", "<img", "<iframe", "url(", "@import",
                   " src="):
        assert needle not in page.lower(), needle
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_sections(combined: RunDocument) -> None:
    page = _render(combined)
    text = " ".join("".join(_parse(page).text).split())
    assert "generated 2024-05-06 08:00:00 UTC" in text
    assert "started 2024-05-06 07:08:09 UTC" in text
    # violations first, in red, naming host and line
    assert '<section class="violations">' in page
    assert "127.0.0.2:23 expected open, got closed (conn-refused)" in text
    assert page.index('class="violations"') < page.index('class="host"')
    # changes since the baseline, from both hosts' diffs (one of them partial)
    assert "Changes since baseline" in text
    assert "127.0.0.2 opened 80" in text and "127.0.0.2 no longer open: 830" in text
    assert "host 127.0.0.9 vanished" in text and "::1 opened 1030" in text
    # one table per nornir host that has addresses; the failed host shows its error
    assert page.count('<table class="ports">') == 3
    assert "Traceback: boom" in text and "not scanned" in text.lower()
    # RTT in ms and service names from the port table
    assert "0.41" in text and "ssh" in text


def test_without_baseline_there_is_no_changes_section() -> None:
    doc, _, _ = scanned_document()
    page = _render(doc)
    assert "Changes since baseline" not in page
    assert "All expectations hold" in page


def test_quiet_addresses_fold_into_one_row() -> None:
    doc = hand_document()
    doc["hosts"] = {"sweep": {"failed": False, "error": None, "result": {
        "targets": {f"127.0.1.{i}": {"status": "down", "name": None, "ports": {
            "22": {"state": "filtered", "reason": "no-response", "rtt_ms": None}}}
            for i in range(1, 41)},
        "summary": {"filtered": 40}, "violations": []}}}
    text = " ".join("".join(_parse(_render(doc)).text).split())
    assert "40 addresses" in text and "and 32 more" in text


def test_registered_as_document_renderer(combined: RunDocument) -> None:
    assert DOCUMENT_RENDERERS["html"] == "html"
    out = io.StringIO()
    render_document("html", combined, out)
    assert "<!DOCTYPE html>" in out.getvalue()


# ---- seen in a browser ----------------------------------------------------------------------

def _png_facts(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the image data) without an image library.

    A blank page compresses to a few distinct values (filter bytes and one colour);
    text, badges and tables give the raw scanlines a wide spread.
    """
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, width, height, idat = 8, 0, 0, bytearray()
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(bytes(idat))
    return width, height, len(set(raw))


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_renders_in_headless_chromium(tmp_path: Path, combined: RunDocument) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium: apt-get install chromium to see the page rendered")
    page = write(tmp_path, "report.html", _render(combined))
    shot = tmp_path / "report.png"
    # The page is a local file: the browser gets a network namespace of its own with no
    # interface up, so nothing it tries on its own (DNS probes, updates) can leave.
    isolate = ["unshare", "--net"] if os.geteuid() == 0 and shutil.which("unshare") else []
    cmd = [*isolate, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
           f"--screenshot={shot}", "--window-size=1280,1600", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False,
                          stdin=subprocess.DEVNULL)
    assert shot.exists(), f"no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    data = shot.read_bytes()
    assert len(data) > 20_000, f"screenshot only {len(data)} bytes: blank page?"
    width, height, spread = _png_facts(data)
    assert (width, height) == (1280, 1600)
    assert spread > 64, f"only {spread} distinct byte values: a single-colour image"


def test_png_check_tells_blank_from_content() -> None:
    """The spread check itself: a flat image scores low."""
    width, height = 64, 32
    rows = b"".join(b"\x00" + b"\xff\xff\xff" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
           + chunk(b"IEND", b""))
    assert _png_facts(png) == (64, 32, 2)


def test_anomalies_fold_an_all_open_host_and_note_a_proxy() -> None:
    """Issue 25: an all-open address is one row saying so, not a row per port; a SYN
    proxy's real open ports stay listed, with the anomaly beside them."""
    page = _render(anomaly_document())
    parsed = _parse(page)
    assert parsed.errors == [] and parsed.stack == []
    text = " ".join(" ".join(parsed.text).split())
    assert "all-open: every one of 100 probed ports accepts" in text
    assert "syn-proxy: 97 of 100 probed ports reset right after the handshake" in text
    # port and RTT cells: the proxy's 22, 80, 99 only, none of the all-open host's 100
    assert page.count('<td class="num mono">') == 2 * 3
