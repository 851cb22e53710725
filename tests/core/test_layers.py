"""The package's layers: core ← methods ← evaluation ← demo ← app. Imports (also those inside functions) only go to
the same or a lower layer, no module imports itself through others (no cycle), and modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "time_core"
LAYERS = {"core": 0, "methods": 1, "evaluation": 2, "cli": 2, "demo": 3}  # `export` is core: it reads only BaseEdit
# Thin command-line entry modules that only forward to their command (`python -m time_core.evaluate` / `.debias`, and
# `python -m time_core`, the edit command).
ENTRY_MODULES = {"time_core.evaluate": 2, "time_core.debias": 2, "time_core.__main__": 2}
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    if module in ENTRY_MODULES:
        return ENTRY_MODULES[module]
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else len(LAYERS)  # `time_core` itself is the public facade


def imports(path: Path, module: str) -> set[str]:
    """The `time_core` modules that `path` imports anywhere in its body (absolute or relative)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(n for n in names if n.startswith("time_core"))
    return found


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for module, path in paths.items():
        edges[module] = {m for m in imports(path, module) if m in paths and m != module}
    return edges


def test_imports_only_go_down_the_layers():
    wrong = [(m, t) for m, targets in graph().items() for t in targets
             if m != "time_core" and layer_of(t) > layer_of(m)]
    assert not wrong, f"imports from a lower layer to a higher one: {wrong}"


def test_no_import_cycles():
    edges = graph()
    # a package __init__ re-exporting its own modules is not a cycle of the modules themselves
    edges = {m: {t for t in ts if not (t.startswith(m + ".") or m.startswith(t + "."))} for m, ts in edges.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(target):] + [target]))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)


def test_modules_stay_small():
    paths = [ROOT / "app.py", *PACKAGE.rglob("*.py")]
    large = {str(p.relative_to(ROOT)): n for p in paths if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not large, f"modules over {MAX_LINES} lines: {large}"
