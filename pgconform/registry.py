"""Named implementations of the series, resolved lazily.

A *spec* names the implementation to judge: either a registered name (``reference``, the zoo's
mutants, anything another distribution registers in the ``pgconform.implementations`` entry-point
group) or ``module:attr``.  Registered names map to ``"module:attr"`` strings; nothing is imported
until :func:`resolve` is asked for one, so a broken mutant cannot break ``--help`` or the listing of
the others.

Where the names come from, later sources winning:

1. the ``pgconform.implementations`` entry points of every installed distribution;
2. :data:`BUILTIN`: the reference, and the zoo's mutants as listed by ``pgconform.zoo.MUTANTS``
   (falling back to the literal zoo names below while that module does not provide it).

The source tree wins over entry points because entry-point metadata is frozen when a distribution
is installed: after an editable install, the zoo's own list is the fresher one.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import warnings
from typing import Any

from pgconform.implementation import Implementation, ImplementationError, coerce_implementation

#: The entry-point group through which distributions register implementations.
ENTRY_POINT_GROUP = "pgconform.implementations"

#: The implementations shipped with pgconform, name -> ``"module:attr"``.  The zoo entries are the
#: fallback used while ``pgconform.zoo.MUTANTS`` is not available; see :func:`builtin_specs`.
BUILTIN: dict[str, str] = {
    "reference": "pgconform.reference:IMPLEMENTATION",
    "alt.powerpc-v2": "pgconform.alt.powerpc_v2:IMPLEMENTATION",
    "alt.s390-v2": "pgconform.alt.s390_v2:IMPLEMENTATION",
    "v6.5": "pgconform.versions.v6_5:IMPLEMENTATION",
    "v1": "pgconform.versions.v1:IMPLEMENTATION",
    "v2": "pgconform.versions.v2:IMPLEMENTATION",
    "v6.6": "pgconform.versions.v6_6:IMPLEMENTATION",
    "v7.0": "pgconform.versions.v7_0:IMPLEMENTATION",
    "zoo.retract_pte_free_immediate": "pgconform.zoo.a0_pte_free_immediate:MUTANT",
    "zoo.pte_offset_map_no_rcu": "pgconform.zoo.a0p_no_rcu_read_lock:MUTANT",
    "zoo.pte_offset_map_lock_no_pmd_same": "pgconform.zoo.a15_no_pmd_same:MUTANT",
    "zoo.powerpc_v1_rcu_per_fragment": "pgconform.zoo.a1_powerpc_v1:MUTANT",
    "zoo.s390_v1_rcu_head_on_list": "pgconform.zoo.a3_s390_v1:MUTANT",
    "zoo.pae_no_pmdp_get_lockless_sync": "pgconform.zoo.a10_pae_no_sync:MUTANT",
    "zoo.pte_lockptr_from_reread_pmd": "pgconform.zoo.a14_ptl_from_reread_pmd:MUTANT",
    "zoo.s390_v2_as_posted": "pgconform.zoo.s390_v2_posted:MUTANT",
    "zoo.retract_no_anon_vma_recheck": "pgconform.zoo.a7_retract_no_anon_vma_recheck:MUTANT",
    "zoo.retract_no_uffd_wp_recheck": "pgconform.zoo.a8_retract_no_uffd_wp_recheck:MUTANT",
    "zoo.collapse_walk_before_vma_check": "pgconform.zoo.a11_collapse_walk_before_vma:MUTANT",
    "zoo.collapse_pte_mapped_thp_uffd_window": "pgconform.zoo.b1_collapse_uffd_no_pml:MUTANT",
    "zoo.move_normal_pmd_no_recheck": "pgconform.zoo.cve_2024_50066_move_normal_pmd:MUTANT",
    "zoo.retract_no_pmd_notifier": "pgconform.zoo.a9_retract_no_pmd_notifier:MUTANT",
    "zoo.v7_retract_no_pmd_state_recheck": "pgconform.zoo.v7_retract_no_pmd_state_recheck:MUTANT",
}

_ZOO_PREFIX = "zoo."


def _zoo_specs() -> dict[str, str] | None:
    """``pgconform.zoo.MUTANTS`` (name -> ``"module:attr"``), or None if the zoo lacks it."""
    try:
        zoo = importlib.import_module("pgconform.zoo")
    except ModuleNotFoundError as exc:
        if exc.name in ("pgconform.zoo", "pgconform"):
            return None
        warnings.warn(
            f"pgconform.zoo does not import ({exc}); using the built-in list of mutants",
            stacklevel=2,
        )
        return None
    except Exception as exc:  # a broken zoo must not hide the reference or third-party entries
        warnings.warn(
            f"pgconform.zoo does not import ({type(exc).__name__}: {exc}); "
            "using the built-in list of mutants",
            stacklevel=2,
        )
        return None
    mutants = getattr(zoo, "MUTANTS", None)
    if mutants is None:
        return None
    return {str(name): str(target) for name, target in dict(mutants).items()}


def builtin_specs() -> dict[str, str]:
    """The implementations shipped with pgconform (reference and zoo), name -> ``module:attr``."""
    specs = {name: target for name, target in BUILTIN.items() if not name.startswith(_ZOO_PREFIX)}
    zoo = _zoo_specs()
    if zoo is None:
        zoo = {name: target for name, target in BUILTIN.items() if name.startswith(_ZOO_PREFIX)}
    specs.update(zoo)
    return specs


def _entry_point_specs() -> dict[str, str]:
    specs: dict[str, str] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ":" in ep.name:
            # A spec with a colon is module:attr, so such a name could never be selected.
            warnings.warn(
                f"ignoring entry point {ep.name!r} in {ENTRY_POINT_GROUP}: "
                "names may not contain ':'",
                stacklevel=2,
            )
            continue
        specs.setdefault(ep.name, ep.value)
    return specs


def registered() -> dict[str, str]:
    """Every registered implementation, name -> ``"module:attr"``, sorted by name."""
    specs = _entry_point_specs()
    specs.update(builtin_specs())
    return dict(sorted(specs.items()))


def registered_names() -> list[str]:
    """The names :func:`resolve` accepts besides ``module:attr``, sorted."""
    return list(registered())


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
        # module:attr.  Registered names never contain a colon, so the registry (and with it the
        # zoo) is not even imported when judging a user's module.
        target = spec
    elif spec in (specs := registered()):
        target = specs[spec]
    else:
        raise ImplementationError(
            f"unknown implementation {spec!r}; registered: {', '.join(specs) or '(none)'}; "
            "or give module:attr"
        )
    obj = _import_target(spec, target)
    return coerce_implementation(obj, spec)
