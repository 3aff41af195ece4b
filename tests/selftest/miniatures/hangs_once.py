"""Hangs once: ``__pte_offset_map`` loops without yielding an effect the first time it is called
in the process (past the watchdog's time), and never again: a hang that does not reproduce, as a
stopped or starved machine would once have made one.  Not in VERDICTS: it must not be judged at
all (the plugin skips the item; the sweep judges the schedule by its re-run)."""

import time

from pgconform.reference.pgtable_generic import __pte_offset_map as reference

CALLS = [0]


def __pte_offset_map(k, pmdp, addr):
    CALLS[0] += 1
    if CALLS[0] == 1:
        until = time.process_time() + 60  # CPU time: far past any watchdog limit of the tests
        while time.process_time() < until:
            pass
    return (yield from reference(k, pmdp, addr))


IMPL = {"__pte_offset_map": __pte_offset_map}
