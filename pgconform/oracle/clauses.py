"""Every oracle's stable clause id and its one-line statement.

A violation names its clause; the README's clause table and the conformance summary are built from
this mapping, and a test checks that every clause raised anywhere is listed here.
"""

CLAUSES: dict[str, str] = {
    # page-table lifetime: no use after free, detached tables empty, no reuse before the grace
    # period, pmd_pgtable() only of live tables
    "pt.use-after-free": "No task reads or writes a page table after it was freed (an RCU reader "
                         "may still use a detached table until its grace period ends).",
    "pt.ptlock-use-after-free": "No task takes the ptlock of a page table that was freed.",
    "pt.double-free": "A page table is freed once.",
    "pt.free-linked": "A page table is freed or deferred only after its PMD entry was cleared.",
    "pt.free-nonempty": "A page table is freed or deferred only when all its entries are none "
                        "(no PTE, marker or anon page is thrown away with it), except file PTEs "
                        "left in a table freed at once under mmap_lock for write (6.5).",
    "pt.leak": "At the end of a run every page table is linked or freed.",
    "pt.write-detached": "No PTE is written into a table that is no longer linked from a PMD.",
    "pt.write-unlocked": "A PTE is written only by the holder of that table's ptl.",
    "pt.lock-mismatch": "The ptl a walker takes is the lock of the page table it accesses "
                        "(derived from the same PMD value, never from a re-read of the entry).",
    "pt.assert-pte-locked": "On powerpc with DEBUG_VM, a PTE updated under its ptl is found by "
                            "assert_pte_locked(): the live pmd is none or maps the table, whose "
                            "ptl is locked.",
    "pt.pmd-write-unlocked": "A PMD entry is written only by the holder of pmd_lock(), unless no "
                             "VMA a walker can find (in the mm or a file's i_mmap) covers its "
                             "range any more (free_pgtables()), or the writer holds mmap_lock "
                             "and the i_mmap_rwsem of those VMAs' files for write (6.5).",
    "pt.populate-dead": "pmd_populate() only links a live, unlinked page table.",
    "pt.not-a-table": "A PMD value used as a page table (pmd_page(), pmd_pgtable()) names one: "
                      "it is not none or huge.",
    "pt.walk-without-vma": "A walk down an mm's page tables (mm_find_pmd) is made only with a VMA "
                           "covering the address found under the lock held (mmap_lock, or "
                           "i_mmap_rwsem for a VMA in i_mmap), or under mmap_lock for write: "
                           "only that keeps free_pgtables() off the tables below.",
    "pt.reuse-before-gp": "The storage of a page table unlinked under a live VMA is not freed or "
                          "handed out again until every RCU reader that could have read its PMD "
                          "has left its read-side section.",
    "pt.free-shared-page": "A page shared by several page tables (powerpc fragments, s390 halves) "
                           "is freed only after every table in it was freed.",
    "pt.double-alloc": "An allocator never hands out a page table that is still in use.",
    "pt.list-corrupt": "A page-table page is on at most one pgtable_list.",
    "pt.torn-pmd": "A PMD value read locklessly in two halves (x86 PAE) and used as a page table "
                   "is a value the entry really held, never the halves of two different values.",
    "pt.plain-read-race": "Two plain (not READ_ONCE) reads of a page-table entry that the "
                          "compiler may merge into one load see one value: no other CPU writes "
                          "the entry between them (else it is a data race, which KCSAN "
                          "reports, and one load or two is the compiler's choice; judged when "
                          "plain reads are split, PGCONFORM_PLAIN_READS=split).",
    # secondary MMUs
    "mmu.pmd-clear-unnotified": "A PMD pointing at a page table is cleared only inside an "
                                "mmu_notifier invalidate range covering it, unless no VMA a "
                                "walker can find covers its range any more (free_pgtables()).",
    "mmu.secondary-stale-table": "A secondary MMU walks a page table through a pointer it cached "
                                 "(a paging-structure cache) only while that table is still "
                                 "linked at the PMD it was cached for: the mmu_notifier "
                                 "invalidation around every PMD clear drops the pointer first.",
    "mmu.secondary-stale-translation": "A secondary MMU uses a cached translation (address -> "
                                       "page) only while the CPU page tables still map that page "
                                       "there, and never after the page was freed.",
    # GUP
    "gup.stale-page": "GUP (fast or slow) returns a page only if, at the step that confirms it "
                      "(GUP-fast's PMD and PTE rechecks, slow GUP's read under the ptl), it came "
                      "from a page table still linked, is live, and is what the address maps.",
    # RCU
    "rcu.double-call_rcu": "An rcu_head is not queued again while its callback is pending.",
    "rcu.head-storage-in-use": "The storage an rcu_head overlays (pt_list) is not used by a list "
                               "while the head is queued, and a page still on a list is not "
                               "queued.",
    "rcu.unbalanced": "rcu_read_unlock() matches an rcu_read_lock() (pte_unmap() matches a map).",
    "rcu.held-at-exit": "A task ends outside any RCU read-side section.",
    "rcu.stall": "Every RCU callback eventually runs.",
    # IRQs
    "irq.unbalanced": "Interrupts are re-enabled only by who disabled them.",
    "irq.held-at-exit": "A task ends with interrupts enabled.",
    "irq.ipi-with-irqs-off": "No CPU waits for an IPI with its own interrupts disabled.",
    # locks
    "lock.recursive": "No task takes a lock it already holds.",
    "lock.recursive-class": "Two locks of one lockdep class are nested only with a subclass "
                            "(spin_lock_nested), e.g. ptl inside pml.",
    "lock.order-inversion": "Lock classes are taken in one global order (no lockdep cycle).",
    "lock.unlock-unheld": "A task releases only locks it holds.",
    "lock.held-at-exit": "A task ends holding no lock.",
    "sched.sleep-in-atomic": "Nothing that may sleep runs under a spinlock, with IRQs off, inside "
                             "rcu_read_lock() or in an RCU callback.",
    "sched.deadlock": "The tasks of a run never all wait for each other.",
    "sched.no-progress": "Every operation finishes within the step bound under a fair schedule.",
    # accounting and content (I3)
    "acct.nr_ptes": "mm->nr_ptes equals the number of PTE tables linked in the mm.",
    "acct.rss": "Each mm's rss counters equal the pages its page tables map.",
    "acct.mapcount": "Each folio's mapcount equals the number of entries mapping it.",
    "acct.refcount": "Each folio's refcount equals its page-cache reference plus its mappings.",
    "data.stale-mapping": "A file PTE or PMD maps the folio in the page cache at that index.",
    "data.unmapped-mapping": "No page stays mapped at an address that no VMA covers (munmap "
                             "zaps what it unmaps).",
    "data.mismatch": "Data read through a mapping is what was last written there (file or anon).",
    # userfaultfd promises (oracle/uffd.py)
    "data.uffd-wp-write-unnotified": "No store lands at an address the monitor write-protected "
                                     "(UFFDIO_WRITEPROTECT, not since unprotected) while its VMA "
                                     "is registered for uffd-wp: it faults to the monitor.",
    "data.poison-read": "No access reaches memory at an address poisoned with UFFDIO_POISON "
                        "(until the process zaps or refills it): it gets SIGBUS.",
    "data.uffd-marker-lost": "At the end of a run every address the monitor write-protected "
                             "holds a uffd-wp marker or a uffd-wp PTE, and every poisoned "
                             "address its poison marker, unless a legitimate path removed it.",
    # guard regions (7.0: oracle/guard.py)
    "data.guard-marker-lost": "No access (CPU or GUP) reaches memory at an address guarded "
                              "with MADV_GUARD_INSTALL: it gets SIGSEGV; and at the end of a run "
                              "every guarded address holds its guard marker, unless "
                              "MADV_GUARD_REMOVE or a zap that drops markers (munmap, exit) "
                              "removed it.",
    # VMA lifetime: no use after free, no page-table walk below a range without a VMA
    "vma.free-linked": "A VMA is freed only once no walker can find it: out of its file's i_mmap "
                       "and out of its mm's VMA tree (or the mm is torn down by exit_mmap()).",
    "vma.use-after-free": "No task reads or writes a VMA after it was freed (a walker keeps a VMA "
                          "only while it holds the lock it found it under).",
    # the implementation as code
    "impl.raised": "The implementation does not raise.",
    "impl.bad-yield": "The implementation yields only simulator effects.",
    "impl.bad-return": "Each series function of the implementation takes the kernel's "
                       "arguments, is a generator, and returns what the kernel API returns "
                       "(its type and shape).",
    "impl.bad-value": "The implementation returns and stores only values the kernel's data "
                      "structures can hold (the model does not break on them).",
    "impl.hang": "Every call into the implementation yields an effect or returns within the "
                 "watchdog's time, in CPU time of the process (no endless loop that never "
                 "returns to the simulator).",
    "impl.nondeterministic": "The implementation behaves the same when a schedule is run again "
                             "(no state kept across runs, no randomness).",
}
