"""v2 of "mm: free retracted page table by RCU" as posted on 2023-06-20 (the seed; ``v2``).

The v2 cover letter <54cb04f-3762-987f-8294-91dafd8ebfb0@google.com> lists, per patch, what v2
changed from v1; v3 <7cd843a9-aa80-14f-5eb2-33427363c20@google.com> (merged in 6.6) then
changed only powerpc (05),
s390 (07) and a tidy of patch 10, and added notes (13).  So v2 is the reference with:

* patch 05 (powerpc): the v2 design, a PTE_FREE_DEFERRED bias in pt_frag_refcount and the page's
  rcu_head shared serially (:mod:`pgconform.alt.powerpc_v2`), in place of v3's PageActive;
* patch 07 (s390): the v2 "complete rewrite" as posted (:mod:`pgconform.zoo.s390_v2_posted`):
  HH/PP bits and a global mm_pgtable_list_lock, with the posted pte_free_half() testing the other
  half's H bit without the ``>> 24``, so two halves deferred within one grace period leave the
  second never freed (a known violation below; v3 replaced the design, so it was never fixed);
* patch 10: collapse_pte_mapped_thp() as v2 and v3 posted it, before a98460494b16 (Jann Horn's
  report, fixed in 6.6-rc): step 2 under pte_offset_map_lock(), ptl dropped before step 4, and no
  pml held across in uffd-armed private VMAs (B1, a known violation below).

The kernel around the series is the reference's 6.6 (with its stable fixes, e.g. mremap's
6fa1066fc5d0): the versions differ in the series' own code only.
"""

from __future__ import annotations

from pgconform.alt import powerpc_v2
from pgconform.implementation import Implementation
from pgconform.kernel.arch import arches_except
from pgconform.kernel.mprotect import (
    PLAIN_READ_RACE,
    PLAIN_READ_RACE_CONSEQUENCES,
    PLAIN_READ_RACE_WHY,
)
from pgconform.reference import POISON_KNOWN_CONSEQUENCES, POISON_KNOWN_VIOLATIONS
from pgconform.reference.khugepaged import collapse_pte_mapped_thp_as
from pgconform.zoo import s390_v2_posted

#: the symptoms of a PTE lost with its table: the page's rss, map and reference counts at exit,
#: the data the process reads back, the table's free in the RCU callback
LOST_PTE_CONSEQUENCES = ("pt.free-nonempty", "acct.rss", "acct.mapcount", "acct.refcount",
                         "data.mismatch")

B1_WHY = ("patch 10 as posted (v2 and v3) drops ptl between steps 2 and 4: in a uffd-armed "
          "private VMA, UFFDIO_COPY installs an anon PTE there and step 4 frees the table with "
          "it (B1: Jann Horn's report, fixed by a98460494b16 in 6.6-rc)")


def collapse_pte_mapped_thp(k, mm, addr, install_pmd):
    """mm/khugepaged.c: collapse_pte_mapped_thp() as in v2 10/12 (2023-06-20): the VMA checked
    first and pmdp_get_lockless_sync() after the clear (both new in v2), the mmu_notifier range
    after step 1; step 2 under pte_offset_map_lock(), ptl dropped before step 4 takes pml and the
    old ptl again, whatever the VMA (B1)."""
    return (yield from collapse_pte_mapped_thp_as(k, mm, addr, install_pmd, uffd_pml=False))


IMPLEMENTATION = Implementation(
    name="v2",
    overrides={"collapse_pte_mapped_thp": collapse_pte_mapped_thp},
    arch_overrides={"powerpc64": powerpc_v2.IMPLEMENTATION.overrides,
                    "s390": s390_v2_posted.MUTANT.overrides},
    arches=arches_except("s390-6.7"),  # a 6.7 arch
    known_violations={"pt.free-nonempty@collapse_pte_mapped_thp": B1_WHY,
                      **POISON_KNOWN_VIOLATIONS, PLAIN_READ_RACE: PLAIN_READ_RACE_WHY},
    known_consequences={"pt.free-nonempty@collapse_pte_mapped_thp": LOST_PTE_CONSEQUENCES,
                        **POISON_KNOWN_CONSEQUENCES,
                        PLAIN_READ_RACE: PLAIN_READ_RACE_CONSEQUENCES},
    arch_known_violations={"s390": {
        "pt.leak": "s390 07/12 as posted tests the other half's H bit on atomic_xor_bits()'s "
                   "unshifted result (no >> 24): the second of two halves of a page deferred in "
                   "one grace period is never freed; v3 replaced the design"}},
    description="v2 as posted (2023-06-20): every v1 fix of the v2 changelog; powerpc's "
                "PTE_FREE_DEFERRED bias and s390's HH/PP rewrite (as posted); "
                "collapse_pte_mapped_thp() before a98460494b16",
    source="v2 cover letter <54cb04f-3762-987f-8294-91dafd8ebfb0@google.com>; 05/12 "
           "<5cd9f442-61da-4c3d-eca-b7f44d22aa5f@google.com>; 07/12 "
           "<a722dbec-bd9e-1213-1edd-53cd547aa4f@google.com>; a98460494b16 (B1)",
)
