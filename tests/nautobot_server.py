"""A real Nautobot for the tests: PostgreSQL, Redis and ``nautobot-server runserver``, all
inside one test namespace, on its 127.0.0.1.

Nautobot lives in its own virtual environment (it pins Django and celery), at
``/opt/nautobot-venv`` (``.ci/run`` installs it there; ``PORTSCAN_NAUTOBOT_VENV`` names
another). Its database is never migrated in a test run when it can be helped:
``nautobot-server migrate`` costs about 4 minutes of CPU, while the plain SQL dump of a
freshly migrated database kept in ``tests/data`` (admin user and API token included)
restores in about a second. The dump names the Nautobot version it was made with; when the
installed one differs, the fixture migrates instead (and says so). Regenerate the dump with
``python3 tests/nautobot_server.py dump`` after changing the version.

PostgreSQL and Redis are new for each server (their data in a temporary directory): a
Redis cache that outlived its database would hand Nautobot objects that no longer exist.
"""

from __future__ import annotations

import gzip
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from netns import PYTHON, NetNS

VENV = Path(os.environ.get("PORTSCAN_NAUTOBOT_VENV", "/opt/nautobot-venv"))
PG_BIN = Path("/usr/lib/postgresql/15/bin")
DUMP = Path(__file__).resolve().parent / "data" / "nautobot-migrated.sql.gz"
#: The version .ci/run installs, and the one the dump was made with.
VERSION = "3.2.7"
#: The API token in the dump (a key of Nautobot's token table: 40 characters). It exists
#: only in these throw-away databases.
TOKEN = "nornir-portscan-test-token".ljust(40, "0")
ADMIN = "admin"
PG_PORT, REDIS_PORT, HTTP_PORT = 5432, 6379, 8080
DB = "nautobot"

CONFIG = '''\
"""Nautobot's configuration for a test server: database, Redis and secret key from the
environment, as ``nautobot-server init`` writes it; any Host header (it is reached as
127.0.0.1:PORT inside a namespace) and no installation metrics (no traffic out)."""
import os
from nautobot.core.settings import *  # noqa: F403
ALLOWED_HOSTS = ["*"]
SECRET_KEY = os.environ["NAUTOBOT_SECRET_KEY"]
INSTALLATION_METRICS_ENABLED = False
'''


def installed_version() -> str | None:
    """The Nautobot version in the venv (from its metadata: importing it takes seconds)."""
    for meta in VENV.glob("lib/python3*/site-packages/nautobot-*.dist-info"):
        return meta.name.removeprefix("nautobot-").removesuffix(".dist-info")
    return None


def why_unavailable() -> str | None:
    """None when a Nautobot server can be started here, else why not (the skip reason)."""
    if not (VENV / "bin" / "nautobot-server").exists():
        return (f"Nautobot is not installed in {VENV} (.ci/run installs it: python3 -m venv "
                f"{VENV} && {VENV}/bin/pip install nautobot=={VERSION})")
    for tool in (PG_BIN / "postgres", Path(shutil.which("redis-server") or "/nonexistent")):
        if not tool.exists():
            return f"{tool.name} is not installed (apt-get install postgresql redis-server)"
    return None


def dump_version() -> str | None:
    """The Nautobot version written in the dump's first line, if there is a dump."""
    if not DUMP.exists():
        return None
    with gzip.open(DUMP, "rt", encoding="utf-8") as f:
        first = f.readline()
    return first.removeprefix("-- nautobot ").strip() if first.startswith("-- nautobot ") else None


@dataclass
class NautobotServer:
    """One running Nautobot inside ``ns``: ``url`` and ``token`` work from inside it only."""

    ns: NetNS
    workdir: Path
    url: str = f"http://127.0.0.1:{HTTP_PORT}"
    token: str = TOKEN
    #: How the database came to be: "restored" (the dump) or "migrated".
    database: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """The environment of ``nautobot-server`` commands for this server."""
        return nautobot_env(self.workdir)

    def manage(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return self.ns.run(str(VENV / "bin" / "nautobot-server"), "--config",
                           str(self.workdir / "nautobot_config.py"), *args,
                           env=self.env(), timeout=timeout)

    def python_env(self) -> dict[str, str]:
        """This process's environment with NAUTOBOT_URL and NAUTOBOT_TOKEN set."""
        return {**os.environ, "NAUTOBOT_URL": self.url, "NAUTOBOT_TOKEN": self.token}

    def python(self, code: str, *args: str, timeout: float = 300
               ) -> subprocess.CompletedProcess[str]:
        """Run ``code`` with this package's Python inside the namespace, NAUTOBOT_URL and
        NAUTOBOT_TOKEN set (how a test talks to the server: only the namespace reaches it)."""
        return self.ns.run(PYTHON, "-c", code, *args, env=self.python_env(), timeout=timeout)

    def stop(self) -> None:
        self.ns.destroy()
        shutil.rmtree(self.workdir, ignore_errors=True)


def nautobot_env(workdir: Path) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("NAUTOBOT_")},
            "NAUTOBOT_ROOT": str(workdir / "root"),
            "NAUTOBOT_DB_HOST": "127.0.0.1", "NAUTOBOT_DB_PORT": str(PG_PORT),
            "NAUTOBOT_DB_NAME": DB, "NAUTOBOT_DB_USER": DB, "NAUTOBOT_DB_PASSWORD": "",
            "NAUTOBOT_REDIS_HOST": "127.0.0.1", "NAUTOBOT_REDIS_PORT": str(REDIS_PORT),
            "NAUTOBOT_SECRET_KEY": "test-only-" + "k" * 50,
            "NAUTOBOT_INSTALLATION_METRICS_ENABLED": "False",
            "NAUTOBOT_ALLOWED_HOSTS": "*", "PYTHONPATH": ""}


def _psql(ns: NetNS, sql: str, db: str = DB) -> None:
    done = ns.run(str(PG_BIN / "psql"), "-q", "-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                  "-p", str(PG_PORT), "-U", DB, "-d", db, input=sql, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"psql failed: {done.stderr.strip()[-2000:]}")


def start(ns: NetNS, migrate: bool = False) -> NautobotServer:
    """PostgreSQL, Redis and Nautobot in ``ns``; the database restored from the dump (or
    migrated when the dump is missing, of another version, or ``migrate`` asks for it)."""
    workdir = Path(tempfile.mkdtemp(prefix="portscan-nautobot-"))
    server = NautobotServer(ns, workdir)
    try:
        _start(server, migrate)
    except BaseException:
        server.stop()
        raise
    return server


def _start(server: NautobotServer, migrate: bool) -> None:
    ns, workdir, t0 = server.ns, server.workdir, time.monotonic()
    os.chmod(workdir, 0o755)
    (workdir / "root").mkdir()
    (workdir / "nautobot_config.py").write_text(CONFIG, encoding="utf-8")
    pgdata = workdir / "pg"
    pgdata.mkdir()
    shutil.chown(pgdata, "postgres", "postgres")
    done = subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D",
                           str(pgdata), "-A", "trust", "-U", DB, "-E", "UTF8", "--no-sync",
                           "--locale=C.UTF-8"], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed: {done.stderr.strip()}")
    # durability buys nothing in a throw-away database; the socket directory is ours
    ns.popen("runuser", "-u", "postgres", "--", str(PG_BIN / "postgres"), "-D", str(pgdata),
             "-c", "listen_addresses=127.0.0.1", "-p", str(PG_PORT), "-k", str(pgdata),
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ns.popen("redis-server", "--bind", "127.0.0.1", "--port", str(REDIS_PORT), "--save", "",
             "--appendonly", "no", "--dir", str(workdir), stdout=subprocess.DEVNULL,
             stderr=subprocess.DEVNULL)
    ns.run_until_ok(str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(PG_PORT),
                    what="PostgreSQL did not start")
    _psql(ns, f"CREATE DATABASE {DB};", db="postgres")
    server.timings["postgres"] = time.monotonic() - t0
    t1 = time.monotonic()
    have = dump_version()
    if not migrate and have is not None and have == installed_version():
        with gzip.open(DUMP, "rt", encoding="utf-8") as f:
            _psql(ns, f.read())
        server.database = "restored"
    else:
        if not migrate:
            print(f"nautobot fixture: the dump is for Nautobot {have}, {installed_version()} is "
                  f"installed: migrating (minutes)", file=sys.stderr)
        done = server.manage("migrate", "--no-input", timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"nautobot-server migrate failed: {done.stderr.strip()[-2000:]}")
        code = ("from nautobot.users.models import Token, User\n"
                f"u = User.objects.create_superuser({ADMIN!r}, 'admin@example.invalid', "
                f"{secrets.token_hex(16)!r})\n"
                f"Token.objects.create(user=u, key={TOKEN!r})\n")
        done = server.manage("shell", "-c", code)
        if done.returncode != 0:
            raise RuntimeError(f"creating the admin user failed: {done.stderr.strip()[-2000:]}")
        server.database = "migrated"
    server.timings["database"] = time.monotonic() - t1
    t2 = time.monotonic()
    ns.popen(str(VENV / "bin" / "nautobot-server"), "--config",
             str(workdir / "nautobot_config.py"), "runserver", f"127.0.0.1:{HTTP_PORT}",
             "--insecure", "--noreload", env=server.env(), stdout=subprocess.DEVNULL,
             stderr=open(workdir / "runserver.log", "w"))
    probe = ("import sys, urllib.request\n"
             "r = urllib.request.Request(sys.argv[1] + '/api/', headers={"
             "'Authorization': 'Token ' + sys.argv[2], 'Accept': 'application/json'})\n"
             "urllib.request.urlopen(r, timeout=10).read()\n")
    ns.run_until_ok(PYTHON, "-c", probe, server.url, TOKEN,
                    what="nautobot-server runserver did not start", seconds=180)
    server.timings["runserver"] = time.monotonic() - t2


def write_dump(server: NautobotServer, path: Path = DUMP) -> int:
    """A plain SQL dump of the server's database, first line naming the Nautobot version;
    returns its size compressed."""
    done = server.ns.run(str(PG_BIN / "pg_dump"), "-h", "127.0.0.1", "-p", str(PG_PORT), "-U",
                         DB, "--no-owner", "--no-privileges", DB, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"pg_dump failed: {done.stderr.strip()}")
    version = installed_version()
    text = f"-- nautobot {version}\n" + done.stdout
    path.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    return path.stat().st_size


def main(argv: list[str]) -> int:
    """``dump``: migrate a fresh database and write tests/data's dump from it."""
    if argv != ["dump"]:
        print("usage: python3 tests/nautobot_server.py dump", file=sys.stderr)
        return 2
    reason = why_unavailable()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    server = start(NetNS("nbdump"), migrate=True)
    try:
        size = write_dump(server)
    finally:
        server.stop()
    print(json.dumps({"dump": str(DUMP), "bytes": size, "version": installed_version(),
                      "seconds": {k: round(v, 1) for k, v in server.timings.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
