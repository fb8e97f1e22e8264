"""The package's layers, read from its source: data flows one way, and no module imports
one that imports it back (late imports inside functions count too: they hide a cycle,
they do not remove it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nornir_portscan"

#: Each layer may import itself and the layers before it, never one after it.
LAYERS = ("errors", "inputs", "engine", "plugins", "report", "cli")


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


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_the_graph_sees_the_package() -> None:
    graph = _graph()
    assert "nornir_portscan.engine.core.scheduler" in graph
    assert "nornir_portscan.engine.core.plan" in graph["nornir_portscan.engine.io.local"]
    assert "nornir_portscan.cli.common" in graph["nornir_portscan.cli.run"]


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
    def top_imports(path: Path) -> set[str]:
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                out.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                out.add(node.module.split(".")[0])
        return out

    engine = [p for p in (PACKAGE / "engine").rglob("*.py") if "nornir" in top_imports(p)]
    plugins = [p for p in (PACKAGE / "plugins").rglob("*.py")
               if top_imports(p) & {"socket", "_socket", "select", "selectors"}]
    assert not engine, f"engine modules importing nornir: {engine}"
    assert not plugins, f"nornir plugins touching sockets: {plugins}"
