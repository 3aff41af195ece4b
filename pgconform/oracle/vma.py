"""VMA lifetime: a VMA is freed only once no walker can find it, and
nobody touches a freed one (the model poisons a freed VMA, kernel/mmap.py FreedVma, and announces
each touch)."""

from __future__ import annotations

from pgconform.oracle.pagetable import mm_walkable


def vma_findable(vma) -> str | None:
    """Where a walker can still find ``vma``: its mm's VMA tree (if the mm is walkable) or its
    file's i_mmap; None if nowhere."""
    if vma in vma.mm.vmas and mm_walkable(vma.mm):
        return f"the VMA tree of {vma.mm!r}"
    if vma.file is not None and vma in vma.file.i_mmap:
        return f"{vma.file!r}'s i_mmap"
    return None


def check_vma_free(m, t, vma) -> None:
    """vm_area_free(): a walker must not be able to find the VMA any more."""
    where = vma_findable(vma)
    if where is not None:
        m.violation("vma.free-linked", f"{t.name} frees {vma!r} while it is still in {where}: a "
                    "walker can find it and use it after the free", t, vma)


def check_vma_use_after_free(m, t, vma, what, freer) -> None:
    """A field of a freed VMA is read or written."""
    m.violation("vma.use-after-free", f"{t.name if t else '?'}: {what} of {vma!r}, which {freer} "
                "freed (a walker kept a VMA it found past the lock that kept it alive)", t, vma)
