"""Hole punch on the shmem file: mm/shmem.c shmem_fallocate(FALLOC_FL_PUNCH_HOLE) ->
unmap_mapping_range() (mm/memory.c) and shmem_truncate_range() -> shmem_undo_range() ->
truncate_inode_folio() (mm/truncate.c), Linux 6.6.

unmap_mapping_range() walks every VMA of the file's i_mmap under i_mmap_rwsem for *read* (so it
runs alongside retract_page_tables() and the rmap walkers) and zaps the range with
zap_page_range_single(): zap_pte_range() maps each table with pte_offset_map_lock(), and a NULL
map retries the pmd.  Private COW pages stay mapped (even_cows is false: "hole-punching leaves
COWed pages").  Then each folio of the range is locked (a huge folio collapse_file() holds locked
blocks the punch until the collapse is done), unmapped again if something mapped it meanwhile
(unmap_mapping_folio()), and taken out of the page cache; the file reads zero there.  A large
folio only partly in the range is zeroed there and kept (truncate_inode_partial_folio() on a
dirty shmem folio whose split the model does not do).

Model restrictions: no i_rwsem (concurrent punches are not serialised with each other), no
shmem_falloc wait queue for faults into the hole, no swap entries; shmem_undo_range()'s
trylock pass is folded into its blocking pass.
"""

from __future__ import annotations

from pgconform.kernel.filemap import PageCacheGet, folio_put
from pgconform.kernel.memory import ZAP_FLAG_DROP_MARKER, ZapDetails, zap_page_range_single
from pgconform.sim.effects import Atomic, DownRead, Lock, Unlock, UpRead


def unmap_mapping_range_tree(k, mapping, first_index, last_index, details):
    """mm/memory.c: unmap_mapping_range_tree() (6.6): for each VMA of i_mmap overlapping
    [first_index, last_index], zap_page_range_single() over the addresses mapping that part."""
    for vma in list(mapping.i_mmap):
        vba = vma.pgoff
        vea = vba + (vma.end - vma.start) - 1
        zba, zea = max(first_index, vba), min(last_index, vea)
        if zba > zea:
            continue
        yield from zap_page_range_single(k, vma, vma.start + zba - vba, vma.start + zea - vba + 1,
                                         details)


def unmap_mapping_pages(k, mapping, start, nr, even_cows):
    """mm/memory.c: unmap_mapping_pages() (6.6): unmap_mapping_range_tree() under
    i_mmap_lock_read()."""
    yield DownRead(mapping.i_mmap_rwsem)
    yield from unmap_mapping_range_tree(k, mapping, start, start + nr - 1,
                                        ZapDetails(even_cows=even_cows))
    yield UpRead(mapping.i_mmap_rwsem)


def unmap_mapping_range(k, mapping, start, nr, even_cows=False):
    """mm/memory.c: unmap_mapping_range() (6.6), in pages."""
    yield from unmap_mapping_pages(k, mapping, start, nr, even_cows)


def unmap_mapping_folio(k, folio):
    """mm/memory.c: unmap_mapping_folio() (6.6): unmap one locked folio from every VMA mapping it
    (even_cows false, ZAP_FLAG_DROP_MARKER; single_folio is the range of the folio here)."""
    mapping = folio.mapping
    yield DownRead(mapping.i_mmap_rwsem)
    yield from unmap_mapping_range_tree(k, mapping, folio.index, folio.index + folio.nr - 1,
                                        ZapDetails(even_cows=False,
                                                   zap_flags=ZAP_FLAG_DROP_MARKER))
    yield UpRead(mapping.i_mmap_rwsem)


def _filemap_remove_folio(m, t, k, f, folio):
    """filemap_remove_folio() (6.6) of a locked folio: out of the page cache (xa_lock), mapping
    cleared, the page cache's reference dropped; the file reads zero there."""
    for i in range(folio.index, folio.index + folio.nr):
        if f.pages.get(i) is folio:
            del f.pages[i]
        f.content[i] = 0
    folio.mapping = None
    folio_put(k, folio)


def truncate_inode_folio(k, f, folio):
    """mm/truncate.c: truncate_inode_folio() (6.6): truncate_cleanup_folio() (unmap_mapping_folio()
    if still mapped), then filemap_remove_folio()."""
    if folio.mapcount:
        yield from unmap_mapping_folio(k, folio)
    yield Atomic(f"filemap_remove_folio({folio!r})", _filemap_remove_folio, (k, f, folio),
                 touches=(f,))


def _zero_range(m, t, f, folio, lo, hi):
    """folio_zero_range() of the pages [lo, hi) of a locked folio: data and file read zero."""
    for i in range(lo, hi):
        folio.data[i - folio.index] = 0
        f.content[i] = 0


def _zero_holes(m, t, f, start, end):
    """The indices with no folio read zero from now on (the model keeps a "not in the page cache"
    page's content in ``f.content``, like a swapped-out page: a hole punch drops it)."""
    for i in range(start, end):
        if i not in f.pages:
            f.content[i] = 0


def shmem_undo_range(k, f, start, end):
    """mm/shmem.c: shmem_undo_range() (6.6) over the pages [start, end): each folio is looked up,
    locked (waiting for whoever holds it), rechecked to still be this file's, and truncated whole
    (truncate_inode_folio()) or, a large folio only partly inside, zeroed in the range
    (truncate_inode_partial_folio())."""
    yield Atomic(f"shmem_undo_range({f!r}, {start}, {end}): holes", _zero_holes, (f, start, end),
                 touches=(f,))
    index = start
    while index < end:
        folio = yield PageCacheGet(f, index)
        if folio is None:
            index += 1
            continue
        yield Lock(folio.lock)
        if folio.mapping is not f or f.pages.get(index) is not folio:
            yield Unlock(folio.lock)  # truncated or replaced meanwhile: look again
            folio_put(k, folio)
            continue
        lo, hi = max(start, folio.index), min(end, folio.index + folio.nr)
        if lo == folio.index and hi == folio.index + folio.nr:
            yield from truncate_inode_folio(k, f, folio)
        else:
            yield Atomic(f"folio_zero_range({folio!r}, {lo}, {hi})", _zero_range,
                         (f, folio, lo, hi), touches=(f,))
        yield Unlock(folio.lock)
        folio_put(k, folio)
        index = hi


def shmem_fallocate_punch_hole(k, f, start, nr):
    """mm/shmem.c: shmem_fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) (6.6) over the
    pages [start, start + nr): unmap_mapping_range() (not the COWed pages), then
    shmem_truncate_range().  Returns 0."""
    end = min(start + nr, f.size)
    if end <= start:
        return 0
    yield from unmap_mapping_range(k, f, start, end - start, even_cows=False)
    yield from shmem_undo_range(k, f, start, end)
    return 0
