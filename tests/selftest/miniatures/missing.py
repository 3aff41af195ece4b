"""Missing: the table names ``pte_free_defer`` but gives no function for it (a usage error when
the implementation is chosen, naming the function)."""

IMPL = {"pte_free_defer": None}
