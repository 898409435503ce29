"""The layering ARCHITECTURE.md promises, checked on the source with `ast`.

Every import counts, wherever it stands: at the top, inside a function (a lazy import hides a
cycle, it does not remove it) or under `TYPE_CHECKING`. A package's `__init__` is a module of its
own: importing a name from the package face runs the face, so a module inside the package that
does so while the face imports it back is a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("brokers", "store", "actors", "web", "supervision")
# What each layer may not import: nothing imports a layer above it.
FORBIDDEN = {
    "brokers": ("actors", "web", "supervision"),
    "store": ("actors", "web", "supervision"),
    "actors": ("web", "supervision"),
    "web": ("supervision",),
    "supervision": (),
}


@attrs.frozen
class Import:
    importer: str
    target: str  # a module of ours
    names: tuple[str, ...]  # what `from target import ...` takes (empty for `import target`)
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def resolve(importer: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports_of(importer: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """Every import in the file that lands on one of our modules; `from pkg import sub` lands on
    the submodule when `sub` is one, else on `pkg` itself."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [
                Import(importer, alias.name, (), node.lineno)
                for alias in node.names
                if alias.name in modules
            ]
        elif isinstance(node, ast.ImportFrom):
            base = resolve(importer, path, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:
                    found.append(Import(importer, sub, (), node.lineno))
                elif base in modules:
                    found.append(Import(importer, base, (alias.name,), node.lineno))
    return found


def all_imports() -> list[Import]:
    modules = our_modules()
    return [i for name, path in modules.items() for i in imports_of(name, path, modules)]


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), plus self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles() -> None:
    edges: dict[str, set[str]] = {}
    for imp in all_imports():
        edges.setdefault(imp.importer, set()).add(imp.target)
    assert find_cycles(edges) == []


def test_no_layer_breaks() -> None:
    breaks = [
        f"{imp.importer}:{imp.line} imports {imp.target}"
        for imp in all_imports()
        if imp.target.split(".")[0] in FORBIDDEN[imp.importer.split(".")[0]]
    ]
    assert not breaks, "\n".join(breaks)


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_private_imports_across_modules() -> None:
    """No `_name` taken from another module, and a `_module` imported only from its own
    package (and the packages inside it)."""
    found = []
    for imp in all_imports():
        private = [n for n in imp.names if is_private(n)]
        if private:
            found.append(f"{imp.importer}:{imp.line} takes {private} from {imp.target}")
        parts = imp.target.split(".")
        for depth, part in enumerate(parts):
            owner = ".".join(parts[:depth])
            if is_private(part) and not (imp.importer + ".").startswith(owner + "."):
                found.append(f"{imp.importer}:{imp.line} imports private module {imp.target}")
    assert not found, "\n".join(found)


#: "No module over ~400 lines": the slack is for a docstring's growth, not for a new concept.
MAX_LINES = 420


def test_no_module_over_about_400_lines() -> None:
    long = {name: n for name, path in our_modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split by concept: {long}"


def test_the_checker_sees_a_lazy_cycle() -> None:
    """The cycle finder itself: a two-module loop and a self-loop are cycles, a chain is not."""
    assert find_cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert find_cycles({"a": {"a"}}) == [["a"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}}) == []
