"""``nornir-portscan audit``'s input errors and an unusable server, without Nautobot: a
closed loopback port, and a real HTTP server on loopback that refuses every token as
Nautobot does (403). What Nautobot itself answers is tests/test_audit_nautobot.py's."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

URL_ENV = {k: v for k, v in os.environ.items() if not k.startswith("NAUTOBOT_")}


def audit(*args: str, token: str | None = "t" * 40) -> subprocess.CompletedProcess[str]:
    env = dict(URL_ENV)
    if token is not None:
        env["NAUTOBOT_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "nornir_portscan", "audit", *args],
                          capture_output=True, text=True, timeout=120, env=env)


class _Refuse(http.server.BaseHTTPRequestHandler):
    """Nautobot's answer to a bad token, for every request."""

    def _refuse(self) -> None:
        body = b'{"detail": "Invalid token"}'
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = _refuse

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def refusing_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_refused_token_is_one_line_and_exit_3(refusing_server: str) -> None:
    done = audit("--nautobot", refusing_server, "--prefix", "127.0.0.0/30")
    assert done.returncode == 3, done.stderr
    assert done.stderr.splitlines() == [
        f"nornir-portscan: error: {refusing_server}: cannot read the scope: the token was "
        f"refused (HTTP 403)"]
    assert "t" * 40 not in done.stderr and done.stdout == ""


def test_an_unreachable_server_is_one_line_and_exit_3(
        closed_port: Callable[..., int]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    done = audit("--nautobot", url, "--prefix", "127.0.0.0/30")
    assert done.returncode == 3, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"nornir-portscan: error: {url}: cannot read the scope: ")
    assert "Connection refused" in lines[0]


@pytest.mark.parametrize(("args", "token", "message"), [
    (("--nautobot", "http://127.0.0.1:9"), "x",
     "audit needs a scope: --prefix CIDR, --location NAME or --tag NAME (nothing outside it "
     "is probed)"),
    (("--nautobot", "http://127.0.0.1:9", "--prefix", "127.0.0.0/30"), None,
     "no API token: set the environment variable NAUTOBOT_TOKEN (or name another with "
     "--token-env)"),
    (("--nautobot", "http://127.0.0.1:9", "--prefix", "127.0.0.0/30", "--token-env", "MINE"),
     "x", "no API token: set the environment variable MINE (or name another with "
          "--token-env)"),
    (("--prefix", "127.0.0.0/30"), "x",
     "audit needs --nautobot URL (or the environment variable NAUTOBOT_URL)"),
    (("--nautobot", "127.0.0.1:9", "--prefix", "127.0.0.0/30"), "x",
     "--nautobot '127.0.0.1:9': must be an http:// or https:// URL"),
    (("--nautobot", "http://127.0.0.1:9", "--prefix", "127.0.0.0/33"), "x",
     "'127.0.0.0/33' is not a valid address or network"),
    (("--nautobot", "http://127.0.0.1:9", "--prefix", "127.0.0.0/30", "-p", "0"), "x",
     "port '0' in '0' is out of range: ports are 1-65535"),
])
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], token: str | None,
                                          message: str) -> None:
    done = audit(*args, token=token)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"nornir-portscan: error: {message}"]
