"""The data oracles: a page reached through a mapping is the right page and holds what was last
written at that address, and folio references never go below zero.

What a read must return is the files' ``content`` and, for anonymous pages, this oracle's shadow of
their private content (:class:`DataOracle`), which follows the events the model announces as the
pages are written, copied, moved and unmapped (kernel/hooks.py ``anon_*``)."""

from __future__ import annotations


class DataOracle:
    """The shadow of the private (COW) content of one world: (mm, addr) -> the value a read of
    the address must return."""

    def __init__(self) -> None:
        self.shadow: dict = {}

    def anon_written(self, mm, addr, value) -> None:
        self.shadow[(mm, addr)] = value

    def anon_dropped(self, mm, addr) -> None:
        self.shadow.pop((mm, addr), None)

    def anon_moved(self, mm, addr, new_mm, new_addr) -> None:
        value = self.shadow.pop((mm, addr), None)
        if value is not None:
            self.shadow[(new_mm, new_addr)] = value


def _expected(k, mm, vma, addr):
    shadow = k.oracles.data.shadow
    key = (mm, addr)
    if key in shadow:
        return shadow[key]
    if vma.file is None:
        return None  # an anonymous VMA's page always has its shadow while mapped
    return vma.file.content[vma.linear_page_index(addr)]


def check_mapping_data(k, t, mm, vma, addr, folio, idx) -> None:
    """A mapped page is the page cache's (for file pages) and reads what was last written at this
    address (file content, or the private anonymous copy)."""
    m = k.m
    if folio.freed:
        m.violation("data.stale-mapping", f"{mm!r} addr {addr} maps {folio!r}, which was freed",
                    t, folio)
    if not folio.anon:
        index = vma.linear_page_index(addr)
        cached = vma.file.pages.get(index)
        if cached is not folio or folio.index + idx != index:
            m.violation("data.stale-mapping", f"{mm!r} addr {addr} maps {folio!r}+{idx}, but the "
                        f"page cache holds {cached!r} at index {index}", t, folio)
    want = _expected(k, mm, vma, addr)
    if folio.data[idx] != want:
        m.violation("data.mismatch", f"{mm!r} addr {addr} reads {folio.data[idx]} through "
                    f"{folio!r}+{idx}, but {want} was last written there", t, folio)


def check_user_access(k, t, mm, vma, addr, write, folio, idx) -> None:
    """The ``user_access`` event: the data a CPU access reaches (before a store changes it)."""
    check_mapping_data(k, t, mm, vma, addr, folio, idx)


def check_refcount_negative(k, folio) -> None:
    """folio_put() took a folio's refcount below zero: a reference dropped twice."""
    k.m.violation("acct.refcount", f"{folio!r} refcount went negative ({folio.refcount})", None,
                  folio)
