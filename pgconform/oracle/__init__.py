"""The oracles, and the one place they are attached to a world.

The kernel model announces events (kernel/hooks.py: a page-table store, a table handed to call_rcu,
a user access, GUP confirming a pin, a promise userfaultfd makes...); :func:`install` subscribes
each oracle to its events when the world is built, before anything in it exists.  The model
imports nothing from here and keeps no oracle state: the userfaultfd and guard-region promises are
this package's (:class:`Oracles`, ``k.oracles``, opaque to the model), as is the shadow of the
anonymous pages' private content.

Modules: ``clauses`` (the catalogue), ``pagetable`` (page-table lifetime, locking, PMD
transitions), ``data`` (content and references), ``vma`` (VMA lifetime), ``secondary`` (secondary
MMUs and GUP), ``uffd`` and ``guard`` (the promises), ``state`` (end of run).
"""

from __future__ import annotations

import attrs

from pgconform.oracle import data, pagetable, secondary, vma
from pgconform.oracle.data import DataOracle
from pgconform.oracle.guard import GuardOracle
from pgconform.oracle.uffd import UffdOracle


@attrs.define(slots=True, eq=False)
class Oracles:
    """The oracles' own state for one world (``k.oracles``)."""

    uffd: UffdOracle
    guard: GuardOracle
    data: DataOracle


def install(k) -> Oracles:
    """Subscribe every oracle to the kernel events of world ``k`` (call before building anything
    in it: the per-object hooks are bound when an object is made).  Returns ``k.oracles``."""
    if k.oracles is not None:
        raise RuntimeError(f"oracles already installed on {k!r}")
    uffd, guard, content = UffdOracle(k), GuardOracle(k), DataOracle()
    k.oracles = Oracles(uffd=uffd, guard=guard, data=content)
    on = k.hooks.register
    # page-table storage and links
    on("pte_store", pagetable.check_pte_store)
    on("pmd_store", pagetable.make_pmd_store_check(k))
    on("pmd_torn_store", pagetable.check_torn_store)
    on("pmd_not_table", pagetable.check_pmd_not_table)
    on("pmd_moved_not_table", pagetable.check_moved_not_table)
    on("table_call_rcu", pagetable.on_table_call_rcu)
    on("page_call_rcu", pagetable.on_page_call_rcu)
    on("table_release", pagetable.check_table_release)
    on("storage_free", pagetable.check_storage_free)
    on("pt_page_free", pagetable.check_free_again)
    on("table_handout", pagetable.check_table_handout)
    on("pt_list_op", pagetable.check_list_op)
    on("mm_find_pmd", pagetable.check_mm_find_pmd)
    on("plain_read_race", pagetable.check_plain_read_race)
    on("assert_pte_locked", pagetable.check_assert_pte_locked)
    # pages and data (a user access: the promises first, then the data)
    on("folio_refcount_negative", data.check_refcount_negative)
    on("user_access", uffd.check_access)
    on("user_access", guard.check_user_access)
    on("user_access", data.check_user_access)
    on("gup_confirm", secondary.check_gup_page)
    on("device_walk", secondary.check_device_table)
    on("device_translation", secondary.check_device_translation)
    on("anon_written", content.anon_written)
    on("anon_dropped", content.anon_dropped)
    on("anon_moved", content.anon_moved)
    # VMAs
    on("vma_free", vma.check_vma_free)
    on("vma_use_after_free", vma.check_vma_use_after_free)
    # the promises
    on("uffd_wp_start", uffd.wp_op_start)
    on("uffd_wp_applied", uffd.wp_applied)
    on("uffd_wp_end", uffd.wp_op_end)
    on("uffd_wp_forget", uffd.forget_wp)
    on("uffd_poison_installed", uffd.poison_installed)
    on("marker_replaced", uffd.marker_replaced)
    on("guard_installed", guard.guard_installed)
    on("guard_removed", guard.guard_removed)
    # series functions judged around every call, the reference's or an implementation's
    from pgconform.reference import ALL_REFERENCE_FUNCTIONS

    for name, judge in pagetable.SERIES_JUDGES.items():
        fn = getattr(k.ops, name)
        setattr(k.ops, name, judge(fn, fn not in ALL_REFERENCE_FUNCTIONS))
    return k.oracles
