"""The public zoo: mutants drawn from the series' history, each a registered implementation that the
suite must reject.  ``MUTANTS`` maps each registered name to its ``module:attr`` (imported lazily);
each mutant's ``expected`` lists the clause ids one of which judging it must report."""

MUTANTS: dict[str, str] = {
    "zoo.retract_pte_free_immediate": "pgconform.zoo.a0_pte_free_immediate:MUTANT",
    "zoo.pte_offset_map_no_rcu": "pgconform.zoo.a0p_no_rcu_read_lock:MUTANT",
    "zoo.pte_offset_map_lock_no_pmd_same": "pgconform.zoo.a15_no_pmd_same:MUTANT",
}
