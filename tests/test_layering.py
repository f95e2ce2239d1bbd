"""The package's import graph, read with ``ast`` from src/ (nothing is imported): one-way layers, no cycles,
no imports of the package's own modules inside functions.

Layers, lowest first (a module may import its own layer and the layers below it, never one above)::

    base (errors, version, logs, interrupts, config*, runtime, filters, fourier, tiling) -> io -> tomo
    -> simulate -> prepare -> patches (and patch_regions) -> model -> train -> predict -> evaluate -> report
    -> workflows -> cli -> the package's facade
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = "cryocare_torch"
LAYERS: list[tuple[str, ...]] = [
    ("errors", "version", "logs", "interrupts", "config", "config_prepare", "config_runs", "runtime", "filters",
     "fourier", "tiling"),
    ("io",),
    ("tomo",),
    ("simulate",),
    ("prepare",),
    ("patches", "patch_regions"),
    ("model",),
    ("train",),
    ("predict",),
    ("evaluate",),
    ("report",),
    ("workflows",),
    ("cli",),
    ("", "__main__"),  # the package's __init__ (facade) and ``python -m cryocare_torch``
]
# (module, imported internal module) pairs allowed inside a function: only to defer a heavy optional
# dependency that the imported module loads at its top level. Keep it short; empty today.
DEFERRED_ALLOWED: set[tuple[str, str]] = set()


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _unit(module: str) -> str:
    """The first name below the package (``io``, ``config``...); ``""`` for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(module: str) -> int:
    unit = _unit(module)
    for rank, names in enumerate(LAYERS):
        if unit in names:
            return rank
    raise AssertionError(f"{module}: not in any layer of tests/test_layering.py; add its unit to LAYERS")


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == PKG]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != PKG:
        return []
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def import_graph(src: Path = SRC) -> tuple[dict[str, set[str]], list[tuple[str, int, str]]]:
    """``(edges, in_functions)``: module -> internal modules imported at run time outside functions, and
    every internal import inside a function as ``(module, line, target)``."""
    files = {_module_name(p, src): p for p in (src / PKG).rglob("*.py")}
    known = set(files)
    edges: dict[str, set[str]] = defaultdict(set)
    in_functions: list[tuple[str, int, str]] = []
    for module, path in files.items():
        is_package = path.name == "__init__.py"

        def visit(node: ast.AST, in_function: bool, type_only: bool, module: str = module,
                  is_package: bool = is_package) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    for target in _targets(module, is_package, child, known):
                        if in_function:
                            in_functions.append((module, child.lineno, target))
                        elif not type_only:
                            edges[module].add(target)
                func = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                visit(child, func, type_only or _is_type_checking(child))

        visit(ast.parse(path.read_text(encoding="utf-8")), False, False)
    return edges, in_functions


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(set(graph) | {w for ws in graph.values() for w in ws}):
        if v not in index:
            connect(v)
    return found


def layer_violations(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} imports {b} (layer {LAYERS[_layer(b)]} is above {LAYERS[_layer(a)]})"
                  for a, targets in edges.items() for b in targets if _layer(b) > _layer(a))


def package_graph(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    units: dict[str, set[str]] = defaultdict(set)
    for a, targets in edges.items():
        units[_unit(a)] |= {_unit(b) for b in targets if _unit(b) != _unit(a)}
    return units


EDGES, IN_FUNCTIONS = import_graph()


def test_every_module_has_a_layer() -> None:
    for module in set(EDGES) | {b for t in EDGES.values() for b in t}:
        _layer(module)


def test_layers_import_only_downwards() -> None:
    assert layer_violations(EDGES) == []


def test_no_package_level_cycles() -> None:
    assert cycles(package_graph(EDGES)) == []


def test_no_module_level_cycles() -> None:
    assert cycles(EDGES) == []


def test_no_internal_imports_inside_functions() -> None:
    bad = [f"{m}:{line} imports {t}" for m, line, t in IN_FUNCTIONS if (m, t) not in DEFERRED_ALLOWED]
    assert bad == []


@pytest.mark.parametrize("case", ["upward", "cycle", "in_function"])
def test_the_checks_catch_a_bad_tree(tmp_path: Path, case: str) -> None:
    """The same checks on a small tree that breaks each rule once: they must fail."""
    pkg = tmp_path / PKG
    for sub in ("io", "workflows"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("")
    (pkg / "workflows" / "api.py").write_text("from ..io.mrc import read\n")
    body = {"upward": "from ..workflows.api import x\n", "cycle": "from ..workflows import api\n",
            "in_function": "def f():\n    from ..errors import E\n"}[case]
    (pkg / "io" / "mrc.py").write_text(body)
    edges, in_functions = import_graph(tmp_path)
    if case == "upward":
        assert layer_violations(edges) == [
            "cryocare_torch.io.mrc imports cryocare_torch.workflows.api (layer ('workflows',) is above ('io',))"]
    elif case == "cycle":
        assert cycles(package_graph(edges)) == [["io", "workflows"]]
    else:
        assert in_functions == [("cryocare_torch.io.mrc", 2, "cryocare_torch.errors")]
