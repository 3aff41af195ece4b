"""The names the race diagram finds objects by are declared by the objects' classes
(:mod:`pgconform.sim.names`), and the declarations hold for the objects a real run prints: the
name every object of a declared class prints is found whole, a PTE table's alias is the name its
PMD value prints, and every declared plumbing frame exists."""

from __future__ import annotations

import ast
import pathlib
import re

from pgconform.harness.scenario import Op, VmaSpec, WorldSpec, build_world, start_op
from pgconform.kernel.objects import PmdTable, PteTable, PtPage, TablePmd
from pgconform.reference import IMPLEMENTATION as REFERENCE
from pgconform.sim import names
from pgconform.sim.names import aliases, find_names
from pgconform.sim.physmem import Page

ROOT = pathlib.Path(names.__file__).resolve().parents[1]

#: a shared mapping of the file, page 4 read in: khugepaged collapses and retracts its table
SHARED = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0),), prefault=((0, 4, False),))


def _a_run(arch: str = "x86_64"):
    """khugepaged retracting the table of PMD 1 while a reader faults in it; the kernel, run to
    its end."""
    k = build_world(SHARED, REFERENCE, arch)
    start_op(k, "CPU0", Op("khugepaged", 0, 4))
    start_op(k, "CPU1", Op("read", 0, 5))
    k.m.finish()
    return k


def _declared(obj) -> str | None:
    return getattr(type(obj), "name_form", None)


def _printed_objects(k) -> list:
    """Every object the trace's effects touch, and every value they read or replaced."""
    out = []
    for _t, _path, eff, res in k.m.trace:
        if eff is None:
            continue
        out.extend(eff.objects())
        out.append(res)
    return out


def test_every_declared_name_in_a_run_is_found_whole_by_its_form():
    checked = set()
    for arch in ("x86_64", "powerpc64", "s390"):
        for obj in _printed_objects(_a_run(arch)):
            form = _declared(obj)
            if form is None:
                continue
            printed = repr(obj)
            found = find_names(f"x {printed} y")
            assert any(re.fullmatch(form, name) for name in found), (printed, form, found)
            checked.add(type(obj))
    # the kinds of object the diagram follows were all seen
    assert {PteTable, PmdTable, TablePmd} <= checked
    assert any(issubclass(c, Page) for c in checked)


def test_a_pte_tables_alias_is_the_name_its_pmd_value_prints():
    # powerpc64 and s390 pack tables in a page: slot 0's PMD value prints no slot (table@1)
    for arch in ("x86_64", "powerpc64", "s390"):
        k = _a_run(arch)
        values = [res for _t, _p, eff, res in k.m.trace
                  if eff is not None and type(res) is TablePmd]
        assert values, "the run read no PMD value linking a table"
        tables = _tables_of(k)
        for value in values:
            (pmd_name,) = find_names(repr(value))
            table_names = [n for t in tables if t.pfn == value.pfn for n in aliases(repr(t))]
            assert pmd_name in table_names, (arch, pmd_name, table_names)


def _tables_of(k) -> list:
    seen = []
    for _t, _path, eff, _res in k.m.trace:
        if eff is None:
            continue
        seen.extend(o for o in eff.objects() if isinstance(o, (PteTable, PtPage)))
    return seen


def _function_names() -> set[str]:
    out = set()
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.add(node.name)
    return out


def test_every_declared_plumbing_frame_exists():
    _a_run()  # the modules declaring them are imported
    functions = _function_names()
    assert names.PLUMBING and names.PLUMBING_SUFFIXES
    for name in names.PLUMBING:
        assert name in functions, name
    for suffix in names.PLUMBING_SUFFIXES:
        assert any(f.endswith(suffix) for f in functions), suffix
