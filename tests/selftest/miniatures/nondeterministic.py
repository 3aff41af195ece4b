"""Nondeterministic: ``pte_unmap`` counts the kernels it has seen, across runs, and in the n-th
one forgets rcu_read_unlock() at its first call when n has an odd number of one bits (the
Thue-Morse sequence).  A schedule that fails once passes when run again, and the other way round:
a replay may build several kernels (a machine's ``rerun``), and a periodic pattern (every other
kernel, every seventh call) repeats itself in replays of the right length, while this sequence
never repeats one block three times in a row, so three replays of any run cannot all agree."""

from pgconform.reference.pgtable_generic import pte_unmap as reference

KERNELS = [0]
LAST = [None]


def pte_unmap(k, pte):
    first = LAST[0] is not k
    if first:
        LAST[0] = k
        KERNELS[0] += 1
    if first and bin(KERNELS[0]).count("1") % 2:
        return
        yield  # a generator
    yield from reference(k, pte)


IMPL = {"pte_unmap": pte_unmap}
