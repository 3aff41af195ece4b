"""v1 of "mm: free retracted page table by RCU" as posted on 2023-05-28 (``v1``).

v1 <35e983f5-7ed3-b310-d949-9ae8b130cdab@google.com>, 12 patches on 6.4-rc3.  Every point the v2
changelog <54cb04f-3762-987f-8294-91dafd8ebfb0@google.com> fixed is present; each is a zoo
mutant, and v1 composes them on top of v2's other code (B1 included):

* 02, 09, 10: no pmdp_get_lockless_sync() after clearing a PMD (A10, x86-32 PAE);
* 05 (powerpc): every deferral call_rcu()s the fragment's page rcu_head (A1);
* 07 (s390): call_rcu() on the parent page's rcu_head while the page may be on pgtable_list
  through the same storage (A3);
* 09: retract_page_tables() with no anon_vma / uffd-wp recheck under the ptl (A7, A8) and no
  mmu_notifier range around the PMD clear (A9);
* 10: collapse_pte_mapped_thp() walks the page tables before it checks the VMA (A11).

The v1 patch 10 also placed the mmu_notifier range differently (v2: "moved mmu_notifier after
step 1"); the model keeps v2's place, since the changelog names no bug there.
"""

from __future__ import annotations

from pgconform.implementation import Implementation
from pgconform.reference.khugepaged import collapse_pte_mapped_thp_as, retract_page_tables_as
from pgconform.versions import v2
from pgconform.zoo import a1_powerpc_v1, a3_s390_v1


def _no_recheck(vma) -> bool:
    return False


def retract_page_tables(k, mapping, pgoff):
    """mm/khugepaged.c: retract_page_tables() as in v1 09/12 (2023-05-28): the racy checks only,
    nothing repeated under the ptl, and no mmu_notifier range around the PMD clear."""
    yield from retract_page_tables_as(k, mapping, pgoff, recheck=_no_recheck, notify=False)


def collapse_pte_mapped_thp(k, mm, addr, install_pmd):
    """mm/khugepaged.c: collapse_pte_mapped_thp() as in v1 10/12: the 6.5 order,
    find_pmd_or_thp_or_none() before the VMA is looked up, under mmap_lock for read only; then as
    v2 (ptl dropped between steps 2 and 4, B1)."""
    return (yield from collapse_pte_mapped_thp_as(k, mm, addr, install_pmd, vma_first=False,
                                                  uffd_pml=False))


def pmdp_get_lockless_sync(k):
    """v1 had no pmdp_get_lockless_sync() (v2 02/12 added it "to issue missing interrupt if
    PAE"): nothing after a PMD clear."""
    return
    yield


IMPLEMENTATION = Implementation(
    name="v1",
    overrides={"retract_page_tables": retract_page_tables,
               "collapse_pte_mapped_thp": collapse_pte_mapped_thp,
               "pmdp_get_lockless_sync": pmdp_get_lockless_sync},
    arch_overrides={"powerpc64": a1_powerpc_v1.MUTANT.overrides,
                    "s390": a3_s390_v1.MUTANT.overrides},
    arches=v2.IMPLEMENTATION.arches,
    known_violations=v2.IMPLEMENTATION.known_violations,
    known_consequences=v2.IMPLEMENTATION.known_consequences,
    description="v1 as posted (2023-05-28): no rechecks under ptl and no PMD notifier in "
                "retract, page tables walked before the VMA check in collapse, no "
                "pmdp_get_lockless_sync(), powerpc and s390 rcu_head misuse",
    source="v1 cover letter <35e983f5-7ed3-b310-d949-9ae8b130cdab@google.com>; v2 changelog "
           "<54cb04f-3762-987f-8294-91dafd8ebfb0@google.com>",
)

#: v2 changelog item -> (zoo mutant it is, the clauses v1 must fail with, the arches it shows on)
CHANGELOG = {
    "09: repeat checks under ptl because UFFD (anon_vma)": (
        "zoo.retract_no_anon_vma_recheck", ("pt.free-nonempty", "acct.rss", "data.mismatch")),
    "09: repeat checks under ptl because UFFD (uffd-wp)": (
        "zoo.retract_no_uffd_wp_recheck",
        ("pt.free-nonempty", "data.uffd-marker-lost", "data.uffd-wp-write-unnotified")),
    "09: bring back mmu_notifier calls for PMD": (
        "zoo.retract_no_pmd_notifier", ("mmu.pmd-clear-unnotified", "mmu.secondary-stale-table")),
    "02/09/10: pmdp_get_lockless_sync() to issue missing interrupt if PAE": (
        "zoo.pae_no_pmdp_get_lockless_sync", ("pt.torn-pmd",)),
    "10: first check VMA, in case page tables torn down": (
        "zoo.collapse_walk_before_vma_check", ("pt.walk-without-vma",)),
    "05: powerpc, fix rcu_head usage to cope with concurrent deferrals": (
        "zoo.powerpc_v1_rcu_per_fragment", ("rcu.double-call_rcu",)),
    "07: s390, complete rewrite (rcu_head overlaying lru on pgtable_list)": (
        "zoo.s390_v1_rcu_head_on_list", ("rcu.head-storage-in-use", "rcu.double-call_rcu")),
}
