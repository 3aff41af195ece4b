"""The oracle call sites of the kernel model: named events the model announces, like the kernel's
own KASAN and lockdep hooks, to which the oracles (``pgconform/oracle/``) subscribe when a world is
built (:func:`pgconform.oracle.install`).

The model never imports a check and keeps no oracle state: at each point where an oracle must look
(a store to a page table, a table handed to call_rcu, a user access through the live page tables,
GUP confirming a pin, userfaultfd making or withdrawing a promise...) it calls
``k.hooks.<event>(...)``.  What an event means, and its arguments, is the table :data:`EVENTS`.

On the hot path an event is one attribute read and one call: each event attribute is the single
subscriber itself, a fan-out over the tuple of subscribers, or a no-op (nobody listens).  Per-object
hooks the engine calls itself (``Page.check_store``, ``on_call_rcu``) are bound to the event's
callable when the object is made, so oracles are installed before anything is built.
"""

from __future__ import annotations

#: event -> its arguments (the model calls ``k.hooks.<event>(*args)`` at that point)
EVENTS: dict[str, str] = {
    # page-table storage and links (the store hooks run inside the Store effect, before it lands)
    "pte_store": "(m, t, table, idx, value): a PTE is written",
    "pmd_store": "(m, t, pmdtable, idx, value): a PMD entry changes value",
    "pmd_torn_store": "(m, t, pmdtable, idx, lo, hi): a PAE half store leaves a torn PMD",
    "pmd_not_table": "(m, t, pmdval): a PMD value that names no table is used as one",
    "pmd_moved_not_table": "(m, t, new_pmd, pmdval): mremap links a non-table PMD value",
    "table_call_rcu": "(m, t, table): a PTE table's rcu_head is queued",
    "page_call_rcu": "(m, t, page): a shared page-table page's rcu_head is queued",
    "table_release": "(m, t, table, how): a PTE table is given back (call_rcu, free, dtor)",
    "storage_free": "(m, t, storage, tables): the page holding ``tables`` is freed",
    "pt_page_free": "(m, t, storage): a page-table page whose dtor ran is freed (not twice)",
    "table_handout": "(m, t, old): the storage of table ``old`` is handed out as a new table",
    "pt_list_op": "(m, t, page, op): list_add/list_add_tail/list_del_init of a page's pt_list",
    "mm_find_pmd": "(m, t, k, mm, addr): a walk down to the PMD of ``addr``",
    "plain_read_race": "(m, t, pmdp, first, second, where): two plain reads differ",
    "assert_pte_locked": "(k, t, mm, addr, pmdp, pte, ptl, locked): powerpc DEBUG_VM's check "
                         "(locked None: after the map, else assert_spin_locked()'s result)",
    # pages and data
    "folio_refcount_negative": "(k, folio): folio_put() took the refcount below zero",
    "user_access": "(k, t, mm, vma, addr, write, folio, idx): the MMU lets an access through",
    "gup_confirm": "(k, t, mm, addr, table, folio, idx, pmd_confirmed): GUP confirms a pin",
    "device_walk": "(k, t, smmu, pmd_idx, table): a secondary MMU walks a cached table pointer",
    "device_translation": "(k, t, smmu, addr, folio, idx): a secondary MMU uses a cached entry",
    # the private content of anonymous pages (what a read of the address must return)
    "anon_written": "(mm, addr, value): the anonymous page mapped at ``addr`` now holds ``value``",
    "anon_dropped": "(mm, addr): the anonymous page at ``addr`` is unmapped (its content gone)",
    "anon_moved": "(mm, addr, new_mm, new_addr): an anonymous page's PTE moved with its content",
    # VMAs
    "vma_free": "(m, t, vma): vm_area_free()",
    "vma_use_after_free": "(m, t, vma, what, freer): a field of a freed VMA is touched",
    # the promises userfaultfd and guard regions make to a process
    "uffd_wp_start": "(mm, token, start, end, protect): a UFFDIO_WRITEPROTECT begins",
    "uffd_wp_applied": "(mm, token, vma): it found ``vma`` registered for WP (under mmap_lock)",
    "uffd_wp_end": "(mm, token, start, end, protect): it returns",
    "uffd_wp_forget": "(mm, start, end): write protection ends (unregister, re-register)",
    "uffd_poison_installed": "(vma, addr): UFFDIO_POISON stored its marker",
    "marker_replaced": "(mm, addr): a uffd-wp or poison marker was legitimately removed",
    "guard_installed": "(vma, addr): MADV_GUARD_INSTALL stored a guard marker",
    "guard_removed": "(mm, addr): a guard marker was legitimately removed",
}


def _nop(*args) -> None:
    return None


def _fan_out(subscribers: tuple):
    """One callable calling each of ``subscribers`` in turn (unrolled for two and three: the user
    access has three)."""
    if len(subscribers) == 2:
        first, second = subscribers

        def announce(*args) -> None:
            first(*args)
            second(*args)
    elif len(subscribers) == 3:
        first, second, third = subscribers

        def announce(*args) -> None:
            first(*args)
            second(*args)
            third(*args)
    else:
        def announce(*args) -> None:
            for fn in subscribers:
                fn(*args)

    return announce


class Hooks:
    """The event attributes of one world (see :data:`EVENTS`): each is a no-op (the class's)
    until an oracle subscribes."""

    def __init__(self) -> None:
        self._subscribers: dict[str, tuple] = {}

    def register(self, event: str, fn) -> None:
        """Subscribe ``fn`` to ``event``; it is called after the subscribers before it."""
        if event not in EVENTS:
            raise ValueError(f"unknown kernel event {event!r} (kernel/hooks.py EVENTS)")
        subs = self._subscribers.get(event, ()) + (fn,)
        self._subscribers[event] = subs
        setattr(self, event, fn if len(subs) == 1 else _fan_out(subs))

    def subscribers(self, event: str) -> tuple:
        return self._subscribers.get(event, ())

    def store_hook(self, event: str):
        """The callable for a page's ``check_store`` (None when nobody listens: the engine skips
        the call)."""
        return getattr(self, event) if self._subscribers.get(event) else None


for _event in EVENTS:
    setattr(Hooks, _event, staticmethod(_nop))
del _event
