"""The architectures, one module per arch (the kernel's ``arch/`` directory it models): each holds
its :class:`~pgconform.kernel.arch.base.ArchConfig` records (``CONFIGS``), with what changed in
later kernel versions, and the arch's own environment code (arm's make_coherent() and
adjust_pte(), powerpc's assert_pte_locked()).  The reference's per-arch functions (pte_alloc_one,
pte_free_defer & co) are in :mod:`pgconform.reference.arch`, found through each record's
``allocator``.

:data:`ARCHES` is the registry every other place derives its arch lists from: the plugin's test
classes, the version matrix, the soak, the versions and mutants (which name the arches they
*exclude*, :func:`arches_except`, or a property, :func:`arches_where`).  A new arch is a module
here, listed in :data:`MODULES`.
"""

from __future__ import annotations

from collections.abc import Callable

from pgconform.kernel.arch import arm, powerpc, s390, sparc, x86
from pgconform.kernel.arch.base import FRAGMENTS, HALVES, PAGE, PAGE_PTE_T, ArchConfig

__all__ = ["ARCHES", "FRAGMENTS", "HALVES", "MODULES", "PAGE", "PAGE_PTE_T", "ArchConfig",
           "arches_except", "arches_where"]

#: the arch modules, in the order of the version matrix's columns (README)
MODULES = (x86, powerpc, s390, sparc, arm)

#: every modelled architecture configuration by name (as in 6.6; ArchConfig.in_version())
ARCHES: dict[str, ArchConfig] = {config.name: config for module in MODULES
                                 for config in module.CONFIGS}


def _known(names) -> None:
    unknown = sorted(set(names) - set(ARCHES))
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not modelled arches; known: {', '.join(ARCHES)}")


def arches_except(*names: str) -> tuple[str, ...]:
    """Every arch but ``names`` (each must be a modelled arch), in registry order: how a version
    or a mutant says where it does not apply, so that a new arch is judged by default."""
    _known(names)
    return tuple(name for name in ARCHES if name not in names)


def arches_where(test: Callable[[ArchConfig], bool], version: str = "6.6") -> tuple[str, ...]:
    """The arches whose configuration in kernel ``version`` passes ``test``, in registry order."""
    return tuple(name for name, config in ARCHES.items() if test(config.in_version(version)))
