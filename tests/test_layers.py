"""The package's layers, read from its source: data flows one way, and no module imports
one that imports it back (late imports inside functions count too: they hide a cycle,
they do not remove it). Inside the engine, the sans-I/O line: decisions (engine/core)
touch no socket, clock, descriptor limit, thread or randomness, and know nothing of the
I/O that carries them out (engine/io) or of shards (engine/shards)."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nornir_portscan"

#: Each layer may import itself and the layers before it, never one after it.
LAYERS = ("errors", "inputs", "engine", "sot", "plugins", "report", "cli")
ENGINE = "nornir_portscan.engine"
#: What decision code must not import: sockets and readiness, the process (os, resource,
#: signal, subprocess), the clock, threads, randomness. ``now``, keys and what the kernel
#: said are passed in by the I/O side, so every decision runs the same in a test.
NOT_IN_CORE = frozenset({"socket", "_socket", "select", "selectors", "os", "time", "resource",
                         "threading", "signal", "subprocess", "mmap", "random", "secrets"})


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Modules of this package that ``path`` imports, anywhere in its body."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("nornir_portscan"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            elif node.module and node.module.startswith("nornir_portscan"):
                target = node.module
            else:
                continue
            found.add(target)
            # `from . import x` names a submodule when one exists
            for alias in node.names:
                found.add(f"{target}.{alias.name}")
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name}
            for name, path in modules.items()}


def _top_imports(path: Path) -> set[str]:
    """Top-level names of everything ``path`` imports (the standard library's too)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
    return out


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_the_graph_sees_the_package() -> None:
    graph = _graph()
    assert "nornir_portscan.engine.core.scheduler" in graph
    assert "nornir_portscan.engine.core.plan" in graph["nornir_portscan.engine.io.local"]
    assert "nornir_portscan.cli.common" in graph["nornir_portscan.cli.run"]
    assert f"{ENGINE}.core.verdicts" in graph[f"{ENGINE}.core.scheduler"]
    assert f"{ENGINE}.io.limits" in graph[f"{ENGINE}.io.local"]
    assert f"{ENGINE}.core.split" in graph[f"{ENGINE}.shards.shard"]
    assert "os" in _top_imports(PACKAGE / "engine" / "io" / "local.py")


def test_no_import_cycles() -> None:
    graph = _graph()
    # the package root only re-exports (lazily); it is the top, not a layer
    root = "nornir_portscan"
    graph = {m: {d for d in deps if d != root} for m, deps in graph.items() if m != root}
    state: dict[str, int] = {}
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            # a package's __init__ importing its own submodules is how packages re-export
            if node and dep.startswith(node + "."):
                continue
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep):], dep])
            elif dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("layer", LAYERS)
def test_layers_import_only_downwards(layer: str) -> None:
    later = set(LAYERS[LAYERS.index(layer) + 1:])
    wrong = [f"{module} imports {dep}"
             for module, deps in _graph().items() if _layer(module) == layer
             for dep in deps if _layer(dep) in later]
    assert not wrong, wrong


def test_engine_knows_nothing_of_nornir_and_nornir_code_nothing_of_sockets() -> None:
    engine = [p for p in (PACKAGE / "engine").rglob("*.py") if "nornir" in _top_imports(p)]
    plugins = [p for p in (PACKAGE / "plugins").rglob("*.py")
               if _top_imports(p) & {"socket", "_socket", "select", "selectors"}]
    assert not engine, f"engine modules importing nornir: {engine}"
    assert not plugins, f"nornir plugins touching sockets: {plugins}"


def test_decision_code_does_no_io() -> None:
    core = sorted((PACKAGE / "engine" / "core").rglob("*.py"))
    assert len(core) > 10
    wrong = [f"{p.relative_to(PACKAGE)} imports {name}"
             for p in core for name in sorted(_top_imports(p) & NOT_IN_CORE)]
    assert not wrong, wrong


def _imports_into(package: str, *forbidden: str) -> list[str]:
    """Imports from modules of ``package`` into any of ``forbidden`` (or the engine's
    package face, which re-exports all of them)."""
    return [f"{module} imports {dep}" for module, deps in _graph().items()
            if module.startswith(package + ".")
            for dep in deps if dep == ENGINE or dep.startswith(forbidden)]


def test_decision_code_knows_nothing_of_io_or_shards() -> None:
    wrong = _imports_into(f"{ENGINE}.core", f"{ENGINE}.io", f"{ENGINE}.shards", f"{ENGINE}.api")
    assert not wrong, wrong


def test_the_loop_knows_nothing_of_shards() -> None:
    wrong = _imports_into(f"{ENGINE}.io", f"{ENGINE}.shards", f"{ENGINE}.api")
    assert not wrong, wrong


#: The scheduler and its parts: one object owning parts, not a chain of base classes.
SCHEDULER_PARTS = ("scheduler", "timers", "flight", "intake", "verdicts", "recheck")


def test_no_class_of_the_scheduler_inherits_another() -> None:
    core = PACKAGE / "engine" / "core"
    wrong = [f"{name}.py: class {node.name}({', '.join(ast.unparse(b) for b in node.bases)})"
             for name in SCHEDULER_PARTS
             for node in ast.walk(ast.parse((core / f"{name}.py").read_text(encoding="utf-8")))
             if isinstance(node, ast.ClassDef) and node.bases]
    assert not wrong, wrong


def test_every_directory_of_code_is_a_package_git_keeps() -> None:
    """setuptools packages only directories with an ``__init__.py``, and a checkout holds only
    what git keeps: a bare ``dist/`` in .gitignore once kept the old engine/dist/__init__.py
    out (Python still imported it, as a namespace package; a wheel would have left it out)."""
    dirs = sorted({p.parent for p in PACKAGE.rglob("*.py")})
    missing = [str(d.relative_to(PACKAGE)) for d in dirs if not (d / "__init__.py").exists()]
    assert not missing, f"directories without __init__.py: {missing}"
    git = shutil.which("git")
    if git is None or not (PACKAGE.parent / ".git").exists():
        return  # not a git checkout (an sdist, say): nothing can be ignored
    done = subprocess.run([git, "-C", str(PACKAGE.parent), "check-ignore",
                           *(str(p) for p in PACKAGE.rglob("*.py"))],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode in (0, 1), done.stderr
    assert not done.stdout.strip(), f"package files git ignores: {done.stdout.split()}"


def test_the_linter_reads_every_package_file() -> None:
    """ruff skips folders it takes for build output (``dist``, ``build``, ``.venv``, ...) even
    when named on the command line: a package folder with such a name is never linted. The
    files ruff would check must be every ``.py`` file of the package and the tests."""
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    root = PACKAGE.parent
    done = subprocess.run([ruff, "check", "--show-files", "nornir_portscan", "tests", "benchmarks"],
                          cwd=root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    linted = {Path(line.strip()).resolve() for line in done.stdout.splitlines() if line.strip()}
    wanted = {p.resolve() for d in ("nornir_portscan", "tests", "benchmarks")
              for p in (root / d).rglob("*.py") if "__pycache__" not in p.parts}
    assert wanted - linted == set(), sorted(str(p.relative_to(root)) for p in wanted - linted)


def _writers_of(attribute: str) -> set[str]:
    """The engine's files that assign ``attribute`` of an object other than ``self``."""
    files: set[str] = set()
    for path in (PACKAGE / "engine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = (node.targets if isinstance(node, ast.Assign)
                       else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign))
                       else [])
            for target in targets:
                for sub in ast.walk(target):
                    if (isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store)
                            and sub.attr == attribute
                            and not (isinstance(sub.value, ast.Name) and sub.value.id == "self")):
                        files.add(str(path.relative_to(PACKAGE)))
    return files


def test_a_probes_send_time_has_one_writer() -> None:
    """``Probe.sent`` is flight control's: the loop hands its clock to ``FlightControl.stamp``
    instead of writing a core record itself (no other record of the engine has a ``sent``
    that code outside its class assigns)."""
    assert _writers_of("sent") == {"engine/core/flight.py"}
