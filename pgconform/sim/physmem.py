"""Physical memory of the simulated machine: page frames, reused soon after they are freed.

Each allocation is a new :class:`Page` object occupying a frame (``pfn``); ``gen`` counts how many
times the frame has been handed out.  A task that keeps a pointer holds the *object* it got, so a
pointer outliving the allocation is detected at its next dereference (``page.freed``), even after
the frame went to a new owner.  Values stored in tables name frames by ``pfn`` (as hardware does),
so a stale pmd value can compare equal to a new one (ABA), exactly as in the kernel.
"""

from __future__ import annotations

import attrs

from pgconform.sim.names import name_form


#: a frame as the trace names it, ``kind@pfn.gen`` (the model's pages and addresses, ``mm0@5``, take
#: the same form)
@name_form(r"[a-z_][a-z_0-9]*@\d+(?:[+.]\d+)*")
@attrs.define(slots=True, eq=False, repr=False)
class Page:
    """One allocation of a frame.  ``entries`` is its content as a list of words."""

    pfn: int
    gen: int
    kind: str = "page"
    entries: list = attrs.field(factory=list)
    freed: bool = False
    #: oracle hook run before each Store to this page: ``check_store(m, task, page, idx, value)``
    check_store: object = None

    def __repr__(self) -> str:
        return f"{self.kind}@{self.pfn}.{self.gen}"


@attrs.define(slots=True, eq=False)
class PhysMem:
    """The frame allocator.  LIFO reuse: the most recently freed frame is handed out next."""

    frames: list = attrs.field(factory=list)
    free_pfns: list = attrs.field(factory=list)
    gens: list = attrs.field(factory=list)

    def alloc(self, factory) -> Page:
        """Allocate a frame and build its occupant with ``factory(pfn, gen)``."""
        if self.free_pfns:
            pfn = self.free_pfns.pop()
            self.gens[pfn] += 1
        else:
            pfn = len(self.frames)
            self.frames.append(None)
            self.gens.append(0)
        page = factory(pfn, self.gens[pfn])
        self.frames[pfn] = page
        return page

    def free(self, page: Page) -> None:
        """Release ``page``'s frame.  The caller has checked for double free (it is a violation).

        The frame keeps naming the freed object until it is reused, so ``pmd_page()`` of a stale
        value yields the freed page and the next dereference is caught."""
        page.freed = True
        self.free_pfns.append(page.pfn)

    def occupant(self, pfn: int):
        """The page object in frame ``pfn`` (freed, if nothing reused it yet): ``pmd_page()``."""
        return self.frames[pfn]
