"""The public zoo: mutants drawn from the series' history, each a registered implementation that the
suite must reject.  Each is registered once, as a ``zoo.*`` entry point of pyproject.toml
(:func:`pgconform.registry.zoo_names` lists them); each mutant's ``expected`` lists the clause ids
one of which judging it must report."""
