"""CONTRIBUTING.md's code map stays true: every path it names exists, every package of pgconform is
in its table, and the packages import each other in the order its first diagram draws."""

from __future__ import annotations

import pathlib
import re

from tests.selftest.test_layering import MODULES, import_graph

REPO = pathlib.Path(__file__).resolve().parents[2]
MAP = (REPO / "CONTRIBUTING.md").read_text(encoding="utf-8")

#: the layers of the first diagram, bottom first; a package imports only its own layer and those
#: below it
LAYERS = (
    ("sim",),
    ("kernel",),
    ("reference", "versions", "alt", "zoo", "implementation", "registry"),
    ("oracle",),
    ("harness", "strategies"),
    ("report",),
    ("tools",),
    ("plugin", "conformance", "__main__"),
)


def _paths() -> list[str]:
    return sorted({p.rstrip("/") for p in re.findall(r"`((?:pgconform|tests|strategies)/[^`\s]*)`",
                                                     MAP)})


def test_every_path_of_the_map_exists():
    missing = [p for p in _paths() if not (REPO / p).exists()]
    assert _paths(), "the map names no path"
    assert not missing, f"CONTRIBUTING.md names paths that do not exist: {missing}"


def test_every_package_is_on_the_map():
    packages = sorted(p.name for p in (REPO / "pgconform").iterdir()
                      if (p / "__init__.py").exists())
    absent = [p for p in packages if f"`pgconform/{p}/`" not in MAP]
    assert not absent, f"packages missing from CONTRIBUTING.md's table: {absent}"
    layered = {name for layer in LAYERS for name in layer}
    assert not set(packages) - layered, "a package in no layer of LAYERS"


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package itself wires the layers together (pgconform/__init__.py)
    for rank, layer in enumerate(LAYERS):
        if parts[1] in layer:
            return rank
    raise AssertionError(f"{module}: in no layer of LAYERS")


def upward_imports(graph) -> list[str]:
    out = []
    for module, targets in sorted(graph.items()):
        here = _layer(module)
        for target in sorted(targets):
            there = _layer(target)
            if here is not None and there is not None and there > here:
                out.append(f"{module} -> {target}")
    return out


def test_packages_import_downwards_only():
    assert len(MODULES) > 50
    offences = upward_imports(import_graph())
    assert not offences, "imports against the layer order of CONTRIBUTING.md:\n" + "\n".join(
        offences)


def test_an_upward_import_is_seen():
    graph = {"pgconform.kernel.world": {"pgconform.harness.replay"},
             "pgconform.harness.replay": {"pgconform.kernel.world"}}
    assert upward_imports(graph) == ["pgconform.kernel.world -> pgconform.harness.replay"]
