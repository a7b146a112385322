"""The package's layout: one concept per module, so no module is long, and no import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ctrnn_dyn"

#: The most lines a module of the package may have.
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_statements(body: list[ast.stmt]):
    """The import statements that run when the module is imported: at module level, in
    class bodies and in ``if``/``try``/``with`` blocks, but not in functions nor under
    ``if TYPE_CHECKING``."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        elif isinstance(node, ast.If):
            if not _is_type_checking(node):
                yield from _import_time_statements(node.body)
            yield from _import_time_statements(node.orelse)
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                block = getattr(node, field, None)
                if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                    yield from _import_time_statements(block)
                elif isinstance(block, list):  # the except handlers of a try
                    for handler in block:
                        if isinstance(handler, ast.ExceptHandler):
                            yield from _import_time_statements(handler.body)


def _imported(
    node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, modules: dict[str, Path]
) -> set[str]:
    """The package's modules that ``node``, in module ``importer``, imports: the named module,
    the packages above it (their ``__init__`` runs first) and, for ``from X import name``,
    ``X.name`` where that is a module. Packages that contain ``importer`` are left out: they
    are being imported already when it runs."""
    if isinstance(node, ast.Import):
        targets = [(alias.name, []) for alias in node.names]
    else:
        if node.level:
            base = importer.split(".") if is_package else importer.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        targets = [(source, [alias.name for alias in node.names])]
    found = set()
    for source, names in targets:
        parts = source.split(".")
        for i in range(1, len(parts) + 1):
            found.add(".".join(parts[:i]))
        found.update(f"{source}.{name}" for name in names)
    ancestors = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 1)}
    return {m for m in found if m in modules and m != importer and m not in ancestors}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        edges = set()
        for node in _import_time_statements(tree.body):
            edges |= _imported(node, name, path.name == "__init__.py", modules)
        graph[name] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_module_is_longer_than_the_limit():
    lengths = {
        path.relative_to(PACKAGE.parent).as_posix(): len(path.read_text().splitlines())
        for path in _modules().values()
    }
    too_long = {p: n for p, n in sorted(lengths.items()) if n > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines (split by concept): {too_long}"


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    assert "ctrnn_dyn.train" in graph and graph["ctrnn_dyn.train"]  # the walk sees imports
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle_and_its_path():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_relative_and_package_imports_resolve_to_modules():
    modules = {m: Path() for m in ("p", "p.a", "p.b", "p.sub", "p.sub.c", "q")}
    rel = ast.parse("from . import a\nfrom .sub import c\nfrom ..q import x").body
    assert _imported(rel[0], "p.b", False, modules) == {"p.a"}
    assert _imported(rel[1], "p.b", False, modules) == {"p.sub", "p.sub.c"}
    assert _imported(ast.parse("from . import c").body[0], "p.sub", True, modules) == {"p.sub.c"}
    absolute = ast.parse("import p.sub.c\nfrom p.sub import thing").body
    assert _imported(absolute[0], "q", False, modules) == {"p", "p.sub", "p.sub.c"}
    assert _imported(absolute[1], "p.a", False, modules) == {"p.sub"}
    assert _imported(absolute[1], "p.sub.c", False, modules) == set()


def test_no_package_exports_a_name_of_one_of_its_modules():
    """``from pkg.name import name`` would leave ``pkg.name`` meaning either, by import order."""
    modules = _modules()
    for name, path in modules.items():
        if path.name != "__init__.py" or name == "ctrnn_dyn":
            continue
        tree = ast.parse(path.read_text())
        exported = {
            e.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and any(getattr(t, "id", None) == "__all__" for t in node.targets)
            for e in node.value.elts
        }
        submodules = {m.rsplit(".", 1)[1] for m in modules if m.rsplit(".", 1)[0] == name}
        assert not exported & submodules, f"{name} exports its modules' names"
