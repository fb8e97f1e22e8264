"""Helpers shared by the nornir tests: loopback listeners and the fixture inventory.

Only 127.0.0.0/8 is ever touched. Listener ports are picked by the kernel, so the
fixture inventory in tests/nornir/ is a string.Template rendered per test.
"""

from __future__ import annotations

import socket
import string
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nornir import InitNornir
from nornir.core import Nornir

FIXTURES = Path(__file__).parent / "nornir"
INVENTORY_FILES = ("hosts.yaml", "groups.yaml", "defaults.yaml", "subnets.yaml", "config.yaml")


@contextmanager
def listening(host: str = "127.0.0.1", backlog: int = 128) -> Iterator[int]:
    """A port that accepts connections (the kernel completes the handshake)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(backlog)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def closed_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on: connects get a reset."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


@contextmanager
def stalled_port() -> Iterator[int | None]:
    """A loopback port that never answers: a listener whose accept queue is full.

    Linux drops SYNs to a listener with a full accept queue, so a connect times out as
    on a filtered port, without a namespace. Yields None where the kernel behaves
    otherwise, so callers can skip.
    """
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    clients: list[socket.socket] = []
    stalled = False
    try:
        for _ in range(4):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            client.settimeout(0.2)
            clients.append(client)
            try:
                client.connect(("127.0.0.1", port))
            except OSError:
                stalled = True
                break
        yield port if stalled else None
    finally:
        for client in clients:
            client.close()
        server.close()


@contextmanager
def listening_later(delay: float, host: str = "127.0.0.1") -> Iterator[int]:
    """A port bound now (so it is reserved, and refuses) that starts listening after delay."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    timer = threading.Timer(delay, sock.listen, args=(16,))
    timer.start()
    try:
        yield sock.getsockname()[1]
    finally:
        timer.cancel()
        timer.join()
        sock.close()


def render_inventory(dest: Path, **values: Any) -> Path:
    """Copy the fixture inventory into dest with $placeholders filled in."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in INVENTORY_FILES:
        text = (FIXTURES / name).read_text(encoding="utf-8")
        (dest / name).write_text(string.Template(text).substitute(values), encoding="utf-8")
    return dest


def init_nornir(directory: Path, workers: int = 20, user_defined: dict[str, Any] | None = None,
                **options: Any) -> Nornir:
    """InitNornir over an inventory directory, as a user would call it."""
    files = {"host_file": "hosts.yaml", "group_file": "groups.yaml",
             "defaults_file": "defaults.yaml", "subnet_file": "subnets.yaml"}
    opts = {k: str(directory / v) for k, v in files.items() if (directory / v).exists()}
    opts.update(options)
    return InitNornir(inventory={"plugin": "PortscanInventory", "options": opts},
                      runner={"plugin": "threaded", "options": {"num_workers": workers}},
                      logging={"enabled": False}, user_defined=user_defined or {})


def subnet_inventory(dest: Path, subnet: str, ports: str, max_hosts: int | None = None,
                     workers: int = 20) -> Path:
    """A subnet inventory in ``dest``: one nornir host per address of ``subnet``, each
    scanning ``ports``, run by the threaded runner; the path of its config file."""
    dest.mkdir(parents=True, exist_ok=True)
    limit = f"  max_hosts: {max_hosts}\n" if max_hosts is not None else ""
    (dest / "subnets.yaml").write_text(
        f"lab:\n  subnet: {subnet}\n{limit}  data:\n    portscan:\n      ports: '{ports}'\n")
    config = dest / "config.yaml"
    config.write_text(
        "inventory:\n  plugin: PortscanInventory\n  options:\n"
        f"    subnet_file: {dest / 'subnets.yaml'}\n"
        f"runner:\n  plugin: threaded\n  options:\n    num_workers: {workers}\n"
        "logging:\n  enabled: false\n")
    return config


def write_yaml_files(dest: Path, **files: str) -> Path:
    """Write inventory files given as text (name without .yaml -> content)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (dest / f"{name}.yaml").write_text(text, encoding="utf-8")
    return dest
