"""The public zoo: mutants drawn from the series' history, each a registered implementation that the
suite must reject.  ``MUTANTS`` maps each registered name to its ``module:attr`` (imported lazily);
each mutant's ``expected`` lists the clause ids one of which judging it must report."""

MUTANTS: dict[str, str] = {
    "zoo.retract_pte_free_immediate": "pgconform.zoo.a0_pte_free_immediate:MUTANT",
    "zoo.pte_offset_map_no_rcu": "pgconform.zoo.a0p_no_rcu_read_lock:MUTANT",
    "zoo.pte_offset_map_lock_no_pmd_same": "pgconform.zoo.a15_no_pmd_same:MUTANT",
    "zoo.powerpc_v1_rcu_per_fragment": "pgconform.zoo.a1_powerpc_v1:MUTANT",
    "zoo.s390_v1_rcu_head_on_list": "pgconform.zoo.a3_s390_v1:MUTANT",
    "zoo.pae_no_pmdp_get_lockless_sync": "pgconform.zoo.a10_pae_no_sync:MUTANT",
    "zoo.pte_lockptr_from_reread_pmd": "pgconform.zoo.a14_ptl_from_reread_pmd:MUTANT",
    "zoo.s390_v2_as_posted": "pgconform.zoo.s390_v2_posted:MUTANT",
    "zoo.retract_no_anon_vma_recheck": "pgconform.zoo.a7_retract_no_anon_vma_recheck:MUTANT",
    "zoo.retract_no_uffd_wp_recheck": "pgconform.zoo.a8_retract_no_uffd_wp_recheck:MUTANT",
    "zoo.collapse_walk_before_vma_check": "pgconform.zoo.a11_collapse_walk_before_vma:MUTANT",
    "zoo.collapse_pte_mapped_thp_uffd_window": "pgconform.zoo.b1_collapse_uffd_no_pml:MUTANT",
    "zoo.move_normal_pmd_no_recheck": "pgconform.zoo.cve_2024_50066_move_normal_pmd:MUTANT",
    "zoo.retract_no_pmd_notifier": "pgconform.zoo.a9_retract_no_pmd_notifier:MUTANT",
    # mutants of 7.0 behaviour, judged in a 7.0 kernel (Implementation.kernel)
    "zoo.v7_retract_no_pmd_state_recheck":
        "pgconform.zoo.v7_retract_no_pmd_state_recheck:MUTANT",
}
