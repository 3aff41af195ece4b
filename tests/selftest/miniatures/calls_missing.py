"""Calls a missing function: ``pte_unmap`` calls a helper the kernel table does not have."""


def pte_unmap(k, pte):
    yield from k.ops.pte_unmap_rcu(k, pte)


IMPL = {"pte_unmap": pte_unmap}
