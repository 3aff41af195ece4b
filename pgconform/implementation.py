"""The plug-in interface: an implementation of the series is a table of functions keyed by kernel
name.

An :class:`Implementation` overrides any subset of :data:`SERIES_FUNCTIONS`; every function it does
not define comes from the reference.  This module does not know the reference: the resolution step
above it (:func:`pgconform.registry.function_table`) hands :func:`build_table` the reference's
functions as the base.  The environment actors never call a series function directly: they go
through the table built by :func:`build_table`, so a plugged ``pte_offset_map_lock`` is the one
that faults, zap and rmap walkers use.

Every series function takes the kernel context ``k`` first (``k.ops`` is the table, ``k.arch`` the
architecture config) and is a generator: it yields simulator effects and ``return``s its result, so
callers compose with ``yield from k.ops.NAME(k, ...)``.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from pgconform.sim.names import plumbing

#: the parameterised variants a series function of the reference or a kernel version dispatches
#: to (``retract_page_tables_as``: the same function with its knobs as arguments) are plumbing: a
#: call path shows the series function
plumbing(suffix="_as")

#: The functions of the series (and the helpers they are built from) that an implementation may
#: override, by kernel name.  The reference module that defines each is given for orientation.
SERIES_FUNCTIONS: dict[str, str] = {
    # include/linux/pgtable.h, mm/pgtable-generic.c
    "pmdp_get_lockless": "pgtable_generic",
    "pmdp_get_lockless_start": "pgtable_generic",
    "pmdp_get_lockless_end": "pgtable_generic",
    "pmdp_get_lockless_sync": "pgtable_generic",
    "__pte_offset_map": "pgtable_generic",
    "pte_offset_map": "pgtable_generic",
    "pte_offset_map_lock": "pgtable_generic",
    "pte_offset_map_nolock": "pgtable_generic",
    "pte_offset_map_ro_nolock": "pgtable_generic",   # 6.13+
    "pte_offset_map_rw_nolock": "pgtable_generic",   # 6.13+
    "pte_unmap": "pgtable_generic",
    "pte_unmap_unlock": "pgtable_generic",
    "pmdp_collapse_flush": "pgtable_generic",
    "pte_free_defer": "pgtable_generic",
    "pte_free_now": "pgtable_generic",
    # page-table allocation: include/asm-generic/pgalloc.h or the arch's own (reference/arch/)
    "pte_alloc_one": "arch",
    "pte_free": "arch",
    # arch/powerpc/mm/pgtable-frag.c
    "pte_fragment_alloc": "arch",
    "pte_fragment_free": "arch",
    # arch/s390/mm/pgalloc.c
    "page_table_alloc": "arch",
    "page_table_free": "arch",
    "page_table_free_rcu": "arch",
    # freeing through the mmu_gather: the arch's __pte_free_tlb (s390: pte_free_tlb) and the
    # __tlb_remove_table its RCU table batch ends in (mm/mmu_gather.c callers, kernel/mmu_gather.py)
    "__pte_free_tlb": "arch",
    "__tlb_remove_table": "arch",
    # include/linux/mm.h
    "pmd_lockptr": "mm",
    "pmd_lock": "mm",
    "pte_lockptr": "mm",
    # mm/khugepaged.c
    "find_pmd_or_thp_or_none": "khugepaged",
    "hpage_collapse_test_exit": "khugepaged",
    "retract_page_tables": "khugepaged",
    "collapse_file": "khugepaged",
    "collapse_pte_mapped_thp": "khugepaged",
    # mm/khugepaged.c: the callers of collapse_file() and collapse_pte_mapped_thp(), which changed
    # with the series (patch 11: no deferred list) and so belong to an implementation
    "khugepaged_scan_mm_slot": "khugepaged",
    "madvise_collapse": "khugepaged",
    # mm/mremap.c: moves a whole PTE table without its ptl; raced retract in 6.6.0
    # (CVE-2024-50066, fixed by 6fa1066fc5d0 with "Fixes:" patch 09)
    "move_normal_pmd": "mremap",
    # mm/userfaultfd.c (6.8+, 7.0 environment only): UFFDIO_MOVE of one page; its pmd_same()
    # recheck of the destination (dd95d2782a25) is what PT reclaim needs
    "move_pages_pte": "userfaultfd",
    # the protocol's users outside the series, whose real bugs lived where an implementation
    # could not replace them before:
    # mm/gup.c: GUP-fast's walk of one PTE table and its PMD and PTE rechecks (70cbc3cc78a9)
    "gup_pte_range": "gup",
    # arch/arm/mm/fault-armv.c: the walk to a shared alias and its locking (patch 03,
    # de2e4626c706; 7.0's pmd_same() recheck under split ptlocks)
    "adjust_pte": "arm",
    # mm/userfaultfd.c: the head of the mfill ioctls, which allocates the destination's PTE table
    # and must re-read the PMD after it (71c186efc1b2, 4828d207dc51)
    "mfill_atomic": "userfaultfd",
    # mm/memory.c (7.0; 6.14: mm/pt_reclaim.c): zap_pte_range()'s reclaim of the PTE table it
    # emptied, under the ptl it still holds (fast) or after dropping it (slow, which must look
    # at every entry again)
    "zap_empty_pte_table": "memory",
    "zap_pte_table_if_empty": "memory",
    # mm/mprotect.c: change_pmd_range(), whose change_pmd_prepare() and pmd_none() test read the
    # PMD twice with plain reads
    "change_pmd_range": "mprotect",
}


class ImplementationError(Exception):
    """An implementation specification that cannot be used (unknown function names, wrong type)."""


@attrs.define(frozen=True)
class Implementation:
    """A named implementation of the series: ``overrides`` maps kernel names to generator functions.

    ``expected`` is for mutants: the clause ids one of which the suite must report when judging it.
    ``arches`` restricts the architectures the implementation claims to support (empty: all).
    """

    name: str
    overrides: Mapping[str, Callable[..., Any]] = attrs.field(factory=dict)
    description: str = ""
    source: str = ""
    expected: tuple[str, ...] = ()
    arches: tuple[str, ...] = ()
    #: clause -> why: violations this implementation is known to commit (a real bug of the kernel
    #: version it models), which are counted instead of failing the run, so that the rest of its
    #: behaviour is still judged.  Only for clauses after which the model can go on.  A key is a
    #: clause, or ``clause@function``: only when that kernel function is on the call path of the
    #: task that commits it (so that the same clause elsewhere still fails).
    known_violations: Mapping[str, str] = attrs.field(factory=dict)
    #: known-violation key -> the clauses its later symptoms violate, tolerated for the rest of a
    #: run once the known violation happened in it (a lost PTE's rss count at exit)
    known_consequences: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    #: arch name -> known violations on that arch only (an arch's own code with a known bug)
    arch_known_violations: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict)
    #: arch name -> overrides on that arch only, over ``overrides`` (an arch's own definition,
    #: as powerpc's and s390's pte_free_defer() in patches 05 and 07)
    arch_overrides: Mapping[str, Mapping[str, Callable[..., Any]]] = attrs.field(factory=dict)
    #: the kernel version whose environment the implementation is written for: a key of
    #: pgconform.kernel.version.VERSIONS (callers, other actors, arch configurations)
    kernel: str = "6.6"

    def __attrs_post_init__(self) -> None:
        from pgconform.kernel.arch import ARCHES
        from pgconform.kernel.version import VERSIONS

        if self.kernel not in VERSIONS:
            raise ImplementationError(
                f"implementation {self.name!r}: kernel {self.kernel!r} is not a modelled kernel "
                f"version; known: {', '.join(VERSIONS)}")
        # a misspelt arch would make every item skip (arches) or the table apply nowhere
        for field, names in (("arches", self.arches), ("arch_overrides", self.arch_overrides),
                             ("arch_known_violations", self.arch_known_violations)):
            unknown_arches = sorted(set(names) - set(ARCHES))
            if unknown_arches:
                raise ImplementationError(
                    f"implementation {self.name!r}: {field} names {', '.join(unknown_arches)}, "
                    f"which are not modelled arches; known: {', '.join(ARCHES)}")
        for where, table in (("", self.overrides),
                             *((f" on {a}", t) for a, t in self.arch_overrides.items())):
            unknown = sorted(set(table) - set(SERIES_FUNCTIONS))
            if unknown:
                raise ImplementationError(
                    f"implementation {self.name!r} overrides {', '.join(unknown)}{where}, which "
                    f"are not series functions; known: {', '.join(sorted(SERIES_FUNCTIONS))}"
                )
            for fname, fn in table.items():
                if not callable(fn):
                    raise ImplementationError(
                        f"implementation {self.name!r}: {fname}{where} is {type(fn).__name__}, "
                        "not a function"
                    )

    def known_violations_on(self, arch: str) -> dict[str, str]:
        """The known violations on ``arch``: the common ones, then that arch's own."""
        return {**self.known_violations, **self.arch_known_violations.get(arch, {})}

    def overrides_on(self, arch: str | None) -> dict[str, Callable[..., Any]]:
        """The overrides in force on ``arch``: the common ones, then that arch's own."""
        table = dict(self.overrides)
        if arch is not None:
            table.update(self.arch_overrides.get(arch, {}))
        return table


def coerce_implementation(obj: Any, name: str) -> Implementation:
    """Turn what a ``module:attr`` spec names into an :class:`Implementation`.

    Accepted: an :class:`Implementation`; a mapping of kernel name to function; a module (or any
    namespace) whose attributes named like series functions are taken as overrides.  Anything else
    is an :class:`ImplementationError` naming what it got.
    """
    if isinstance(obj, Implementation):
        return obj
    if isinstance(obj, Mapping):
        return Implementation(name=name, overrides=dict(obj))
    if isinstance(obj, types.ModuleType):
        overrides = {fname: getattr(obj, fname) for fname in SERIES_FUNCTIONS
                     if hasattr(obj, fname)}
        if not overrides:
            raise ImplementationError(
                f"{name} is a module that defines none of the series functions "
                f"({', '.join(sorted(SERIES_FUNCTIONS))}); it is not a pgconform implementation"
            )
        return Implementation(name=name, overrides=overrides, description=obj.__doc__ or "")
    raise ImplementationError(
        f"{name} is a {type(obj).__name__}, not a pgconform implementation "
        "(expected an Implementation, a dict of series functions, or a module defining some)"
    )


@functools.cache
def return_checks() -> dict[str, tuple[str, Callable[[Any], bool]]]:
    """For the series functions whose result the model uses: what the kernel API returns (as
    the model represents it) and a test of a result.  An override returning anything else gets an
    ``impl.bad-return`` verdict where it returns, instead of crashing the model later."""
    from pgconform.kernel.objects import HugePmd, PmdPtr, PtePtr, PteTable, TablePmd, TornPmd
    from pgconform.sim.sync import Spinlock

    pmd_types = (type(None), TablePmd, HugePmd, TornPmd)

    def pmd(r):
        return isinstance(r, pmd_types)

    def pair(first, second):
        return lambda r: type(r) is tuple and len(r) == 2 and first(r[0]) and second(r[1])

    def pte(r):
        return r is None or isinstance(r, PtePtr)

    def ptl(r):
        return isinstance(r, Spinlock)

    def table(r):
        return r is None or isinstance(r, (PteTable, PtePtr))

    def scan(r):
        return isinstance(r, str) and r.startswith("SCAN_")

    def table_pmd_or_none(r):
        return r is None or type(r) is TablePmd

    pmd_value = "a pmd value (None, a table or a huge PMD)"
    return {
        "pmdp_get_lockless": (pmd_value, pmd),
        "pmdp_collapse_flush": (pmd_value, pmd),
        "__pte_offset_map": ("(pte_t * or None, the pmd value read)", pair(pte, pmd)),
        "pte_offset_map": ("a pte_t * or None", pte),
        "pte_offset_map_nolock": ("(pte_t * or None, spinlock_t * or None)",
                                  pair(pte, lambda r: r is None or ptl(r))),
        "pte_offset_map_ro_nolock": ("(pte_t * or None, spinlock_t * or None)",
                                     pair(pte, lambda r: r is None or ptl(r))),
        "pte_offset_map_rw_nolock": (
            "(pte_t * or None, the pmd value read, spinlock_t * or None)",
            lambda r: type(r) is tuple and len(r) == 3 and pte(r[0]) and pmd(r[1])
            and (r[2] is None or ptl(r[2]))),
        "pte_offset_map_lock": ("(pte_t * or None, spinlock_t * or None)",
                                pair(pte, lambda r: r is None or ptl(r))),
        "pmd_lockptr": ("a spinlock_t *", ptl),
        "pmd_lock": ("a spinlock_t *", ptl),
        "pte_lockptr": ("a spinlock_t *", ptl),
        "pte_alloc_one": ("a page table (pgtable_t or its pte_t *) or None", table),
        "pte_fragment_alloc": ("a page table (its pte_t *) or None", table),
        "page_table_alloc": ("a page table (its pte_t *) or None", table),
        "find_pmd_or_thp_or_none": ("(a SCAN_* result, pmd_t * or None)",
                                    pair(scan, lambda r: r is None or isinstance(r, PmdPtr))),
        "hpage_collapse_test_exit": ("a bool", lambda r: isinstance(r, bool)),
        "collapse_file": ("a SCAN_* result", scan),
        "collapse_pte_mapped_thp": ("a SCAN_* result", scan),
        "move_normal_pmd": ("a bool", lambda r: isinstance(r, bool)),
        "move_pages_pte": ("the pages moved (an int > 0) or an errno string",
                           lambda r: (type(r) is int and r > 0) or type(r) is str),
        "gup_pte_range": ("1 (the whole range got) or 0", lambda r: type(r) is int and r in (0, 1)),
        "adjust_pte": ("1 (the alias PTE was present) or 0",
                       lambda r: type(r) is int and r in (0, 1)),
        "mfill_atomic": ("0 or an errno string", lambda r: (type(r) is int and r == 0)
                         or type(r) is str),
        "zap_empty_pte_table": ("the PMD value cleared (a table), or None", table_pmd_or_none),
        "zap_pte_table_if_empty": ("the PMD value cleared (a table), or None",
                                   table_pmd_or_none),
        "change_pmd_range": ("the number of pages changed (an int >= 0)",
                             lambda r: type(r) is int and r >= 0),
    }


def checked(name: str, fn: Callable[..., Any], check=None) -> Callable[..., Any]:
    """``fn`` (an implementation's ``name``) as the model calls it: a call it cannot take, a
    result that is not a generator, or a returned value ``check`` rejects is an
    ``impl.bad-return`` verdict (ImplementationErrored) raised in the calling task."""
    from pgconform.sim.errors import ImplementationErrored

    @plumbing
    def checked_call(k, *args, **kwargs):
        try:
            gen = fn(k, *args, **kwargs)
        except TypeError as e:
            if e.__traceback__ is not None and e.__traceback__.tb_next is None:
                raise ImplementationErrored(
                    "impl.bad-return", f"{name} cannot be called as the kernel calls it "
                    f"({len(args) + 1} arguments): {e}") from None
            raise
        if not isinstance(gen, types.GeneratorType):
            raise ImplementationErrored(
                "impl.bad-return", f"{name} returned {gen!r} when called, not a generator: a "
                "series function yields simulator effects and returns its result (it needs a "
                "yield)")
        result = yield from gen
        if check is not None and not check[1](result):
            raise ImplementationErrored(
                "impl.bad-return", f"{name} returned {result!r} ({type(result).__name__}); "
                f"the kernel API returns {check[0]}")
        return result

    checked_call.__wrapped__ = fn  # the implementation's own code
    checked_call.__name__ = checked_call.__qualname__ = name
    # a call path names the kernel function the model called (``clause@function`` known
    # violations, the diagram), whatever the Python name of the implementation's function
    checked_call.__code__ = checked_call.__code__.replace(co_name=name, co_qualname=name)
    return checked_call


def build_table(impl: Implementation, arch, base: Mapping[str, Callable[..., Any]]
                ) -> types.SimpleNamespace:
    """The function table the model calls through: ``base``, the function of every series name
    on ``arch`` (the reference's: the generic functions, replaced by the arch's own where it has
    them, as ``#define pte_free_defer`` does in the kernel), with ``impl``'s overrides on top,
    each behind :func:`checked`.  (The oracles that judge some series functions around every
    call, whoever defines them, wrap them when they are installed on the world:
    :func:`pgconform.oracle.install`.)"""

    table = dict(base)
    overrides = impl.overrides_on(arch.name if arch is not None else None)
    if overrides:
        checks = return_checks()
        table.update({name: checked(name, fn, checks.get(name))
                      for name, fn in overrides.items()})
    return types.SimpleNamespace(**table)
