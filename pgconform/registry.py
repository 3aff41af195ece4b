"""Named implementations of the series, resolved lazily.

A *spec* names the implementation to judge: either a registered name (``reference``, the versions,
the alternative designs, the zoo's mutants, anything another distribution registers) or
``module:attr``.  Registered names map to ``"module:attr"`` strings; nothing is imported until
:func:`resolve` is asked for one, so a broken mutant cannot break ``--help`` or the listing of the
others.

The list is written once: the ``pgconform.implementations`` entry points (``[project.entry-points]``
of ``pyproject.toml`` for pgconform's own).  The registry reads the entry points of every installed
distribution, with one exception: entry-point metadata is frozen when a distribution is installed,
so when this package runs from a source checkout (a ``pyproject.toml`` of the ``pgconform`` project
next to the package: an editable install, or ``PYTHONPATH`` pointing at another checkout) the
checkout's own table replaces the installed ``pgconform`` distribution's entries.  An installed
wheel has no such file and is read from its metadata alone.  pgconform's own names win over another
distribution's of the same name.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import tomllib
import warnings
from pathlib import Path
from typing import Any

import attrs

from pgconform.implementation import (
    Implementation,
    ImplementationError,
    build_table,
    coerce_implementation,
)

#: The entry-point group through which distributions register implementations.
ENTRY_POINT_GROUP = "pgconform.implementations"
#: the distribution (and ``[project] name``) whose entry points are pgconform's own
DISTRIBUTION = "pgconform"
#: the prefix of the zoo's mutants among the registered names
ZOO_PREFIX = "zoo."


def checkout_pyproject() -> Path:
    """Where a source checkout keeps the project file: next to the ``pgconform`` package."""
    return Path(__file__).resolve().parent.parent / "pyproject.toml"


def _checkout_specs() -> dict[str, str] | None:
    """pgconform's own entry points as the source checkout it runs from declares them (name ->
    ``"module:attr"``), or None when it does not run from one (no ``pyproject.toml`` of the
    ``pgconform`` project next to the package)."""
    path = checkout_pyproject()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    try:
        project = tomllib.loads(text).get("project", {})
    except tomllib.TOMLDecodeError as exc:
        warnings.warn(f"{path} is not valid TOML ({exc}); using the installed entry points",
                      stacklevel=2)
        return None
    if project.get("name") != DISTRIBUTION:
        return None
    table = project.get("entry-points", {}).get(ENTRY_POINT_GROUP, {})
    return {str(name): str(target) for name, target in table.items()}


def _is_own(ep: importlib.metadata.EntryPoint) -> bool:
    dist = getattr(ep, "dist", None)
    return dist is not None and (dist.name or "").lower().replace("_", "-") == DISTRIBUTION


def _entry_point_specs() -> dict[str, str]:
    """Every registered name -> ``"module:attr"``: other distributions' entry points, then
    pgconform's own (the checkout's table if it runs from one, else its installed metadata)."""
    checkout = _checkout_specs()
    others: dict[str, str] = {}
    own: dict[str, str] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if _is_own(ep):
            if checkout is None:
                own.setdefault(ep.name, ep.value)
        else:
            others.setdefault(ep.name, ep.value)
    specs = {**others, **own, **(checkout or {})}
    for name in [name for name in specs if ":" in name]:
        # A spec with a colon is module:attr, so such a name could never be selected.
        warnings.warn(
            f"ignoring entry point {name!r} in {ENTRY_POINT_GROUP}: names may not contain ':'",
            stacklevel=2,
        )
        del specs[name]
    return specs


def registered() -> dict[str, str]:
    """Every registered implementation, name -> ``"module:attr"``, sorted by name."""
    return dict(sorted(_entry_point_specs().items()))


def registered_names() -> list[str]:
    """The names :func:`resolve` accepts besides ``module:attr``, sorted."""
    return list(registered())


def zoo_names() -> list[str]:
    """The zoo's mutants (the registered names under ``zoo.``), sorted."""
    return [name for name in registered() if name.startswith(ZOO_PREFIX)]


def _import_target(spec: str, target: str) -> Any:
    """Import ``module:attr`` (``attr`` may be dotted; a bare module names the module itself)."""
    module_name, _, attr = target.partition(":")
    module_name = module_name.strip()
    attr = attr.strip()
    # Entry-point values may carry extras ("mod:attr [extra]"); they mean nothing here.
    if "[" in attr:
        attr = attr[: attr.index("[")].strip()
    if not module_name:
        raise ImplementationError(f"implementation {spec!r}: {target!r} names no module")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImplementationError(
            f"implementation {spec!r}: cannot import module {module_name!r}: {exc}"
        ) from exc
    except Exception as exc:  # the module raised while importing: report it, do not crash pytest
        raise ImplementationError(
            f"implementation {spec!r}: importing module {module_name!r} raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not attr:
        return obj
    for i, part in enumerate(attr.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            where = ".".join([module_name, *attr.split(".")[:i]])
            raise ImplementationError(
                f"implementation {spec!r}: {where} has no attribute {part!r}"
            ) from None
    return obj


def function_table(impl: Implementation, arch=None):
    """The function table ``k.ops`` of ``impl`` on ``arch`` (an ArchConfig, None: generic): the
    reference's functions on that arch, under ``impl``'s overrides
    (:func:`pgconform.implementation.build_table`).  Filling what an implementation leaves out
    from the reference is this resolution step's job, so that the plug-in interface
    (pgconform.implementation) and the model (pgconform.kernel) need not know the reference."""
    from pgconform.reference import reference_functions

    return build_table(impl, arch, reference_functions(arch))


def resolve(spec: str) -> Implementation:
    """The implementation a spec names: a registered name or ``module:attr``.

    Raises :class:`~pgconform.implementation.ImplementationError` with a message fit for a user:
    an unknown name lists the registered ones; a module that does not import says which and why;
    a missing attribute names it; an object that is not an implementation says what it is.
    """
    spec = spec.strip()
    if not spec:
        raise ImplementationError(
            "empty implementation spec; give a registered name "
            f"({', '.join(registered_names())}) or module:attr"
        )
    if ":" in spec:
        # module:attr.  Registered names never contain a colon, so the entry points are not even
        # read when judging a user's module.
        target = spec
    elif spec in (specs := registered()):
        target = specs[spec]
    else:
        raise ImplementationError(
            f"unknown implementation {spec!r}; registered: {', '.join(specs) or '(none)'}; "
            "or give module:attr"
        )
    obj = _import_target(spec, target)
    impl = coerce_implementation(obj, spec)
    # a table of functions (a mapping, a module) cannot declare anything: it is judged in the
    # kernel around it with that kernel's declared findings; an Implementation declares its own
    return impl if isinstance(obj, Implementation) else with_the_kernels_findings(impl)


def with_the_kernels_findings(impl: Implementation) -> Implementation:
    """``impl`` (a table of functions) with the findings the reference declares in the 6.6
    kernel around it, for the functions ``impl`` does not replace.

    An implementation replaces some functions and runs with the reference's for the rest
    (:func:`function_table`).  A known bug of the reference's own functions (the poison markers
    ``collapse_pte_mapped_thp()`` frees, a plain-read race in ``change_pmd_range()``: each
    declared scoped to its function, ``clause@function``) is then not the implementation's bug,
    and is declared for it too, with its consequences.  A finding in a function it does replace
    is judged: its version may have the bug or not, and it declares what it knows.  Only in the
    reference's kernel (``Implementation.kernel``); a declaration of its own wins."""
    from pgconform.reference import IMPLEMENTATION as REFERENCE

    if impl is REFERENCE or impl.kernel != REFERENCE.kernel:
        return impl
    replaced = set(impl.overrides).union(*(set(o) for o in impl.arch_overrides.values()))
    inherited = {key: why for key, why in REFERENCE.known_violations.items()
                 if key.partition("@")[2] and key.partition("@")[2] not in replaced
                 and key not in impl.known_violations}
    if not inherited:
        return impl
    consequences = {key: REFERENCE.known_consequences[key] for key in inherited
                    if key in REFERENCE.known_consequences}
    return attrs.evolve(impl, known_violations={**inherited, **impl.known_violations},
                        known_consequences={**consequences, **impl.known_consequences})
