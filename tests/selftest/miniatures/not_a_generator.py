"""Not a generator: ``pte_unmap`` written as a plain function (no ``yield``): it returns None
where the model expects the generator of its effects."""


def pte_unmap(k, pte):
    return None


IMPL = {"pte_unmap": pte_unmap}
