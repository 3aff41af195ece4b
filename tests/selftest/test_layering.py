"""The arrows between pgconform's packages run one way, function-level imports included.

Every module under ``pgconform/`` is read as source (nothing is imported): each ``import`` and
``from ... import`` anywhere in it, inside functions too (a deferred import is still an arrow),
relative ones resolved, ``if TYPE_CHECKING:`` blocks left out (they never run).

* the engine (``pgconform/sim/``) imports nothing of pgconform outside itself: the layers above
  install what it needs (a schedule policy, a presenter for its verdicts);
* the kernel model (``pgconform/kernel/``) imports nothing of the harness, the report, the tools,
  the plug-in, the implementation list, the versions, the zoo or the alternative designs;
* the module import graph has no cycle.

``python tests/selftest/test_layering.py`` prints the cycles there are.
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterator

ROOT = pathlib.Path(__file__).resolve().parents[2] / "pgconform"

#: what the kernel model must not import (the packages and modules above it)
ABOVE_THE_MODEL = ("harness", "report", "tools", "plugin", "registry", "versions", "zoo", "alt")


def _module_name(root: pathlib.Path, path: pathlib.Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules_under(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """Module name -> source file, of every module of the package at ``root``."""
    return {_module_name(root, p): p for p in sorted(root.rglob("*.py"))}


MODULES = modules_under(ROOT)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement of ``tree``, at any depth, except under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(name: str, path: pathlib.Path, modules=MODULES) -> list[tuple[str, int]]:
    """The absolute names (module, or module.attribute) ``name`` imports, with their lines."""
    is_package = path.name == "__init__.py"
    out = []
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.extend((alias.name, node.lineno) for alias in node.names)
            continue
        if node.level:
            base = name.split(".") if is_package else name.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        for alias in node.names:
            # ``from package import module`` imports the module; else it is the module's name
            sub = f"{module}.{alias.name}"
            out.append((sub if sub in modules else module, node.lineno))
    return out


def _internal(target: str, modules) -> str | None:
    """The pgconform module an imported name belongs to (the longest module prefix), if any."""
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def import_graph(modules=MODULES) -> dict[str, set[str]]:
    """Module -> the pgconform modules it imports (at module level or deferred)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, _line in imports_of(name, path, modules):
            module = _internal(target, modules)
            if module is not None and module != name:
                graph[name].add(module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        # iterative Tarjan: (node, iterator over its successors)
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, succ = work[-1]
            for nxt in succ:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
    return sorted(out)


def _a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One cycle through the component's first module, by a breadth-first search back to it."""
    members = set(component)
    start = component[0]
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if nxt not in parent:
                    parent[nxt] = node
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    return component


def describe_cycles(graph: dict[str, set[str]]) -> str:
    lines = []
    for component in cycles(graph):
        lines.append(f"{len(component)} modules: {', '.join(component)}")
        lines.append("  e.g. " + " -> ".join(_a_cycle(graph, component)))
    return "\n".join(lines)


# --- the walker itself ----------------------------------------------------------------------------


def test_the_walker_sees_deferred_and_relative_imports(tmp_path):
    pkg = tmp_path / "pgconform"
    (pkg / "sim").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sim" / "__init__.py").write_text("")
    (pkg / "sim" / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import b\n"
        "if TYPE_CHECKING:\n    from pgconform import harness\n"
        "def f():\n    from ..report import render\n    return render\n")
    (pkg / "sim" / "b.py").write_text("import pgconform.sim.a\n")
    (pkg / "report.py").write_text("")
    (pkg / "harness.py").write_text("")
    modules = modules_under(pkg)
    graph = import_graph(modules)
    # the deferred relative import counts (as its module), the TYPE_CHECKING one does not
    assert graph["pgconform.sim.a"] == {"pgconform.sim.b", "pgconform.report"}
    assert cycles(graph) == [["pgconform.sim.a", "pgconform.sim.b"]]
    assert "pgconform.sim.a -> pgconform.sim.b -> pgconform.sim.a" in describe_cycles(graph)


# --- the rules ------------------------------------------------------------------------------------


def test_the_walker_reads_every_module():
    assert {"pgconform", "pgconform.sim.machine", "pgconform.harness.replay",
            "pgconform.report.trace", "pgconform.plugin"} <= set(MODULES)


def test_the_engine_imports_nothing_outside_itself():
    bad = [f"{name} (line {line}) imports {target}"
           for name, path in MODULES.items() if name.startswith("pgconform.sim")
           for target, line in imports_of(name, path)
           if (target == "pgconform" or target.startswith("pgconform."))
           and not (target == "pgconform.sim" or target.startswith("pgconform.sim."))]
    assert not bad, "\n".join(bad)


def test_the_kernel_model_imports_nothing_above_it():
    above = tuple(f"pgconform.{name}" for name in ABOVE_THE_MODEL)
    bad = [f"{name} (line {line}) imports {target}"
           for name, path in MODULES.items() if name.startswith("pgconform.kernel")
           for target, line in imports_of(name, path)
           if any(target == a or target.startswith(a + ".") for a in above)]
    assert not bad, "\n".join(bad)


def test_the_harness_replay_circle_is_broken():
    """The records and the replay-string codec are a module of their own: the machines and the
    sweep record their runs there, and only replay imports the machines and the sweep."""
    graph = import_graph()
    for name in ("pgconform.harness.machines", "pgconform.harness.sweep",
                 "pgconform.harness.runs"):
        assert "pgconform.harness.replay" not in graph[name], name
    assert not {"pgconform.harness.machines", "pgconform.harness.sweep"} & graph[
        "pgconform.harness.runs"]


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert not cycles(graph), "import cycles:\n" + describe_cycles(graph)


if __name__ == "__main__":
    print(describe_cycles(import_graph()) or "no import cycle")
