"""End-of-run oracles: once every operation has finished under a fair schedule and every RCU
callback has run, the page tables, counters, folios and data must agree (rss and nr_ptes as
check_mm() in kernel/fork.c checks them at exit: "BUG: Bad rss-counter state").
"""

from __future__ import annotations

from pgconform.kernel.filemap import mm_counter
from pgconform.kernel.objects import HugePmd, TablePmd, pte_present
from pgconform.oracle.data import check_mapping_data
from pgconform.oracle.pagetable import check_no_leaks


def mappings(k):
    """Every live mapping: (mm, addr, folio, subpage, is_pmd)."""
    geo = k.geo
    for mm in k.mms:
        for i, pmdv in enumerate(mm.pmd_table.entries):
            if type(pmdv) is HugePmd:
                yield mm, i * geo.ptrs_per_pte, pmdv.folio, None, True
            elif type(pmdv) is TablePmd:
                table = k.pmd_table(pmdv)
                for j, ent in enumerate(table.entries):
                    if pte_present(ent):
                        yield mm, i * geo.ptrs_per_pte + j, ent.folio, ent.idx, False


def check_end_state(k) -> None:
    m = k.m
    check_no_leaks(k)
    for mm in k.mms:
        linked = sum(1 for v in mm.pmd_table.entries if type(v) is TablePmd)
        if mm.nr_ptes != linked:
            m.violation("acct.nr_ptes", f"{mm!r}->nr_ptes is {mm.nr_ptes} but {linked} PTE tables "
                        "are linked", None, mm)
    rss = {mm: dict.fromkeys(mm.rss, 0) for mm in k.mms}
    mapcount: dict = {}
    for mm, addr, folio, idx, is_pmd in mappings(k):
        rss[mm][mm_counter(folio)] += folio.nr if is_pmd else 1
        mapcount[folio] = mapcount.get(folio, 0) + 1
        vma = mm.find_vma(addr)
        if vma is None:
            m.violation("data.unmapped-mapping", f"{mm!r} addr {addr} still maps {folio!r}, but no "
                        "VMA covers it (munmap left it mapped)", None, folio)
        for a in range(addr, addr + (folio.nr if is_pmd else 1)):
            check_mapping_data(k, None, mm, vma, a, folio, a - addr if is_pmd else idx)
    for mm in k.mms:
        if rss[mm] != mm.rss:
            m.violation("acct.rss", f"{mm!r} rss counters are {mm.rss} but its page tables map "
                        f"{rss[mm]} (\"BUG: Bad rss-counter state\")", None, mm)
    for f in k.files:
        for index, folio in f.pages.items():
            if folio.freed:
                m.violation("acct.refcount", f"{folio!r} was freed while the page cache still "
                            f"holds it at {f!r}:{index} (a reference dropped twice)", None, folio)
    for folio in k.folios:
        if folio.freed:
            continue
        want = mapcount.get(folio, 0)
        if folio.mapcount != want:
            m.violation("acct.mapcount", f"{folio!r} mapcount is {folio.mapcount} but {want} "
                        "entries map it", None, folio)
        in_cache = folio.mapping is not None and not folio.anon and \
            folio.mapping.pages.get(folio.index) is folio
        if folio.refcount != want + in_cache:
            m.violation("acct.refcount", f"{folio!r} refcount is {folio.refcount}, expected "
                        f"{want + in_cache} ({want} mappings, {int(in_cache)} page cache)", None,
                        folio)
    k.oracles.uffd.check_end()
    k.oracles.guard.check_end()
    mapped_anon = {(mm, addr) for mm, addr, folio, _, _ in mappings(k) if folio.anon}
    for (mm, addr), value in k.oracles.data.shadow.items():
        if (mm, addr) not in mapped_anon:
            m.violation("data.mismatch", f"{mm!r} addr {addr}: the anonymous page holding {value} "
                        "is no longer mapped (lost with its page table?)", None, mm)
