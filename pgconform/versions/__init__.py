"""Other kernel versions of the code the series changed, each a registered implementation.

Unlike the zoo's mutants, v6.5, v2, v6.6 and v7.0 are correct designs under their own locking (v2
with its later-found bugs declared), so judging one must come out clean: they show that the suite
tells a *different* protocol from a *wrong* one.

* :mod:`pgconform.versions.v6_5`: Linux 6.5, before the series (``v6.5``);
* :mod:`pgconform.versions.v1`: the series' v1 as posted (``v1``): it must fail, exactly where
  the v2 changelog says v1 was wrong (:data:`pgconform.versions.v1.CHANGELOG`);
* :mod:`pgconform.versions.v2`: v2 as posted, the seed (``v2``), with its bugs found later
  declared as known violations;
* :mod:`pgconform.versions.v6_6`: 6.6 as merged, the reference (``v6.6``);
* :mod:`pgconform.versions.v7_0`: mainline 7.0 in a 7.0 kernel (``v7.0``).

:data:`VERSIONS` lists them in history order, for the version matrix.
"""

#: the registered versions, oldest first
VERSIONS = ("v6.5", "v1", "v2", "v6.6", "v7.0")
