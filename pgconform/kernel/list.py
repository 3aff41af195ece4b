"""include/linux/list.h on a page-table page's pt_list (s390's pgtable_list), which its rcu_head
overlays.  Each operation runs inside an Atomic effect (``m``, ``t`` of the running step) and
announces itself, so that the oracles can check that the storage is not in use by a queued
rcu_head and that a page is on at most one list.
"""

from __future__ import annotations


def list_add(m, t, page, lst: list, tail: bool) -> None:
    """list_add()/list_add_tail() of ``page`` through its pt_list."""
    page.hooks.pt_list_op(m, t, page, "list_add_tail" if tail else "list_add")
    if tail:
        lst.append(page)
    else:
        lst.insert(0, page)
    page.on_list = lst


def list_del_init(m, t, page) -> None:
    """list_del_init() of ``page``'s pt_list (a no-op on a page that is on no list)."""
    page.hooks.pt_list_op(m, t, page, "list_del_init")
    if page.on_list is not None:
        page.on_list.remove(page)
        page.on_list = None
