"""The README on a fresh machine: a clean virtual environment (no system site packages,
no PYTHONPATH, no user site), a copy of this checkout, and then every code block of the
README in order, as a new user follows it: ``pip install -e .`` for real, from the
package index, and then the main command and every other snippet with the installed
``nornir-portscan`` and ``python3`` of that environment. The install steps of docs/
(``pip install -e '.[dask]'``) run after it, so every extra the docs name installs too.

What "fresh" rules out is the point: the suite's own environment has the test extras
(nornir_utils, Dask, hypothesis), which a README snippet must not need. Block kinds
follow the convention of ``test_docs.py``.

Network: pip reaches the package index, as ``.ci/run``'s own installs do; nothing else
leaves loopback. The README's commands run in a fresh namespace with only ``lo`` where
this machine can build one (as in ``test_docs.py``), else on this machine's loopback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from docblocks import REPO, Session, all_blocks, failures, run_section
from netns import NetNS, NetNSUnavailable, why_unavailable

#: What a login shell has, without this machine's Python managers (pyenv shims and the
#: like): a command the install did not put into the environment is not found.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def copy_checkout(target: Path) -> Path:
    """The files a fresh clone has: tracked and new ones, not what .gitignore leaves out."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=REPO, capture_output=True)
    if listed.returncode != 0:
        shutil.copytree(REPO, target, ignore=shutil.ignore_patterns(
            ".git", "__pycache__", "*.egg-info", ".*_cache", ".venv", "site", "build", "dist"))
        return target
    for name in listed.stdout.decode().split("\0"):
        source = REPO / name
        if name and source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def make_venv(venv: Path) -> None:
    """A clean venv with its own pip; where ensurepip is missing (Debian without
    python3-venv), pip is installed into it by this interpreter's pip."""
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True,
                          text=True)
    if made.returncode == 0:
        return
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "-q", "pip"], check=True)


def fresh_env(venv: Path) -> dict[str, str]:
    """An activated venv's environment, and nothing of this suite's Python set-up."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "PYENV", "VIRTUAL_ENV", "CONDA"))}
    env.update(PATH=f"{venv / 'bin'}:{SYSTEM_PATH}", VIRTUAL_ENV=str(venv),
               PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def test_readme_walk_on_a_fresh_venv(tmp_path: Path) -> None:
    checkout = copy_checkout(tmp_path / "checkout")
    venv = tmp_path / "venv"
    make_venv(venv)
    env = fresh_env(venv)
    python = str(venv / "bin" / "python3")
    blocks = all_blocks()
    readme = [b for b in blocks if b.page == "README.md"]
    done_before = {b.text for b in readme if b.kind == "install"}
    installs = [b for b in blocks if b.page != "README.md" and b.kind == "install"
                and b.text not in done_before]  # the same command twice proves nothing more
    assert any(b.kind == "install" for b in readme), "the README must say how to install"

    ns: NetNS | None = None
    if why_unavailable() is None:
        try:
            ns = NetNS("fresh")
        except NetNSUnavailable:
            ns = None
    try:
        installer = Session(cwd=checkout, env=env, python=python)
        walk = Session(cwd=checkout, env=env, python=python, netns=ns)
        found = run_section(readme, walk, installer=installer)
        assert not found, "\n\n".join(found)
        # the commands the README ran were the environment's own
        for command in ("nornir-portscan", "python3"):
            where = shutil.which(command, path=env["PATH"])
            assert where is not None and Path(where).parent == venv / "bin", (command, where)
        clean = subprocess.run([python, "-c", "import nornir_utils"], env=env,
                               capture_output=True, text=True)
        assert clean.returncode != 0, "the fresh environment sees the suite's packages"
        found = [problem for block in installs for problem in failures(installer.run(block))]
        assert not found, "\n\n".join(found)
    finally:
        if ns is not None:
            ns.destroy()

