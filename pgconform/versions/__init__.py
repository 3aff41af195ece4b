"""Other kernel versions of the code the series changed, each a registered implementation.

Unlike the zoo's mutants these are correct designs under their own locking, so judging one must
come out clean: they show that the suite tells a *different* protocol from a *wrong* one.

* :mod:`pgconform.versions.v6_5`: Linux 6.5, before the series (``v6.5``).
"""
