"""The package's floor plan, checked: imports follow the data's path (no package imports one that imports
it back), private modules and names stay inside their package, front ends are imported by front ends only,
and every module says what it holds and what it makes public."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rayeval"

#: Modules at the top of rayeval that everything may use: errors, column contract, paths, records, redaction.
FOUNDATION = {"rayeval.errors", "rayeval.schema", "rayeval.paths", "rayeval.records", "rayeval.redaction"}
#: Front ends: only other front ends (and the package's public face) import them.
FRONT_ENDS = {"rayeval.api", "rayeval.debug", "rayeval.cli"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every rayeval import in a file, lazy ones (inside functions) included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rayeval"):
            names = [a.name for a in node.names]
            # `from rayeval.pkg import mod` imports a module: count it as one.
            subs = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in MODULES]
            if subs:
                found += [(s, []) for s in subs]
                names = [n for n in names if f"{node.module}.{n}" not in MODULES]
            if names or not subs:
                found.append((node.module, names))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("rayeval")]
    return found


def _package(module: str) -> str:
    """The node a module belongs to: its package (sub-packages are nodes of their own); a top-level
    module is a node by itself."""
    path = MODULES[module]
    if path.name == "__init__.py":
        return module
    parent = module.rsplit(".", 1)[0]
    return module if parent == "rayeval" else parent


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        src = _package(module)
        for target, _ in _imports(path):
            if target not in MODULES:
                continue
            dst = _package(target)
            if dst != src and not src.startswith(dst + ".") and not dst.startswith(src + "."):
                edges.setdefault(src, set()).add(dst)
    return edges


def test_every_import_names_a_module_that_exists():
    missing = [f"{m}: {target}" for m, p in MODULES.items() for target, _ in _imports(p) if target not in MODULES]
    assert not missing, missing


def test_the_packages_import_each_other_without_cycles():
    edges = _edges()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif state.get(nxt) is None:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_foundation_modules_import_no_other_part_of_rayeval():
    for module in FOUNDATION:
        targets = {t for t, _ in _imports(MODULES[module])}
        assert targets <= FOUNDATION, f"{module} imports {targets - FOUNDATION}"


def test_front_ends_are_imported_by_front_ends_only():
    def front(module: str) -> bool:
        return any(module == f or module.startswith(f + ".") for f in FRONT_ENDS) or module == "rayeval"

    offenders = [
        f"{m} imports {target}"
        for m, p in MODULES.items()
        if not front(m)
        for target, _ in _imports(p)
        if front(target) and target != "rayeval"
    ]
    assert not offenders, offenders


def test_private_modules_and_names_stay_inside_their_package():
    offenders = []
    for module, path in MODULES.items():
        home = _package(module)
        for target, names in _imports(path):
            if target not in MODULES:
                continue
            there = _package(target)
            inside = home == there or home.startswith(there + ".")
            private_module = any(part.startswith("_") and part != "__init__" for part in target.split("."))
            if private_module and not inside:
                offenders.append(f"{module} imports private module {target}")
            for name in names:
                if name.startswith("_") and target.rsplit(".", 1)[0] != module.rsplit(".", 1)[0]:
                    offenders.append(f"{module} imports private name {target}.{name}")
    assert not offenders, offenders


def _bound(node: ast.Import | ast.ImportFrom) -> set[str]:
    return {(a.asname or a.name).split(".")[0] for a in node.names}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_has_a_docstring_and_public_names_that_exist(module):
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"{module} says nothing about what it holds"
    exported = None
    defined, lazy = set(), set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    defined.add(t.id)
                    if t.id == "__all__":
                        exported = ast.literal_eval(node.value)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            imports = [inner for inner in node.body if isinstance(inner, (ast.Import, ast.ImportFrom))]
            lazy.update(n for inner in imports for n in _bound(inner))
    if "__getattr__" in defined:  # names imported on first use: they must resolve
        package = importlib.import_module(module)
        assert all(getattr(package, n, None) is not None for n in lazy), f"{module}: a lazy name does not resolve"
        defined |= lazy
    public = {n for n in defined if not n.startswith("_")} - {
        n for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)) for n in _bound(node)
    }
    if exported is None:
        assert not public, f"{module} defines {sorted(public)} but has no __all__ saying what is public"
        return
    assert sorted(exported) == sorted(set(exported)), f"{module}: __all__ names something twice"
    assert not [n for n in exported if n not in defined], f"{module}: __all__ names what it does not define"
    assert not [n for n in exported if n.startswith("_")], f"{module}: __all__ names a private name"
